"""oxipp.engine.executor.Executor against stock ipyparallel 9.2's wire formats (contract §2).

Requests are built the way real clients build them (stock ``ipyparallel.serialize`` and
``oxipp.serialize``), replies are decoded with stock's ``deserialize_object``/``RemoteError``,
and IOPub traffic is checked through a recording ``io`` object standing in for the Rust
runtime (same two methods: ``publish`` and ``stream``).
"""

from __future__ import annotations

import builtins
import json
import os
import re
import subprocess
import sys
import textwrap
import threading
from dataclasses import dataclass, field
from pathlib import Path

import oxipp.serialize as ox
import pytest
from oxipp.engine import datapub as ox_datapub
from oxipp.engine.executor import Executor

np = pytest.importorskip("numpy")
ipp = pytest.importorskip("ipyparallel")
st = pytest.importorskip("ipyparallel.serialize")
st_util = pytest.importorskip("ipyparallel.util")
st_error = pytest.importorskip("ipyparallel.error")

PYTHON_DIR = Path(__file__).resolve().parents[2] / "python"
UUID = "0a1b2c3d-engine-uuid"
EID = 7

# functions as a user defines them at the client's prompt: module __main__, so the engine runs
# them in its user namespace
MAIN_SRC = """
import functools

def add(x, y=2, *, z=3):
    return x + y + z

def make_adder(n):
    offset = [n]
    def adder(x):
        return x + offset[0]
    return adder

class Point:
    def __init__(self, x, y):
        self.x, self.y = x, y
    def norm2(self):
        return self.x ** 2 + self.y ** 2

def use_point(cls):
    return cls(3, 4).norm2()

def read_a():
    return a

def set_b(v):
    global b
    b = v

def fail():
    return 1 / 0

def interrupted():
    raise KeyboardInterrupt

def shell_info():
    ip = get_ipython()
    import sys
    return (
        type(ip).__name__,
        ip.user_ns is globals(),
        sys.modules["__main__"].__dict__ is globals(),
    )

def talk():
    import sys
    print("out-1")
    print("err-1", file=sys.stderr)
    from IPython.display import display
    display({"shown": 1})
    print("out-2")
    return "done"

def from_thread():
    import threading
    t = threading.Thread(target=lambda: print("from-thread"))
    t.start()
    t.join()

def publish_oxipp(n):
    from oxipp.datapub import publish_data
    publish_data({"step": n, "arr": __import__("numpy").arange(300.0)})
    return n

def publish_stock():
    from ipyparallel.datapub import publish_data
    publish_data({"stock": True})
    return 1

def single_mode():
    exec(compile("6 * 7", "<single>", "single"), {})

def returns_array(n):
    import numpy
    return numpy.arange(n, dtype="float64")

def double(arr):
    return arr * 2

def exit_task():
    raise SystemExit(3)
"""


def load_main() -> dict:
    ns = {"__name__": "__main__"}
    exec(compile(MAIN_SRC, "<oxipp-test-main>", "exec", dont_inherit=True), ns)
    return ns


M = load_main()


# --------------------------------------------------------------------------------------------
# fakes of the runtime's objects


@dataclass
class Req:
    """The contract's Request: raw JSON bytes for header/metadata/content, buffers as bytes."""

    msg_type: str
    content: bytes = b"{}"
    buffers: list = field(default_factory=list)
    msg_id: str = "msg-1"
    kind: str = "shell"
    header: bytes = b"{}"
    metadata: bytes = b"{}"
    is_broadcast: bool = False
    is_coalescing: bool = False


