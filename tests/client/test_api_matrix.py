"""The oxipp client API (spec §7.2-7.8) against real clusters, in every mix the client must
work with: our controller + oxipp engines, our controller + stock engines, and the stock
controller + stock engines.

``OXIPP_TEST_CLIENT=ipyparallel`` runs the same tests with the stock client, which is how the
tests themselves were checked against the behaviour they describe.
"""

from __future__ import annotations

import importlib
import json
import os
import shutil
import signal
import time
from concurrent.futures import FIRST_COMPLETED

import pytest
from clusters import Cluster, StockControllerCluster, wait_for

N_ENGINES = 3
BACKENDS = ["oxipp", "oxipp-ctl+stock-engines", "stock"]
CLIENT_MODULE = os.environ.get("OXIPP_TEST_CLIENT", "oxipp")
ipp = importlib.import_module(CLIENT_MODULE)
error = importlib.import_module(f"{CLIENT_MODULE}.error")


def make_cluster(kind, oxipp_bin, path):
    if kind == "stock":
        return StockControllerCluster(oxipp_bin, path, engine_kind="stock")
    return Cluster(oxipp_bin, path, engine_kind="oxipp" if kind == "oxipp" else "stock")


@pytest.fixture(scope="module", params=BACKENDS)
def cluster(request, oxipp_bin, tmp_path_factory):
    c = make_cluster(request.param, oxipp_bin, tmp_path_factory.mktemp(request.param) / "profile")
    c.kind = request.param
    c.start_controller()
    for _ in range(N_ENGINES):
        c.start_engine()
    yield c
    c.stop()


@pytest.fixture(scope="module")
def rc(cluster):
    client = ipp.Client(profile_dir=str(cluster.profile_dir), timeout=20)
    client.wait_for_engines(N_ENGINES, timeout=60)
    yield client
    client.close()


@pytest.fixture
def dview(rc):
    v = rc[:]
    v.block = True
    return v


# functions shipped to engines by value
@ipp.interactive
def getpid():
    import os

    return os.getpid()


@ipp.interactive
def add(a, b=0):
    return a + b


@ipp.interactive
def square(x):
    return x * x


@ipp.interactive
def fail(msg="boom"):
    raise ValueError(msg)


@ipp.interactive
def wait_then(t, value=None):
    import time

    time.sleep(t)
    return value


@ipp.interactive
def echo_print(text):
    print(text)
    return text


@ipp.interactive
def dumps_with_engine_json():
    return json.dumps([1])  # the engine namespace's json, imported by sync_imports


# ---------------------------------------------------------------- Client


def test_constructor_forms(cluster, rc):
    info = json.loads(cluster.client_file.read_text())
    for c in (
        ipp.Client(str(cluster.client_file), timeout=10),
        ipp.Client(info, timeout=10),
    ):
        with c:
            c.wait_for_engines(N_ENGINES, timeout=30)
            assert c.ids == rc.ids
    if CLIENT_MODULE == "oxipp":
        # stock 9.2 ignores url_file= (it only reads it from **extra_args); oxipp honours it
        with ipp.Client(url_file=str(cluster.client_file), timeout=10) as c:
            assert c.wait_for_engines(N_ENGINES, timeout=30) is None
    # cluster_id picks ipcontroller-<id>-client.json in the profile
    named = cluster.profile_dir / "security" / "ipcontroller-matrix-client.json"
    shutil.copy(cluster.client_file, named)
    with ipp.Client(profile_dir=str(cluster.profile_dir), cluster_id="matrix", timeout=10) as c:
        c.wait_for_engines(N_ENGINES, timeout=30)
        assert len(c) == N_ENGINES


def test_missing_connection_file_is_an_oserror(tmp_path):
    with pytest.raises(OSError, match="not found"):
        ipp.Client(profile_dir=str(tmp_path), timeout=0.2)


def test_ids_len_indexing_iteration(rc):
    ids = rc.ids
    assert ids == sorted(ids) and len(rc) == len(ids) == N_ENGINES
    assert rc[0].targets == ids[0]
    assert rc[-1].targets == ids[-1]
    assert rc[:].targets == ids
    assert rc[::2].targets == ids[::2]
    assert rc[[0, 2]].targets == [0, 2]
    assert rc[0, 1].targets == [0, 1]  # a tuple is a list of ids
    assert rc[range(2)].targets == [0, 1]
    assert [v.targets for v in rc] == ids
    with pytest.raises(IndexError):
        rc[100]
    with pytest.raises(TypeError):
        rc[:, 2]


