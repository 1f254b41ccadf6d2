#!/usr/bin/env bash
# Harness self-test: a stand-in "alternative controller" that appends one line per launch to
# $IPP_ALT_LOG (argv, IPP_PROFILE_DIR, IPP_CLUSTER_ID, parent command) and then becomes the stock
# controller. Run the suite with it to see that every controller launch goes through the hooks:
#
#   IPP_ALT_LOG=/tmp/launches.log tests/compat/run_stock_suite.sh \
#       --controller tests/compat/logging_stock_controller.sh --modules "test_client test_apps"
#
# It imports ipyparallel.controller.app directly (not `python -m ipyparallel.controller`, which
# the shim would route back here).
set -euo pipefail
log="${IPP_ALT_LOG:-/tmp/ipp-alt-launches.log}"
parent="$(tr '\0' ' ' </proc/$PPID/cmdline 2>/dev/null | cut -c1-120 || true)"
printf '%s pid=%s argv=[%s] IPP_PROFILE_DIR=%s IPP_CLUSTER_ID=%s parent=[%s]\n' \
    "$(date +%H:%M:%S)" "$$" "$*" "${IPP_PROFILE_DIR-<unset>}" "${IPP_CLUSTER_ID-<unset>}" \
    "$parent" >>"$log"
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
py="${OXIPP_VENV:-$here/../../.venv}/bin/python"
exec "$py" -c 'import sys; from ipyparallel.controller.app import main; sys.argv[0] = "ipcontroller"; main()' "$@"