class RecordingIO:
    """Records publish/stream calls in order, with parsed content (like the runtime would send)."""

    def __init__(self):
        self.events = []
        self.lock = threading.Lock()

    def publish(self, msg_type, content_json, parent, topic=None, buffers=()):
        content = json.loads(content_json)  # must be valid JSON text
        with self.lock:
            self.events.append(("publish", msg_type, content, parent, topic, list(buffers)))

    def stream(self, name, text, parent):
        assert isinstance(text, str)
        with self.lock:
            self.events.append(("stream", name, text, parent))

    def published(self, msg_type):
        return [e for e in self.events if e[0] == "publish" and e[1] == msg_type]

    def text(self, name):
        return "".join(e[2] for e in self.events if e[0] == "stream" and e[1] == name)


_counter = [0]


def apply_req(bufs) -> Req:
    _counter[0] += 1
    return Req("apply_request", buffers=[bytes(b) for b in bufs], msg_id=f"apply-{_counter[0]}")


def stock_apply(f, *args, **kwargs) -> Req:
    return apply_req(st.pack_apply_message(f, args, kwargs))


def oxipp_apply(f, *args, **kwargs) -> Req:
    return apply_req(ox.pack_apply_message(f, args, kwargs))


def exec_req(code, **extra) -> Req:
    _counter[0] += 1
    content = {"code": code, "silent": False, "user_expressions": {}}
    content.update(extra)
    return Req("execute_request", json.dumps(content).encode(), msg_id=f"exec-{_counter[0]}")


def plain(text: str) -> str:
    """``text`` without ANSI colour codes (IPython colours tracebacks, as on stock engines)."""
    return re.sub(r"\x1b\[[0-9;]*m", "", text)


def result_of(reply):
    """Decode an ok apply reply with *stock* deserialize_object."""
    status, content, bufs, deps_met = reply
    assert status == "ok", content
    assert json.loads(content) == {"status": "ok"}
    assert deps_met is True
    obj, rest = st.deserialize_object(bufs)
    assert rest == []
    return obj


def error_of(reply, method="apply"):
    status, content_json, bufs, deps_met = reply
    assert status == "error"
    assert bufs == []
    content = json.loads(content_json)
    assert content["status"] == "error"
    assert content["engine_info"] == {"engine_uuid": UUID, "engine_id": EID, "method": method}
    assert isinstance(content["traceback"], list)
    assert all(isinstance(line, str) for line in content["traceback"])
    return content, deps_met


# --------------------------------------------------------------------------------------------
# fixtures


@pytest.fixture(scope="module")
def engine():
    """One executor for the module (building IPython's shell costs ~0.3 s); process-wide state
    it changes is restored afterwards."""
    saved = (sys.modules.get("__main__"), sys.stdout, sys.stderr, sys.displayhook)
    had_display = "display" in builtins.__dict__
    io = RecordingIO()
    ex = Executor(io, EID, UUID, redirect_output=False)
    yield ex, io
    ex.close()
    sys.modules["__main__"], sys.stdout, sys.stderr, sys.displayhook = saved
    if not had_display:
        builtins.__dict__.pop("display", None)


class StreamsInstalled:
    """The executor, with its streams installed around each ``handle`` call: pytest's output
    capture re-assigns ``sys.stdout`` at the start of every test phase, after fixtures ran."""

    def __init__(self, executor):
        self._executor = executor

    def handle(self, req):
        saved = (sys.stdout, sys.stderr, sys.displayhook)
        self._executor.install_streams()
        try:
            return self._executor.handle(req)
        finally:
            sys.stdout, sys.stderr, sys.displayhook = saved
            self._executor._saved_streams = None

    def __getattr__(self, name):
        return getattr(self._executor, name)


@pytest.fixture
def ex(engine):
    """The module's executor with a fresh event log."""
    executor, io = engine
    io.events.clear()
    return StreamsInstalled(executor)


@pytest.fixture
def io(engine):
    return engine[1]


# --------------------------------------------------------------------------------------------
# apply: results


@pytest.mark.parametrize("packer", [stock_apply, oxipp_apply], ids=["stock", "oxipp"])
def test_apply_args_kwargs_roundtrip(ex, packer):
    assert result_of(ex.handle(packer(M["add"], 1, 5, z=10))) == 16
    assert result_of(ex.handle(packer(M["add"], 1))) == 6


