"""`bind_kernel()` on an oxipp engine: the engine also serves as a Jupyter kernel, and a
jupyter_client `BlockingKernelClient` (what `jupyter console --existing` uses) runs code in
the engine's own namespace."""

from __future__ import annotations

import json
import os

import pytest
from clusters import Cluster

ipp = pytest.importorskip("ipyparallel")
jupyter_client = pytest.importorskip("jupyter_client")


@ipp.interactive  # shipped by value: engines cannot import this test module
def bind():
    import oxipp
    from oxipp.engine import kernel

    assert oxipp.bind_kernel() is None  # like stock: it prints how to connect
    return kernel.connection_file()


@pytest.fixture
def cluster(oxipp_bin, tmp_path, monkeypatch):
    # the engine writes kernel-<pid>.json into the Jupyter runtime dir: keep it in tmp_path
    monkeypatch.setenv("JUPYTER_RUNTIME_DIR", str(tmp_path / "runtime"))
    c = Cluster(oxipp_bin, tmp_path / "profile", engine_kind="oxipp")
    yield c
    c.stop()


def test_bind_kernel_serves_the_engine_namespace_to_a_jupyter_client(cluster):
    cluster.start_controller()
    cluster.start_engine()
    with cluster.client() as rc:
        rc.wait_for_engines(1, timeout=30)
        dv = rc[rc.ids[0]]
        dv.push({"x": 41}, block=True)
        path = dv.apply_sync(bind)
        assert os.path.basename(path).startswith("kernel-")
        assert oct(os.stat(path).st_mode & 0o777) == "0o600"
        assert dv.apply_sync(bind) == path, "a second call reuses the kernel"
        info = json.loads(open(path).read())
        assert {"shell_port", "iopub_port", "stdin_port", "control_port", "hb_port", "key"} <= set(
            info
        )

        kc = jupyter_client.BlockingKernelClient(connection_file=path)
        kc.load_connection_file()
        kc.start_channels()
        try:
            kc.wait_for_ready(timeout=10)
            assert kc.is_alive()
            outputs = []
            reply = kc.execute_interactive(
                "y = x + 1\nprint('from the kernel', y)",
                timeout=10,
                output_hook=lambda m: outputs.append(m),
            )
            assert reply["content"]["status"] == "ok"
            streams = [m["content"]["text"] for m in outputs if m["msg_type"] == "stream"]
            assert "from the kernel 42\n" in "".join(streams)
            # the kernel's code ran in the engine's namespace: the client sees its result
            assert dv.pull("y", block=True) == 42
            # and the engine keeps serving its controller meanwhile
            assert dv.apply_sync(bind) == path
        finally:
            kc.stop_channels()
    cluster.stop()  # SIGKILL: no atexit; a clean stop is checked in the next test


def test_the_kernel_connection_file_goes_away_with_the_engine(cluster):
    cluster.start_controller()
    cluster.start_engine()
    with cluster.client() as rc:
        rc.wait_for_engines(1, timeout=30)
        path = rc[rc.ids[0]].apply_sync(bind)
        assert os.path.exists(path)
        rc.shutdown(targets=rc.ids, block=True)
    cluster.engines[0].wait(10)
    assert not os.path.exists(path)
