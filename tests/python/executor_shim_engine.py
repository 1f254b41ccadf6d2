"""A pyzmq stand-in for the Rust ``EngineRuntime``, serving ``Executor`` to a stock controller.

Test double only: it lets ``test_engine_executor_stock_e2e.py`` drive the executor with a real
stock ``ipyparallel.Client`` before the Rust runtime is merged. It does what docs/engine-runtime.md
§1 gives to Rust, in the simplest way: register, echo heartbeats (a zmq device thread), one shell
ROUTER on mux/task/broadcast, a control ROUTER (clear, abort, shutdown, kernel_info), an IOPub
PUB, busy/idle status around each request, stock reply metadata, and streams published at once
instead of buffered.

Run: ``python executor_shim_engine.py <ipcontroller-engine.json>``.
"""

from __future__ import annotations

import json
import sys
import traceback
from datetime import datetime, timezone
from pathlib import Path

import zmq
from jupyter_client.session import Session
from zmq.devices import ThreadDevice

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "python"))
from oxipp.engine.executor import Executor  # noqa: E402

KIND = {  # msg_type -> IOPub topic suffix, as stock engines name them
    "execute_result": "execute_result",
    "error": "error",
    "display_data": "displaypub",
    "update_display_data": "displaypub",
    "clear_output": "displaypub",
    "execute_input": "execute_input",
    "status": "status",
}


class ShimRequest:
    """The contract's Request, built from a deserialized message."""

    def __init__(self, msg):
        self.msg = msg
        self.kind = "shell"
        self.msg_type = msg["header"]["msg_type"]
        self.msg_id = msg["header"]["msg_id"]
        self.header = json.dumps(msg["header"], default=str).encode()
        self.metadata = json.dumps(msg["metadata"], default=str).encode()
        self.content = json.dumps(msg["content"]).encode()
        self.buffers = [bytes(b) for b in msg["buffers"]]


class ShimIO:
    def __init__(self, session, socket, eid):
        self.session, self.socket, self.eid = session, socket, eid

    def publish(self, msg_type, content_json, parent, topic=None, buffers=()):
        topic = topic or f"engine.{self.eid}.{KIND.get(msg_type, msg_type)}"
        self.session.send(
            self.socket,
            msg_type,
            json.loads(content_json),
            parent=parent.msg if parent is not None else None,
            ident=topic.encode(),
            buffers=list(buffers),
            metadata={"engine": self.session.session},
        )

    def stream(self, name, text, parent):
        content = json.dumps({"name": name, "text": text})
        self.publish("stream", content, parent, topic=f"engine.{self.eid}.{name}")


def main(connection_file: str) -> None:
    conn = json.loads(Path(connection_file).read_text())
    session = Session(
        key=conn["key"].encode(), signature_scheme=conn["signature_scheme"], username="engine"
    )
    ident = session.session
    bident = ident.encode()

    def url(port):
        return f"{conn['interface']}:{port}"

    ctx = zmq.Context()
    reg = ctx.socket(zmq.DEALER)
    reg.IDENTITY = bident
    reg.connect(url(conn["registration"]))
    session.send(reg, "registration_request", content={"uuid": ident})
    if not reg.poll(10000):
        raise TimeoutError("no registration reply")
    _, msg = session.feed_identities(reg.recv_multipart())
    msg = session.deserialize(msg)
    assert msg["content"]["status"] == "ok", msg
    eid = msg["content"]["id"]

    heart = ThreadDevice(zmq.FORWARDER, zmq.SUB, zmq.DEALER)
    heart.setsockopt_in(zmq.SUBSCRIBE, b"")
    heart.setsockopt_out(zmq.IDENTITY, bident)
    heart.connect_in(url(conn["hb_ping"]))
    heart.connect_out(url(conn["hb_pong"]))
    heart.daemon = True
    heart.start()

    shell = ctx.socket(zmq.ROUTER)
    shell.IDENTITY = bident
    for port in (conn["mux"], conn["task"], conn["broadcast"][eid % len(conn["broadcast"])]):
        shell.connect(url(port))
    control = ctx.socket(zmq.ROUTER)
    control.IDENTITY = bident
    control.connect(url(conn["control"]))
    iopub = ctx.socket(zmq.PUB)
    iopub.connect(url(conn["iopub"]))

    io = ShimIO(session, iopub, eid)
    ex = Executor(io, eid, ident)
    print(f"shim engine {eid} registered", file=sys.__stderr__, flush=True)

    def recv(sock):
        idents, m = session.feed_identities(sock.recv_multipart(copy=False), copy=False)
        return idents, session.deserialize(m, copy=False)

    poller = zmq.Poller()
    poller.register(shell, zmq.POLLIN)
    poller.register(control, zmq.POLLIN)
    while True:
        events = dict(poller.poll(1000))
        if control in events:
            idents, m = recv(control)
            msg_type = m["header"]["msg_type"]
            if msg_type == "clear_request":
                ex.clear()
                session.send(control, "clear_reply", {"status": "ok"}, parent=m, ident=idents)
            elif msg_type == "abort_request":
                session.send(control, "abort_reply", {"status": "ok"}, parent=m, ident=idents)
            elif msg_type == "shutdown_request":
                content = {"status": "ok", "restart": False}
                session.send(control, "shutdown_reply", content, parent=m, ident=idents)
                return
        if shell in events:
            idents, m = recv(shell)
            req = ShimRequest(m)
            started = datetime.now(timezone.utc)
            io.publish("status", json.dumps({"execution_state": "busy"}), req)
            out = ex.handle(req)
            if out is not None:
                status, content_json, bufs, deps_met = out
                md_in = m["metadata"]
                md = {
                    "started": started,
                    "dependencies_met": deps_met,
                    "engine": ident,
                    "is_broadcast": md_in.get("is_broadcast", False),
                    "is_coalescing": md_in.get("is_coalescing", False),
                    "original_msg_id": md_in.get("original_msg_id", ""),
                    "label": md_in.get("label"),
                    "status": status,
                }
                if status == "error":
                    md["engine_info"] = {"engine_uuid": ident, "engine_id": eid}
                session.send(
                    shell,
                    req.msg_type.rsplit("_", 1)[0] + "_reply",
                    json.loads(content_json),
                    parent=m,
                    ident=idents,
                    buffers=bufs,
                    metadata=md,
                )
            io.publish("status", json.dumps({"execution_state": "idle"}), req)


if __name__ == "__main__":
    try:
        main(sys.argv[1])
    except BaseException:
        traceback.print_exc(file=sys.__stderr__)
        raise
