"""Time from "start a cluster of N engines" to "N engines registered", stock vs oxipp.

* stock: `ipcluster start -n N --daemonize`, then a stock client waits for N engines (ipcluster
  returns before the engines register);
* oxipp: `oxipp start -n N --daemonize`, which returns once all N are registered; a client then
  confirms N engines.

Each run uses a fresh profile directory and is stopped (`ipcluster stop` / `oxipp stop`)
before the next, alternating stock and oxipp. Prints a JSON line with every sample and the
medians. Called by run.py (part c) or on its own:

    .venv/bin/python benches/cluster_start.py --engines 4 --repeats 3
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import ipyparallel as ipp

REPO = Path(__file__).resolve().parent.parent
OXIPP_BIN = REPO / "target" / "release" / "oxipp"


def wait_registered(profile_dir: Path, n: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with ipp.Client(profile_dir=str(profile_dir), timeout=5) as rc:
                rc.wait_for_engines(n, timeout=max(1.0, deadline - time.monotonic()))
                return
        except OSError:  # the connection file is not there yet
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def run(kind: str, n: int, oxipp_bin: Path, timeout: float) -> float:
    profile_dir = Path(tempfile.mkdtemp(prefix=f"oxipp-bench-start-{kind}-"))
    if kind == "stock":
        start = [sys.executable, "-m", "ipyparallel.cluster", "start", f"-n={n}", "--daemonize"]
        stop = [sys.executable, "-m", "ipyparallel.cluster", "stop"]
    else:
        start = [str(oxipp_bin), "start", "-n", str(n), "--daemonize"]
        stop = [str(oxipp_bin), "stop"]
    where = [f"--profile-dir={profile_dir}"]
    # oxipp engines run under this interpreter (the one with oxipp and ipyparallel installed)
    env = dict(os.environ, OXIPP_PYTHON=sys.executable)
    try:
        t = time.perf_counter()
        r = subprocess.run(
            start + where, check=False, capture_output=True, text=True, timeout=timeout, env=env
        )
        if r.returncode != 0:
            raise RuntimeError(f"{' '.join(start[:3])} exited {r.returncode}: {r.stderr[-300:]}")
        wait_registered(profile_dir, n, timeout)
        return time.perf_counter() - t
    finally:
        subprocess.run(stop + where, check=False, capture_output=True, timeout=60)
        shutil.rmtree(profile_dir, ignore_errors=True)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--engines", type=int, default=4)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--timeout", type=float, default=120)
    p.add_argument("--oxipp-bin", type=Path, default=OXIPP_BIN)
    p.add_argument("--kinds", default="stock,oxipp")
    a = p.parse_args()
    samples: dict[str, list[float]] = {k: [] for k in a.kinds.split(",")}
    errors: dict[str, str] = {}
    for _ in range(a.repeats):
        for kind, times in samples.items():
            if kind in errors:
                continue
            try:
                times.append(run(kind, a.engines, a.oxipp_bin, a.timeout))
            except (subprocess.SubprocessError, OSError, TimeoutError, RuntimeError) as e:
                errors[kind] = f"{type(e).__name__}: {e}"[:300]
    out = {
        "engines": a.engines,
        "samples_s": samples,
        "median_s": {k: statistics.median(v) for k, v in samples.items() if v},
        "errors": errors,
    }
    print(json.dumps(out), flush=True)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
