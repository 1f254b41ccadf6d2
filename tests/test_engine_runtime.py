"""The oxipp engine process (Rust runtime + Python loop) against our controller, driven by a
STOCK ``ipyparallel.Client``.

The real executor (``oxipp.engine.executor``) is written separately; until it lands these tests
run the engine with ``StandInExecutor`` below (selected through ``$OXIPP_ENGINE_EXECUTOR``), a
minimal apply-only executor built on stock ipyparallel's serialization.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from clusters import wait_for

ipp = pytest.importorskip("ipyparallel")

TESTS_DIR = Path(__file__).resolve().parent


class _StreamWriter(io.TextIOBase):
    def __init__(self, rt, name, req):
        self.rt, self.name, self.req = rt, name, req

    def write(self, text):
        self.rt.stream(self.name, text, self.req)
        return len(text)


class StandInExecutor:
    """Runs apply_request only; everything else gets no reply. Test use only."""

    def __init__(self, io, engine_id, engine_uuid):
        self.io, self.id, self.uuid = io, engine_id, engine_uuid
        self.ns: dict = {}

    def kernel_info(self):
        return {
            "status": "ok",
            "protocol_version": "5.4",
            "implementation": "oxipp-standin",
            "language_info": {"name": "python"},
        }

    def clear(self):
        self.ns.clear()

    def handle(self, req):
        if req.msg_type != "apply_request":
            return None
        from ipyparallel.serialize import serialize_object, unpack_apply_message

        out = _StreamWriter(self.io, "stdout", req)
        try:
            f, args, kwargs = unpack_apply_message(req.buffers, self.ns, copy=False)
            with contextlib.redirect_stdout(out):
                result = f(*args, **kwargs)
            return "ok", json.dumps({"status": "ok"}), serialize_object(result), True
        except Exception as e:
            content = {
                "status": "error",
                "ename": type(e).__name__,
                "evalue": str(e),
                "traceback": [],
                "engine_info": {"engine_uuid": self.uuid, "engine_id": self.id, "method": "apply"},
            }
            return "error", json.dumps(content), [], True


# Functions shipped to engines must not reference this module (engines cannot import it).
@ipp.interactive
def double(x):
    return x * 2


@ipp.interactive
def shout(text):
    print(text)
    return text.upper()


class Cluster:
    def __init__(self, oxipp_bin: Path, tmp: Path):
        self.bin = oxipp_bin
        self.tmp = tmp
        self.profile_dir = tmp / "profile"
        self.procs: list[subprocess.Popen] = []

    @property
    def engine_file(self) -> Path:
        return self.profile_dir / "security" / "ipcontroller-engine.json"

    @property
    def client_file(self) -> Path:
        return self.profile_dir / "security" / "ipcontroller-client.json"

    def start_controller(self):
        cmd = [str(self.bin), "controller", f"--profile-dir={self.profile_dir}", "--ping=200"]
        log = open(self.tmp / "controller.log", "ab")
        self.procs.append(subprocess.Popen(cmd, stdout=log, stderr=log))
        wait_for(lambda: self.client_file.exists() and self.engine_file.exists(), 10, "files")

    def start_engine(
        self, *args: str, executor: str | None = "test_engine_runtime:StandInExecutor"
    ) -> subprocess.Popen:
        env = dict(os.environ)
        env.pop("OXIPP_ENGINE_EXECUTOR", None)
        if executor:
            env["OXIPP_ENGINE_EXECUTOR"] = executor
        env["PYTHONPATH"] = os.pathsep.join(
            [str(TESTS_DIR), *filter(None, [env.get("PYTHONPATH")])]
        )
        env.pop("IPP_CONNECTION_INFO", None)
        cmd = [sys.executable, "-m", "oxipp.engine", f"--profile-dir={self.profile_dir}", *args]
        log = open(self.tmp / f"engine{len(self.procs)}.log", "ab")
        p = subprocess.Popen(cmd, stdout=log, stderr=log, env=env)
        self.procs.append(p)
        return p

    def client(self):
        return ipp.Client(str(self.client_file), timeout=10)

    def logs(self) -> str:
        return "\n".join(f"== {f.name}\n{f.read_text()}" for f in sorted(self.tmp.glob("*.log")))

    def stop(self):
        for p in self.procs:
            if p.poll() is None:
                p.kill()
                p.wait(5)


@pytest.fixture
def cluster(oxipp_bin, tmp_path):
    c = Cluster(oxipp_bin, tmp_path)
    yield c
    c.stop()


def test_registers_with_requested_id_and_applies(cluster):
    cluster.start_controller()
    engine = cluster.start_engine("--IPEngine.id=3", "--log-level=DEBUG", "--IPEngine.bogus=1")
    with cluster.client() as rc:
        try:
            rc.wait_for_engines(1, timeout=20)
        except Exception:
            pytest.fail(f"engine did not register:\n{cluster.logs()}")
        assert rc.ids == [3]
        assert rc[3].apply_sync(double, 21) == 42
        assert rc.load_balanced_view().map_sync(double, range(5)) == [0, 2, 4, 6, 8]
        ar = rc[3].apply_async(shout, "hi")
        assert ar.get(timeout=10) == "HI"
        ar.wait_for_output(5)
        assert ar.stdout == "hi\n"
        assert ar.metadata["engine_uuid"] == rc._engines[3]
        assert ar.metadata["status"] == "ok"
        # shutdown through the stock client: the process exits by itself
        rc.shutdown(targets=[3], block=True)
        assert engine.wait(10) == 0
        wait_for(lambda: rc.ids == [], 10, "the engine to unregister")


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="needs Linux /proc")
def test_no_library_io_threads_only_the_engines_own(cluster):
    """The engine's sockets speak ZMTP on the threads that use them (oxipp-zmtp): besides the
    main thread, an engine that has registered and served requests runs only its own named
    Rust threads (IO, heart, fd reader) — no libzmq IO or reaper thread."""
    cluster.start_controller()
    # the real executor (the stand-in's imports start a thread of their own)
    engine = cluster.start_engine(executor=None)
    with cluster.client() as rc:
        rc.wait_for_engines(1, timeout=20)
        [eid] = rc.ids
        for i in range(20):
            assert rc[eid].apply_sync(double, i) == 2 * i
        tasks = Path(f"/proc/{engine.pid}/task")
        threads = {int(t.name): (t / "comm").read_text().strip() for t in tasks.iterdir()}
    others = {
        tid: name
        for tid, name in threads.items()
        if tid != engine.pid and not name.startswith("oxipp-engine")
    }
    assert others == {}, f"unexpected threads {others} among {threads}"
    assert {"oxipp-engine-io", "oxipp-engine-he"} <= set(threads.values()), threads


def test_kill_9_fails_an_in_flight_direct_apply(cluster):
    cluster.start_controller()
    engine = cluster.start_engine()
    with cluster.client() as rc:
        rc.wait_for_engines(1, timeout=20)
        [eid] = rc.ids
        ar = rc[eid].apply_async(time.sleep, 30)
        wait_for(lambda: rc.queue_status(targets=eid)["queue"], 10, "the request to arrive")
        os.kill(engine.pid, signal.SIGKILL)
        with pytest.raises(ipp.error.RemoteError) as exc:
            ar.get(timeout=15)
        assert exc.value.ename == "EngineError"


def test_missing_connection_file_is_waited_for_then_reported(tmp_path):
    env = dict(os.environ, OXIPP_ENGINE_EXECUTOR="test_engine_runtime:StandInExecutor")
    env["PYTHONPATH"] = str(TESTS_DIR)
    env.pop("IPP_CONNECTION_INFO", None)
    t0 = time.monotonic()
    p = subprocess.run(
        [
            sys.executable,
            "-m",
            "oxipp.engine",
            f"--profile-dir={tmp_path}",
            "--IPEngine.wait_for_url_file=1",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert p.returncode == 1
    assert time.monotonic() - t0 >= 1.0
    assert "ipcontroller-engine.json" in p.stderr


def test_ipengine_flags_parse_and_unknown_ones_only_warn(monkeypatch):
    from oxipp.engine.options import parse_args

    monkeypatch.setenv("IPP_CLUSTER_ID", "envid")
    o = parse_args(
        [
            "--profile-dir=/p",
            "--cluster-id",
            "cid",
            "--log-level=DEBUG",
            "--timeout=2.5",
            "--mpi",
            "--IPEngine.id=7",
            "--IPEngine.wait_for_url_file=3",
            "--IPEngine.max_heartbeat_misses=4",
            "--Session.key=abc",
            "--IPEngine.enable_nanny=False",
            "--Nope.trait=1",
            "--what",
            "--log-level=loud",
            "--file",
        ]
    )
    assert (o.profile_dir, o.cluster_id, o.log_level, o.timeout) == ("/p", "cid", 10, 2.5)
    assert (o.use_mpi, o.requested_id, o.wait_for_url_file) == (True, 7, 3.0)
    assert (o.max_heartbeat_misses, o.session_key, o.enable_nanny) == (4, "abc", False)
    assert len(o.warnings) == 4, o.warnings
    assert parse_args(["--log-level", "20"]).log_level == 20
    assert parse_args([]).cluster_id == "envid"
    assert parse_args([]).enable_nanny is None  # decided by the controller's kind


def test_sigint_interrupts_only_a_running_request_and_sigterm_stops(cluster):
    cluster.start_controller()
    engine = cluster.start_engine()
    with cluster.client() as rc:
        rc.wait_for_engines(1, timeout=20)
        [eid] = rc.ids
        # idle: SIGINT is ignored
        os.kill(engine.pid, signal.SIGINT)
        time.sleep(0.5)
        assert engine.poll() is None
        assert rc[eid].apply_sync(double, 2) == 4
        # running: SIGINT (sent through the control channel, like stock's nanny) interrupts
        ar = rc[eid].apply_async(time.sleep, 30)
        wait_for(lambda: rc.queue_status(targets=eid)["queue"], 10, "the request to arrive")
        time.sleep(0.3)
        rc.send_signal(signal.SIGINT, targets=[eid], block=True)
        with pytest.raises(ipp.error.RemoteError) as exc:
            ar.get(timeout=10)
        assert exc.value.ename == "KeyboardInterrupt"
        assert rc[eid].apply_sync(double, 5) == 10
        # SIGTERM stops the engine, which unregisters on the way out
        engine.terminate()
        assert engine.wait(10) == 0
        wait_for(lambda: rc.ids == [], 10, "the engine to unregister")


@ipp.interactive
def fail():
    raise ValueError("boom")


def test_reply_metadata_matches_a_stock_engine(cluster):
    """Reply header/metadata keys and value types are those of a stock 9.2.0 engine."""
    cluster.start_controller()
    stock = subprocess.Popen(
        [sys.executable, "-m", "ipyparallel.engine", f"--profile-dir={cluster.profile_dir}"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    cluster.procs.append(stock)
    cluster.start_engine()
    with cluster.client() as rc:
        rc.wait_for_engines(2, timeout=30)
        seen = []
        handler = rc._queue_handlers["apply_reply"]

        def record(msg):
            seen.append(msg)
            handler(msg)

        rc._queue_handlers["apply_reply"] = record
        for eid in rc.ids:
            assert rc[eid].apply_sync(double, 1) == 2
            with pytest.raises(ipp.error.RemoteError):
                rc[eid].apply_sync(fail)

    def shape(d):
        return {k: type(v).__name__ for k, v in d.items()}

    by_engine: dict = {}
    for msg in seen:
        md = dict(msg["metadata"])
        by_engine.setdefault(md["engine"], []).append(
            (shape(msg["header"]), shape(md), shape(md.get("engine_info", {})))
        )
    assert len(by_engine) == 2
    stock_shapes, ours = by_engine.values()
    assert stock_shapes == ours


def test_watchdog_exits_when_the_controller_dies(cluster):
    cluster.start_controller()
    engine = cluster.start_engine("--IPEngine.max_heartbeat_misses=2")
    with cluster.client() as rc:
        rc.wait_for_engines(1, timeout=20)
    controller = cluster.procs[0]
    controller.kill()
    controller.wait(5)
    # checks every hb_period + 0.5 s = 0.7 s; more than 2 misses -> exit
    assert engine.wait(15) != 0


def test_stock_cluster_api_and_stock_controller_run_our_engines(tmp_path, monkeypatch):
    """ipp.Cluster launches our engines (connection info through $IPP_CONNECTION_INFO) next to
    a stock ipcontroller: the runtime speaks stock's registration and heartbeat protocol."""
    from traitlets.config import Config

    monkeypatch.setenv("OXIPP_ENGINE_EXECUTOR", "test_engine_runtime:StandInExecutor")
    monkeypatch.setenv(
        "PYTHONPATH", os.pathsep.join([str(TESTS_DIR), *filter(None, [os.getenv("PYTHONPATH")])])
    )
    cfg = Config()
    cfg.LocalEngineSetLauncher.engine_cmd = [sys.executable, "-m", "oxipp.engine"]
    cluster = ipp.Cluster(n=2, profile_dir=str(tmp_path), config=cfg)
    rc = cluster.start_and_connect_sync()
    try:
        rc.wait_for_engines(2, timeout=30)
        assert rc[:].apply_sync(double, 4) == [8, 8]
        assert rc.load_balanced_view().map_sync(double, range(4)) == [0, 2, 4, 6]
    finally:
        rc.close()
        cluster.stop_cluster_sync()