@pytest.mark.parametrize("packer", [stock_apply, oxipp_apply], ids=["stock", "oxipp"])
def test_apply_closure_partial_lambda_builtin(ex, packer):
    import functools

    assert result_of(ex.handle(packer(M["make_adder"](40), 2))) == 42
    assert result_of(ex.handle(packer(functools.partial(M["add"], 1, z=0), 4))) == 5
    assert result_of(ex.handle(packer(lambda x: [x] * 3, "q"))) == ["q", "q", "q"]
    assert result_of(ex.handle(packer(sum, [1, 2, 3]))) == 6


def test_apply_class_from_main(ex):
    assert result_of(ex.handle(stock_apply(M["use_point"], M["Point"]))) == 25


def test_apply_numpy_arrays_travel_as_buffers(ex):
    arr = np.arange(1000, dtype="float64")
    reply = ex.handle(stock_apply(M["double"], arr))
    status, _, bufs, _ = reply
    assert status == "ok"
    assert len(bufs) == 2, "a large array result must travel as its own frame"
    out = result_of(reply)
    np.testing.assert_array_equal(out, arr * 2)

    out = result_of(ex.handle(stock_apply(M["returns_array"], 5)))
    np.testing.assert_array_equal(out, np.arange(5.0))


def test_apply_reference_and_interactive(ex):
    ex.user_ns["a"] = 11
    assert result_of(ex.handle(stock_apply(lambda x: x * 2, st.Reference("a")))) == 22

    @ipp.interactive
    def uses_global():
        return a + 1  # noqa: F821 - resolved in the engine's namespace

    assert result_of(ex.handle(stock_apply(uses_global))) == 12


def test_apply_bytes_and_big_containers(ex):
    blob = os.urandom(5000)
    assert result_of(ex.handle(stock_apply(lambda b: b, blob))) == blob
    big = list(range(500))
    assert result_of(ex.handle(stock_apply(lambda x: x, big))) == big
    d = {"x": np.ones(400), "y": "s"}
    out = result_of(ex.handle(stock_apply(lambda x: x, d)))
    assert out["y"] == "s" and out["x"].sum() == 400


# --------------------------------------------------------------------------------------------
# apply: errors


def test_apply_error_content_and_iopub(ex, io):
    req = stock_apply(M["fail"])
    content, deps_met = error_of(ex.handle(req))
    assert deps_met is True
    assert content["ename"] == "ZeroDivisionError"
    assert content["evalue"] == "division by zero"
    tb = plain("\n".join(content["traceback"]))
    assert "ZeroDivisionError" in tb and "Traceback (most recent call last)" in tb
    # stock's frames: the engine's exec, the exec'd "<string>" line, then the user function
    frames = [line for line in tb.splitlines() if line.startswith("File ")]
    assert frames[0].startswith("File ") and "executor.py" in frames[0]
    assert frames[1] == "File <string>:1"
    assert frames[2] == "File <oxipp-test-main>:30, in fail()"
    # the IOPub error message, parented to the request, as stock's showtraceback sends it
    errors = io.published("error")
    assert len(errors) == 1
    _, _, pub, parent, _, _ = errors[0]
    assert parent is req
    assert pub == {
        "traceback": content["traceback"],
        "ename": "ZeroDivisionError",
        "evalue": "division by zero",
    }


def test_apply_error_renders_as_stock_remote_error(ex):
    content, _ = error_of(ex.handle(stock_apply(M["fail"])))
    err = st_error.RemoteError(
        content["ename"],
        content["evalue"],
        "\n".join(content["traceback"]),
        content["engine_info"],
    )
    rendered = "\n".join(err.render_traceback())
    assert "ZeroDivisionError" in rendered and "division by zero" in rendered
    assert str(err) == "ZeroDivisionError(division by zero)" or "division by zero" in str(err)


