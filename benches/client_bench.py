"""The whole stack, side by side in one run: oxipp (client + controller + engines), stock
ipyparallel (client + controller + engines), Dask distributed and multiprocessing.Pool, each with
2 workers on this machine (issue 4's benchmark).

    .venv/bin/python benches/client_bench.py            # full sizes (a few minutes)
    .venv/bin/python benches/client_bench.py --smoke    # tiny sizes, checks the harness (< 60 s)

Workloads: a no-op ``apply_sync`` round trip (median and p90 over N calls), a load-balanced
``map`` of N no-op tasks with chunksize 1 (tasks/s), push and pull of one numpy array to one
engine (MB/s), and ``execute`` on every engine (median). Dask (``submit().result()``,
``client.map``, ``scatter``/``gather``, ``client.run``) and Pool (``apply``, ``map``) run the
closest equivalent; rows without one say n/a. Dask is optional: without ``distributed`` importable
its column is n/a (``--dask-path DIR`` adds a directory holding it to ``sys.path``).

Numbers are medians of repeated runs on a shared 2-core machine: read the ratios, not the
absolute times. The last line printed is the JSON of all results.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import importlib
import json
import multiprocessing
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
OXIPP_BIN = Path(os.environ.get("OXIPP_BIN", REPO / "target" / "release" / "oxipp"))
ENGINES = 2


def log(msg: str) -> None:
    print(f"[client-bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def noop(*args):
    return None


def identity(x):
    return x


# ---------------------------------------------------------------- clusters


class IppCluster:
    """A controller and ENGINES engines on a temporary profile: ``stock`` = ipcontroller +
    ipengine, ``oxipp`` = oxipp controller + oxipp engines."""

    def __init__(self, kind: str):
        self.kind = kind
        self.tmp = tempfile.TemporaryDirectory(prefix=f"client-bench-{kind}-")
        self.profile = Path(self.tmp.name) / "profile"
        self.profile.mkdir()
        self.procs: list[subprocess.Popen] = []

    def _spawn(self, argv, name):
        log_file = open(Path(self.tmp.name) / f"{name}.log", "ab")  # noqa: SIM115
        p = subprocess.Popen(argv, stdout=log_file, stderr=log_file, start_new_session=True)
        self.procs.append(p)
        return p

    def start(self):
        where = f"--profile-dir={self.profile}"
        if self.kind == "stock":
            ctl = [sys.executable, "-m", "ipyparallel.controller", where, "--ip=127.0.0.1"]
            engine = [sys.executable, "-m", "ipyparallel.engine", where]
        else:
            ctl = [str(OXIPP_BIN), "controller", where]
            engine = [sys.executable, "-m", "oxipp.engine", where]
        self._spawn(ctl, "controller")
        client_file = self.profile / "security" / "ipcontroller-client.json"
        deadline = time.monotonic() + 60
        while not client_file.exists():
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.kind} controller wrote no connection file")
            time.sleep(0.05)
        for i in range(ENGINES):
            self._spawn(engine, f"engine{i}")
        module = importlib.import_module("ipyparallel" if self.kind == "stock" else "oxipp")
        self.rc = module.Client(profile_dir=str(self.profile), timeout=30)
        self.rc.wait_for_engines(ENGINES, timeout=60)
        self.interactive = module.interactive
        return self

    def stop(self):
        with contextlib.suppress(Exception):  # best effort teardown
            self.rc.close()
        for p in self.procs:
            # each in its own session: the stock controller forks its schedulers
            with contextlib.suppress(ProcessLookupError):
                os.killpg(p.pid, signal.SIGKILL)
            p.wait(10)
        self.tmp.cleanup()


def percentile(xs, q):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))]


def latency_stats(samples):
    return {
        "median_us": statistics.median(samples) * 1e6,
        "p90_us": percentile(samples, 0.9) * 1e6,
        "n": len(samples),
    }


def timed(fn, n, warmup):
    for _ in range(warmup):
        fn()
    out = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return out


# ---------------------------------------------------------------- workloads per system


def bench_ipp(kind: str, sizes) -> dict:
    c = IppCluster(kind).start()
    try:
        rc = c.rc
        f = c.interactive(noop)
        ident = c.interactive(identity)
        res = {}
        e0 = rc[0]
        res["apply"] = latency_stats(timed(lambda: e0.apply_sync(f), sizes.latency_n, 50))
        lview = rc.load_balanced_view()
        rates = []
        for _ in range(sizes.repeats):
            t = time.perf_counter()
            out = lview.map_sync(ident, range(sizes.map_n), chunksize=1)
            rates.append(sizes.map_n / (time.perf_counter() - t))
            assert len(out) == sizes.map_n
        res["map"] = {"tasks_per_s": statistics.median(rates), "n": sizes.map_n}
        arr = np.random.random(sizes.array_mb * 1024 * 1024 // 8)
        push, pull = [], []
        for _ in range(sizes.repeats):
            t = time.perf_counter()
            e0.push({"bench_a": arr}, block=True)
            push.append(sizes.array_mb / (time.perf_counter() - t))
            t = time.perf_counter()
            back = e0.pull("bench_a", block=True)
            pull.append(sizes.array_mb / (time.perf_counter() - t))
            assert back.shape == arr.shape
            del back
            gc.collect()
        res["push_MBps"] = statistics.median(push)
        res["pull_MBps"] = statistics.median(pull)
        if sizes.imap_n:
            res["imap_rss"] = imap_rss(lview, ident, sizes.imap_n)
        dview = rc[:]
        res["execute_all"] = latency_stats(
            timed(lambda: dview.execute("a = 1", block=True), sizes.execute_n, 20)
        )
        return res
    finally:
        c.stop()


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 1e6


def imap_rss(lview, f, n: int) -> dict:
    """Client RSS while consuming an n-task imap (sampled at 1% and at the end)."""
    start = None
    t = time.perf_counter()
    for i, _ in enumerate(lview.imap(f, range(n))):
        if i + 1 == max(1, n // 100):
            start = rss_mb()
    return {
        "n": n,
        "rss_at_1pct_MB": start,
        "rss_at_end_MB": rss_mb(),
        "tasks_per_s": n / (time.perf_counter() - t),
    }


def bench_pool(sizes) -> dict:
    ctx = multiprocessing.get_context("fork")
    with ctx.Pool(ENGINES) as pool:
        res = {"apply": latency_stats(timed(lambda: pool.apply(noop), sizes.latency_n, 50))}
        rates = []
        for _ in range(sizes.repeats):
            t = time.perf_counter()
            pool.map(identity, range(sizes.map_n), chunksize=1)
            rates.append(sizes.map_n / (time.perf_counter() - t))
        res["map"] = {"tasks_per_s": statistics.median(rates), "n": sizes.map_n}
    return res


def bench_dask(sizes) -> dict:
    try:
        import distributed  # noqa: PLC0415 - optional: only this column needs it
    except ImportError:
        return {"error": "distributed is not installed"}

    with (
        distributed.LocalCluster(
            n_workers=ENGINES, threads_per_worker=1, processes=True, dashboard_address=None
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        client.wait_for_workers(ENGINES)
        workers = list(client.scheduler_info()["workers"])
        res = {
            "apply": latency_stats(
                timed(lambda: client.submit(noop, pure=False).result(), sizes.latency_n, 50)
            )
        }
        rates = []
        for _ in range(sizes.repeats):
            t = time.perf_counter()
            client.gather(client.map(identity, range(sizes.map_n), pure=False))
            rates.append(sizes.map_n / (time.perf_counter() - t))
        res["map"] = {"tasks_per_s": statistics.median(rates), "n": sizes.map_n}
        arr = np.random.random(sizes.array_mb * 1024 * 1024 // 8)
        push, pull = [], []
        for _ in range(sizes.repeats):
            t = time.perf_counter()
            fut = client.scatter(arr, workers=[workers[0]], direct=True)
            distributed.wait(fut)
            push.append(sizes.array_mb / (time.perf_counter() - t))
            t = time.perf_counter()
            back = client.gather(fut, direct=True)
            pull.append(sizes.array_mb / (time.perf_counter() - t))
            assert back.shape == arr.shape
            del fut, back
        res["push_MBps"] = statistics.median(push)
        res["pull_MBps"] = statistics.median(pull)
        res["execute_all"] = latency_stats(timed(lambda: client.run(noop), sizes.execute_n, 20))
        res["version"] = distributed.__version__
    return res


# ---------------------------------------------------------------- report


class Sizes:
    imap_n = 0

    def __init__(self, smoke: bool):
        self.latency_n = 200 if smoke else 3000
        self.map_n = 500 if smoke else 20000
        self.array_mb = 10 if smoke else 100
        self.execute_n = 50 if smoke else 500
        self.repeats = 1 if smoke else 3


ROWS = [
    ("apply_sync no-op, median µs", ("apply", "median_us"), "low"),
    ("apply_sync no-op, p90 µs", ("apply", "p90_us"), "low"),
    ("LB map no-op, chunksize 1, tasks/s", ("map", "tasks_per_s"), "high"),
    ("push array, MB/s", ("push_MBps",), "high"),
    ("pull array, MB/s", ("pull_MBps",), "high"),
    ("execute on all engines, median µs", ("execute_all", "median_us"), "low"),
    ("imap: client RSS at 1% of tasks, MB", ("imap_rss", "rss_at_1pct_MB"), "low"),
    ("imap: client RSS at the end, MB", ("imap_rss", "rss_at_end_MB"), "low"),
]
SYSTEMS = ("oxipp", "stock", "dask", "pool")


def dig(d, path):
    for p in path:
        if not isinstance(d, dict) or p not in d:
            return None
        d = d[p]
    return d


def fmt(x):
    if x is None:
        return "n/a"
    return f"{x:,.0f}" if x >= 100 else f"{x:.1f}"


def speedup(ours, theirs, better):
    """How many times better oxipp is (> 1 = oxipp wins)."""
    if ours is None or theirs is None or ours == 0 or theirs == 0:
        return "n/a"
    r = theirs / ours if better == "low" else ours / theirs
    return f"{r:.2f}×"


def table(results, sizes) -> str:
    lines = [
        f"| workload (2 workers; map n={sizes.map_n}, array {sizes.array_mb} MB) | "
        + " | ".join(SYSTEMS)
        + " | oxipp vs stock | oxipp vs Pool |",
        "|---" * (len(SYSTEMS) + 3) + "|",
    ]
    for label, path, better in ROWS:
        vals = {s: dig(results.get(s), path) for s in SYSTEMS}
        lines.append(
            f"| {label} | "
            + " | ".join(fmt(vals[s]) for s in SYSTEMS)
            + f" | {speedup(vals['oxipp'], vals['stock'], better)}"
            + f" | {speedup(vals['oxipp'], vals['pool'], better)} |"
        )
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--smoke", action="store_true", help="tiny sizes: checks the harness")
    ap.add_argument("--only", default=",".join(SYSTEMS), help="comma-separated systems")
    ap.add_argument("--dask-path", help="a directory with dask/distributed to import from")
    ap.add_argument(
        "--imap", type=int, default=0, metavar="N", help="also: client RSS over an N-task imap"
    )
    args = ap.parse_args()
    if args.dask_path:
        sys.path.append(args.dask_path)
    sizes = Sizes(args.smoke)
    sizes.imap_n = args.imap
    only = args.only.split(",")
    results = {}
    runners = {
        "oxipp": lambda: bench_ipp("oxipp", sizes),
        "stock": lambda: bench_ipp("stock", sizes),
        "dask": lambda: bench_dask(sizes),
        "pool": lambda: bench_pool(sizes),
    }
    for name in SYSTEMS:
        if name not in only:
            continue
        log(f"{name} ...")
        t = time.perf_counter()
        try:
            results[name] = runners[name]()
        except Exception as e:  # noqa: BLE001 - a failed system is reported, not fatal
            results[name] = {"error": f"{type(e).__name__}: {e}"}
        log(f"{name} done in {time.perf_counter() - t:.1f} s: {results[name].get('error', 'ok')}")
    print(table(results, sizes))
    for name, r in results.items():
        if "error" in r:
            print(f"- {name}: {r['error']}")
    print(json.dumps({"smoke": args.smoke, "results": results}))
    failed = [n for n in ("oxipp", "stock", "pool") if "error" in results.get(n, {})]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
