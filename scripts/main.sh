#!/usr/bin/env bash
# The main job: build everything (scripts/setup.sh), start `oxipp controller` on a throw-away
# profile, wait for its connection files, show them, and stop it again.
# (Later: a 4-engine cluster running the tutorial.)
#
#   bash scripts/main.sh [--no-setup] [--controller CMD]
#
#   --no-setup        skip scripts/setup.sh (already built)
#   --controller CMD  run CMD (shell words) instead of `target/release/oxipp controller`, e.g.
#                     --controller ".venv/bin/python -m ipyparallel.controller" to check this
#                     script against the stock controller
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"
venv="${OXIPP_VENV:-$repo/.venv}"
setup=1
controller_cmd=()
while (($#)); do
    case "$1" in
        --no-setup) setup=0 ;;
        --controller) read -r -a controller_cmd <<<"${2:?--controller needs a command}"; shift ;;
        -h|--help) sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "${BASH_SOURCE[0]}"; exit 0 ;;
        *) echo "main: unknown argument '$1' (see --help)" >&2; exit 2 ;;
    esac
    shift
done

if ((setup)); then
    echo "==> main: build (scripts/setup.sh)"
    bash scripts/setup.sh
fi
if ((${#controller_cmd[@]} == 0)); then
    controller_cmd=("$repo/target/release/oxipp" controller)
    [[ -x "${controller_cmd[0]}" ]] || { echo "main: ${controller_cmd[0]} missing (run scripts/setup.sh)" >&2; exit 1; }
fi

work="$(mktemp -d "${TMPDIR:-/tmp}/oxipp-main.XXXXXX")"
export IPYTHONDIR="$work/ipython"
profile=main
security="$IPYTHONDIR/profile_$profile/security"
log="$work/controller.log"
pid=""

cleanup() {
    if [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null; then
        kill -TERM "$pid" 2>/dev/null || true
        sleep 1
        kill -KILL "$pid" 2>/dev/null || true
    fi
    rm -rf "$work"
}
trap cleanup EXIT

echo "==> main: starting ${controller_cmd[*]} --profile=$profile --ip=127.0.0.1 (IPYTHONDIR=$IPYTHONDIR)"
"${controller_cmd[@]}" --profile="$profile" --ip=127.0.0.1 --log-level=20 >"$log" 2>&1 &
pid=$!

client_json="$security/ipcontroller-client.json"
engine_json="$security/ipcontroller-engine.json"
deadline=$((SECONDS + 30))
while [[ ! -s "$client_json" || ! -s "$engine_json" ]]; do
    if ! kill -0 "$pid" 2>/dev/null; then
        status=0
        wait "$pid" || status=$?
        pid=""
        echo "main: ERROR: the controller exited with status $status before writing its connection files." >&2
        echo "main: its output ($log):" >&2
        sed 's/^/    /' "$log" >&2
        if grep -q "not implemented yet" "$log"; then
            echo "main: (the oxipp-controller crate is still the stub: this step works once the real controller lands)" >&2
        fi
        exit 1
    fi
    if ((SECONDS > deadline)); then
        echo "main: ERROR: no connection files in $security after 30 s; controller output:" >&2
        sed 's/^/    /' "$log" >&2
        exit 1
    fi
    sleep 0.1
done
sleep 0.2  # the files are written whole, but give a non-atomic writer a moment anyway

echo "==> main: controller running (pid $pid); connection files:"
"$venv/bin/python" - "$client_json" "$engine_json" <<'EOF'
import json
import os
import stat
import sys

CHANNELS = ("registration", "mux", "task", "control", "iopub", "notification", "broadcast",
            "hb_ping", "hb_pong")
for path in sys.argv[1:]:
    with open(path) as f:
        info = json.load(f)
    mode = stat.S_IMODE(os.stat(path).st_mode)
    key = info.get("key", "")
    print(f"  {path} (mode {mode:o})")
    print(f"    interface {info.get('interface')}  location {info.get('location')}"
          f"  {info.get('signature_scheme')} key {'<%d chars>' % len(key) if key else '<none>'}"
          f"  pack {info.get('pack')}/{info.get('unpack')}"
          + (f"  task_scheme {info['task_scheme']}" if "task_scheme" in info else ""))
    print("    ports: " + ", ".join(f"{c} {info[c]}" for c in CHANNELS if c in info))
EOF

echo "==> main: stopping the controller (SIGTERM)"
kill -TERM "$pid"
stopped=0
for _ in $(seq 50); do
    if ! kill -0 "$pid" 2>/dev/null; then stopped=1; break; fi
    sleep 0.1
done
if ((stopped)); then
    status=0
    wait "$pid" || status=$?
    echo "main: controller exited (status $status) within 5 s of SIGTERM"
else
    echo "main: ERROR: controller still running 5 s after SIGTERM; killing it" >&2
    kill -KILL "$pid" 2>/dev/null || true
    exit 1
fi
pid=""
if [[ -e "$client_json" || -e "$engine_json" ]]; then
    echo "main: note: connection files left behind in $security (expected only with --reuse)"
fi
echo "main: OK"
