#!/usr/bin/env bash
# Fresh clone to a working chat, timed: clones this repository into a new directory, runs
# `bash scripts/start.sh "QUESTION"` there with an empty ONCOLOOP_HOME and ONCOLOOP_CACHE (so the model is
# converted and merged as on a new machine), prints every line of its output with the seconds since the
# command, and stops everything once the chat UI listens. Run it a second time with the printed directory
# (`benchmarks/fresh_start.sh --again DIR`) to time a later start.
#   bash benchmarks/fresh_start.sh ["QUESTION"]
#   bash benchmarks/fresh_start.sh --again DIR ["QUESTION"]
# For the first-start figure, run it where pip's cache is empty (a new machine) and nothing else runs.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
if [ "${1:-}" = "--again" ]; then
  dir=$2; shift 2
else
  dir=$(mktemp -d /tmp/oncoloop-fresh-XXXX)
  git clone -q "$repo" "$dir/repo"
fi
question=${1:-"What are the warning signs of metastatic spinal cord compression in a patient with prostate cancer?"}
export ONCOLOOP_HOME=$dir/home ONCOLOOP_CACHE=$dir/cache
export ONCOLOOP_GATEWAY_PORT=${ONCOLOOP_GATEWAY_PORT:-8100} ONCOLOOP_UI_PORT=${ONCOLOOP_UI_PORT:-7960}
echo "fresh_start: $dir"
start=$(date +%s.%N)
status=1
cd "$dir/repo"
# start.sh runs until Ctrl-C: read its output until the UI listens, then stop its process group
set +o pipefail
setsid bash scripts/start.sh "$question" 2>&1 | while IFS= read -r line; do
  printf '%7.1f %s\n' "$(echo "$(date +%s.%N) - $start" | bc)" "${line:0:300}"
  if [[ $line == "ui: chat on "* ]]; then
    pkill -TERM -f "$dir/repo/.venv/bin/python" || true
    pkill -TERM -f -- "--port $ONCOLOOP_UI_PORT" || true
    pkill -TERM -f -- "--port $ONCOLOOP_GATEWAY_PORT" || true
    exit 0
  fi
done && status=0
exit $status
