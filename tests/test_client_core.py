"""The oxipp client's own duties, against real processes (our controller, oxipp and stock
engines): every request ends (engine death, closing, controller shutdown), IOPub of other
clients is ignored, bad input is refused clearly, consumed results are released.

The API surface itself (views, AsyncResult, ...) is exercised by tests/client/.
"""

from __future__ import annotations

import os
import signal
import socket
import threading
import time

import oxipp
import pytest
from clusters import Cluster, wait_for
from oxipp import error


@oxipp.interactive
def pid():
    import os

    return os.getpid()


@oxipp.interactive
def sleep_then(t, value=None):
    import time

    time.sleep(t)
    return value


@oxipp.interactive
def chatty(n):
    for i in range(n):
        print(i)
    return n


@oxipp.interactive
def double(x):
    return 2 * x


@oxipp.interactive
def identity(x):
    return x


@pytest.fixture(params=["oxipp", "stock"])
def cluster(request, oxipp_bin, tmp_path):
    c = Cluster(oxipp_bin, tmp_path / "profile", engine_kind=request.param)
    c.start_controller()
    for _ in range(2):
        c.start_engine()
    yield c
    c.stop()


@pytest.fixture
def rc(cluster):
    client = oxipp.Client(profile_dir=str(cluster.profile_dir), timeout=10)
    client.wait_for_engines(2, timeout=30)
    yield client
    client.close()


def test_round_trip_and_metadata(rc):
    pids = rc[:].apply_sync(pid)
    assert len(set(pids)) == 2 and all(isinstance(p, int) for p in pids)
    ar = rc[0].apply_async(chatty, 3)
    assert ar.get(10) == 3
    ar.wait_for_output(10)
    assert ar.stdout == "0\n1\n2\n"
    md = ar.metadata
    assert md["engine_id"] == 0 and md["status"] == "ok"
    assert md["submitted"] <= md["started"] <= md["completed"] <= md["received"]


def test_engine_killed_mid_task_gives_engine_error(rc):
    victim = rc[1].apply_sync(pid)
    ar = rc[1].apply_async(sleep_then, 30)
    time.sleep(0.3)
    t0 = time.monotonic()
    os.kill(victim, signal.SIGKILL)
    with pytest.raises(error.RemoteError) as exc_info:
        ar.get(15)
    assert exc_info.value.ename == "EngineError"
    assert time.monotonic() - t0 < 10
    wait_for(lambda: rc.ids == [0], 10, "engine 1 to leave client.ids")


def test_close_fails_pending_and_refuses_new_work(rc):
    ar = rc[0].apply_async(sleep_then, 30)
    rc.close()
    with pytest.raises(OSError):
        ar.get(5)
    with pytest.raises((OSError, RuntimeError)):
        rc[0].apply_async(pid)


def test_other_clients_output_is_not_ours(cluster, rc):
    other = oxipp.Client(profile_dir=str(cluster.profile_dir), timeout=10)
    try:
        theirs = other[0].apply_async(chatty, 5)
        mine = rc[0].apply_async(chatty, 2)
        assert theirs.get(10) == 5 and mine.get(10) == 2
        mine.wait_for_output(10)
        theirs.wait_for_output(10)
        assert mine.stdout == "0\n1\n"
        assert theirs.stdout == "0\n1\n2\n3\n4\n"
        assert not set(mine.msg_ids) & set(other.history)
    finally:
        other.close()


def test_controller_shutdown_closes_the_client(cluster, rc):
    ar = rc[0].apply_async(sleep_then, 30)
    rc.shutdown(hub=True)  # engines too: the running task ends with EngineError
    assert rc._closed
    with pytest.raises((OSError, error.RemoteError)) as exc_info:
        ar.get(10)
    if isinstance(exc_info.value, error.RemoteError):
        assert exc_info.value.ename == "EngineError"


def test_no_controller_times_out_clearly(tmp_path):
    # a connection file pointing at a port nobody serves
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    info = {
        "interface": "tcp://127.0.0.1",
        "registration": port,
        "mux": port,
        "task": port,
        "control": port,
        "broadcast": port,
        "iopub": port,
        "notification": port,
        "key": "k",
        "signature_scheme": "hmac-sha256",
        "task_scheme": "leastload",
    }
    t0 = time.monotonic()
    with pytest.raises(TimeoutError, match="Hub connection request timed out"):
        oxipp.Client(info, timeout=0.5)
    assert time.monotonic() - t0 < 5