def test_unmet_dependency_depend_and_require(ex):
    @ipp.depend(lambda: False)
    def never():
        return 1

    content, deps_met = error_of(ex.handle(stock_apply(never)))
    assert content["ename"] == "UnmetDependency"
    assert deps_met is False

    @ipp.require("oxipp_no_such_module_xyz")
    def needs_missing():
        return 1

    content, deps_met = error_of(ex.handle(stock_apply(needs_missing)))
    assert content["ename"] == "UnmetDependency"
    assert deps_met is False

    @ipp.require("json")
    def needs_json():
        return json.dumps([1])  # noqa: F821 - json is imported on the engine by @require

    assert result_of(ex.handle(stock_apply(needs_json))) == "[1]"

    @ox.depend(lambda: True)
    def met():
        return "ran"

    assert result_of(ex.handle(oxipp_apply(met))) == "ran"


@pytest.mark.parametrize(
    "bufs",
    [
        [],
        [b"garbage"],
        [b"garbage", b"more garbage"],
        [b"\x80\x04\x95", b"\x00"],
        lambda: st.pack_apply_message(lambda: 1, (), {})[:1],
        lambda: st.pack_apply_message(lambda x: x, (np.ones(500),), {})[:-1],
    ],
    ids=["empty", "one", "two", "truncated-pickle", "no-info", "missing-arg-buffer"],
)
def test_garbage_buffers_give_error_reply(ex, bufs):
    if callable(bufs):
        bufs = bufs()
    content, _ = error_of(ex.handle(apply_req(bufs)))
    assert content["ename"]
    # and the engine still works afterwards
    assert result_of(ex.handle(stock_apply(lambda: "alive"))) == "alive"


def test_base_exceptions_in_tasks_become_error_replies(ex):
    content, _ = error_of(ex.handle(stock_apply(M["interrupted"])))
    assert content["ename"] == "KeyboardInterrupt"
    content, _ = error_of(ex.handle(stock_apply(M["exit_task"])))
    assert content["ename"] == "SystemExit"


def test_unserializable_result_is_an_error(ex):
    content, _ = error_of(ex.handle(stock_apply(lambda: threading.Lock())))
    assert content["ename"] in ("TypeError", "PicklingError")


# --------------------------------------------------------------------------------------------
# execute_request


def test_execute_ok_publishes_input_stream_result(ex, io):
    req = exec_req("x_exec = 6\nprint('hello')\nx_exec * 7")
    status, content_json, bufs, deps_met = ex.handle(req)
    content = json.loads(content_json)
    assert status == "ok" and bufs == [] and deps_met is True
    assert content["status"] == "ok"
    assert content["user_expressions"] == {} and content["payload"] == []
    n = content["execution_count"]
    kinds = [e[1] if e[0] == "publish" else "stream" for e in io.events]
    assert kinds[0] == "execute_input"
    assert kinds[-1] == "execute_result"
    assert "stream" in kinds
    assert io.published("execute_input")[0][2] == {
        "code": "x_exec = 6\nprint('hello')\nx_exec * 7",
        "execution_count": n,
    }
    result = io.published("execute_result")[0]
    assert result[2] == {"data": {"text/plain": "42"}, "metadata": {}, "execution_count": n}
    assert result[3] is req
    assert io.text("stdout") == "hello\n"
    assert all(e[3] is req for e in io.events)
    # the next cell counts up
    _, content_json, _, _ = ex.handle(exec_req("pass"))
    assert json.loads(content_json)["execution_count"] == n + 1


