"""The whole stack, side by side in one run: oxipp (client + controller + engines), stock
ipyparallel (client + controller + engines), the stock client on an oxipp cluster, Dask
distributed and multiprocessing.Pool, each with 2 workers on this machine.

    .venv/bin/python benches/client_bench.py            # full sizes (~15 min, stock is slow)
    .venv/bin/python benches/client_bench.py --smoke    # tiny sizes, checks the harness (< 60 s)
    .venv/bin/python benches/client_bench.py --only oxipp,pool
    .venv/bin/python benches/client_bench.py --only oxipp --imap 1000000

Workloads: a no-op ``apply_sync`` round trip (median and p90 over N calls), a load-balanced
``map_sync`` of N no-op tasks with chunksize 1 (tasks/s), ``push`` then ``pull`` of one numpy
array to one engine (MB/s each way; the first transfer, cold, and the median of the later
ones), ``execute('a = 1')`` on every engine (median). Dask
(``submit().result()``, ``gather(map())``, ``scatter``/``gather``, ``client.run``) and Pool
(``apply``, ``map``, ``apply`` with the array as argument / as result) run the closest
equivalent; a cell without one says n/a. When ``oxipp.Client`` cannot be imported (the client
is under construction) the oxipp column says so and everything else still runs.

Each system runs in its own child process (``--system NAME``), so a hung system is killed after
a timeout without its processes outliving the run, and no system inherits another's memory.
Numbers are medians on a shared 2-core machine: read the ratios, not the absolute times. The
table goes to stdout, progress to stderr, and the last line printed is the JSON of all results
(also written to bench-results/client-<UTC timestamp>.json).
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
import sys
import time
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path

from controllers import OXIPP_BIN, REPO, Controller, Kind
from procs import Group, last_json_line, raise_nofile
from report import fmt

ENGINES = 2
HERE = Path(__file__).resolve()


def log(msg: str) -> None:
    print(f"[client-bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def noop(*args):
    return None


def identity(x):
    return x


def nbytes(a) -> int:
    return a.nbytes


def make_array(n: int):
    import numpy as np  # noqa: PLC0415 - runs in a Pool worker

    return np.ones(n)


@dataclass
class Sizes:
    latency_n: int
    map_n: int
    map_repeats: int
    array_mb: int
    array_repeats: int
    execute_n: int
    warmup: int
    ping_ms: int
    timeout_s: float  # per system, start-up included

    @classmethod
    def pick(cls, smoke: bool) -> Sizes:
        if smoke:
            return cls(100, 200, 1, 10, 1, 20, 10, 250, 150)
        return cls(2000, 20000, 1, 100, 5, 200, 50, 1000, 2400)

    def argv(self) -> list[str]:
        return [f"--sizes={json.dumps(asdict(self))}"]


# ---------------------------------------------------------------- measuring


def latency(fn, n: int, warmup: int) -> dict:
    """Median and p90 of n timed calls of fn after `warmup` untimed ones."""
    for _ in range(warmup):
        fn()
    samples = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - t)
    samples.sort()
    return {
        "median_us": statistics.median(samples) * 1e6,
        "p90_us": samples[min(n - 1, int(0.9 * n))] * 1e6,
        "n": n,
    }


def rate(fn, n: int, repeats: int) -> dict:
    """Median of n / (time of one fn()) over `repeats` runs."""
    rates = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        rates.append(n / (time.perf_counter() - t))
    return {"tasks_per_s": statistics.median(rates), "n": n}


def transfer(push, pull, mb: int, repeats: int) -> dict:
    """MB/s of push() then pull(): the first round on its own (cold: every process touches
    fresh memory for the array, which on this VM costs more than moving it) and the median of
    the later rounds (warm; with one round, that round)."""
    ups, downs = [], []
    for _ in range(repeats):
        t = time.perf_counter()
        push()
        ups.append(mb / (time.perf_counter() - t))
        t = time.perf_counter()
        back = pull()
        downs.append(mb / (time.perf_counter() - t))
        if back.nbytes != mb * 1024 * 1024:
            raise RuntimeError(f"pulled {back.nbytes} bytes, pushed {mb} MiB")
        del back
        gc.collect()
    warm = slice(1, None) if repeats > 1 else slice(None)
    return {
        "push_MBps": statistics.median(ups[warm]),
        "pull_MBps": statistics.median(downs[warm]),
        "push_first_MBps": ups[0],
        "pull_first_MBps": downs[0],
    }


def bench_array(mb: int):
    import numpy as np  # noqa: PLC0415 - only the child processes need it

    return np.random.default_rng(0).random(mb * 1024 * 1024 // 8)


# ---------------------------------------------------------------- the systems


@dataclass(frozen=True)
class IppSetup:
    client_module: str  # "ipyparallel" or "oxipp"
    kind: str  # controllers.Kind name: "stock" or "oxipp-engines" (oxipp controller + engines)


IPP_SETUPS = {
    "oxipp": IppSetup("oxipp", "oxipp-engines"),
    "stock": IppSetup("ipyparallel", "stock"),
    "stock-client+oxipp": IppSetup("ipyparallel", "oxipp-engines"),
}


def ipp_unavailable(setup: IppSetup, oxipp_bin: Path) -> str | None:
    if setup.client_module == "oxipp":
        try:
            importlib.import_module("oxipp").Client  # noqa: B018 - the check is the lookup
        except Exception:  # noqa: BLE001 - any failure means the client is not there yet
            return "n/a (no oxipp.Client)"
    return Kind(setup.kind, sys.executable, oxipp_bin).unavailable()


def bench_ipp(setup: IppSetup, sizes: Sizes, oxipp_bin: Path, imap_n: int) -> dict:
    """Controller + ENGINES engines on a fresh profile (benches/controllers.py), then the
    workloads through `setup.client_module`'s Client."""
    kind = Kind(setup.kind, sys.executable, oxipp_bin)
    module = importlib.import_module(setup.client_module)
    with Controller(kind, sizes.ping_ms, []) as ctl, contextlib.ExitStack() as engines:
        for i in range(ENGINES):
            argv = [sys.executable, "-m", kind.engine_module, f"--profile-dir={ctl.profile_dir}"]
            engines.enter_context(Group(argv, ctl.profile_dir / f"engine{i}.log"))
        rc = module.Client(profile_dir=str(ctl.profile_dir), timeout=30)
        try:
            rc.wait_for_engines(ENGINES, timeout=60)
            return ipp_workloads(rc, module.interactive(noop), sizes, imap_n)
        finally:
            rc.close()


