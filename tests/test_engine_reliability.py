"""Dead, busy and interrupted oxipp engines (real processes: our controller, our engines, the
stock client).

What users must be able to count on: an engine killed with SIGKILL ends the work it had within
2 s (direct: `EngineError`; load-balanced: retried elsewhere when allowed, else `EngineError`;
broadcast: `EngineError` for the dead engine's part), a task that holds the GIL for a minute
does not get its engine unregistered (the heart is a Rust thread), and SIGINT through
`send_signal` interrupts the running task while the engine carries on.
"""

from __future__ import annotations

import os
import signal
import time

import pytest
from clusters import Cluster, wait_for

ipp = pytest.importorskip("ipyparallel")

DEATH_NOTICED_S = 2.0


@ipp.interactive  # shipped by value: engines cannot import this test module
def pid():
    import os

    return os.getpid()


@ipp.interactive
def sleep_then_pid(t):
    import os
    import time

    time.sleep(t)
    return os.getpid()


@ipp.interactive
def sleep_unless_survivor(victim_pid, t, started):
    """On the victim: creates the file `started`, then sleeps (so it dies mid-task). Returns at
    once anywhere else."""
    import os
    import time

    if os.getpid() == victim_pid:
        open(started, "w").close()
        time.sleep(t)
    return os.getpid()


@ipp.interactive
def hold_the_gil(seconds):
    """libc sleep() called through ctypes.PyDLL keeps the GIL for the whole call: no Python
    thread of this process runs meanwhile."""
    import ctypes

    ctypes.PyDLL(None).sleep(int(seconds))
    return "held"


@pytest.fixture
def cluster(oxipp_bin, tmp_path):
    c = Cluster(oxipp_bin, tmp_path / "profile", engine_kind="oxipp")
    yield c
    c.stop()


def start(cluster: Cluster, n: int, *controller_args: str):
    cluster.start_controller(*controller_args)
    for _ in range(n):
        cluster.start_engine()
    rc = cluster.client()
    rc.wait_for_engines(n, timeout=30)
    pids = dict(zip(rc.ids, rc[:].apply_sync(pid)))
    return rc, pids


def running(rc, eid) -> bool:
    status = rc.queue_status(verbose=True)[eid]
    return bool(status["queue"] or status["tasks"])


def assert_engine_error_soon(ar, t0: float):
    with pytest.raises(ipp.error.RemoteError) as exc:
        ar.get(timeout=10)
    elapsed = time.monotonic() - t0
    assert exc.value.ename == "EngineError", exc.value
    assert elapsed < DEATH_NOTICED_S, f"took {elapsed:.2f} s"


def test_kill_during_a_direct_task_gives_engine_error(cluster):
    rc, pids = start(cluster, 2, "--ping=3000")
    with rc:
        victim, survivor = sorted(pids)
        ar = rc[victim].apply_async(sleep_then_pid, 30)
        wait_for(lambda: running(rc, victim), 10, "the task to start")
        t0 = time.monotonic()
        os.kill(pids[victim], signal.SIGKILL)
        assert_engine_error_soon(ar, t0)
        wait_for(lambda: rc.ids == [survivor], 5, "the dead engine to leave rc.ids")
        assert rc[survivor].apply_sync(pid) == pids[survivor]


def test_kill_during_a_load_balanced_task_without_retries(cluster):
    rc, pids = start(cluster, 2, "--ping=3000")
    with rc:
        ar = rc.load_balanced_view().apply_async(sleep_then_pid, 30)
        victim = wait_for(
            lambda: next(([e] for e in pids if running(rc, e)), None), 10, "the task to start"
        )[0]
        t0 = time.monotonic()
        os.kill(pids[victim], signal.SIGKILL)
        assert_engine_error_soon(ar, t0)


def test_load_balanced_task_with_retries_survives_its_engine(cluster, tmp_path):
    rc, pids = start(cluster, 2, "--ping=3000")
    with rc:
        view = rc.load_balanced_view()
        view.retries = 1
        # a first task occupies one engine, so leastload sends the second to the other one
        blocker = view.apply_async(sleep_then_pid, 1.5)
        busy = wait_for(
            lambda: next(([e] for e in pids if running(rc, e)), None), 10, "the blocker to start"
        )[0]
        [victim] = [e for e in pids if e != busy]
        started = tmp_path / "started"
        ar = view.apply_async(sleep_unless_survivor, pids[victim], 30, str(started))
        wait_for(started.exists, 10, "the task to start on the victim")
        t0 = time.monotonic()
        os.kill(pids[victim], signal.SIGKILL)
        # rerun on the other engine once its 1.5 s blocker is done
        assert ar.get(timeout=10) == pids[busy]
        assert time.monotonic() - t0 < DEATH_NOTICED_S + 1.5
        assert blocker.get(timeout=10) == pids[busy]


@pytest.mark.parametrize("coalescing", [False, True])
def test_kill_during_a_broadcast(cluster, tmp_path, coalescing):
    rc, pids = start(cluster, 2, "--ping=3000")
    with rc:
        victim, survivor = sorted(pids)
        view = rc.broadcast_view(is_coalescing=coalescing)
        started = tmp_path / "started"
        ar = view.apply_async(sleep_unless_survivor, pids[victim], 30, str(started))
        wait_for(started.exists, 10, "the broadcast to reach the victim")
        t0 = time.monotonic()
        os.kill(pids[victim], signal.SIGKILL)
        with pytest.raises((ipp.error.RemoteError, ipp.error.CompositeError)) as exc:
            ar.get(timeout=10)
        elapsed = time.monotonic() - t0
        assert "EngineError" in str(exc.value), exc.value
        assert elapsed < DEATH_NOTICED_S, f"took {elapsed:.2f} s"


def test_a_minute_holding_the_gil_does_not_unregister_the_engine(cluster):
    # 200 ms pings: an engine whose heart waited on the GIL would be gone after ~2.2 s
    rc, pids = start(cluster, 1, "--ping=200")
    with rc:
        [eid] = pids
        ar = rc[eid].apply_async(hold_the_gil, 60)
        assert ar.get(timeout=120) == "held"
        assert rc.ids == [eid], "the engine stayed registered"
        assert rc[eid].apply_sync(pid) == pids[eid]


def test_sigint_interrupts_the_running_task_and_the_engine_carries_on(cluster):
    rc, pids = start(cluster, 1)
    with rc:
        [eid] = pids
        ar = rc[eid].apply_async(sleep_then_pid, 30)
        wait_for(lambda: running(rc, eid), 10, "the task to start")
        time.sleep(0.2)  # inside time.sleep, not still unpacking the request
        t0 = time.monotonic()
        rc.send_signal(signal.SIGINT, targets=[eid], block=True)
        with pytest.raises(ipp.error.RemoteError) as exc:
            ar.get(timeout=10)
        assert exc.value.ename == "KeyboardInterrupt"
        assert time.monotonic() - t0 < 2
        assert rc[eid].apply_sync(pid) == pids[eid], "same engine process, still working"