def test_execute_error_content_and_stop_on_error(ex, io):
    status, content_json, _, _ = ex.handle(exec_req("y_exec = 1\n1/0"))
    assert status == "error"
    content = json.loads(content_json)
    assert content["ename"] == "ZeroDivisionError"
    assert content["evalue"] == "division by zero"
    assert content["engine_info"] == {"engine_uuid": UUID, "engine_id": EID, "method": "execute"}
    tb = plain("\n".join(content["traceback"]))
    assert "Cell In[" in tb and "----> 2 1/0" in tb
    assert content["user_expressions"] == {} and "execution_count" in content
    assert io.published("error")[0][2]["ename"] == "ZeroDivisionError"
    assert ex.stop_on_error is True

    ex.handle(exec_req("1/0", stop_on_error=False))
    assert ex.stop_on_error is False
    ex.handle(exec_req("1/0", silent=True))
    assert ex.stop_on_error is False
    ex.handle(exec_req("pass"))
    assert ex.stop_on_error is False


def test_execute_input_raises_instead_of_blocking(ex):
    saved = builtins.input
    status, content_json, _, _ = ex.handle(exec_req("input('name? ')"))
    assert status == "error"
    assert json.loads(content_json)["ename"] == "StdinNotImplementedError"
    assert builtins.input is saved


def test_exit_in_a_cell_asks_the_engine_to_stop(engine):
    executor, _ = engine
    assert executor.exit_requested is False
    status, content_json, _, _ = executor.handle(exec_req("exit()"))
    assert status == "ok"
    assert json.loads(content_json)["payload"] == [{"source": "ask_exit", "keepkernel": False}]
    assert executor.exit_requested is True
    executor.shell.exit_now = False  # the module's executor keeps serving the other tests


def test_execute_syntax_error(ex):
    status, content_json, _, _ = ex.handle(exec_req("def broken(:"))
    assert status == "error"
    assert json.loads(content_json)["ename"] == "SyntaxError"


def test_execute_silent_and_user_expressions(ex, io):
    ex.handle(exec_req("z_exec = 3", silent=True))
    assert io.published("execute_input") == []
    _, content_json, _, _ = ex.handle(
        exec_req("pass", user_expressions={"z": "z_exec * 2", "bad": "nope_undefined"})
    )
    ue = json.loads(content_json)["user_expressions"]
    assert ue["z"]["status"] == "ok" and ue["z"]["data"]["text/plain"] == "6"
    assert ue["bad"]["status"] == "error" and ue["bad"]["ename"] == "NameError"


def test_execute_magics_and_shell_escape(ex, io):
    status, _, _, _ = ex.handle(exec_req("cwd_exec = %pwd\n!echo oxipp-bang"))
    assert status == "ok"
    assert ex.user_ns["cwd_exec"] == os.getcwd()
    assert "oxipp-bang" in io.text("stdout")


def test_execute_bad_content_is_an_error_reply(ex):
    for content in (b"not json", b"[1, 2]", b"{}", b'{"code": 5}'):
        req = Req("execute_request", content, msg_id="bad")
        content, _ = error_of(ex.handle(req), method="execute")
        assert content["ename"] in ("JSONDecodeError", "TypeError", "KeyError")
    assert ex.handle(exec_req("1"))[0] == "ok"


def test_execute_display_data_and_payload(ex, io):
    ex.handle(exec_req("from IPython.display import display, HTML\ndisplay(HTML('<b>x</b>'))"))
    shown = io.published("display_data")
    assert len(shown) == 1
    assert shown[0][2]["data"]["text/html"] == "<b>x</b>"
    assert set(shown[0][2]) == {"data", "metadata", "transient"}
    _, content_json, _, _ = ex.handle(exec_req("len?"))
    payload = json.loads(content_json)["payload"]
    assert payload and payload[0]["source"] == "page"


# --------------------------------------------------------------------------------------------
# output streams, display, data publishing inside apply


def test_stream_and_display_order_inside_apply(ex, io):
    req = stock_apply(M["talk"])
    assert result_of(ex.handle(req)) == "done"
    seq = [
        (e[1], e[2]) if e[0] == "stream" else (e[1], e[2]["data"]["text/plain"]) for e in io.events
    ]
    seq = [s for s in seq if s != ("stdout", "\n") and s != ("stderr", "\n")]
    assert seq == [
        ("stdout", "out-1"),
        ("stderr", "err-1"),
        ("display_data", "{'shown': 1}"),
        ("stdout", "out-2"),
    ]
    assert all(e[3] is req for e in io.events)