@pytest.mark.parametrize(
    "bad, exc",
    [
        ({"interface": "tcp://127.0.0.1"}, ValueError),
        ("tcp://127.0.0.1:1234", ValueError),
        ("/nonexistent/ipcontroller-client.json", OSError),
    ],
)
def test_bad_connection_info_is_refused(bad, exc):
    with pytest.raises(exc):
        oxipp.Client(bad, timeout=0.5)


def test_an_ipc_connection_file_is_a_clear_error():
    """The client's own ZMTP sockets speak TCP only: an ipc:// controller is refused at once,
    with a message that says so, instead of a connection that never comes up."""
    ports = dict.fromkeys(
        ["registration", "mux", "task", "control", "broadcast", "iopub", "notification"], 1
    )
    info = {
        "interface": "ipc:///tmp/oxipp-no-such",
        **ports,
        "key": "k",
        "signature_scheme": "hmac-sha256",
    }
    with pytest.raises(ValueError, match="tcp://"):
        oxipp.Client(info, timeout=0.5)


def test_wrong_key_gets_no_answer_but_a_timeout(cluster):
    import json

    info = json.loads(cluster.client_file.read_text())
    info["key"] = "not-the-key"
    with pytest.raises(TimeoutError):
        oxipp.Client(info, timeout=1)


def test_many_threads_share_one_client(rc):
    results = {}

    def work(i):
        results[i] = rc.load_balanced_view().apply_sync(double, i)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert results == {i: 2 * i for i in range(8)}


def test_consumed_results_are_released(rc):
    view = rc.load_balanced_view()
    for _ in view.imap(identity, range(2000)):
        pass
    rc.wait(timeout=10)
    assert not rc.outstanding
    # every future, result and metadata record of finished work is dropped (once the last
    # engine's `idle` has arrived, which may trail its reply)
    wait_for(lambda: not rc._futures and not rc.results and not rc.metadata, 5, "cleanup")


IMAP_RSS_SCRIPT = """
import json, os, sys
import oxipp

def rss_mb():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 1e6

@oxipp.interactive
def identity(x):
    return x

rc = oxipp.Client(profile_dir=sys.argv[1], timeout=10)
rc.wait_for_engines(2, timeout=30)
view = rc.load_balanced_view()
rss = {}
for i, _ in enumerate(view.imap(identity, range(25_000))):
    if i + 1 in (5_000, 25_000):
        rss[i + 1] = rss_mb()
print(json.dumps({"rss": rss, "history": len(rc.history) + len(view.history),
                  "outstanding": len(rc.outstanding) + len(view.outstanding)}))
rc.close()
"""


