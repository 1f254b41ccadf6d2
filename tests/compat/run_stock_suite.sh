#!/usr/bin/env bash
# Run stock ipyparallel's own test suite (installed in the venv) against the oxipp controller,
# or against the stock controller with --stock (the baseline). One junit XML per run.
#
#   tests/compat/run_stock_suite.sh [options] [-- extra pytest args]
#
# Options:
#   --stock             use the stock Python controller (IPP_ALT_* unset): the baseline
#   --controller CMD    use CMD (shell-split) as the controller instead of `oxipp controller`
#   --engine CMD        also replace the engine command (IPP_ALT_ENGINE)
#   --repeat N          run the suite N times in a row (default 1)
#   --modules "A B"     only these test modules (e.g. "test_client test_apps"), default: all
#   --nodeids FILE      only these tests: node ids as compare.py --write-failed writes them
#                       (ipyparallel/tests/test_x.py::Class::test[param]), one per line
#   --out DIR           where run-<i>/junit.xml and run-<i>/pytest.log go
#                       (default: target/compat/<label>-<timestamp>)
#   --timeout S         pytest-timeout per test, thread method (default 120)
#   --stall S           end a run whose log has not grown for S seconds (default 2.5 x timeout)
#   --no-xdist          run in-process; a timeout then kills the whole run (see README)
# Any other argument is passed to pytest (e.g. -k, -x, -v).
#
# Environment: OXIPP_VENV (default <repo>/.venv), OXIPP_BIN (default <repo>/target/release/oxipp).
# Exit status: pytest's (of the last failing run, 0 if every run passed). Compare the XML with
# tests/compat/compare.py, which knows which failures the stock controller has too.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
venv="${OXIPP_VENV:-$repo/.venv}"
py="$venv/bin/python"

mode=oxipp
alt_controller=""
alt_engine=""
repeat=1
modules=""
nodeids=""
out=""
timeout=120
stall=""
xdist=1
pytest_extra=()

die() { echo "run_stock_suite: $*" >&2; exit 2; }

while (($#)); do
    case "$1" in
        --stock) mode=stock ;;
        --controller) (($# >= 2)) || die "--controller needs a command"; mode=custom; alt_controller="$2"; shift ;;
        --controller=*) mode=custom; alt_controller="${1#*=}" ;;
        --engine) (($# >= 2)) || die "--engine needs a command"; alt_engine="$2"; shift ;;
        --engine=*) alt_engine="${1#*=}" ;;
        --repeat) (($# >= 2)) || die "--repeat needs N"; repeat="$2"; shift ;;
        --repeat=*) repeat="${1#*=}" ;;
        --modules) (($# >= 2)) || die "--modules needs a list"; modules="$2"; shift ;;
        --modules=*) modules="${1#*=}" ;;
        --nodeids) (($# >= 2)) || die "--nodeids needs a file"; nodeids="$2"; shift ;;
        --nodeids=*) nodeids="${1#*=}" ;;
        --out) (($# >= 2)) || die "--out needs a directory"; out="$2"; shift ;;
        --out=*) out="${1#*=}" ;;
        --timeout) (($# >= 2)) || die "--timeout needs seconds"; timeout="$2"; shift ;;
        --timeout=*) timeout="${1#*=}" ;;
        --stall) (($# >= 2)) || die "--stall needs seconds"; stall="$2"; shift ;;
        --stall=*) stall="${1#*=}" ;;
        --no-xdist) xdist=0 ;;
        -h|--help) sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "${BASH_SOURCE[0]}"; exit 0 ;;
        --) shift; pytest_extra+=("$@"); break ;;
        *) pytest_extra+=("$1") ;;
    esac
    shift
done
[[ "$repeat" =~ ^[1-9][0-9]*$ ]] || die "--repeat must be a positive integer, got '$repeat'"
[[ "$timeout" =~ ^[1-9][0-9]*$ ]] || die "--timeout must be a positive integer, got '$timeout'"
stall="${stall:-$((timeout * 5 / 2))}"
[[ "$stall" =~ ^[1-9][0-9]*$ ]] || die "--stall must be a positive integer, got '$stall'"