def test_binding_in_process(cluster):
    """EngineRuntime/Request driven directly from Python, answered by hand, against our
    controller and a stock client: attributes, memoryview buffers, publish, close."""
    from ipyparallel.serialize import serialize_object
    from oxipp._oxipp import EngineRuntime

    cluster.start_controller()
    with pytest.raises(ValueError):
        EngineRuntime("{}")
    rt = EngineRuntime(cluster.engine_file.read_text(), requested_id=9, timeout=5)
    try:
        assert rt.id == 9 and rt.hb_period == pytest.approx(0.2)
        assert json.loads(rt.connection_json)["registration"]
        t0 = time.monotonic()
        assert rt.next_request(timeout=0.3) is None
        assert time.monotonic() - t0 >= 0.29
        with cluster.client() as rc:
            rc.wait_for_engines(1, timeout=20)
            ar = rc[9].apply_async(double, 1)
            req = rt.next_request(timeout=10)
            assert (req.kind, req.msg_type) == ("shell", "apply_request")
            assert json.loads(req.header)["msg_id"] == req.msg_id == ar.msg_ids[0]
            assert json.loads(req.metadata)["label"] is None
            assert json.loads(req.content) == {}
            assert len(req.buffers) >= 2 and all(isinstance(b, bytes) for b in req.buffers)
            assert not req.is_broadcast and not req.is_coalescing
            content = {"data": {"text/plain": "shown"}, "metadata": {}}
            rt.publish("display_data", json.dumps(content), req)
            with pytest.raises(ValueError):
                rt.reply(req, "[not an object]")
            with pytest.raises(ValueError):
                rt.stream("stdnowhere", "x", req)
            bufs = [memoryview(b) for b in serialize_object(123)]
            rt.reply(req, json.dumps({"status": "ok"}), bufs)
            assert ar.get(timeout=10) == 123
            ar.wait_for_output(5)
            assert ar.outputs[0]["data"] == {"text/plain": "shown"}
            rt.close()
            wait_for(lambda: rc.ids == [], 10, "unregistration after close()")
    finally:
        rt.close()


def test_sigkill_through_send_signal_is_answered_then_kills(cluster):
    """Stock's nanny answers signal_request from another process; ours replies before the
    signal lands, so a blocking send_signal(SIGKILL) returns instead of hanging."""
    cluster.start_controller()
    engine = cluster.start_engine()
    with cluster.client() as rc:
        rc.wait_for_engines(1, timeout=20)
        rc.send_signal(signal.SIGKILL, targets=rc.ids, block=True)
        assert engine.wait(10) == -signal.SIGKILL
        wait_for(lambda: rc.ids == [], 15, "the dead engine to be unregistered")