def test_imap_streams_in_bounded_memory(cluster):
    """An imap consumed as it goes holds nothing per finished task (no results, futures,
    metadata or history entries): RSS after 25,000 tasks is what it was after 5,000. Measured
    in a fresh interpreter, where nothing else allocates meanwhile.
    (benches/client_bench.py --imap 1000000 runs the million-task version.)"""
    import json
    import subprocess
    import sys

    if cluster.engine_kind != "oxipp":
        pytest.skip("a client-side property: one engine kind is enough")
    out = subprocess.run(
        [sys.executable, "-c", IMAP_RSS_SCRIPT, str(cluster.profile_dir)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr
    r = json.loads(out.stdout.strip().splitlines()[-1])
    rss = {int(k): v for k, v in r["rss"].items()}
    # 20,000 more tasks: even 100 bytes kept per task would be 2 MB
    assert rss[25_000] - rss[5_000] < 1.5, rss
    assert r["history"] == 0 and r["outstanding"] == 0


def test_imap_keeps_order_and_loses_nothing(rc):
    """Refills come from two threads (the consumer and the dispatcher's callbacks): results
    must still come back complete and in order."""
    view = rc.load_balanced_view()
    for max_outstanding in (1, 8, 0):
        out = list(view.imap(identity, range(1500), max_outstanding=max_outstanding))
        assert out == list(range(1500)), max_outstanding
    assert sorted(view.imap(identity, range(500), ordered=False)) == list(range(500))


def test_ctrl_c_while_handling_a_reply_loses_nothing(rc, monkeypatch):
    """A thread waiting for results handles the incoming events itself; a KeyboardInterrupt
    in the middle of that (Ctrl-C in a notebook's get()) must leave every result retrievable:
    the interrupted event and the rest of its batch are handled by whoever pumps next."""
    ars = [rc[i % 2].apply_async(sleep_then, 0.2, i) for i in range(6)]
    wait_for(lambda: rc.queue_status()["unassigned"] == 0, 10, "requests at the engines")
    real = type(rc)._dispatch
    interrupted = []

    def dispatch(self, event):
        if (
            not interrupted
            and event[1] == "apply_reply"
            and threading.current_thread() is threading.main_thread()
        ):
            interrupted.append(event[2])
            raise KeyboardInterrupt
        return real(self, event)

    monkeypatch.setattr(type(rc), "_dispatch", dispatch)
    with pytest.raises(KeyboardInterrupt):
        for ar in ars:
            ar.get(10)
    assert interrupted, "the main thread handled a reply"
    monkeypatch.setattr(type(rc), "_dispatch", real)
    # nothing was lost: every result arrives, including the interrupted one
    assert [ar.get(10) for ar in ars] == list(range(6))


def test_a_tracked_push_is_sent_once_its_buffers_are_written(oxipp_bin, tmp_path):
    """Big buffers are sent from the caller's own memory (no copy): with ``track=True`` the
    request is ``sent`` only once the core has written them, and changing the array after
    ``wait_for_send`` cannot change what the engine got. Untracked requests count as sent at
    once, as in stock. (The controller is stopped meanwhile so that 64 MB cannot all be
    written into the sockets' buffers.)"""
    np = pytest.importorskip("numpy")
    c = Cluster(oxipp_bin, tmp_path / "profile", engine_kind="oxipp")
    c.start_controller("--ping=5000")
    c.start_engine()
    try:
        rc = oxipp.Client(profile_dir=str(c.profile_dir), timeout=10)
        rc.wait_for_engines(1, timeout=30)
        one = rc[rc.ids[0]]
        expected = np.arange(8_000_000, dtype="float64")
        a = expected.copy()
        os.kill(c.controller.pid, signal.SIGSTOP)
        try:
            ar = one.push({"a": a}, block=False, track=True)
            # a broadcast's per-engine results share the tracker of the one message
            bar = rc.broadcast_view(targets=rc.ids).push({"c": a}, block=False, track=True)
            time.sleep(0.2)
            assert not ar.sent and not bar.sent
            with pytest.raises(TimeoutError):
                ar.wait_for_send(0.2)
        finally:
            os.kill(c.controller.pid, signal.SIGCONT)
        assert ar.wait_for_send(30) is True and bar.wait_for_send(30) is True
        assert ar.sent and bar.sent
        bar.get(timeout=30)
        a[:] = -1
        ar.get(timeout=30)
        assert (one.pull("a", block=True) == expected).all()
        ar = one.push({"b": a}, block=False)
        assert ar.sent and ar.wait_for_send(0) is True
        ar.get(timeout=30)
        rc.close()
    finally:
        c.stop()


def test_buffers_sent_without_a_copy_are_released_after_sending(cluster):
    """The core holds a big buffer only until it is written: an array pushed and then
    dropped by its owner is freed (its memory would otherwise pile up with every push)."""
    np = pytest.importorskip("numpy")
    import weakref  # noqa: PLC0415

    rc = oxipp.Client(profile_dir=str(cluster.profile_dir), timeout=10)
    try:
        rc.wait_for_engines(2, timeout=30)
        one = rc[rc.ids[0]]
        a = np.ones(1_000_000)
        gone = weakref.ref(a)
        one.push({"a": a}, block=True)
        del a
        # released by the next call into the core after the write, at the latest
        wait_for(lambda: one.apply_sync(identity, 1) == 1 and gone() is None, 10, "release")
        assert one.pull("a", block=True).sum() == 1_000_000
    finally:
        rc.close()
