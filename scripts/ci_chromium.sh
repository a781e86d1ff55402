#!/usr/bin/env bash
# Install Debian's Chromium (the browser the UI's Playwright tests drive) if it is
# missing, then print its path on stdout (everything else goes to stderr).
# Playwright's own browser download is not used: the tests launch this binary
# through `executable_path`. Idempotent: a second run only prints the path.
#   export ONCOLOOP_CHROMIUM=$(bash scripts/ci_chromium.sh)
set -euo pipefail
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"

find_chromium() { command -v chromium || command -v chromium-browser || true; }
path=$(find_chromium)
if [ -z "$path" ]; then
  echo "ci_chromium: installing chromium from Debian's packages" >&2
  $sudo apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends chromium fonts-liberation >&2
  path=$(find_chromium)
fi
[ -n "$path" ] || { echo "ci_chromium: chromium is not on PATH after installing it" >&2; exit 1; }
"$path" --headless --no-sandbox --version >&2 || true
echo "$path"