[[ -x "$py" ]] || die "no venv at $venv (run: bash scripts/setup.sh)"
"$py" -c 'import ipyparallel, pytest_timeout' 2>/dev/null \
    || die "$venv lacks ipyparallel[test] or pytest-timeout (run: bash scripts/setup.sh)"
# The shim is what routes `python -m ipyparallel.controller` (ipcluster subprocesses, --version)
# to IPP_ALT_CONTROLLER; it is idempotent and a no-op while the variable is unset.
"$py" "$here/install_shim.py" --quiet

case "$mode" in
    stock)
        unset IPP_ALT_CONTROLLER
        label=stock
        ;;
    oxipp)
        bin="${OXIPP_BIN:-$repo/target/release/oxipp}"
        [[ -x "$bin" ]] || die "$bin not found: build it with 'cargo build --release --bin oxipp' (or scripts/setup.sh)"
        export IPP_ALT_CONTROLLER="$(printf '%q' "$bin") controller"
        label=oxipp
        ;;
    custom)
        [[ -n "$alt_controller" ]] || die "--controller needs a non-empty command"
        export IPP_ALT_CONTROLLER="$alt_controller"
        label=custom
        ;;
esac
if [[ -n "$alt_engine" ]]; then
    export IPP_ALT_ENGINE="$alt_engine"
else
    unset IPP_ALT_ENGINE
fi

# rootdir = site-packages, so node ids read ipyparallel/tests/test_x.py::Class::test (junit
# classnames ipyparallel.tests.test_x.Class), the form stock-baseline.txt uses.
site="$("$py" -c 'import ipyparallel, os; print(os.path.dirname(os.path.dirname(ipyparallel.__file__)))')"

