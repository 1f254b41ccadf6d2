"""End to end: the oxipp controller with stock ipyparallel engines and clients (real processes).

These cover what the stock suite does not: shutdown on signals, connection-file hygiene,
controller restarts with ``--restore``, and the failure paths oxipp handles better than stock
(work on a dead engine ends with ``EngineError`` instead of hanging).
"""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import time

import pytest
from clusters import Cluster, wait_for

ipp = pytest.importorskip("ipyparallel")

CLIENT_KEYS = {
    "ssh",
    "interface",
    "registration",
    "control",
    "mux",
    "task",
    "task_scheme",
    "iopub",
    "notification",
    "broadcast",
    "key",
    "curve_serverkey",
    "location",
    "pack",
    "unpack",
    "signature_scheme",
}
ENGINE_KEYS = (CLIENT_KEYS - {"task_scheme", "notification"}) | {"hb_ping", "hb_pong"}


# Functions shipped to engines must not reference this test module (engines cannot import it).
@ipp.interactive
def double(x):
    return x * 2


@ipp.interactive
def identity(x):
    return x


@ipp.interactive
def seven():
    return 7


@pytest.fixture
def cluster(oxipp_bin, tmp_path):
    profile = tmp_path / "profile"
    c = Cluster(oxipp_bin, profile)
    yield c
    c.stop()


def test_connection_files_are_private_and_complete(cluster):
    cluster.start_controller()
    client = json.loads(cluster.client_file.read_text())
    engine = json.loads(cluster.engine_file.read_text())
    assert set(client) == CLIENT_KEYS
    assert set(engine) == ENGINE_KEYS
    assert client["key"] == engine["key"] and len(client["key"]) == 33
    assert isinstance(engine["broadcast"], list) and len(engine["broadcast"]) == 2
    for f in (cluster.client_file, cluster.engine_file):
        assert stat.S_IMODE(f.stat().st_mode) == 0o600
    assert client["interface"] == "tcp://127.0.0.1"


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_exits_within_a_second_and_removes_files(cluster, sig):
    p = cluster.start_controller()
    time.sleep(0.2)
    t0 = time.monotonic()
    p.send_signal(sig)
    p.wait(5)
    assert time.monotonic() - t0 < 1.0
    assert p.returncode == 0
    assert not cluster.client_file.exists() and not cluster.engine_file.exists()


def test_reuse_keeps_files(cluster):
    p = cluster.start_controller("--reuse")
    before = cluster.client_file.read_text()
    p.terminate()
    p.wait(5)
    assert cluster.client_file.read_text() == before
    cluster.start_controller("--reuse")
    assert cluster.client_file.read_text() == before, "--reuse must not rewrite the files"


def test_session_key_from_environment(cluster, monkeypatch):
    monkeypatch.setenv("IPP_SESSION_KEY", "my-fixed-key")
    cluster.start_controller()
    assert json.loads(cluster.client_file.read_text())["key"] == "my-fixed-key"


def test_stock_engines_and_client_work(cluster):
    cluster.start_controller()
    for _ in range(2):
        cluster.start_engine()
    with cluster.client() as rc:
        rc.wait_for_engines(2, timeout=30)
        assert rc[:].apply_sync(double, 21) == [42, 42]
        view = rc.load_balanced_view()
        assert view.map_sync(double, range(20)) == [2 * i for i in range(20)]
        ar = view.map_async(identity, range(8))
        ar.get(timeout=20)
        engines_used = {md["engine_id"] for md in ar.metadata}
        assert engines_used == set(rc.ids)


def test_restore_keeps_engines_working_across_a_controller_restart(cluster):
    p = cluster.start_controller("--restore")
    for _ in range(2):
        cluster.start_engine()
    with cluster.client() as rc:
        rc.wait_for_engines(2, timeout=30)
        ids = sorted(rc.ids)
    p.kill()  # a crash: no cleanup
    p.wait(5)
    cluster.start_controller("--restore")
    with cluster.client() as rc:
        assert sorted(rc.ids) == ids, "restored engines are registered without re-registering"
        assert sorted(rc[:].apply_sync(seven)) == [7, 7]


def test_killed_engine_fails_its_lb_task_quickly(cluster):
    cluster.start_controller()
    for _ in range(2):
        cluster.start_engine()
    with cluster.client() as rc:
        rc.wait_for_engines(2, timeout=30)
        pids = dict(zip(rc.ids, rc[:].apply_sync(os.getpid)))
        ar = rc.load_balanced_view().apply_async(time.sleep, 30)

        def running_on():
            status = rc.queue_status(verbose=True)
            return next((e for e in rc.ids if status[e]["tasks"]), None)

        # engine ids can be 0, so wrap the answer in a list to keep it truthy
        [victim] = wait_for(
            lambda: [e] if (e := running_on()) is not None else None, 10, "the task to be assigned"
        )
        t0 = time.monotonic()
        os.kill(pids[victim], signal.SIGKILL)
        with pytest.raises(ipp.error.RemoteError) as exc:
            ar.get(timeout=10)
        assert exc.value.ename == "EngineError"
        assert time.monotonic() - t0 < 3.0, "the task must fail soon after the engine dies"


def test_killed_engine_without_nanny_is_unregistered_within_a_second(cluster, oxipp_bin):
    """No nanny to report the death and the default 3 s ping (33 s of missed beats): only the
    controller's probe on the heart connection dropping can notice this quickly."""
    cluster.start_controller("--ping=3000")
    for _ in range(2):
        cluster.start_engine("--IPEngine.enable_nanny=False")
    with cluster.client() as rc:
        rc.wait_for_engines(2, timeout=30)
        pids = dict(zip(rc.ids, rc[:].apply_sync(os.getpid)))
        victim, survivor = sorted(pids)
        ar = rc[victim].apply_async(time.sleep, 30)
        wait_for(lambda: rc.queue_status(verbose=True)[victim]["queue"], 10, "the task to start")
        t0 = time.monotonic()
        os.kill(pids[victim], signal.SIGKILL)
        with pytest.raises(ipp.error.RemoteError) as exc:
            ar.get(timeout=10)
        elapsed = time.monotonic() - t0
        assert exc.value.ename == "EngineError"
        assert elapsed < 2.0, f"the engine's death took {elapsed:.1f} s to notice"
        assert rc.ids == [survivor], "the living engine must stay registered"
        assert rc[survivor].apply_sync(seven) == 7


def test_unknown_engine_gets_an_error_not_a_hang(cluster):
    cluster.start_controller()
    cluster.start_engine()
    with cluster.client() as rc:
        rc.wait_for_engines(1, timeout=30)
        fake = b"00000000-000000000000000000000000"
        fut = rc.send_apply_request(rc._mux_socket, seven, ident=fake)
        res = fut.result(timeout=5)
        assert isinstance(res, ipp.error.RemoteError)
        assert res.ename == "EngineError"
        assert rc[0].apply_sync(seven) == 7


def test_python_m_oxipp_controller_version():
    out = subprocess.run(
        [sys.executable, "-m", "oxipp.controller", "--version"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "9.2.0"