def test_output_from_other_threads_follows_the_request(ex, io):
    req = stock_apply(M["from_thread"])
    assert result_of(ex.handle(req)) is None
    assert io.text("stdout") == "from-thread\n"
    assert all(e[3] is req for e in io.events if e[0] == "stream")


def test_stream_text_the_runtime_refuses_is_repaired():
    class StrictIO(RecordingIO):
        def stream(self, name, text, parent):
            text.encode("utf-8")  # what PyO3 does to a str crossing into Rust
            super().stream(name, text, parent)

    from oxipp.engine.outstream import OutStream, RequestContext

    io = StrictIO()
    out = OutStream("stdout", io, RequestContext(), fallback=None)
    assert out.write("bad \udcff name") == len("bad \udcff name")
    assert io.text("stdout") == "bad \\udcff name"
    with pytest.raises(TypeError):
        out.write(b"bytes")


def test_publish_data_oxipp(ex, io):
    req = stock_apply(M["publish_oxipp"], 3)
    assert result_of(ex.handle(req)) == 3
    (msg,) = io.published("data_message")
    _, _, content, parent, topic, bufs = msg
    assert parent is req and topic == "datapub"
    assert sorted(content["keys"]) == ["arr", "step"]
    data, rest = st.deserialize_object(bufs)
    assert rest == [] and data["step"] == 3
    np.testing.assert_array_equal(data["arr"], np.arange(300.0))


def test_publish_data_stock_module(ex, io):
    assert result_of(ex.handle(stock_apply(M["publish_stock"]))) == 1
    (msg,) = io.published("data_message")
    data, _ = st.deserialize_object(msg[5])
    assert data == {"stock": True}
    assert msg[2] == {"keys": ["stock"]}


def test_sys_displayhook_in_apply(ex, io):
    ex.handle(stock_apply(M["single_mode"]))
    (msg,) = io.published("execute_result")
    assert msg[2]["data"] == {"text/plain": "42"}


def test_get_ipython_in_apply_is_the_engine_shell(ex):
    name, same_ns, main_ns = result_of(ex.handle(stock_apply(M["shell_info"])))
    assert name == "EngineShell"
    assert same_ns is True and main_ns is True


# --------------------------------------------------------------------------------------------
# one namespace


def test_namespace_shared_between_execute_and_apply(ex):
    assert ex.handle(exec_req("a = 5"))[0] == "ok"
    assert result_of(ex.handle(stock_apply(M["read_a"]))) == 5
    ex.handle(stock_apply(M["set_b"], [1, 2]))
    _, content_json, _, _ = ex.handle(exec_req("pass", user_expressions={"b": "b"}))
    assert json.loads(content_json)["user_expressions"]["b"]["data"]["text/plain"] == "[1, 2]"


def test_stock_push_pull_execute_helpers(ex):
    ex.handle(stock_apply(st_util._push, pushed_1=np.arange(3), pushed_2="two"))
    assert result_of(ex.handle(stock_apply(st_util._pull, "pushed_2"))) == "two"
    got = result_of(ex.handle(stock_apply(st_util._pull, ["pushed_1", "pushed_2"])))
    np.testing.assert_array_equal(got[0], np.arange(3))
    ex.handle(stock_apply(st_util._execute, "executed_3 = pushed_2 * 2"))
    assert ex.user_ns["executed_3"] == "twotwo"


def test_clear_resets_namespace(ex):
    ns = ex.user_ns
    ex.handle(exec_req("to_clear = 1"))
    ns["also_clear"] = 2
    ex.clear()
    assert ex.user_ns is ns and sys.modules["__main__"].__dict__ is ns
    assert "to_clear" not in ns and "also_clear" not in ns
    assert callable(ns["get_ipython"])
    content, _ = error_of(ex.handle(stock_apply(M["read_a"])))
    assert content["ename"] == "NameError"
    # still usable
    assert ex.handle(exec_req("after_clear = 1"))[0] == "ok"
    assert ns["after_clear"] == 1


