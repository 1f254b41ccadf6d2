"""Micro-benchmark: engine CPU per no-op apply spent in ``oxipp.engine.executor.Executor``.

The end-to-end goal is ≤ 25 µs of engine CPU per no-op apply (Rust runtime + Python); this
measures the Python share: ``Executor.handle`` on a pre-built request, with an ``io`` that does
nothing, so only unpacking, calling, serializing and building the reply are counted. The request
is what a stock client sends for ``view.apply(f)`` (``ipyparallel.serialize.pack_apply_message``
when stock is installed, else oxipp's byte-identical one); ``map_task`` is one task of an oxipp
client's load-balanced ``map`` (chunksize 1).

Also reported, because they bound engine start-up: importing the executor, building it, the
kernel_info content, and the one-time cost of the first ``execute_request`` (IPython import and
shell construction), which an engine pays after registering.

Run: ``PYTHONPATH=python .venv/bin/python benches/engine_executor.py [--n 20000] [--repeat 7]``.
Measurements, not assertions: nothing here fails on a slow result.
"""

from __future__ import annotations

import argparse
import gc
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "python"))


class NullIO:
    """The runtime's io interface, doing nothing (the Rust side is not measured here)."""

    def publish(self, msg_type, content_json, parent, topic=None, buffers=()):
        pass

    def stream(self, name, text, parent):
        pass


class Req:
    """A shell request with the contract's attributes."""

    __slots__ = ("buffers", "content", "header", "kind", "metadata", "msg_id", "msg_type")

    def __init__(self, msg_type, buffers=(), content=b"{}"):
        self.kind = "shell"
        self.msg_type = msg_type
        self.msg_id = "bench"
        self.header = b"{}"
        self.metadata = b"{}"
        self.content = content
        self.buffers = [bytes(b) for b in buffers]


def per_call_us(fn, n: int, repeat: int) -> dict:
    """Wall and CPU µs per call: median and best over ``repeat`` runs of ``n`` calls."""
    walls, cpus = [], []
    for _ in range(repeat):
        gc.collect()
        c0, w0 = time.process_time(), time.perf_counter()
        for _ in range(n):
            fn()
        w1, c1 = time.perf_counter(), time.process_time()
        walls.append((w1 - w0) / n * 1e6)
        cpus.append((c1 - c0) / n * 1e6)
    return {
        "wall_us_median": round(statistics.median(walls), 2),
        "wall_us_best": round(min(walls), 2),
        "cpu_us_median": round(statistics.median(cpus), 2),
    }


def noop():
    return None


def identity(x):
    return x


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=20000, help="applies per repeat")
    ap.add_argument("--repeat", type=int, default=7)
    ap.add_argument("--json", action="store_true", help="print one JSON object only")
    args = ap.parse_args()

    results: dict = {"python": sys.version.split()[0]}

    t0 = time.perf_counter()
    from oxipp.engine.executor import Executor  # noqa: PLC0415 - timed on purpose

    t1 = time.perf_counter()
    ex = Executor(NullIO(), 0, "bench-uuid", redirect_output=False)
    t2 = time.perf_counter()
    json.dumps(ex.kernel_info())
    t3 = time.perf_counter()
    results["startup_ms"] = {
        "import_executor": round((t1 - t0) * 1e3, 1),
        "construct": round((t2 - t1) * 1e3, 2),
        "kernel_info": round((t3 - t2) * 1e3, 2),
        "ipython_loaded": "IPython" in sys.modules,
    }

    # one-time: the first execute_request imports IPython and builds the shell
    # (measured before stock ipyparallel is imported: that would import IPython itself)
    handle = ex.handle
    t4 = time.perf_counter()
    reply = handle(Req("execute_request", content=b'{"code": "1", "silent": true}'))
    t5 = time.perf_counter()
    assert reply[0] == "ok", reply
    results["first_execute_ms"] = round((t5 - t4) * 1e3, 1)
    try:
        from ipyparallel.serialize import pack_apply_message  # noqa: PLC0415 - after the above

        packer = "stock ipyparallel"
    except ImportError:  # pragma: no cover - depends on the environment
        from oxipp.serialize import pack_apply_message  # noqa: PLC0415

        packer = "oxipp"
    results["request_packed_by"] = packer

    # one task of an oxipp client's load-balanced map (chunksize 1): the map helper, the
    # function and the one-element part, each pickled once by the client
    from oxipp.client.remotefunction import _map  # noqa: PLC0415
    from oxipp.serialize import pack_apply_message as oxipp_pack  # noqa: PLC0415
    from oxipp.serialize.serialize import PrePickled  # noqa: PLC0415

    cases = {
        "noop_apply": Req("apply_request", pack_apply_message(noop, (), {})),
        "lambda_1_arg": Req("apply_request", pack_apply_message(lambda x: x, (1,), {})),
        "map_task": Req(
            "apply_request",
            oxipp_pack(PrePickled(_map), (PrePickled(identity), PrePickled([5])), {}),
        ),
    }
    for name, req in cases.items():
        reply = handle(req)
        assert reply[0] == "ok", reply
        results[name] = per_call_us(lambda req=req: handle(req), args.n, args.repeat)

    # breakdown of the no-op apply
    from oxipp.serialize import serialize_object, unpack_apply_message  # noqa: PLC0415

    bufs = cases["noop_apply"].buffers
    ns = ex.user_ns
    results["breakdown_us"] = {
        "unpack_apply_message": per_call_us(
            lambda: unpack_apply_message(bufs, ns), args.n, args.repeat
        )["wall_us_median"],
        "serialize_object(None)": per_call_us(lambda: serialize_object(None), args.n, args.repeat)[
            "wall_us_median"
        ],
    }

    results["execute_noop_silent"] = per_call_us(
        lambda: handle(Req("execute_request", content=b'{"code": "pass", "silent": true}')),
        max(args.n // 20, 100),
        3,
    )
    ex.close()

    if args.json:
        print(json.dumps(results))
        return
    print(json.dumps(results, indent=2))
    print(
        f"\nno-op apply through Executor.handle: {results['noop_apply']['wall_us_median']} µs "
        f"wall (best {results['noop_apply']['wall_us_best']}), "
        f"{results['noop_apply']['cpu_us_median']} µs CPU per call"
    )


if __name__ == "__main__":
    main()
