"""A stock ipyparallel client and controller driving oxipp's Executor, end to end.

The engine is ``executor_shim_engine.py`` (pyzmq in place of the Rust runtime, which is merged
separately); everything the client sees in replies and IOPub content comes from the executor.
Checks that a stock client reads apply results, remote errors, %px-style execute output,
display/data messages and namespace operations unchanged.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

ipp = pytest.importorskip("ipyparallel")
np = pytest.importorskip("numpy")
pytest.importorskip("zmq")

HERE = Path(__file__).resolve().parent


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    prof = tmp_path_factory.mktemp("profile")
    env = dict(os.environ, IPYTHONDIR=str(tmp_path_factory.mktemp("ipython")))
    logs = prof / "logs.txt"
    procs = []
    with open(logs, "w") as log:
        procs.append(
            subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "ipyparallel.controller",
                    f"--profile-dir={prof}",
                    "--ip=127.0.0.1",
                    "--HeartMonitor.period=500",
                ],
                stdout=log,
                stderr=log,
                env=env,
            )
        )
        engine_json = prof / "security" / "ipcontroller-engine.json"
        deadline = time.monotonic() + 30
        while not engine_json.exists():
            if time.monotonic() > deadline or procs[0].poll() is not None:
                pytest.fail(f"stock controller did not start:\n{logs.read_text()}")
            time.sleep(0.1)
        time.sleep(0.2)  # the file is written before it is complete on slow machines
        procs.append(
            subprocess.Popen(
                [sys.executable, str(HERE / "executor_shim_engine.py"), str(engine_json)],
                stdout=log,
                stderr=log,
                env=env,
            )
        )
        rc = None
        try:
            rc = ipp.Client(profile_dir=str(prof))
            rc.wait_for_engines(1, timeout=30)
            yield rc
        finally:
            if rc is not None:
                rc.close()
            for p in reversed(procs):
                p.terminate()
            for p in procs:
                try:
                    p.wait(10)
                except subprocess.TimeoutExpired:
                    p.kill()


def test_apply_results(client):
    v = client[:]
    assert v.apply_sync(lambda x, y=1: x + y, 2, y=5) == [7]
    arr = np.arange(10000.0)
    np.testing.assert_array_equal(v.apply_sync(lambda a: a * 2, arr)[0], arr * 2)
    assert v.map_sync(lambda x: x * 2, range(10)) == [x * 2 for x in range(10)]
    lv = client.load_balanced_view()
    assert lv.apply_sync(lambda: "lb") == "lb"
    assert lv.map_sync(lambda x: x + 1, range(5)) == [1, 2, 3, 4, 5]
    assert client.broadcast_view().apply_sync(lambda: 3) == [3]


def test_namespace_push_pull_execute_clear(client):
    v = client[:]
    v.push({"a": 5})
    assert v.pull("a", block=True) == [5]
    v.execute("b = a * 3", block=True)
    assert v["b"] == [15]

    @ipp.interactive
    def read_b():
        return b  # noqa: F821 - the engine's namespace

    assert v.apply_sync(read_b) == [15]
    client.clear(block=True)
    with pytest.raises(ipp.CompositeError) as info:
        v.pull("a", block=True)
    assert info.value.elist[0][0] == "NameError"
    assert v.apply_sync(lambda: 1) == [1]


def test_remote_errors(client):
    v = client[:]
    with pytest.raises(ipp.CompositeError) as info:
        v.apply_sync(lambda: 1 / 0)
    ename, evalue, tb, engine_info = info.value.elist[0]
    assert (ename, evalue) == ("ZeroDivisionError", "division by zero")
    assert engine_info["method"] == "apply" and engine_info["engine_id"] == 0
    assert "<string>" in tb and "ZeroDivisionError" in "".join(info.value.render_traceback())

    with pytest.raises(ipp.CompositeError) as info:
        v.execute("1/0", block=True)
    assert info.value.elist[0][0] == "ZeroDivisionError"
    assert info.value.elist[0][3]["method"] == "execute"


def test_execute_output(client):
    v = client[:]
    code = "print('hello'); import sys; print('err', file=sys.stderr); 6 * 7"
    ar = v.execute(code, silent=False)
    ar.get()
    # the reply comes on another socket than the output: it may be there first (under load,
    # CI saw stderr 'err' without the '\n' that print writes separately)
    ar.wait_for_output(timeout=10)
    assert ar.stdout == ["hello\n"] and ar.stderr == ["err\n"]
    assert ar.execute_result[0]["data"] == {"text/plain": "42"}
    assert ar.metadata[0]["execute_input"] == code


def test_display_and_data_messages(client):
    v = client[:]

    def talk():
        from ipyparallel.datapub import publish_data
        from IPython.display import display

        print("out-1")
        display({"shown": 1})
        publish_data({"progress": 0.5})
        from oxipp.datapub import publish_data as ox_publish

        ox_publish({"ox": __import__("numpy").ones(3)})
        return 1

    ar = v.apply_async(talk)
    assert ar.get() == [1]
    ar.wait_for_output(timeout=10)
    assert ar.stdout == ["out-1\n"]
    assert ar.outputs[0][0]["data"]["text/plain"] == "{'shown': 1}"
    assert ar.data[0]["progress"] == 0.5
    np.testing.assert_array_equal(ar.data[0]["ox"], np.ones(3))


def test_get_ipython_in_tasks(client):
    # interactive: this module is importable on the engine, and its globals have no get_ipython
    @ipp.interactive
    def shell_name():
        return type(get_ipython()).__name__  # noqa: F821 - the engine's namespace

    assert client[:].apply_sync(shell_name) == ["EngineShell"]