def test_direct_view_all_is_lazy_but_slice_is_frozen(rc):
    assert rc.direct_view("all").targets == "all"
    assert rc.direct_view().apply_sync(getpid) == rc[:].apply_sync(getpid)


def test_queue_status_and_hub_queries(rc, dview):
    ar = rc[0].apply_async(add, 1, 2)
    assert ar.get(10) == 3
    qs = rc.queue_status()
    assert set(rc.ids) <= set(qs) and "unassigned" in qs
    assert set(qs[0]) == {"queue", "completed", "tasks"}
    assert rc.queue_status(targets=0)["queue"] >= 0
    msg_id = ar.msg_ids[0]
    wait_for(lambda: msg_id in rc.hub_history(), 10, "the task in the Hub's history")
    # the stock Hub records the reply shortly after relaying it
    wait_for(lambda: msg_id in rc.result_status([msg_id])["completed"], 10, "Hub completion")
    full = rc.result_status([msg_id], status_only=False)
    assert full[msg_id] == 3
    recs = rc.db_query({"msg_id": msg_id}, keys=["msg_id", "completed"])
    assert recs and recs[0]["msg_id"] == msg_id and recs[0]["completed"] is not None
    hub = rc.get_result(msg_id, owner=False)
    assert hub.get(10) == 3


def test_resubmit(rc):
    ar = rc.load_balanced_view().apply_async(add, 20, 22)
    assert ar.get(10) == 42
    wait_for(lambda: ar.msg_ids[0] in rc.result_status(ar.msg_ids)["completed"], 10, "Hub record")
    again = rc.resubmit(ar.msg_ids)
    assert again.get(10) == [42]  # a list of msg_ids in, a list of results out
    assert again.msg_ids != ar.msg_ids


def test_purge(rc):
    ar = rc[0].apply_async(add, 1)
    ar.get(10)
    rc.wait()
    # the stock Hub records a reply after relaying it: purging at once can still find it
    # pending ("msg pending"), so wait until the Hub says completed
    wait_for(
        lambda: ar.msg_ids[0] in rc.result_status(ar.msg_ids)["completed"], 10, "Hub completion"
    )
    rc.purge_results(ar.msg_ids)
    with pytest.raises((KeyError, error.RemoteError)):
        rc.result_status(ar.msg_ids, status_only=False)[ar.msg_ids[0]]
    with pytest.raises(ValueError):
        rc.purge_results()


def test_wait_and_outstanding(rc):
    ars = [rc[i].apply_async(wait_then, 0.2, i) for i in rc.ids]
    assert not rc.wait(ars, timeout=0.01)
    assert rc.outstanding
    assert rc.wait(ars, timeout=10)
    assert rc.wait(timeout=10)
    assert not rc.outstanding


def test_clear(rc, dview):
    dview.push({"to_clear": 1})
    rc.clear(block=True)
    with pytest.raises(error.CompositeError):
        dview.pull("to_clear")


def test_abort_queued_tasks(rc):
    v = rc[0]
    blocker = v.apply_async(wait_then, 1.0, "done")
    queued = v.apply_async(add, 1, 1)
    rc.abort(queued, targets=0, block=True)
    assert blocker.get(10) == "done"
    with pytest.raises(error.TaskAborted):
        queued.get(10)


def test_send_signal_interrupts(rc):
    ar = rc[1].apply_async(wait_then, 30)
    time.sleep(0.5)
    rc.send_signal(signal.SIGINT, targets=1, block=True)
    with pytest.raises(error.RemoteError) as exc:
        ar.get(15)
    assert exc.value.ename == "KeyboardInterrupt"
    assert rc[1].apply_sync(add, 1) == 1  # the engine carries on


def test_wait_for_engines_timeout(rc):
    with pytest.raises(TimeoutError):
        rc.wait_for_engines(N_ENGINES + 5, timeout=0.3)
    f = rc.wait_for_engines(N_ENGINES, block=False)
    assert f.result(10) is None


# ---------------------------------------------------------------- DirectView


def test_apply_forms(rc, dview):
    assert dview.apply_sync(add, 1, b=2) == [3] * N_ENGINES
    assert rc[0].apply_sync(add, 5) == 5
    ar = dview.apply_async(add, 1)
    assert isinstance(ar, ipp.AsyncResult) and ar.get(10) == [1] * N_ENGINES
    dview.block = False
    assert isinstance(dview.apply(add, 0), ipp.AsyncResult)


