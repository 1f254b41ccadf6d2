"""`oxipp.Cluster`, the Python Cluster API over the `oxipp` launcher, with real processes.

Each test uses its own temporary profile directory. The client that checks the engines is
`oxipp.Client` when it exists, else stock `ipyparallel.Client`; `OXIPP_TEST_CLIENT=stock` or
`=oxipp` forces one.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest
from clusters import wait_for
from oxipp.cluster import Cluster, ClusterManager, find_oxipp_bin

ipp = pytest.importorskip("ipyparallel")


def client_class():
    which = os.environ.get("OXIPP_TEST_CLIENT", "")
    if which == "stock":
        return ipp.Client
    if which == "oxipp":
        from oxipp import Client  # type: ignore[attr-defined]

        return Client
    return None  # the Cluster's own choice


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


def all_gone(pids, timeout=10):
    wait_for(lambda: not any(alive(p) for p in pids), timeout, f"pids {pids} to end")


def run_oxipp(*args, check=True):
    env = dict(os.environ, OXIPP_PYTHON=sys.executable)
    r = subprocess.run(
        [find_oxipp_bin(), *args], capture_output=True, text=True, timeout=90, env=env
    )
    if check and r.returncode != 0:
        raise AssertionError(f"oxipp {args} exited {r.returncode}:\n{r.stdout}{r.stderr}")
    return r


@pytest.fixture
def profile(tmp_path, oxipp_bin, monkeypatch):
    """A private profile dir; the release binary is the launcher. Whatever a failing test left
    running there is killed afterwards."""
    monkeypatch.setenv("OXIPP_BIN", str(oxipp_bin))
    p = tmp_path / "profile"
    yield p
    for f in (p / "security").glob("cluster-*.json"):
        d = json.loads(f.read_text())
        cid = f.name[len("cluster-") : -len(".json")]
        pids = [d.get("controller", {}).get("state", {}).get("pid", 0)]
        pids += [e["pid"] for s in d["engines"]["sets"].values() for e in s["engines"].values()]
        run_oxipp("stop", f"--profile-dir={p}", f"--cluster-id={cid}", check=False)
        for pid in pids:
            if pid > 0 and alive(pid):
                os.kill(pid, signal.SIGKILL)


def new_cluster(profile, **kw):
    kw.setdefault("n", 2)
    return Cluster(
        profile_dir=str(profile), controller_args=["--ping=200"], client_class=client_class(), **kw
    )


def recorded_engine_pids(cluster_file):
    d = json.loads(open(cluster_file).read())
    return sorted(e["pid"] for s in d["engines"]["sets"].values() for e in s["engines"].values())


def test_start_connect_restart_signal_stop(profile):
    c = new_cluster(profile)
    rc = c.start_and_connect_sync()
    try:
        assert len(rc.ids) == 2
        pids = sorted(rc[:].apply_sync(os.getpid))
        assert pids == sorted(c.engine_set.pids) == recorded_engine_pids(c.cluster_file)
        assert c.cluster_file == str(profile / "security" / f"cluster-{c.cluster_id}.json")

        # listed by our launcher and by stock ipcluster
        where = f"--profile-dir={profile}"
        listing = run_oxipp("list", where).stdout
        assert f'"{c.cluster_id}"' in listing and "True" in listing, listing
        stock = subprocess.run(
            [sys.executable, "-m", "ipyparallel.cluster", "list", where],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert c.cluster_id in stock.stdout and "True" in stock.stdout, stock.stdout + stock.stderr

        c.restart_engines_sync()
        new = sorted(c.engine_set.pids)
        assert len(new) == 2 and not set(new) & set(pids)
        all_gone(pids)
        wait_for(lambda: len(rc.ids) == 2, 10, "the old engines to unregister")
        assert sorted(rc[:].apply_sync(os.getpid)) == new
        assert recorded_engine_pids(c.cluster_file) == new

        # SIGINT interrupts what runs and leaves the engines up
        ar = rc[:].apply_async(time.sleep, 30)
        time.sleep(1)
        c.signal_engines_sync(signal.SIGINT)
        with pytest.raises(Exception) as info:
            ar.get(timeout=15)
        assert "KeyboardInterrupt" in str(info.value) or "KeyboardInterrupt" in repr(
            getattr(info.value, "elist", "")
        )
        assert all(alive(p) for p in new)
        assert sorted(rc[:].apply_sync(os.getpid)) == new

        # SIGTERM ends them; the launcher drops them from the cluster file
        c.signal_engines_sync(signal.SIGTERM)
        all_gone(new)
        wait_for(lambda: recorded_engine_pids(c.cluster_file) == [], 5, "the file to forget them")
        controller = c.controller.pid
    finally:
        rc.close()
        c.stop_cluster_sync()
    all_gone([controller])
    assert not os.path.exists(c.cluster_file)
    assert not (profile / "pid" / f"oxipp-cluster-{c.cluster_id}.json").exists()
    assert c.controller is None and c.engines == {}
    assert c.cluster_id not in run_oxipp("list", f"--profile-dir={profile}").stdout


def test_sync_context_manager(profile):
    c = new_cluster(profile, n=2)
    with c as rc:
        assert len(rc.ids) == 2
        pids = rc[:].apply_sync(os.getpid)
        assert sorted(pids) == sorted(c.engine_set.pids)
        everything = [*pids, c.controller.pid]
    all_gone(everything)
    assert not os.path.exists(c.cluster_file)


def test_async_context_manager_and_async_methods(profile):
    async def main():
        c = new_cluster(profile, n=1)
        async with c as rc:
            assert len(rc.ids) == 1
            set_id = await c.start_engines(1)
            assert set_id in c.engines and len(c.engines) == 2
            wait_for(lambda: len(rc.ids) == 2, 10, "the added engine")
            await c.stop_engines(set_id)
            assert set_id not in c.engines
            pids = c.engine_set.pids + [c.controller.pid]
        return c, pids

    c, pids = asyncio.run(main())
    all_gone(pids)
    assert not os.path.exists(c.cluster_file)


def test_controller_first_then_engines(profile):
    c = new_cluster(profile, n=None)
    c.start_controller_sync()
    try:
        assert c.controller.running and c.engines == {}
        with pytest.raises(RuntimeError, match="already running"):
            c.start_controller_sync()
        set_id = c.start_engines_sync(2)
        assert c.engines[set_id].n == 2
        rc = c.connect_client_sync()
        try:
            assert len(rc.ids) == 2
        finally:
            rc.close()
    finally:
        c.stop_controller_sync()
    assert c.controller is None and not os.path.exists(c.cluster_file)


def test_from_file_of_a_cluster_started_by_the_cli(profile):
    run_oxipp("start", "-n", "2", "--daemonize", f"--profile-dir={profile}", "--cluster-id=cli")
    c = Cluster.from_file(profile_dir=str(profile), cluster_id="cli")
    assert c.cluster_id == "cli" and c.profile_dir == str(profile)
    assert c.shutdown_atexit is False, "a loaded cluster is not ours to stop at exit"
    assert c.controller is not None and c.controller.running
    assert sorted(c.engine_set.pids) == recorded_engine_pids(c.cluster_file)
    # the same via the path, and via a ClusterManager
    same = Cluster.from_file(str(profile / "security" / "cluster-cli.json"))
    assert same.to_dict() == c.to_dict()
    clusters = ClusterManager().load_clusters(profile_dir=str(profile))
    assert [k.rsplit(":", 1)[1] for k in clusters] == ["cli"]

    rc = c.connect_client_sync()
    try:
        assert sorted(rc[:].apply_sync(os.getpid)) == sorted(c.engine_set.pids)
    finally:
        rc.close()
    pids = c.engine_set.pids + [c.controller.pid]
    c.stop_cluster_sync()
    all_gone(pids)
    assert not (profile / "security" / "cluster-cli.json").exists()


def test_to_dict_round_trip_and_stock_reads_it(profile, tmp_path):
    c = new_cluster(profile, n=1, cluster_id="rt")
    c.start_cluster_sync()
    try:
        d = c.to_dict()
        assert d["cluster"]["class"] == "ipyparallel.cluster.cluster.Cluster"
        assert d["controller"]["state"]["pid"] == c.controller.pid
        back = Cluster.from_dict(json.loads(json.dumps(d)))
        assert back.to_dict() == d
        assert back.engine_set.pids == c.engine_set.pids

        # stock's Cluster understands both what we wrote and what to_dict gives
        copy = tmp_path / "copy.json"
        copy.write_text(json.dumps(d))
        stock = ipp.Cluster.from_file(str(copy), load_profile=False)
        assert stock.controller.pid == c.controller.pid
        assert [e["pid"] for e in stock.engine_set.to_dict()["engines"].values()] == (
            c.engine_set.pids
        )
    finally:
        c.stop_cluster_sync()
    # a dict of processes that ended loads as a stopped cluster
    gone = Cluster.from_dict(d)
    assert gone.controller is None and gone.engines == {} and not gone._is_running()


def test_failed_start_says_why_and_leaves_nothing(profile):
    with pytest.raises(ValueError, match="whitespace"):
        new_cluster(profile, engine_cmd=[sys.executable, "-c", "raise SystemExit(3)"])
    c = new_cluster(profile, n=2, engine_cmd=[sys.executable, "-c", "raise(SystemExit(3))"])
    with pytest.raises(RuntimeError, match="exited with status 3"):
        c.start_cluster_sync()
    c.stop_cluster_sync()
    assert not os.path.exists(c.cluster_file)


def test_only_local_launchers():
    with pytest.raises(ValueError, match="local"):
        Cluster(engines="mpi")
    Cluster(engines="local", controller="Local")


def test_find_oxipp_bin_prefers_the_environment(monkeypatch, oxipp_bin):
    monkeypatch.setenv("OXIPP_BIN", "/some/where/oxipp")
    assert find_oxipp_bin() == "/some/where/oxipp"
    monkeypatch.delenv("OXIPP_BIN")
    monkeypatch.setenv("PATH", "/nonexistent")
    assert os.path.basename(find_oxipp_bin()) == "oxipp"


@pytest.mark.parametrize("shutdown_atexit", [True, False])
def test_shutdown_atexit(profile, shutdown_atexit):
    script = textwrap.dedent(
        f"""
        import json, oxipp.cluster as oc
        c = oc.Cluster(n=1, profile_dir={str(profile)!r}, cluster_id="ax",
                       shutdown_atexit={shutdown_atexit})
        c.start_cluster_sync()
        print(json.dumps(c.engine_set.pids + [c.controller.pid]))
        """
    )
    r = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=90, check=True
    )
    pids = json.loads(r.stdout.strip().splitlines()[-1])
    cluster_file = profile / "security" / "cluster-ax.json"
    if shutdown_atexit:
        all_gone(pids)
        assert not cluster_file.exists()
    else:
        assert all(alive(p) for p in pids) and cluster_file.exists()
        c = Cluster.from_file(str(cluster_file))
        c.stop_cluster_sync()
        all_gone(pids)


def test_console_script_launcher(profile, monkeypatch):
    """In a venv the `oxipp` found on PATH is the Python console script, whose background
    supervisor runs under the base interpreter; the cluster must start all the same."""
    script = os.path.join(os.path.dirname(sys.executable), "oxipp")
    if not os.access(script, os.X_OK):
        pytest.skip("no oxipp console script next to this interpreter")
    monkeypatch.setenv("OXIPP_BIN", script)
    with new_cluster(profile, n=1) as rc:
        assert rc[:].apply_sync(os.getpid) == new_cluster_pids(profile)


def new_cluster_pids(profile):
    (cluster_file,) = (profile / "security").glob("cluster-*.json")
    return recorded_engine_pids(cluster_file)
