#!/usr/bin/env bash
# The README's first command: install, put the embedded default model in place,
# start the gateway and open the clinicians' chat UI (Ctrl-C stops both).
#   bash scripts/start.sh                       # chat on http://127.0.0.1:7860
#   bash scripts/start.sh "A question?"         # first answer one question in the terminal
# Ports: ONCOLOOP_GATEWAY_PORT (8000), ONCOLOOP_UI_PORT (7860). First start creates demo
# accounts clinician / reviewer / admin with random passwords, printed once and kept in
# $ONCOLOOP_HOME/demo-accounts.txt (mode 600); disable them with
# `python -m feedback.users disable clinician` once real accounts exist.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export ONCOLOOP_HOME=${ONCOLOOP_HOME:-$PWD/var}
# The home holds patients' data: everything written there from here on (the gateway's log too) is owner-only.
umask 077
# SmolLM2-135M-Instruct + the shipped oncology LoRA as champion (converted and merged once, ~1 min; then seconds)
.venv/bin/python -m finetune.bootstrap
if [ $# -gt 0 ]; then
  .venv/bin/python -m serve.ask "$1"
fi
gateway_port=${ONCOLOOP_GATEWAY_PORT:-8000}
ui_port=${ONCOLOOP_UI_PORT:-7860}
# The clinical guard (preamble, urgent and dosing notices, identifier stripping); ONCOLOOP_GUARD overrides it.
guard=${ONCOLOOP_GUARD:-configs/guard/default.yaml}
mkdir -p "$ONCOLOOP_HOME/runs"
.venv/bin/python -m serve --port "$gateway_port" --guard "$guard" >"$ONCOLOOP_HOME/runs/gateway.log" 2>&1 &
gateway=$!
trap 'kill "$gateway" 2>/dev/null || true; wait "$gateway" 2>/dev/null || true' EXIT
echo "start: waiting for the gateway on port $gateway_port (log: $ONCOLOOP_HOME/runs/gateway.log)"
.venv/bin/python - "$gateway_port" "$gateway" <<'PY'
import os, sys, time, httpx
from feedback.keys import local_key
port, pid = sys.argv[1], int(sys.argv[2])
auth = {"Authorization": f"Bearer {local_key('start', ('chat',))}"}  # this script's own gateway key
for _ in range(600):
    try:
        if httpx.get(f"http://127.0.0.1:{port}/ready", timeout=2, headers=auth).json().get("ready"):
            sys.exit(0)
    except (httpx.HTTPError, ValueError):
        pass
    try:
        os.kill(pid, 0)
    except OSError:
        sys.exit("start: the gateway exited; see its log")
    time.sleep(1)
sys.exit("start: the gateway did not become ready in 10 minutes; see its log")
PY
# The UI creates its own gateway key (scope chat) in $ONCOLOOP_HOME/keys/ui.key; other clients need one of
# their own: .venv/bin/python -m feedback.keys create --name NAME --scopes chat
echo "start: chat UI on http://127.0.0.1:$ui_port  (log in as clinician; reviewer and admin for the Review and"
echo "       Admin tabs; their random passwords are printed below on the first start and kept in"
echo "       $ONCOLOOP_HOME/demo-accounts.txt, readable by you only)"
.venv/bin/python -m ui --port "$ui_port" --gateway-url "http://127.0.0.1:$gateway_port" --demo-account