targets=()
target_opts=(--pyargs)
if [[ -n "$nodeids" ]]; then
    [[ -r "$nodeids" ]] || die "cannot read --nodeids file $nodeids"
    # node ids are relative to site-packages (the rootdir): absolute paths select exactly them
    while IFS= read -r nid; do
        [[ -n "$nid" ]] && targets+=("$site/$nid")
    done <"$nodeids"
    ((${#targets[@]})) || die "--nodeids file $nodeids lists no tests"
    target_opts=()
elif [[ -n "$modules" ]]; then
    for m in $modules; do
        m="${m%.py}"
        targets+=("ipyparallel.tests.${m#ipyparallel.tests.}")
    done
else
    targets=(ipyparallel.tests)
fi

out="${out:-$repo/target/compat/$label-$(date +%Y%m%d-%H%M%S)}"
mkdir -p "$out"
out="$(cd "$out" && pwd)"

xdist_args=()
if ((xdist)); then
    # One worker process, so the suite runs in order as usual, but a test that hits the
    # pytest-timeout (thread method = os._exit) only takes its worker down: xdist reports it
    # as failed, starts a new worker and the run (and its junit XML) goes on. `--dist load`,
    # not loadfile: after a crash loadfile fails the crashed file's remaining tests and was
    # seen to hang at the end of the run (xdist 3.x).
    xdist_args=(-n 1 --dist load --max-worker-restart 50)
fi

# Run from an empty folder, so nothing there can shadow the installed package, with an ini file
# of our own (-c), so no ini file of the repo or elsewhere is picked up: it holds the only
# setting of the sdist's pyproject.toml the suite needs.
export IPP_DISABLE_JS=1 JUPYTER_PLATFORM_DIRS=1
# test_mpi runs clusters under mpiexec (Open MPI, installed by scripts/setup.sh): let it run as
# root (CI) and put more ranks than the 2 cores on this machine
export OMPI_MCA_rmaps_base_oversubscribe=true
if ((EUID == 0)); then export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1; fi
export PYTHONPATH="$here${PYTHONPATH:+:$PYTHONPATH}"
# our controller runs the dask.distributed scheduler of become_dask with this interpreter (the
# venv's, where dask is installed; see crates/oxipp-controller/src/dask_process.rs)
export OXIPP_PYTHON="${OXIPP_PYTHON:-$py}"

# Some tests SIGKILL a stock controller, whose scheduler child processes then live on as
# orphans (seen: 3-7 per such test). Every process of a run inherits a unique marker in its
# environment; afterwards exactly those processes still alive are ended.
reap_leftovers() {
    local marker="OXIPP_COMPAT_RUN=$1" pids=() f pid
    for f in /proc/[0-9]*/environ; do
        pid="${f#/proc/}"
        pid="${pid%/environ}"
        [[ "$pid" != "$$" ]] || continue
        if tr '\0' '\n' 2>/dev/null <"$f" | grep -qxF "$marker"; then pids+=("$pid"); fi
    done
    ((${#pids[@]})) || return 0
    echo "run_stock_suite: ending ${#pids[@]} leftover process(es) of this run: ${pids[*]}"
    kill -TERM "${pids[@]}" 2>/dev/null || true
    sleep 1
    kill -KILL "${pids[@]}" 2>/dev/null || true
}

status=0
for ((i = 1; i <= repeat; i++)); do
    rundir="$out/run-$i"
    mkdir -p "$rundir"
    work="$(mktemp -d "${TMPDIR:-/tmp}/oxipp-compat.XXXXXX")"
    run_id="$$-$i-$(date +%s%N)"
    printf '[pytest]\nasyncio_mode = auto\n' >"$work/pytest.ini"
    echo "run_stock_suite: run $i/$repeat, controller: ${IPP_ALT_CONTROLLER:-stock}${IPP_ALT_ENGINE:+, engine: $IPP_ALT_ENGINE}"
    echo "run_stock_suite: log $rundir/pytest.log"
    start=$(date +%s)
    set +e
    (
        cd "$work"
        export IPYTHONDIR="$work/ipython"
        export OXIPP_COMPAT_RUN="$run_id"
        exec "$py" -m pytest "${target_opts[@]}" "${targets[@]}" \
            -o asyncio_mode=auto -p ipp_alt_controller -p no:cacheprovider \
            -c "$work/pytest.ini" --rootdir "$site" \
            --timeout "$timeout" --timeout-method thread \
            "${xdist_args[@]}" \
            -v -ra --durations 10 --color=no \
            --junit-xml "$rundir/junit.xml" \
            "${pytest_extra[@]}"
    ) >"$rundir/pytest.log" 2>&1 &
    pytest_pid=$!
    tail -n +1 -f --pid="$pytest_pid" "$rundir/pytest.log" &
    tail_pid=$!
    # Stall watchdog: -v prints a line per test and pytest-timeout ends any test after
    # $timeout s, so a log that stops growing for $stall s means the run itself is stuck
    # (seen: xdist waiting forever after a worker crash). End it rather than hang CI.
    last_size=-1
    quiet=0
    while kill -0 "$pytest_pid" 2>/dev/null; do
        sleep 5
        size=$(stat -c %s "$rundir/pytest.log" 2>/dev/null || echo 0)
        if [[ "$size" == "$last_size" ]]; then quiet=$((quiet + 5)); else quiet=0; fi
        last_size=$size
        if ((quiet >= stall)); then
            echo "run_stock_suite: ERROR: no output for $stall s; ending this run (stuck)" \
                | tee -a "$rundir/pytest.log"
            kill -TERM "$pytest_pid" 2>/dev/null || true
            reap_leftovers "$run_id"
            break
        fi
    done
    wait "$pytest_pid"
    rc=$?
    wait "$tail_pid" 2>/dev/null
    set -e
    echo "run_stock_suite: run $i/$repeat finished: pytest exit $rc in $(($(date +%s) - start)) s; junit: $rundir/junit.xml"
    reap_leftovers "$run_id"
    rm -rf "$work"
    if ((rc != 0)); then status=$rc; fi
done
echo "run_stock_suite: results in $out"
exit "$status"