def ipp_workloads(rc, f, sizes: Sizes, imap_n: int) -> dict:
    one = rc[rc.ids[0]]
    lview = rc.load_balanced_view()
    everyone = rc[:]
    arr = bench_array(sizes.array_mb)
    res = {
        "apply": latency(lambda: one.apply_sync(f), sizes.latency_n, sizes.warmup),
        "map": rate(
            lambda: lview.map_sync(f, range(sizes.map_n), chunksize=1),
            sizes.map_n,
            sizes.map_repeats,
        ),
        **transfer(
            lambda: one.push({"bench_a": arr}, block=True),
            lambda: one.pull("bench_a", block=True),
            sizes.array_mb,
            sizes.array_repeats,
        ),
        "execute_all": latency(
            lambda: everyone.execute("a = 1", block=True), sizes.execute_n, sizes.warmup
        ),
    }
    if imap_n:
        res["imap_rss"] = imap_rss(lview, f, imap_n)
    return res


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 1e6


def imap_rss(lview, f, n: int) -> dict:
    """Client RSS while consuming an n-task imap (sampled at 1% and at the end)."""
    at_1pct = None
    t = time.perf_counter()
    for i, _ in enumerate(lview.imap(f, range(n))):
        if i + 1 == max(1, n // 100):
            at_1pct = rss_mb()
    return {
        "n": n,
        "rss_at_1pct_MB": at_1pct,
        "rss_at_end_MB": rss_mb(),
        "tasks_per_s": n / (time.perf_counter() - t),
    }


def bench_pool(sizes: Sizes) -> dict:
    """multiprocessing.Pool: the array goes as an apply argument (push) and comes back as an
    apply result (pull; includes np.ones in the worker); there is no execute."""
    arr = bench_array(sizes.array_mb)
    with multiprocessing.get_context("fork").Pool(ENGINES) as pool:
        return {
            "apply": latency(lambda: pool.apply(noop), sizes.latency_n, sizes.warmup),
            "map": rate(
                lambda: pool.map(noop, range(sizes.map_n), chunksize=1),
                sizes.map_n,
                sizes.map_repeats,
            ),
            **transfer(
                lambda: pool.apply(nbytes, (arr,)),
                lambda: pool.apply(make_array, (arr.size,)),
                sizes.array_mb,
                sizes.array_repeats,
            ),
        }


def bench_dask(sizes: Sizes) -> dict:
    """Dask LocalCluster, ENGINES worker processes with 1 thread each; push/pull =
    scatter/gather to one worker, execute = client.run on every worker."""
    import distributed  # noqa: PLC0415 - optional: only this column needs it

    arr = bench_array(sizes.array_mb)
    with (
        distributed.LocalCluster(
            n_workers=ENGINES, threads_per_worker=1, processes=True, dashboard_address=None
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        client.wait_for_workers(ENGINES)
        first = [next(iter(client.scheduler_info()["workers"]))]
        held = []

        def push():
            held[:] = [client.scatter(arr, workers=first, direct=True)]
            distributed.wait(held[0])

        res = {
            "apply": latency(
                lambda: client.submit(noop, pure=False).result(), sizes.latency_n, sizes.warmup
            ),
            "map": rate(
                lambda: client.gather(client.map(noop, range(sizes.map_n), pure=False)),
                sizes.map_n,
                sizes.map_repeats,
            ),
            **transfer(
                push,
                lambda: client.gather(held[0], direct=True),
                sizes.array_mb,
                sizes.array_repeats,
            ),
            "execute_all": latency(lambda: client.run(noop), sizes.execute_n, sizes.warmup),
        }
        held.clear()
        return res


def dask_unavailable() -> str | None:
    try:
        importlib.import_module("distributed")
    except ImportError:
        return "n/a (distributed not installed: scripts/setup.sh)"
    return None


SYSTEMS = ("oxipp", "stock", "stock-client+oxipp", "dask", "pool")
TITLES = {
    "oxipp": "oxipp",
    "stock": "stock",
    "stock-client+oxipp": "stock client + oxipp cluster",
    "dask": "Dask",
    "pool": "Pool",
}


def version(name: str) -> str:
    """What ran, e.g. "ipyparallel 9.2.0 + oxipp 0.1.0" (client + cluster)."""
    if name == "pool":
        return f"Python {sys.version.split()[0]}"
    mods = {"stock": ["ipyparallel"], "dask": ["distributed"], "oxipp": ["oxipp"]}
    return " + ".join(map(module_version, mods.get(name, ["ipyparallel", "oxipp"])))


def module_version(mod: str) -> str:
    with contextlib.suppress(Exception):
        return f"{mod} {importlib.import_module(mod).__version__}"
    return f"{mod} ?"


def run_system(name: str, sizes: Sizes, oxipp_bin: Path, imap_n: int) -> dict:
    """One system in this process (the child side of --system): its result dict."""
    if name in IPP_SETUPS:
        why = ipp_unavailable(IPP_SETUPS[name], oxipp_bin)
        if why:
            return {"unavailable": why}
        res = bench_ipp(IPP_SETUPS[name], sizes, oxipp_bin, imap_n)
    elif name == "dask":
        why = dask_unavailable()
        if why:
            return {"unavailable": why}
        res = bench_dask(sizes)
    else:
        res = bench_pool(sizes)
    res["version"] = version(name)
    return res


def run_child(name: str, sizes: Sizes, args: argparse.Namespace) -> dict:
    """Runs `--system name` in its own session; kills it (and so, through its cleanup, its
    controller and engines) after sizes.timeout_s."""
    argv = [sys.executable, str(HERE), f"--system={name}", f"--oxipp-bin={args.oxipp_bin}"]
    argv += [*sizes.argv(), f"--imap={args.imap if name in IPP_SETUPS else 0}"]
    log_path = REPO / "target" / f"client-bench-{name}.log"
    log_path.parent.mkdir(exist_ok=True)
    log_path.unlink(missing_ok=True)
    with Group(argv, log_path, capture=True) as child:
        code, out = child.communicate(sizes.timeout_s)
    result = last_json_line(out)
    if result is None:
        why = "timed out and was killed" if code is None else f"exited {code}"
        tail = log_path.read_text(errors="replace").strip().splitlines()[-2:]
        result = {"error": f"{name} {why}: {' | '.join(tail)[-300:]} (log: {log_path})"}
    return result


# ---------------------------------------------------------------- report

# (label, path into a result, "low" or "high" is better)
ROWS = [
    ("apply_sync no-op round trip, median µs", ("apply", "median_us"), "low"),
    ("apply_sync no-op round trip, p90 µs", ("apply", "p90_us"), "low"),
    ("LB map of no-op tasks, chunksize 1, tasks/s", ("map", "tasks_per_s"), "high"),
    ("push array to one engine, MB/s (median after the first)", ("push_MBps",), "high"),
    ("pull array from one engine, MB/s (median after the first)", ("pull_MBps",), "high"),
    ("push array, first transfer, MB/s", ("push_first_MBps",), "high"),
    ("pull array, first transfer, MB/s", ("pull_first_MBps",), "high"),
    ("execute('a = 1') on all engines, median µs", ("execute_all", "median_us"), "low"),
    ("imap: client RSS at 1% of tasks, MB", ("imap_rss", "rss_at_1pct_MB"), "low"),
    ("imap: client RSS at the end, MB", ("imap_rss", "rss_at_end_MB"), "low"),
]
# ratio columns: (system, baseline); > 1 = the system is better than the baseline
RATIOS = [("oxipp", "stock"), ("oxipp", "pool"), ("stock-client+oxipp", "stock")]


def dig(d, path):
    for p in path:
        if not isinstance(d, dict) or p not in d:
            return None
        d = d[p]
    return d if isinstance(d, (int, float)) else None


def ratio(ours, theirs, better: str) -> str:
    if not ours or not theirs:
        return "—"
    return f"{(theirs / ours if better == 'low' else ours / theirs):.2f}×"


def table(results: dict, sizes: Sizes) -> str:
    """The Markdown table: values per system, then the ratio columns; a system that did not
    run has its reason in every cell (n/a ...) or a numbered footnote (errors)."""
    names = [n for n in SYSTEMS if n in results]
    cols = [TITLES[n] for n in names]
    cols += [f"{TITLES[a]} vs {TITLES[b]}" for a, b in RATIOS if a in names and b in names]
    lines = [
        f"| workload ({ENGINES} workers each; map {sizes.map_n:,} tasks, array "
        f"{sizes.array_mb} MB) | " + " | ".join(cols) + " |",
        "|---" * (len(cols) + 1) + "|",
    ]
    notes = []
    for label, path, better in ROWS:
        vals = {n: dig(results[n], path) for n in names}
        if not any(v is not None for v in vals.values()) and path[0] == "imap_rss":
            continue  # only with --imap
        cells = []
        for n in names:
            r = results[n]
            if vals[n] is not None:
                cells.append(fmt(vals[n]))
            elif "unavailable" in r:
                cells.append(r["unavailable"])
            elif "error" in r:
                note = f"{n}: {r['error']}"
                if note not in notes:
                    notes.append(note)
                cells.append(f"error [{notes.index(note) + 1}]")
            else:
                cells.append("n/a")
        cells += [ratio(vals[a], vals[b], better) for a, b in RATIOS if a in names and b in names]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    lines += [f"[{i}] {' '.join(n.split())[:500]}" for i, n in enumerate(notes, 1)]
    return "\n".join(lines)


def write_json(out: dict, out_dir: Path) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"client-{out['timestamp']}.json"
    path.write_text(json.dumps(out, indent=2, default=str))
    log(f"wrote {path}")


def child_main(args: argparse.Namespace) -> int:
    # Group.stop() sends SIGTERM first: unwind so the controller and engines are stopped too
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    sizes = Sizes(**json.loads(args.sizes))
    try:
        res = run_system(args.system, sizes, args.oxipp_bin, args.imap)
    except Exception as e:  # noqa: BLE001 - a failed system is reported, not fatal
        res = {"error": f"{type(e).__name__}: {e}"[:1000]}
    print(json.dumps(res), flush=True)
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--smoke", action="store_true", help="tiny sizes: checks the harness")
    ap.add_argument("--only", default=",".join(SYSTEMS), help="comma-separated systems")
    ap.add_argument("--oxipp-bin", type=Path, default=OXIPP_BIN, help="oxipp executable")
    ap.add_argument(
        "--imap", type=int, default=0, metavar="N", help="also: RSS over an N-task imap"
    )
    ap.add_argument("--timeout", type=float, help="seconds per system (default 2400; smoke 150)")
    ap.add_argument("--out-dir", type=Path, default=REPO / "bench-results")
    ap.add_argument("--system", choices=SYSTEMS, help=argparse.SUPPRESS)  # child side
    ap.add_argument("--sizes", help=argparse.SUPPRESS)  # child side
    args = ap.parse_args()
    args.oxipp_bin = args.oxipp_bin.resolve()
    raise_nofile()
    if args.system:
        return child_main(args)
    names = [n.strip() for n in args.only.split(",") if n.strip()]
    bad = [n for n in names if n not in SYSTEMS]
    if bad or not names:
        ap.error(f"unknown system(s) {bad}; choose from {','.join(SYSTEMS)}")
    sizes = Sizes.pick(args.smoke)
    if args.timeout:
        sizes.timeout_s = args.timeout
    started = time.monotonic()
    results = {}
    for name in SYSTEMS:
        if name not in names:
            continue
        log(f"{TITLES[name]} ...")
        t = time.perf_counter()
        results[name] = r = run_child(name, sizes, args)
        status = r.get("error") or r.get("unavailable") or "ok"
        log(f"{TITLES[name]} done in {time.perf_counter() - t:.1f} s: {status}")
    text = table(results, sizes)
    print(text)
    out = {
        "timestamp": datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ"),
        "mode": "smoke" if args.smoke else "full",
        "elapsed_s": time.monotonic() - started,
        "cpus": os.cpu_count(),
        "loadavg": os.getloadavg(),
        "sizes": asdict(sizes),
        "results": results,
        "markdown": text,
    }
    write_json(out, args.out_dir)
    print(json.dumps(out, default=str))
    failed = [
        n for n in ("oxipp", "stock", "stock-client+oxipp", "pool") if "error" in results.get(n, {})
    ]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
