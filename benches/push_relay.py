"""Push throughput of 100 MB arrays through one running cluster, with each process's CPU.

Made to find where big transfers lose time (the controller relays every byte):

    target/release/oxipp start -n 1 --daemonize --profile-dir=/tmp/p \\
        [--engine-cmd="<python> -m oxipp.engine"]
    .venv/bin/python benches/push_relay.py /tmp/p --n 5
    target/release/oxipp stop --profile-dir=/tmp/p

Mixing builds (one build's ``oxipp`` with another venv's engine) tells which process a
regression is in. Prints MB/s and, per process and thread, CPU milliseconds per 100 MB
(from /proc, Linux). Compare builds in one sitting; single numbers on a shared machine are
noise.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import time
from pathlib import Path

import numpy as np
import oxipp as ipp

MB = 1024 * 1024


def cluster_pids(profile_dir: str) -> dict[str, int]:
    """The controller's and engine's pids, found by their command lines."""
    out = subprocess.run(
        ["ps", "-eo", "pid,args"], check=True, capture_output=True, text=True
    ).stdout
    pids = {"client": os.getpid()}
    for line in out.splitlines()[1:]:
        pid, _, args = line.strip().partition(" ")
        if profile_dir not in args or " --supervise" in args:
            continue  # (the `oxipp start` supervisor mentions the engine command too)
        words = args.split()
        if words[1:2] == ["controller"] or "ipyparallel.controller" in args:
            pids["controller"] = int(pid)
        elif "oxipp.engine" in args or "ipyparallel.engine" in args or words[1:2] == ["engine"]:
            pids.setdefault("engine", int(pid))
    return pids


def thread_cpu(pid: int) -> dict[str, float]:
    """CPU seconds per thread (name/tid) of `pid`."""
    tick = os.sysconf("SC_CLK_TCK")
    res = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
            name = (task / "comm").read_text().strip()
        except OSError:
            continue
        res[f"{name}/{task.name}"] = (int(fields[11]) + int(fields[12])) / tick
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("profile_dir")
    ap.add_argument("--n", type=int, default=5, help="pushes (and pulls) measured")
    ap.add_argument("--mb", type=int, default=100, help="array size")
    args = ap.parse_args()
    rc = ipp.Client(profile_dir=args.profile_dir)
    rc.wait_for_engines(1, timeout=20)
    view = rc[rc.ids[0]]
    array = np.ones(args.mb * MB // 8)
    view.push({"a": array}, block=True)  # warm: buffers allocated and touched once
    view.pull("a", block=True)
    pids = cluster_pids(args.profile_dir)
    for what in ("push", "pull"):
        before = {k: thread_cpu(p) for k, p in pids.items()}
        t0 = time.perf_counter()
        for _ in range(args.n):
            if what == "push":
                view.push({"a": array}, block=True)
            else:
                view.pull("a", block=True)
        elapsed = time.perf_counter() - t0
        print(f"{what}: {args.n * args.mb / elapsed:,.0f} MB/s")
        for proc, pid in pids.items():
            for thread, cpu in thread_cpu(pid).items():
                used = cpu - before[proc].get(thread, 0.0)
                if used > 0.005:
                    per = used * 1000 / args.n * 100 / args.mb
                    print(f"  {proc:10s} {thread:28s} {per:7.1f} ms CPU per 100 MB")
    rc.close()


if __name__ == "__main__":
    main()