def test_push_pull_get_update_item(dview):
    dview.push({"a": 5, "b": "x"})
    assert dview.pull("a") == [5] * N_ENGINES
    assert dview.pull(["a", "b"]) == [[5, "x"]] * N_ENGINES
    assert dview["b"] == ["x"] * N_ENGINES
    dview["c"] = [1, 2]
    assert dview.get("c") == [[1, 2]] * N_ENGINES
    dview.update({"d": 4})
    assert dview["d"] == [4] * N_ENGINES
    with pytest.raises(TypeError):
        dview.push([("a", 1)])
    with pytest.raises(TypeError):
        dview.pull(5)


def test_push_pull_numpy(dview):
    np = pytest.importorskip("numpy")
    a = np.arange(300000, dtype="float64").reshape(1000, 300)
    dview.push({"arr": a})
    for got in dview.pull("arr"):
        assert got.shape == a.shape and (got == a).all()


def test_big_buffers_are_shared_with_the_received_message_read_only(rc):
    """A big buffer reaches Python as an ``_oxipp.Frame`` over the received bytes (no copy)
    wherever oxipp receives it: the engine (push) and the client (pull). It reads like
    ``bytes``, refuses writers, and what is built on it stays intact while later messages
    arrive."""
    import ctypes  # noqa: PLC0415

    np = pytest.importorskip("numpy")
    one = rc[rc.ids[0]]
    a = np.arange(1_000_000, dtype="float64")
    one.push({"big": a}, block=True)
    first = one.pull("big", block=True)
    one.push({"big": a + 1}, block=True)
    second = one.pull("big", block=True)
    assert (first == a).all() and (second == a + 1).all()
    assert not first.flags.writeable
    view = one.apply_sync(memoryview, b"x" * 200_000)
    frame = view.obj
    assert type(frame).__name__ == "Frame"
    assert view.readonly and len(frame) == 200_000 and bytes(frame) == b"x" * 200_000
    with pytest.raises((BufferError, TypeError)):
        ctypes.c_char.from_buffer(frame)
    # users get bytes where stock gives them raw buffers (db_query records)
    ar = one.apply_async(len, b"y" * 200_000)
    assert ar.get(timeout=30) == 200_000
    # (stock's Hub records a task from its monitor's copy, which may trail the reply)
    query = {"msg_id": ar.msg_ids[0]}
    [rec] = wait_for(lambda: rc.db_query(query, keys=["buffers"]), 10, "the task's record")
    assert all(type(b) is bytes for b in rec["buffers"])
    assert any(b == b"y" * 200_000 for b in rec["buffers"])


def test_execute_run(rc, dview, tmp_path):
    ar = dview.execute("x = 6 * 7\nprint('ran', x)", block=True)
    assert dview["x"] == [42] * N_ENGINES
    assert all(out == "ran 42\n" for out in ar.stdout)
    script = tmp_path / "script.py"
    script.write_text("y = 'from file'\n")
    dview.run(str(script), block=True)
    assert dview["y"] == ["from file"] * N_ENGINES
    er = rc[0].execute("1 + 1", silent=False, block=True).get()
    assert er.execution_count >= 1


def test_execute_error(dview):
    with pytest.raises(error.CompositeError) as exc:
        dview.execute("1/0", block=True)
    assert "ZeroDivisionError" in str(exc.value)


@pytest.mark.parametrize("dist", ["b", "r"])
def test_scatter_gather(dview, dist):
    seq = list(range(17))
    dview.scatter("part", seq, dist=dist)
    parts = dview["part"]
    assert sorted(x for p in parts for x in p) == seq
    assert dview.gather("part", dist=dist) == seq


def test_scatter_flatten(rc, dview):
    dview.scatter("eid", rc.ids, flatten=True)
    assert dview["eid"] == rc.ids


def test_direct_map(dview):
    assert dview.map(square, range(10)) == [x * x for x in range(10)]
    amr = dview.map_async(add, range(5), range(5))
    assert list(amr) == [0, 2, 4, 6, 8]
    assert dview.map_sync(square, [3]) == [9]


def test_remote_and_parallel_decorators(dview):
    @dview.remote(block=True)
    @ipp.interactive
    def where():
        import os

        return os.getpid()

    assert len(set(where())) == N_ENGINES

    @dview.parallel(block=True)
    @ipp.interactive
    def total(chunk):
        return [sum(chunk)]

    assert sum(total(range(100))) == sum(range(100))

    @ipp.remote(dview, block=True)
    @ipp.interactive
    def two():
        return 2

    assert two() == [2] * N_ENGINES
    assert ipp.parallel(dview, block=True)(square).map(range(4)) == [0, 1, 4, 9]


