"""`mpiexec -n 4 python -m oxipp.engine --mpi`: engine ids are MPI ranks and mpi4py works
between engines driven from a client (point-to-point and collectives).

Needs Open MPI's `mpiexec` and mpi4py (scripts/setup.sh installs both). The client is stock
ipyparallel's, so this tests only the engine side.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time

import pytest

ipp = pytest.importorskip("ipyparallel")
pytest.importorskip("mpi4py")
if shutil.which("mpiexec") is None:
    pytest.skip("needs mpiexec (Open MPI: scripts/setup.sh installs it)", allow_module_level=True)

N = 4


def mpi_env() -> dict[str, str]:
    env = dict(os.environ)
    # more ranks than this machine's cores; and CI runs as root, which Open MPI refuses unless told
    env["OMPI_MCA_rmaps_base_oversubscribe"] = "true"
    if os.geteuid() == 0:
        env["OMPI_ALLOW_RUN_AS_ROOT"] = "1"
        env["OMPI_ALLOW_RUN_AS_ROOT_CONFIRM"] = "1"
    return env


@pytest.fixture
def mpi_cluster(oxipp_bin, tmp_path):
    profile = tmp_path / "profile"
    logs = open(tmp_path / "cluster.log", "ab")  # noqa: SIM115 - closed below
    ctl = subprocess.Popen(
        [str(oxipp_bin), "controller", f"--profile-dir={profile}"], stdout=logs, stderr=logs
    )
    engine_file = profile / "security" / "ipcontroller-engine.json"
    deadline = time.monotonic() + 10
    while not engine_file.exists():
        assert time.monotonic() < deadline, "controller wrote no connection file"
        time.sleep(0.02)
    engines = subprocess.Popen(
        [
            "mpiexec",
            "-n",
            str(N),
            sys.executable,
            "-m",
            "oxipp.engine",
            "--mpi",
            f"--profile-dir={profile}",
        ],
        env=mpi_env(),
        stdout=logs,
        stderr=logs,
        start_new_session=True,
    )
    try:
        yield profile
    finally:
        for p in (engines, ctl):
            if p.poll() is None:
                if p is engines:
                    os.killpg(p.pid, signal.SIGTERM)
                else:
                    p.terminate()
                try:
                    p.wait(10)
                except subprocess.TimeoutExpired:
                    os.killpg(p.pid, signal.SIGKILL) if p is engines else p.kill()
                    p.wait(5)
        logs.close()


@ipp.interactive  # shipped by value: the engines cannot import this test module
def rank_and_size():
    from mpi4py import MPI

    return MPI.COMM_WORLD.Get_rank(), MPI.COMM_WORLD.Get_size()


@ipp.interactive
def ring_and_allreduce():
    """Every rank sends its rank to the next one (point-to-point) and sums all ranks."""
    from mpi4py import MPI

    comm = MPI.COMM_WORLD
    rank, size = comm.Get_rank(), comm.Get_size()
    received = comm.sendrecv(rank, dest=(rank + 1) % size, source=(rank - 1) % size)
    total = comm.allreduce(rank, op=MPI.SUM)
    return rank, received, total


def test_engine_ids_are_mpi_ranks_and_mpi4py_works_between_engines(mpi_cluster):
    with ipp.Client(profile_dir=str(mpi_cluster), timeout=30) as rc:
        rc.wait_for_engines(N, timeout=60)
        assert sorted(rc.ids) == list(range(N))
        for eid in rc.ids:
            assert rc[eid].apply_sync(rank_and_size) == (eid, N), "id must equal the MPI rank"
        # collectives need every rank at once: one apply on all engines runs them together
        results = rc[:].apply_async(ring_and_allreduce).get(timeout=60)
        assert sorted(results) == [(r, (r - 1) % N, N * (N - 1) // 2) for r in range(N)]
