"""End-to-end engine CPU per no-op apply: our controller, oxipp engines, both clients.

The goal (issue: engine runtime overhead) is ≤ 25 µs of engine-process CPU per no-op
``apply_sync``. This starts ``target/release/oxipp controller`` on a fresh profile, one engine per
``--engine LABEL=PYTHON`` (``PYTHON -m oxipp.engine``: another checkout's venv runs that
checkout's engine, so a baseline and a candidate run side by side against the same controller),
then, for each client (``oxipp`` = ``import oxipp``, ``stock`` = ``import ipyparallel``) and each
engine in turn, ``--n`` no-op ``apply_sync`` calls, ``--rounds`` times (interleaved, so machine
load hits every cell alike). Reported per cell, median over rounds:

* ``cpu_us``: CPU of the whole engine process per apply, from ``/proc/<pid>/task/*/schedstat``
  (nanosecond run time of every thread, unlike the 10 ms ticks of ``/proc/<pid>/stat``);
* ``threads``: the same split by thread (``main (executor)`` = Python's main thread, which runs
  the executor; ``oxipp-engine-io``; ``oxipp-engine-he`` = heart; unnamed threads, which
  inherit the interpreter's name, are shown as ``python…-<tid - pid>``: libzmq's I/O and reaper
  threads, one pair per ZeroMQ context);
* ``wakeups`` / ``preempted``: voluntary / involuntary context switches per apply, per thread
  (``/proc/<pid>/task/<tid>/status``): a thread going to sleep / being preempted;
* ``wall_us``: round-trip time per apply (client included; noisy on a shared machine);
* ``idle_cpu_us_per_s``: engine CPU per second while nothing is sent (timers, heartbeats).

Run (after ``cargo build --release -p oxipp-cluster --bin oxipp``)::

    .venv/bin/python benches/engine_cpu.py --n 5000 --rounds 3 \\
        --engine new=.venv/bin/python --engine base=/work/main/.venv/bin/python

Measurements, not assertions. Prints a table, and one JSON object with ``--json``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from controllers import OXIPP_BIN, Controller, Kind
from procs import Group


def noop(*args):
    return None


def thread_stats(pid: int) -> dict[int, tuple[str, int, int]]:
    """tid -> (name, run time ns, context switches) for every thread of `pid`."""
    out = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            name = (task / "comm").read_text().strip()
            ns = int((task / "schedstat").read_text().split()[0])
            switches = 0
            preempted = 0
            for line in (task / "status").read_text().splitlines():
                if line.startswith("voluntary_ctxt_switches"):
                    switches += int(line.split()[1])
                elif line.startswith("nonvoluntary_ctxt_switches"):
                    preempted += int(line.split()[1])
        except (OSError, ValueError, IndexError):
            continue
        tid = int(task.name)
        if tid == pid:
            name = "main (executor)"
        elif name.startswith("python"):
            # libzmq's I/O and reaper threads inherit the interpreter's name
            name = f"{name}-{tid - pid}"
        out[tid] = (name, ns, switches, preempted)
    return out


def delta(before: dict, after: dict, n: int) -> dict:
    """Per-apply CPU µs and switches, total and by thread name."""
    by_name: dict[str, list[float]] = {}
    for tid, (name, ns, sw, pre) in after.items():
        ns0, sw0, pre0 = before.get(tid, (name, 0, 0, 0))[1:]
        cell = by_name.setdefault(name, [0.0, 0.0, 0.0])
        cell[0] += (ns - ns0) / 1e3 / n
        cell[1] += (sw - sw0) / n
        cell[2] += (pre - pre0) / n
    return {
        "cpu_us": sum(c[0] for c in by_name.values()),
        "threads": {k: round(v[0], 2) for k, v in sorted(by_name.items())},
        "wakeups": {k: round(v[1], 2) for k, v in sorted(by_name.items())},
        "preempted": {k: round(v[2], 2) for k, v in sorted(by_name.items())},
    }


def run_cell(view, f, pid: int, n: int) -> dict:
    for _ in range(min(200, n)):
        view.apply_sync(f)
    before = thread_stats(pid)
    t = time.perf_counter()
    for _ in range(n):
        view.apply_sync(f)
    wall = time.perf_counter() - t
    res = delta(before, thread_stats(pid), n)
    res["wall_us"] = wall / n * 1e6
    return res


def idle_rate(pid: int, seconds: float) -> float:
    before = thread_stats(pid)
    time.sleep(seconds)
    return delta(before, thread_stats(pid), 1)["cpu_us"] / seconds


def median_cells(cells: list[dict]) -> dict:
    names = sorted({k for c in cells for k in c["threads"]})
    med = statistics.median
    return {
        "cpu_us": round(med(c["cpu_us"] for c in cells), 1),
        "cpu_us_all": [round(c["cpu_us"], 1) for c in cells],
        "wall_us": round(med(c["wall_us"] for c in cells), 1),
        "threads": {k: round(med(c["threads"].get(k, 0.0) for c in cells), 1) for k in names},
        "wakeups": {k: round(med(c["wakeups"].get(k, 0.0) for c in cells), 2) for k in names},
        "preempted": {k: round(med(c["preempted"].get(k, 0.0) for c in cells), 2) for k in names},
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=5000, help="applies per cell and round")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument(
        "--engine",
        action="append",
        metavar="LABEL=PYTHON",
        help="an engine run by PYTHON -m oxipp.engine (repeatable; default: this interpreter)",
    )
    ap.add_argument("--clients", default="oxipp,stock")
    ap.add_argument("--ping", type=int, default=1000, help="heartbeat period (ms)")
    ap.add_argument("--oxipp-bin", type=Path, default=OXIPP_BIN)
    ap.add_argument("--engine-arg", action="append", default=[], help="extra engine flag")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--keep", action="store_true", help="keep the profile dir (logs)")
    a = ap.parse_args()

    engines = {}
    for spec in a.engine or [f"this={sys.executable}"]:
        label, _, py = spec.partition("=")
        engines[label] = py or sys.executable
    clients = [c for c in a.clients.split(",") if c]
    results: dict = {"n": a.n, "rounds": a.rounds, "engines": engines, "cells": {}}

    kind = Kind("oxipp-engines", sys.executable, a.oxipp_bin)
    with Controller(kind, a.ping, [], keep=a.keep) as ctl, contextlib.ExitStack() as stack:
        procs = {}
        for label, py in engines.items():
            profile = f"--profile-dir={ctl.profile_dir}"
            argv = [os.path.abspath(py), "-m", "oxipp.engine", profile, *a.engine_arg]
            env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
            g = stack.enter_context(Group(argv, ctl.profile_dir / f"engine-{label}.log", env=env))
            procs[g.pid] = label
        rcs = {}
        for c in clients:
            module = __import__("oxipp" if c == "oxipp" else "ipyparallel")
            rc = module.Client(profile_dir=str(ctl.profile_dir), timeout=30)
            stack.callback(rc.close)
            rc.wait_for_engines(len(engines), timeout=60)
            views = {}
            for eid in rc.ids:
                pid = rc[eid].apply_sync(os.getpid)
                views[procs[pid]] = (rc[eid], pid)
            rcs[c] = (rc, module.interactive(noop), views)
        results["idle_cpu_us_per_s"] = {
            label: round(idle_rate(pid, 2.0), 1) for pid, label in procs.items()
        }
        raw: dict[str, list] = {}
        for r in range(a.rounds):
            for c, (_rc, f, views) in rcs.items():
                for label, (view, pid) in views.items():
                    cell = run_cell(view, f, pid, a.n)
                    raw.setdefault(f"{c}/{label}", []).append(cell)
                    print(
                        f"round {r + 1}: {c} client, {label} engine: {cell['cpu_us']:.1f} µs CPU"
                        f" per apply, {cell['wall_us']:.0f} µs wall",
                        file=sys.stderr,
                    )
        results["cells"] = {k: median_cells(v) for k, v in raw.items()}
    if a.json:
        print(json.dumps(results))
        return 0
    print(f"\nengine CPU per no-op apply_sync (median of {a.rounds} x {a.n}):")
    for key, cell in results["cells"].items():
        print(
            f"  {key:<24} {cell['cpu_us']:7.1f} µs CPU {cell['cpu_us_all']}"
            f"  wall {cell['wall_us']:.0f} µs"
        )
        for t, us in cell["threads"].items():
            print(
                f"      {t:<18} {us:7.1f} µs  {cell['wakeups'][t]:5.2f} sleeps"
                f"  {cell['preempted'][t]:5.2f} preempted"
            )
    print(f"  idle engine CPU µs/s: {results['idle_cpu_us_per_s']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