# --------------------------------------------------------------------------------------------
# the other shell requests


def test_kernel_info_looks_stock(ex):
    info = ex.kernel_info()
    json.dumps(info)
    assert info["status"] == "ok"
    assert info["protocol_version"] == "5.3"
    assert info["implementation"] == "ipython"
    import IPython

    assert info["implementation_version"] == IPython.__version__
    assert info["language_info"]["name"] == "python"
    assert info["language_info"]["version"] == sys.version.split()[0]
    assert "IPython" in info["banner"]


def test_complete_inspect_is_complete_history(ex):
    ex.user_ns["completion_target_xyz"] = 1
    status, c, _, _ = ex.handle(
        Req("complete_request", json.dumps({"code": "completion_tar", "cursor_pos": 14}).encode())
    )
    c = json.loads(c)
    assert status == "ok" and "completion_target_xyz" in c["matches"]
    assert c["cursor_start"] == 0 and c["cursor_end"] == 14

    _, c, _, _ = ex.handle(
        Req("inspect_request", json.dumps({"code": "len", "cursor_pos": 3}).encode())
    )
    c = json.loads(c)
    assert c["found"] is True and "text/plain" in c["data"]

    _, c, _, _ = ex.handle(Req("is_complete_request", json.dumps({"code": "for i in x:"}).encode()))
    assert json.loads(c) == {"status": "incomplete", "indent": "    "}
    _, c, _, _ = ex.handle(Req("is_complete_request", json.dumps({"code": "x = 1"}).encode()))
    assert json.loads(c) == {"status": "complete"}

    ex.handle(exec_req("history_marker_1 = 1"))
    _, c, _, _ = ex.handle(
        Req(
            "history_request",
            json.dumps({"hist_access_type": "tail", "n": 5, "raw": True, "output": False}).encode(),
        )
    )
    hist = json.loads(c)["history"]
    assert any(entry[2] == "history_marker_1 = 1" for entry in hist)


def test_unknown_types_get_no_reply(ex):
    assert ex.handle(Req("bogus_request")) is None
    assert ex.handle(Req("comm_msg")) is None
    status, c, _, _ = ex.handle(Req("comm_info_request"))
    assert json.loads(c) == {"comms": {}, "status": "ok"}


# --------------------------------------------------------------------------------------------
# start-up cost: IPython stays unimported until needed


def test_apply_does_not_import_ipython(tmp_path):
    script = textwrap.dedent(
        """
        import json, sys
        import oxipp.serialize as st
        from oxipp.engine.executor import Executor

        class IO:
            def publish(self, *a, **k): pass
            def stream(self, *a, **k): pass

        class Req:
            msg_type = "apply_request"; msg_id = "m"; content = b"{}"
            def __init__(self, bufs): self.buffers = bufs

        ex = Executor(IO(), 0, "u")
        info = ex.kernel_info()
        r = ex.handle(Req(st.pack_apply_message(lambda x: x + 1, (1,), {})))
        assert st.deserialize_object(r[2])[0] == 2
        before = "IPython" in sys.modules
        r = ex.handle(Req(st.pack_apply_message(lambda: get_ipython().user_ns is None, (), {})))
        print(json.dumps([before, "IPython" in sys.modules, r[0]]), file=sys.__stdout__)
        """
    )
    env = dict(os.environ, PYTHONPATH=str(PYTHON_DIR))
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=120
    )
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout.strip().splitlines()[-1]) == [False, True, "ok"]


def test_datapub_without_engine_raises():
    saved = ox_datapub._current
    ox_datapub._current = None
    try:
        with pytest.raises(RuntimeError):
            ox_datapub.publish_data({"x": 1})
    finally:
        ox_datapub._current = saved