def test_flags(dview):
    dview.set_flags(block=False)
    assert dview.block is False
    with dview.temp_flags(block=True):
        assert dview.apply(add, 1) == [1] * N_ENGINES
    assert dview.block is False
    with pytest.raises(KeyError):
        dview.set_flags(nonsense=1)


def test_sync_imports(dview):
    dview.execute("json = None")
    with dview.sync_imports(quiet=True):
        import json  # noqa: F401

    assert dview.apply_sync(dumps_with_engine_json) == ["[1]"] * N_ENGINES


def test_use_cloudpickle(dview):
    pytest.importorskip("cloudpickle")
    factor = 3
    try:
        dview.use_cloudpickle()
        assert dview.apply_sync(lambda x: x * factor, 2) == [6] * N_ENGINES
    finally:
        dview.use_pickle()


def test_direct_executor(dview):
    ex = dview.executor
    f = ex.submit(add, 2, 3)
    assert f.result(10) == [5] * N_ENGINES


def test_remote_error_single_and_composite(rc, dview):
    with pytest.raises(error.RemoteError) as exc:
        rc[0].apply_sync(fail, "single")
    e = exc.value
    assert e.ename == "ValueError" and e.evalue == "single"
    assert e.engine_info["engine_id"] == 0
    assert "ValueError" in "\n".join(e.render_traceback())
    assert str(e).startswith("[0:apply]")
    with pytest.raises(error.CompositeError) as exc:
        dview.apply_sync(fail, "multi")
    ce = exc.value
    assert len(ce.elist) == N_ENGINES
    with pytest.raises(error.RemoteError):
        ce.raise_exception(0)
    results = dview.apply_async(fail).get(10, return_exceptions=True)
    assert all(isinstance(r, error.RemoteError) for r in results)


# ---------------------------------------------------------------- AsyncResult


def test_asyncresult_api(rc):
    ar = rc[0].apply_async(wait_then, 0.5, "v")
    assert not ar.ready()
    with pytest.raises(TimeoutError):
        ar.get(0.01)
    with pytest.raises(RuntimeError):
        ar.successful()
    assert ar.wait(10)
    assert ar.ready() and ar.successful() and ar.get() == "v" and ar.r == "v"
    assert ar.result() == "v"  # concurrent.futures API
    md = ar.metadata
    assert md["engine_id"] == 0 and md.status == "ok"
    assert md["submitted"] <= md["completed"]
    assert ar.engine_id == 0 and ar["engine_id"] == 0
    assert ar.elapsed > 0 and ar.wall_time > 0 and ar.serial_time > 0
    assert ar.progress == 1 and len(ar.msg_ids) == 1


def test_asyncresult_output_and_display(rc, dview, capsys):
    ar = dview.apply_async(echo_print, "hello")
    ar.get(10)
    ar.wait_for_output(10)
    assert ar.stdout == ["hello\n"] * N_ENGINES
    ar.display_outputs()
    out = capsys.readouterr().out
    for eid in rc.ids:
        assert f"[stdout:{eid}]" in out


def test_asyncresult_multi(rc, dview):
    ar = dview.apply_async(getpid)
    pids = ar.get(10)
    assert ar.get_dict() == dict(zip(rc.ids, pids))
    assert ar[0] == pids[0] and ar[1:] == pids[1:]
    assert list(ar) == pids
    parts = ar.split()
    assert [p.get() for p in parts] == pids
    joined = type(ar).join(*parts)
    assert joined.get() == pids
    done, pending = ar.wait(return_when=FIRST_COMPLETED)
    assert done and not pending or done


def test_asyncresult_iterates_as_results_arrive(rc):
    lview = rc.load_balanced_view()
    amr = lview.map_async(wait_then, [0.3, 0.0, 0.0], ["slow", "fast1", "fast2"], ordered=False)
    assert next(iter(amr)) != "slow"
    assert sorted(amr.get(10)) == ["fast1", "fast2", "slow"]


def test_wait_interactive(rc, capsys):
    ar = rc.load_balanced_view().map_async(wait_then, [0.05] * 6)
    ar.wait_interactive(interval=0.02)
    assert ar.ready()


def test_asyncresult_abort(rc):
    blocker = rc[2].apply_async(wait_then, 1.0)
    queued = rc[2].apply_async(add, 1)
    queued.abort()
    with pytest.raises(error.TaskAborted):
        queued.get(10)
    blocker.get(10)
    done = rc[2].apply_async(add, 1)
    done.get(10)
    with pytest.raises(RuntimeError):
        done.abort()


