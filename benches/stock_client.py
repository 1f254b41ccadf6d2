"""Part (a): what a user of stock ipyparallel sees, against whichever controller is running,
with stock engines or oxipp engines (--engine-module).

Run by run.py as a separate process (its own process group, with the stock engines it starts),
so that a controller that wedges the client cannot wedge the harness, and killing the group
takes the engines down too. Prints one JSON object on stdout.

    python benches/stock_client.py --profile-dir DIR --engines 4 --latency-n 2000 ...
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
import traceback
from pathlib import Path

import ipyparallel as ipp
import numpy as np


def noop(*args):
    """The task body: nothing, so the numbers are the system's overhead."""
    return None


def start_engines(profile_dir: str, n: int, log_dir: Path, module: str) -> list[subprocess.Popen]:
    procs = []
    for i in range(n):
        log = open(log_dir / f"engine-{i}.log", "ab")  # noqa: SIM115 - lives as long as the engine
        argv = [sys.executable, "-m", module, f"--profile-dir={profile_dir}"]
        procs.append(subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log))
    return procs


def stop_engines(procs: list[subprocess.Popen]) -> None:
    for p in procs:
        if p.poll() is None:
            p.terminate()
    deadline = time.monotonic() + 10
    for p in procs:
        try:
            p.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def measure(results: dict, key: str, fn) -> None:
    """Run one measurement; a failure is recorded and the next measurement still runs."""
    try:
        results[key] = fn()
    except Exception as e:  # noqa: BLE001 - any failure is a result to report
        results[key] = {"error": f"{type(e).__name__}: {e}"[:500]}
        traceback.print_exc()


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of one process, from /proc (Linux)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def apply_latency(rc, n: int, timeout: float, engine_pid: int) -> dict:
    dv = rc[rc.ids[0]]
    for _ in range(min(20, n)):
        dv.apply_async(noop).get(timeout=timeout)
    samples = []
    cpu0 = cpu_seconds(engine_pid)
    for _ in range(n):
        t = time.perf_counter()
        dv.apply_async(noop).get(timeout=timeout)
        samples.append((time.perf_counter() - t) * 1e3)
    engine_cpu = cpu_seconds(engine_pid) - cpu0
    samples.sort()
    return {
        "n": n,
        "median_ms": statistics.median(samples),
        "p99_ms": samples[min(len(samples) - 1, int(0.99 * len(samples)))],
        # the whole engine process (every thread) per round trip, at clock-tick resolution
        "engine_cpu_us_per_apply": engine_cpu / n * 1e6,
    }


def lb_map(rc, n: int, timeout: float) -> dict:
    view = rc.load_balanced_view()
    view.map_async(noop, range(min(100, n)), chunksize=1).get(timeout=timeout)  # warm-up
    t = time.perf_counter()
    out = view.map_async(noop, range(n), chunksize=1).get(timeout=timeout)
    elapsed = time.perf_counter() - t
    if len(out) != n:
        raise RuntimeError(f"map returned {len(out)} results for {n} tasks")
    return {"n": n, "elapsed_s": elapsed, "tasks_per_s": n / elapsed}


def push_pull(rc, megabytes: int, repeats: int, timeout: float) -> dict:
    dv = rc[rc.ids[0]]
    arr = np.arange(megabytes * 1_000_000 // 8, dtype=np.float64)
    nbytes = arr.nbytes
    push_s, pull_s = [], []
    for _ in range(repeats):
        t = time.perf_counter()
        dv.push({"bench_array": arr}, block=False).get(timeout=timeout)
        push_s.append(time.perf_counter() - t)
        t = time.perf_counter()
        back = dv.pull("bench_array", block=False).get(timeout=timeout)
        pull_s.append(time.perf_counter() - t)
        if back.nbytes != nbytes or back[-1] != arr[-1]:
            raise RuntimeError("pulled array differs from the pushed one")
        del back
    dv.execute("del bench_array", block=False).get(timeout=timeout)
    push, pull = statistics.median(push_s), statistics.median(pull_s)
    mb = nbytes / 1e6
    return {
        "megabytes": mb,
        "repeats": repeats,
        "push_mb_s": mb / push,
        "pull_mb_s": mb / pull,
        "push_pull_mb_s": 2 * mb / (push + pull),
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--profile-dir", required=True)
    p.add_argument("--engines", type=int, default=4)
    p.add_argument("--latency-n", type=int, default=2000)
    p.add_argument("--map-n", type=int, default=20000)
    p.add_argument("--array-mb", type=int, default=100)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--timeout", type=float, default=300.0, help="per measurement")
    p.add_argument(
        "--engine-module",
        default="ipyparallel.engine",
        help="engines to start: ipyparallel.engine (stock) or oxipp.engine",
    )
    a = p.parse_args()

    url_file = Path(a.profile_dir) / "security" / "ipcontroller-client.json"
    results: dict = {"engines": a.engines, "engine_module": a.engine_module}
    engines: list[subprocess.Popen] = []
    rc = None
    try:
        rc = ipp.Client(str(url_file), timeout=30)
        t = time.perf_counter()
        engines = start_engines(a.profile_dir, a.engines, Path(a.profile_dir), a.engine_module)
        rc.wait_for_engines(a.engines, timeout=120)
        results["register_s"] = time.perf_counter() - t
        pid0 = rc[rc.ids[0]].apply_sync(os.getpid)
        measure(results, "apply_latency", lambda: apply_latency(rc, a.latency_n, a.timeout, pid0))
        measure(results, "lb_map", lambda: lb_map(rc, a.map_n, a.timeout))
        measure(results, "push_pull", lambda: push_pull(rc, a.array_mb, a.repeats, a.timeout))
    except Exception as e:  # noqa: BLE001 - reported, not raised: the harness reads stdout
        results["error"] = f"{type(e).__name__}: {e}"[:500]
        traceback.print_exc()
    finally:
        if rc is not None:
            rc.close()
        stop_engines(engines)
    print(json.dumps(results), flush=True)
    return 0 if "error" not in results else 1


if __name__ == "__main__":
    sys.exit(main())
