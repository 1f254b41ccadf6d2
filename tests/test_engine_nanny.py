"""oxipp engines under a *stock* controller report their death through a nanny process.

A stock controller notices a dead engine only after missed heartbeats; stock engines run a
nanny that tells it at once, and so do ours (`oxipp.engine.nanny`) when their controller is
a stock one. Our controller notices closed connections itself: no nanny there. Real
processes: the stock controller (or ours), oxipp engines, the stock client.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest
from clusters import Cluster, StockControllerCluster, wait_for

ipp = pytest.importorskip("ipyparallel")

# heartbeats this slow (stock: 10 missed pings before unregistering) cannot be what notices
# the death within the test's window
SLOW_PING_MS = 10_000
NOTICED_S = 2.0


@ipp.interactive  # shipped by value: engines cannot import this test module
def pid():
    import os

    return os.getpid()


def nannies_of(engine_pid: int) -> list[int]:
    """Processes running oxipp's nanny whose parent is `engine_pid`."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes()
            status = (proc / "status").read_text()
        except OSError:
            continue
        ppid = next((ln.split()[1] for ln in status.splitlines() if ln.startswith("PPid:")), "")
        if b"oxipp.engine.nanny" in cmdline and ppid == str(engine_pid):
            found.append(int(proc.name))
    return found


class SlowPingCluster(StockControllerCluster):
    """The stock controller, heartbeats too slow to notice a death in time, oxipp engines."""

    ping_ms = SLOW_PING_MS


def one_engine(cluster: Cluster, *engine_args: str):
    cluster.start_controller()
    cluster.start_engine(*engine_args)
    rc = cluster.client()
    rc.wait_for_engines(1, timeout=60)
    eid = rc.ids[0]
    return rc, eid, rc[eid].apply_sync(pid)


def kill_and_time_unregistration(rc, eid: int, engine_pid: int, limit: float) -> float | None:
    """SIGKILLs the engine; seconds until the client saw it unregistered (None: not within
    `limit`)."""
    os.kill(engine_pid, signal.SIGKILL)
    t0 = time.monotonic()
    while time.monotonic() - t0 < limit:
        if eid not in rc.ids:
            return time.monotonic() - t0
        time.sleep(0.02)
    return None


@pytest.fixture
def stock_cluster(oxipp_bin, tmp_path):
    c = SlowPingCluster(oxipp_bin, tmp_path / "profile", engine_kind="oxipp")
    yield c
    c.stop()


def test_a_killed_engine_is_unregistered_at_once_by_its_nanny(stock_cluster):
    rc, eid, engine_pid = one_engine(stock_cluster)
    try:
        wait_for(lambda: len(nannies_of(engine_pid)) == 1, 10, "the engine's nanny")
        [nanny] = nannies_of(engine_pid)
        took = kill_and_time_unregistration(rc, eid, engine_pid, 10)
        assert took is not None and took < NOTICED_S, f"unregistered after {took} s"
        wait_for(lambda: not Path(f"/proc/{nanny}").exists() or _zombie(nanny), 5, "nanny exit")
    finally:
        rc.close()


def test_without_a_nanny_the_stock_controller_waits_for_heartbeats(stock_cluster):
    """The control for the test above: the same kill, nanny turned off, goes unnoticed."""
    rc, eid, engine_pid = one_engine(stock_cluster, "--IPEngine.enable_nanny=False")
    try:
        assert nannies_of(engine_pid) == []
        assert kill_and_time_unregistration(rc, eid, engine_pid, 3 * NOTICED_S) is None
    finally:
        rc.close()


def test_no_nanny_under_our_controller(oxipp_bin, tmp_path):
    """Our controller notices the closed connections itself (tests/test_engine_reliability)."""
    c = Cluster(oxipp_bin, tmp_path / "profile", engine_kind="oxipp")
    try:
        rc, _eid, engine_pid = one_engine(c)
        time.sleep(0.5)
        assert nannies_of(engine_pid) == []
        rc.close()
    finally:
        c.stop()


def _zombie(proc_pid: int) -> bool:
    try:
        return "State:\tZ" in Path(f"/proc/{proc_pid}/status").read_text()
    except OSError:
        return True