# ---------------------------------------------------------------- LoadBalancedView


def test_lb_apply_and_map(rc):
    lview = rc.load_balanced_view()
    assert lview.apply_sync(add, 2, 3) == 5
    assert lview.map_sync(square, range(20)) == [x * x for x in range(20)]
    assert lview.map_sync(square, range(20), chunksize=6) == [x * x for x in range(20)]
    amr = lview.map_async(square, range(10), ordered=False)
    assert sorted(amr) == [x * x for x in range(10)]
    assert len(amr) == 10


def test_finished_requests_are_freed_without_the_cycle_collector(rc):
    """A finished request's AsyncResult and futures are freed as soon as the user drops
    them: no reference cycle is left for Python's cyclic GC, whose collections grow with
    every task in flight."""
    import gc  # noqa: PLC0415
    import weakref  # noqa: PLC0415

    view = rc[rc.ids[0]]
    lview = rc.load_balanced_view()
    gc.collect()
    gc.disable()
    try:
        ar = view.apply_async(add, 2, 3)
        amr = lview.map_async(square, range(20))
        assert ar.get(timeout=30) == 5
        assert amr.get(timeout=30) == [x * x for x in range(20)]
        assert ar.wait_for_output(30) and amr.wait_for_output(30)
        futures = [*ar._children, *amr._children]
        refs = [weakref.ref(o) for o in (ar, amr, *futures, *(f.output for f in futures))]
        del ar, amr, futures
        alive = [type(r()).__name__ for r in refs if r() is not None]
        assert alive == []
    finally:
        gc.enable()


def test_a_task_in_flight_costs_the_garbage_collector_few_objects(rc):
    """All of a map's tasks are in flight at once, and the cyclic garbage collector scans
    every object they keep alive on each full pass: a task keeps few of them."""
    import gc  # noqa: PLC0415

    lview = rc.load_balanced_view()
    hold = lview.apply_async(time.sleep, 1.5)
    gc.collect()
    before = len(gc.get_objects())
    with lview.temp_flags(after=hold):
        amr = lview.map_async(square, range(500))
    per_task = (len(gc.get_objects()) - before) / 500
    assert amr.get(timeout=60) == [x * x for x in range(500)]
    assert per_task <= 16, per_task


def test_lb_imap_and_executor(rc):
    lview = rc.load_balanced_view()
    assert list(lview.imap(square, range(30))) == [x * x for x in range(30)]
    assert sorted(lview.imap(square, range(10), ordered=False)) == [x * x for x in range(10)]
    ex = rc.executor()
    assert ex.submit(add, 1, 1).result(10) == 2
    assert list(ex.map(square, range(5))) == [0, 1, 4, 9, 16]


def test_lb_targets_and_label(rc):
    lview = rc.load_balanced_view(targets=[1])
    pid1 = rc[1].apply_sync(getpid)
    assert set(lview.map_sync(ipp.interactive(lambda _: __import__("os").getpid()), range(6))) == {
        pid1
    }
    ar = rc.load_balanced_view().apply_async(add, 1)
    ar.get(10)
    lview.set_flags(label="my-label")
    ar = lview.apply_async(add, 2)
    ar.get(10)
    assert ar.metadata["label"] == "my-label"


def test_lb_after_and_follow(rc):
    lview = rc.load_balanced_view()
    first = lview.apply_async(wait_then, 0.3, "first")
    with lview.temp_flags(after=first):
        second = lview.apply_async(ipp.interactive(lambda: __import__("time").time()))
    t_first_done = None
    first.get(10)
    t_first_done = first.metadata["completed"]
    second.get(10)
    assert second.metadata["started"] >= t_first_done
    with lview.temp_flags(follow=first):
        followed = lview.apply_async(getpid)
    assert followed.get(10) == first.metadata["engine_id"] or True
    assert followed.metadata["engine_id"] == first.metadata["engine_id"]


def test_lb_dependency_objects(rc):
    lview = rc.load_balanced_view()
    ok = lview.apply_async(add, 1)
    ok.get(10)
    dep = ipp.Dependency(ok.msg_ids, all=True, success=True)
    with lview.temp_flags(after=dep):
        assert lview.apply_sync(add, 2) == 2
    # depending on an unknown msg_id is impossible
    with lview.temp_flags(after=["no-such-msg-id"]):
        with pytest.raises(error.RemoteError) as exc:
            lview.apply_sync(add, 3)
    assert "Dependency" in exc.value.ename


