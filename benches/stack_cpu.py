"""Where the CPU of one no-op ``apply_sync`` goes: per-thread CPU of the client, the controller
and the engine, from /proc (Linux), divided by the number of calls.

    target/release/oxipp start -n 1 --daemonize --profile-dir=/tmp/p
    .venv/bin/python benches/stack_cpu.py /tmp/p --n 3000
    target/release/oxipp stop --profile-dir=/tmp/p

Threads that used less than 2 µs per call are left out. Numbers on a shared machine move with
its load: compare builds in one run, not across runs.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import time

import oxipp

TICK = os.sysconf("SC_CLK_TCK")


def thread_cpu(pid: int) -> dict[str, float]:
    """CPU seconds (user + system) of each thread of ``pid``, keyed ``name/tid``."""
    out = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/stat") as f:
                st = f.read()
        except FileNotFoundError:
            continue
        name = st[st.index("(") + 1 : st.rindex(")")]
        fields = st[st.rindex(")") + 2 :].split()
        out[f"{name}/{tid}"] = (int(fields[11]) + int(fields[12])) / TICK
    return out


def pid_of(pattern: str) -> int:
    return int(subprocess.check_output(["pgrep", "-f", pattern]).split()[0])


@oxipp.interactive
def noop():
    pass


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("profile_dir", help="profile dir of a running oxipp cluster (1 engine)")
    p.add_argument("--n", type=int, default=3000, help="apply_sync calls measured")
    args = p.parse_args()
    rc = oxipp.Client(profile_dir=args.profile_dir)
    rc.wait_for_engines(1)
    pids = {
        "client": os.getpid(),
        "controller": pid_of(f"oxipp controller --profile-dir={args.profile_dir}"),
        "engine": pid_of(f"oxipp.engine --profile-dir={args.profile_dir}"),
    }
    view = rc[rc.ids[0]]
    for _ in range(300):
        view.apply_sync(noop)
    before = {k: thread_cpu(p) for k, p in pids.items()}
    times = []
    for _ in range(args.n):
        t0 = time.perf_counter()
        view.apply_sync(noop)
        times.append(time.perf_counter() - t0)
    after = {k: thread_cpu(p) for k, p in pids.items()}
    print(f"apply_sync median {statistics.median(times) * 1e6:.0f} µs over {args.n} calls")
    for k in pids:
        total = 0.0
        for thread, cpu in after[k].items():
            per_call = (cpu - before[k].get(thread, 0.0)) / args.n * 1e6
            total += per_call
            if per_call >= 2:
                print(f"  {k:10s} {thread:30s} {per_call:6.0f} µs/call")
        print(f"  {k:10s} {'total':30s} {total:6.0f} µs/call")
    rc.close()


if __name__ == "__main__":
    main()
