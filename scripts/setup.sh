#!/usr/bin/env bash
# Set up this clone for development and CI, from nothing installed by hand:
#   1. system packages: Open MPI (openmpi-bin, libopenmpi-dev: `mpiexec -n 4 python -m
#      oxipp.engine --mpi` and mpi4py's build) and OpenSSH (openssh-server, openssh-client: the
#      SSH tunnel tests) from Debian's apt when missing; libzmq
#      is built from source by the zmq crate with the machine's gcc; python3.11 and cargo come
#      with the machine
#   2. the venv .venv (reused if present) with maturin, ruff, ipyparallel[test]==9.2.0 (the stock
#      suite and the reference implementation), numpy, pytest-timeout, pytest-xdist,
#      dask[distributed] (the Dask column of benches/client_bench.py), paramiko (paramiko SSH
#      tunnels), pinned by
#      scripts/constraints.txt so the stock baseline stays valid
#   3. the release `oxipp` binary (target/release/oxipp), used by the compat suite and main.sh
#   4. the `oxipp` Python package with its extension module (maturin develop --release), which
#      reuses the release artifacts of step 3 (same target dir and profile)
#   5. cargo-nextest (installed only if missing)
#   6. the compat shim in the venv's ipyparallel (tests/compat/install_shim.py)
# Safe to re-run: every step is skipped or incremental when already done.
#
# Environment: OXIPP_VENV (default <repo>/.venv), PYTHON (default python3.11).
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"
venv="${OXIPP_VENV:-$repo/.venv}"
python="${PYTHON:-python3.11}"

t_all=$(date +%s)
t_step=$t_all
step() {
    local now
    now=$(date +%s)
    if [[ -n "${step_name:-}" ]]; then
        echo "setup: ${step_name} done in $((now - t_step)) s"
    fi
    step_name="$1"
    t_step=$now
    echo "==> setup: $1"
}
die() { echo "setup: ERROR: $*" >&2; exit 1; }

step "system packages"
missing=()
command -v cargo >/dev/null || missing+=("cargo (rustup)")
command -v cc >/dev/null || missing+=("a C compiler (apt-get install build-essential)")
command -v "$python" >/dev/null || missing+=("$python")
((${#missing[@]} == 0)) || die "missing: ${missing[*]}"
apt_pkgs=()
if ! command -v mpiexec >/dev/null || ! command -v mpicc >/dev/null; then
    apt_pkgs+=(openmpi-bin libopenmpi-dev)
fi
# tests/test_client_ssh.py runs a real sshd for Client(sshserver=...)
if [[ ! -x /usr/sbin/sshd ]] || ! command -v ssh >/dev/null || ! command -v ssh-keygen >/dev/null; then
    apt_pkgs+=(openssh-server openssh-client)
fi
if ((${#apt_pkgs[@]})); then
    sudo=()
    ((EUID == 0)) || sudo=(sudo)
    echo "setup: installing from apt: ${apt_pkgs[*]}"
    "${sudo[@]}" apt-get update -qq
    DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq "${apt_pkgs[@]}" >/dev/null
fi
echo "setup: $(cargo --version), $("$python" --version), $(mpiexec --version 2>&1 | head -n 1)"

step "venv $venv"
if [[ ! -x "$venv/bin/python" ]]; then
    "$python" -m venv "$venv"
    echo "setup: created $venv"
else
    echo "setup: reusing $venv ($("$venv/bin/python" --version))"
fi
export VIRTUAL_ENV="$venv"
export PATH="$venv/bin:$PATH"

step "Python packages"
# pip leaves satisfied requirements alone (no index look-ups for them) so this is quick when warm
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check \
    -c scripts/constraints.txt \
    maturin ruff "ipyparallel[test]==9.2.0" numpy pytest-timeout pytest-xdist mpi4py matplotlib cloudpickle dill joblib paramiko \
    "dask[distributed]==2026.8.0"

step "cargo build --release --bin oxipp"
# Selecting oxipp-py too (only the `oxipp` binary is built) makes cargo resolve features for
# the dependency graph maturin builds next, so the shared crates (the controller, serde, clap,
# zmq...) are compiled once and reused by maturin instead of being built again with another
# feature set (syn's features differ between the two graphs).
cargo build --release -p oxipp-cluster -p oxipp-py --bin oxipp || die "cargo build failed"

step "maturin develop --release (oxipp Python package)"
# Same target dir and profile as above: only oxipp-py and pyo3 are compiled here.
"$venv/bin/maturin" develop --release || die "maturin develop failed"
"$venv/bin/python" -c 'import oxipp, oxipp._oxipp as m; print(f"setup: oxipp {oxipp.__version__} ({m.__file__})")'

step "cargo-nextest"
if cargo nextest --version >/dev/null 2>&1; then
    echo "setup: $(cargo nextest --version | head -n1)"
else
    cargo install cargo-nextest --locked
fi

step "compat shim"
"$venv/bin/python" tests/compat/install_shim.py

step "done"
echo "setup: finished in $(($(date +%s) - t_all)) s"