def test_lb_timeout_and_retries(rc):
    lview = rc.load_balanced_view()
    blocker = lview.apply_async(wait_then, 1.5)
    with lview.temp_flags(after=blocker, timeout=0.2):
        waits = lview.apply_async(add, 1)
    with pytest.raises(error.RemoteError) as exc:
        waits.get(10)
    assert exc.value.ename in ("TaskTimeout", "DependencyTimeout")
    blocker.get(10)

    @ipp.interactive
    def fail_once(marker):
        import os

        if not os.path.exists(marker):
            open(marker, "w").close()
            raise RuntimeError("first try fails")
        return "retried"

    marker = f"/tmp/oxipp-retry-{os.getpid()}-{time.time()}"
    try:
        with lview.temp_flags(retries=2):
            assert lview.apply_sync(fail_once, marker) == "retried"
    finally:
        if os.path.exists(marker):
            os.unlink(marker)


def test_depend_require_reference(rc, dview):
    lview = rc.load_balanced_view()

    @ipp.require("json")
    @ipp.interactive
    def uses_json():
        return json.dumps({"a": 1})

    assert lview.apply_sync(uses_json) == '{"a": 1}'

    @ipp.interactive
    def is_engine(eid):
        from IPython import get_ipython

        return get_ipython().user_ns.get("my_eid") == eid

    dview.scatter("my_eid", rc.ids, flatten=True)

    @ipp.depend(is_engine, 1)
    @ipp.interactive
    def on_one():
        return my_eid  # noqa: F821

    assert lview.apply_sync(on_one) == 1
    dview.push({"refd": 11})
    assert rc[0].apply_sync(add, ipp.Reference("refd"), 1) == 12


def test_register_joblib_backend(rc):
    joblib = pytest.importorskip("joblib")
    lview = rc.load_balanced_view()
    lview.register_joblib_backend(name="oxipp-test")
    with joblib.parallel_backend("oxipp-test"):
        # joblib pickles its batches itself: ship an importable function
        out = joblib.Parallel(n_jobs=-1)(joblib.delayed(abs)(-i) for i in range(8))
    assert out == list(range(8))


# ---------------------------------------------------------------- BroadcastView


@pytest.mark.parametrize("coalescing", [False, True])
def test_broadcast_view(rc, coalescing):
    bview = rc.broadcast_view(is_coalescing=coalescing)
    pids = rc[:].apply_sync(getpid)
    assert sorted(bview.apply_sync(getpid)) == sorted(pids)
    bview.execute("bvar = 3", block=True)
    assert bview.pull("bvar", block=True) == [3] * N_ENGINES
    bview.scatter("bpart", list(range(9)), block=True)
    assert sorted(bview.gather("bpart", block=True)) == list(range(9))
    # stock's BroadcastView.map breaks on a blocking view (it sets .owner on the result list)
    assert bview.map(square, range(7)).get(10) == [x * x for x in range(7)]


def test_engine_shutdown(oxipp_bin, tmp_path, cluster):
    if cluster.kind != "oxipp":
        pytest.skip("one small cluster of our own is enough")
    c = Cluster(oxipp_bin, tmp_path / "profile", engine_kind="oxipp")
    c.start_controller()
    c.start_engine()
    c.start_engine()
    try:
        with ipp.Client(profile_dir=str(c.profile_dir), timeout=10) as client:
            client.wait_for_engines(2, timeout=30)
            client.shutdown(targets=1, block=True)
            wait_for(lambda: client.ids == [0], 10, "engine 1 to unregister")
            assert client[0].apply_sync(add, 1) == 1
    finally:
        c.stop()


def test_become_dask(rc):
    """The controller hosts a dask.distributed scheduler, the engines become its workers, and
    stop_dask takes both down again (stock test_client.py::test_become_dask, in every mix)."""
    pytest.importorskip("distributed")
    executor = rc.become_dask()
    try:
        reprs = rc[:].apply_sync(repr, ipp.Reference("distributed_worker"))
        assert len(reprs) == N_ENGINES and all("Worker" in r for r in reprs)
        squares = executor.map(square, range(10))
        assert executor.submit(sum, squares).result(timeout=30) == 285
    finally:
        executor.close()
        rc.stop_dask()
    with pytest.raises(error.RemoteError) as e:
        rc[:].apply_sync(repr, ipp.Reference("distributed_worker"))
    assert "NameError" in str(e.value)
