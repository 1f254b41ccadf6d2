"""Side-by-side benchmarks of the stock ipyparallel controller and the oxipp controller.

For every workload, each controller runs on a fresh temporary profile directory, one after the
other in the same run, and the table shows both numbers and their ratio. See benches/README.md.

    .venv/bin/python benches/run.py                 # full run (tens of minutes)
    .venv/bin/python benches/run.py --smoke         # tiny sizes, < 60 s, checks the harness
    .venv/bin/python benches/run.py --only b --controllers oxipp
    .venv/bin/python benches/run.py --only d       # client_bench.py: + Dask and Pool
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

from controllers import OXIPP_BIN, REPO, Controller, ControllerError, Kind
from procs import Group, last_json_line, raise_nofile
from report import build_rows, markdown
from sim_runs import SimJob, run_job, sim_unavailable
from sizes import FULL, SMOKE, Sizes

STOCK_CLIENT = Path(__file__).resolve().parent / "stock_client.py"
CLUSTER_START = Path(__file__).resolve().parent / "cluster_start.py"
CLIENT_BENCH = Path(__file__).resolve().parent / "client_bench.py"
# Controller-side connections per simulated engine: shell to mux, task and a broadcast leaf,
# plus the heartbeat DEALER (pings arrive on a SUB shared by many engines).
FDS_PER_SIM_ENGINE = 4
# ...and per heart-only engine (`oxipp-sim --heart-only`: registration needs only the heart).
FDS_PER_HEART_ONLY_ENGINE = 1
# What is compared: stock = all stock; oxipp = our controller with stock engines;
# oxipp-engines = our controller with our engines (stock client everywhere).
CONFIGS = ("stock", "oxipp", "oxipp-engines")


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def run_part_a(kind: Kind, sizes: Sizes, args: argparse.Namespace) -> dict:
    """Stock client + stock engines against one controller."""
    a = sizes.a
    try:
        with Controller(kind, args.ping, args.controller_arg, args.keep) as ctl:
            argv = [
                kind.python,
                str(STOCK_CLIENT),
                f"--profile-dir={ctl.profile_dir}",
                f"--engines={a.engines}",
                f"--latency-n={a.latency_n}",
                f"--map-n={a.map_n}",
                f"--array-mb={a.array_mb}",
                f"--repeats={a.repeats}",
                f"--timeout={a.timeout}",
                f"--engine-module={kind.engine_module}",
            ]
            with Group(argv, ctl.profile_dir / "stock-client.log", capture=True) as client:
                code, out = client.communicate(a.timeout * 4 + 180)
            result = last_json_line(out) or {}
            if code is None:
                result.setdefault("error", "stock client run timed out and was killed")
            elif not result:
                result["error"] = f"stock client exited {code} without a result"
            if not ctl.group.alive():
                result["error"] = f"{result.get('error', '')} [controller died: {ctl.log_tail()}]"
            return result
    except ControllerError as e:
        return {"error": str(e)}


def run_part_c(names: list[str], sizes: Sizes, args: argparse.Namespace, results: dict) -> None:
    """`ipcluster start -n N --daemonize` vs `oxipp start -n N --daemonize` (oxipp engines),
    alternating, to N engines registered."""
    kinds = [k for k in ("stock", "oxipp-engines") if k in names]
    if not kinds:
        return
    argv = [
        args.python,
        str(CLUSTER_START),
        f"--engines={sizes.a.engines}",
        f"--repeats={1 if args.smoke else 3}",
        f"--oxipp-bin={args.oxipp_bin}",
        "--kinds=" + ",".join("oxipp" if k == "oxipp-engines" else k for k in kinds),
    ]
    with Group(argv, REPO / "target" / "bench-cluster-start.log", capture=True) as proc:
        code, out = proc.communicate(600)
    r = last_json_line(out) or {}
    for k in kinds:
        key = "oxipp" if k == "oxipp-engines" else k
        median = (r.get("median_s") or {}).get(key)
        err = (r.get("errors") or {}).get(key) or (None if r else f"no result (exit {code})")
        results[k]["workloads"]["start"] = {
            "median_s": median,
            "samples_s": (r.get("samples_s") or {}).get(key),
            "engines": r.get("engines"),
            "kind": k,
            "error": err if median is None else None,
        }
        log(f"(c) {k}: {_brief(results[k]['workloads']['start'])}")


def run_part_d(args: argparse.Namespace) -> dict:
    """client_bench.py (its own clusters: oxipp, stock, stock client on an oxipp cluster, Dask,
    Pool; 2 workers each): its JSON result, or an error."""
    argv = [args.python, str(CLIENT_BENCH), f"--oxipp-bin={args.oxipp_bin}"]
    argv += [f"--out-dir={args.out_dir}", *(["--smoke"] if args.smoke else [])]
    # each system has its own timeout inside; this one only catches a stuck harness
    with Group(argv, REPO / "target" / "bench-client.log", capture=True) as proc:
        code, out = proc.communicate(600 if args.smoke else 5 * 3600)
    r = last_json_line(out)
    if r is None:
        return {
            "error": f"client_bench.py gave no result (exit {code}): see target/bench-client.log"
        }
    if code != 0:
        r["error"] = f"client_bench.py exited {code} (a system failed: its cells say why)"
    return r


def sim_jobs(sizes: Sizes) -> list[SimJob]:
    b = sizes.b

    def per(build) -> dict[str, list[str]]:
        return {name: build(name) for name in ("stock", "oxipp")}

    def load(name: str, tasks: dict, extra: list[str]) -> list[str]:
        return [
            f"--tasks={tasks[name]}",
            f"--engines={b.lb_engines}",
            f"--window={b.window}",
            f"--timeout={b.reg_timeout}",
            *extra,
        ]

    reg_small, reg_large = b.registration
    heart_only = ["--heart-only"] if full_engines_do_not_fit(reg_large) else []
    return [
        SimJob("lb", "lb-throughput", per(lambda n: load(n, b.lb_tasks, [])), b.timeout),
        SimJob("mux", "mux-throughput", per(lambda n: load(n, b.mux_tasks, [])), b.timeout),
        SimJob(
            "reg_small",
            "engines",
            {"default": [f"-n={reg_small}", f"--timeout={b.reg_timeout}"]},
            b.reg_timeout,
        ),
        SimJob(
            "reg_large",
            "engines",
            {"default": [f"-n={reg_large}", f"--timeout={b.reg_timeout}", *heart_only]},
            b.reg_timeout,
        ),
        SimJob(
            "execute",
            "execute-all",
            {
                "default": [
                    f"-n={b.execute_engines}",
                    f"--rounds={b.execute_rounds}",
                    f"--timeout={b.reg_timeout}",
                ]
            },
            b.reg_timeout + b.timeout,
            needs_pid=False,
        ),
        SimJob(
            "rss",
            "rss",
            per(lambda n: load(n, b.rss_tasks, [f"--every={b.rss_every[n]}"])),
            b.timeout * 3,
        ),
    ]


def log_job(job: SimJob, k: Kind) -> None:
    args = " ".join(job.args.get(k.name, job.args.get("default", [])))
    log(f"(b) {job.key} against {k.name}: oxipp-sim {job.subcommand} {args}")


def run_part_b_shared(k: Kind, sizes: Sizes, args: argparse.Namespace, out: dict) -> None:
    """All of part (b) against one controller of kind `k` (smoke runs)."""
    try:
        with Controller(k, args.ping, args.controller_arg, args.keep) as ctl:
            for job in selected_jobs(sizes, args):
                log_job(job, k)
                out[job.key] = r = run_job(job, k, args.ping, [], args.keep, shared=ctl)
                log(f"    {k.name}: {_brief(r)}")
    except ControllerError as e:
        for job in selected_jobs(sizes, args):
            out.setdefault(job.key, {"ok": False, "error": str(e)})


def selected_jobs(sizes: Sizes, args: argparse.Namespace) -> list[SimJob]:
    wanted = set(args.workloads.split(",")) if args.workloads else None
    return [j for j in sim_jobs(sizes) if wanted is None or j.key in wanted]


def run_part_b(runnable: list[Kind], sizes: Sizes, args: argparse.Namespace, results: dict) -> None:
    """Every simulator workload against every runnable controller, interleaved per workload
    (full runs, fresh controller each time) or controller by controller (smoke runs)."""
    reason = sim_unavailable()
    if reason:
        log(f"(b) skipped: {reason}")
        for k in runnable:
            for job in selected_jobs(sizes, args):
                results[k.name]["workloads"][job.key] = {"error": reason}
    elif sizes.share_controller:
        for k in runnable:
            run_part_b_shared(k, sizes, args, results[k.name]["workloads"])
    else:
        for job in selected_jobs(sizes, args):
            for k in runnable:
                log_job(job, k)
                r = run_job(job, k, args.ping, args.controller_arg, args.keep)
                results[k.name]["workloads"][job.key] = r
                log(f"    {k.name}: {_brief(r)}")


def full_engines_do_not_fit(engines: int) -> bool:
    """Whether `engines` full simulated engines exceed the hard descriptor limit of one
    controller process (it holds every engine connection); the large registration fleet then
    runs heart-only engines."""
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    return FDS_PER_SIM_ENGINE * engines >= hard


def host_notes(sizes: Sizes) -> list[str]:
    """Facts about this machine that bound what a controller can show here."""
    notes = [f"load average at the end: {', '.join(f'{x:.1f}' for x in os.getloadavg())}"]
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    large = max(sizes.b.registration)
    if full_engines_do_not_fit(large):
        notes.append(
            f"RLIMIT_NOFILE hard limit is {hard}: a one-process controller needs about "
            f"{FDS_PER_SIM_ENGINE} descriptors per simulated engine (mux, task, broadcast, "
            f"heartbeat), so the {large:,}-engine registration ran heart-only engines "
            f"({FDS_PER_HEART_ONLY_ENGINE} controller connection each after registering; "
            "registration completes on the first heartbeat and never uses the shell)"
        )
    return notes


def write_results(
    args: argparse.Namespace,
    sizes: Sizes,
    names: list[str],
    results: dict,
    elapsed: float,
    *,
    part_d: dict | None = None,
) -> None:
    """Print the Markdown table (and part (d)'s) and write everything to
    bench-results/<timestamp>.json."""
    rows = build_rows(results, names)
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    flags = " ".join([f"--ping={args.ping}", *args.controller_arg])
    header = (
        f"## oxipp benchmarks {stamp} ({'smoke' if args.smoke else 'full'}, {flags}, "
        f"{os.cpu_count()} CPUs, {elapsed:.0f} s)\n\n"
        + "\n".join(f"* {n}: {results[n]['version'] or 'unavailable'}" for n in names)
        + "\n"
        + "\n".join(f"* note: {n}" for n in host_notes(sizes))
    )
    table = markdown(rows, names, header)
    if part_d is not None:
        table += "\n\n### (d) the whole stack vs Dask and Pool (client_bench.py)\n\n"
        table += part_d.get("markdown") or f"error: {part_d.get('error')}"
    print(table)
    args.out_dir.mkdir(parents=True, exist_ok=True)
    out = args.out_dir / f"{stamp}.json"
    out.write_text(
        json.dumps(
            {
                "timestamp": stamp,
                "mode": "smoke" if args.smoke else "full",
                "elapsed_s": elapsed,
                "argv": sys.argv[1:],
                "ping_ms": args.ping,
                "controller_args": args.controller_arg,
                "host": {
                    "cpus": os.cpu_count(),
                    "platform": platform.platform(),
                    "python": platform.python_version(),
                    "loadavg": os.getloadavg(),
                },
                "sizes": sizes.to_json(),
                "controllers": results,
                "rows": rows,
                "client_bench": part_d,
                "markdown": table,
            },
            indent=2,
            default=str,
        )
    )
    log(f"wrote {out.relative_to(REPO) if out.is_relative_to(REPO) else out}")


def main() -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--smoke", action="store_true", help="tiny sizes (< 60 s), for CI")
    p.add_argument(
        "--only", choices=["a", "b", "c", "d"], help="run only part (a), (b), (c) or (d)"
    )
    p.add_argument(
        "--workloads",
        help="comma-separated subset of part (b): lb,mux,reg_small,reg_large,execute,rss",
    )
    p.add_argument(
        "--controllers",
        default=",".join(CONFIGS),
        help="comma-separated subset of stock (stock controller and engines), oxipp (oxipp "
        "controller, stock engines), oxipp-engines (oxipp controller and engines; part a only)",
    )
    p.add_argument(
        "--ping",
        type=int,
        help="heartbeat period in ms given to both controllers (default 1000; smoke 250)",
    )
    p.add_argument(
        "--controller-arg",
        action="append",
        default=[],
        help="extra flag for both controllers, e.g. --controller-arg=--nodb",
    )
    p.add_argument(
        "--python",
        default=sys.executable,
        help="Python with ipyparallel 9.2 (stock controller, engines and client)",
    )
    p.add_argument(
        "--oxipp-bin", type=Path, default=OXIPP_BIN, help="oxipp executable to benchmark"
    )
    p.add_argument("--out-dir", type=Path, default=REPO / "bench-results")
    p.add_argument("--keep", action="store_true", help="keep the temporary profile dirs/logs")
    args = p.parse_args()
    raise_nofile()

    sizes = SMOKE if args.smoke else FULL
    args.ping = args.ping or sizes.ping_ms
    names = [n.strip() for n in args.controllers.split(",") if n.strip()]
    bad = [n for n in names if n not in CONFIGS]
    if bad or not names:
        p.error(f"unknown controller(s): {bad}")
    kinds = [Kind(n, args.python, args.oxipp_bin.resolve()) for n in names]
    started = time.monotonic()
    results: dict[str, dict] = {}
    for k in kinds:
        reason = k.unavailable()
        results[k.name] = {
            "version": None if reason else k.version(),
            "unavailable": reason,
            "workloads": {},
        }
        if reason:
            log(f"{k.name}: unavailable, its column will be empty: {reason}")
    runnable = [k for k in kinds if not results[k.name]["unavailable"]]

    if args.only in (None, "a"):
        for k in runnable:
            log(f"(a) stock client + {sizes.a.engines} {k.engine_module} against {k.name} ...")
            results[k.name]["workloads"]["client"] = r = run_part_a(k, sizes, args)
            log(f"    {k.name}: {_brief(r)}")
    if args.only in (None, "c"):
        run_part_c([k.name for k in runnable], sizes, args, results)
    if args.only in (None, "b"):
        # the simulator replaces the engines: oxipp-engines would repeat the oxipp column
        run_part_b([k for k in runnable if k.name != "oxipp-engines"], sizes, args, results)

    part_d = None
    if args.only in (None, "d"):
        log("(d) client_bench.py: oxipp, stock, stock client + oxipp cluster, Dask, Pool ...")
        part_d = run_part_d(args)
        log(f"    (d): {part_d.get('error') or 'ok'}")

    write_results(args, sizes, names, results, time.monotonic() - started, part_d=part_d)
    return 0


def _brief(r: dict) -> str:
    if r.get("error"):
        return f"ERROR {str(r['error'])[:300]}"
    keys = (
        "tasks_per_s",
        "registration_s",
        "median_ms",
        "median_s",
        "final_tree_rss_mib",
        "register_s",
    )
    got = {k: round(r[k], 3) for k in keys if isinstance(r.get(k), (int, float))}
    return json.dumps(got) if got else "ok"


if __name__ == "__main__":
    sys.exit(main())
