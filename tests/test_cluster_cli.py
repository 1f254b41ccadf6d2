"""`oxipp start/list/engines/stop/clean` with real processes, on temporary profile dirs.

Clusters run with oxipp engines (the default command) and with stock engines
(`--engine-cmd`), and a stock client checks that what `oxipp start` reported is true.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from clusters import ENGINE_COMMANDS, wait_for

ipp = pytest.importorskip("ipyparallel")

ENGINE_CMDS = {kind: " ".join(cmd) for kind, cmd in ENGINE_COMMANDS.items()}


def oxipp(bin_, *args, timeout=90, check=True):
    env = dict(os.environ, OXIPP_PYTHON=sys.executable)
    r = subprocess.run([str(bin_), *args], capture_output=True, text=True, timeout=timeout, env=env)
    if check and r.returncode != 0:
        raise AssertionError(f"oxipp {' '.join(args)} exited {r.returncode}:\n{r.stdout}{r.stderr}")
    return r


def cluster_file(profile):
    return json.loads((profile / "security" / "cluster-.json").read_text())


def all_pids(profile):
    d = cluster_file(profile)
    sidecar = profile / "pid" / "oxipp-cluster-.json"
    pids = [json.loads(sidecar.read_text())["supervisor_pid"], d["controller"]["state"]["pid"]]
    for s in d["engines"]["sets"].values():
        pids += [e["pid"] for e in s["engines"].values()]
    return pids


def alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.fixture
def profile(tmp_path, oxipp_bin):
    p = tmp_path / "profile"
    yield p
    # whatever a failed test left running
    if (p / "security" / "cluster-.json").exists():
        pids = all_pids(p)
        oxipp(oxipp_bin, "stop", f"--profile-dir={p}", check=False)
        for pid in pids:
            if alive(pid):
                os.kill(pid, signal.SIGKILL)


@pytest.mark.parametrize("engines", ["oxipp", "stock"])
def test_start_list_add_stop(oxipp_bin, profile, engines):
    where = f"--profile-dir={profile}"
    r = oxipp(
        oxipp_bin, "start", "-n", "2", "--daemonize", where, "--engine-cmd", ENGINE_CMDS[engines]
    )
    assert "engines registered: 2/2" in r.stdout and "cluster ready" in r.stdout, r.stdout

    listing = oxipp(oxipp_bin, "list", where).stdout.splitlines()
    assert len(listing) == 2 and str(profile) in listing[1] and "True" in listing[1], listing
    # stock's ipcluster reads our cluster file too
    stock = subprocess.run(
        [sys.executable, "-m", "ipyparallel.cluster", "list", where],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert str(profile) in stock.stdout and "True" in stock.stdout, stock.stdout + stock.stderr

    with ipp.Client(profile_dir=str(profile), timeout=10) as rc:
        assert len(rc.ids) == 2, "start returned before every engine registered"
        recorded = [
            e["pid"]
            for s in cluster_file(profile)["engines"]["sets"].values()
            for e in s["engines"].values()
        ]
        assert sorted(rc[:].apply_sync(os.getpid)) == sorted(recorded)
        oxipp(oxipp_bin, "engines", "-n", "1", where)
        assert len(rc.ids) == 3 or wait_for(lambda: len(rc.ids) == 3, 5, "a third engine")

    pids = all_pids(profile)
    assert len(pids) == 5
    oxipp(oxipp_bin, "stop", where)
    assert not (profile / "security" / "cluster-.json").exists()
    wait_for(lambda: not any(alive(p) for p in pids), 5, "every process of the cluster to end")


def test_a_killed_engine_is_reported(oxipp_bin, profile):
    where = f"--profile-dir={profile}"
    oxipp(oxipp_bin, "start", "-n", "2", "--daemonize", where)
    sets = cluster_file(profile)["engines"]["sets"]
    victim = next(iter(next(iter(sets.values()))["engines"].values()))["pid"]
    os.kill(victim, signal.SIGKILL)
    log = profile / "log" / "oxipp-cluster-.log"
    wait_for(lambda: f"engine pid {victim} killed by signal 9" in log.read_text(), 5, "the report")
    listing = oxipp(oxipp_bin, "list", where).stdout.splitlines()
    assert listing[1].split()[3] == "1", listing
    oxipp(oxipp_bin, "stop", where)


def test_start_fails_fast_with_the_reason_when_engines_cannot_start(oxipp_bin, profile):
    t = time.monotonic()
    r = oxipp(
        oxipp_bin,
        "start",
        "-n",
        "2",
        "--daemonize",
        f"--profile-dir={profile}",
        "--engine-cmd",
        f"{sys.executable} -c raise(SystemExit(3))",
        check=False,
    )
    assert r.returncode == 1
    assert "exited before all registered" in r.stderr and "exited with status 3" in r.stderr
    assert time.monotonic() - t < 20, "no waiting for the 60 s engine timeout"
    oxipp(oxipp_bin, "stop", f"--profile-dir={profile}", check=False)


def test_stop_all_with_nothing_running_succeeds_and_clean_removes_stale_files(oxipp_bin, profile):
    where = f"--profile-dir={profile}"
    oxipp(oxipp_bin, "stop", "--all", where)
    assert oxipp(oxipp_bin, "stop", where, check=False).returncode == 1, "no such cluster"
    oxipp(oxipp_bin, "start", "-n", "1", "--daemonize", where)
    # a dead cluster's leftovers: cluster file with dead pids, connection files, logs
    stale = profile / "security" / "cluster-old.json"
    stale.write_text(
        json.dumps({**cluster_file(profile), "oxipp": {"supervisor_pid": 0}}).replace(
            str(cluster_file(profile)["controller"]["state"]["pid"]), "999999"
        )
    )
    (profile / "security" / "ipcontroller-old-client.json").write_text("{}")
    (profile / "log" / "old.log").write_text("x")
    oxipp(oxipp_bin, "clean", where)
    assert not stale.exists()
    assert not (profile / "security" / "ipcontroller-old-client.json").exists()
    assert not (profile / "log" / "old.log").exists()
    # the running cluster keeps its files and keeps working
    assert (profile / "security" / "cluster-.json").exists()
    assert (profile / "security" / "ipcontroller-client.json").exists()
    with ipp.Client(profile_dir=str(profile), timeout=10) as rc:
        assert rc[:].apply_sync(os.getpid) == [cluster_engine_pid(profile)]
    oxipp(oxipp_bin, "stop", where)


def cluster_engine_pid(profile):
    [pid] = [
        e["pid"]
        for s in cluster_file(profile)["engines"]["sets"].values()
        for e in s["engines"].values()
    ]
    return pid


def test_console_script_daemonizes_with_its_own_interpreter(profile):
    """`oxipp start --daemonize` through the venv's console script (a Python entry point) must
    re-run itself with the venv interpreter, not the base Python the venv symlink resolves to
    (which cannot import oxipp). No OXIPP_PYTHON or PYTHONPATH help here."""
    script = Path(sys.executable).parent / "oxipp"
    if not script.exists():
        pytest.skip("no oxipp console script next to this interpreter")
    env = {k: v for k, v in os.environ.items() if k not in ("OXIPP_PYTHON", "PYTHONPATH")}
    where = f"--profile-dir={profile}"
    r = subprocess.run(
        [str(script), "start", "-n", "1", "--daemonize", where],
        capture_output=True,
        text=True,
        timeout=90,
        env=env,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    assert "cluster ready: 1 engines" in r.stdout + r.stderr
    r = subprocess.run(
        [str(script), "stop", where], capture_output=True, text=True, timeout=60, env=env
    )
    assert r.returncode == 0, r.stdout + r.stderr
