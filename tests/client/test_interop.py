"""Interoperation: the client under test next to stock ipyparallel's client on one cluster
(shared namespaces, Hub records, cross-client dependencies and aborts, membership news), its
serialization against stock's, and the public namespace and error classes (spec §7.1, §7.8)
that ``import oxipp as ipp`` code relies on."""

from __future__ import annotations

import importlib
import os

import ipyparallel as stock
import pytest
from clusters import wait_for

N_ENGINES = 4  # as many as conftest's shared clusters have
CLIENT_MODULE = os.environ.get("OXIPP_TEST_CLIENT", "oxipp")
interactive = importlib.import_module(CLIENT_MODULE).interactive

TOP_LEVEL = """Client Cluster ClusterManager DirectView LoadBalancedView BroadcastView ViewExecutor
AsyncResult AsyncMapResult AsyncHubResult RemoteFunction ParallelFunction remote parallel
Dependency depend dependent require Reference PrePickled interactive can uncan can_map
uncan_map serialize_object deserialize_object pack_apply_message unpack_apply_message
use_pickle use_cloudpickle use_dill bind_kernel register_joblib_backend wrap_exception
unwrap_exception collect_exceptions ALL_COMPLETED FIRST_COMPLETED FIRST_EXCEPTION
__version__ version_info""".split()

# (class, its base) as spec §7.8 lays out ipyparallel.error
ERROR_TREE = [
    ("IPythonError", Exception),
    ("KernelError", "IPythonError"),
    ("EngineError", "KernelError"),
    ("NoEnginesRegistered", "KernelError"),
    ("TaskAborted", "KernelError"),
    ("TaskTimeout", "KernelError"),
    ("UnmetDependency", "KernelError"),
    ("ImpossibleDependency", "UnmetDependency"),
    ("DependencyTimeout", "ImpossibleDependency"),
    ("InvalidDependency", "ImpossibleDependency"),
    ("RemoteError", "KernelError"),
    ("CompositeError", "RemoteError"),
    ("AlreadyDisplayedError", "RemoteError"),
    ("TaskRejectError", "KernelError"),
]


@interactive
def add(a, b=0):
    return a + b


@interactive
def sleep_then(t, value=None):
    import sys
    import time

    print("running", flush=True)
    sys.stdout.flush()
    time.sleep(t)
    return value


@pytest.fixture(scope="module")
def stock_rc(cluster, rc):
    """Stock ipyparallel's client on the same cluster as `rc`."""
    c = stock.Client(profile_dir=str(cluster.profile_dir), timeout=10)
    c.wait_for_engines(N_ENGINES, timeout=60)
    yield c
    c.close()


# ---------------------------------------------------------------- the public surface


def test_top_level_namespace(ipp):
    missing = [name for name in TOP_LEVEL if not hasattr(ipp, name)]
    assert missing == []
    assert ipp.FIRST_COMPLETED == stock.FIRST_COMPLETED
    assert ipp.ALL_COMPLETED == stock.ALL_COMPLETED
    assert ipp.FIRST_EXCEPTION == stock.FIRST_EXCEPTION
    assert isinstance(ipp.version_info, tuple) and ipp.__version__


def test_error_hierarchy(error):
    for name, base in ERROR_TREE:
        cls = getattr(error, name)
        base_cls = base if isinstance(base, type) else getattr(error, base)
        assert issubclass(cls, base_cls), (name, base)
    assert error.TimeoutError is TimeoutError  # the builtin, so `except TimeoutError` works


def test_remote_error_shape(error):
    e = error.RemoteError("ValueError", "bad", "Traceback: ...", {"engine_id": 3, "method": "x"})
    assert (e.ename, e.evalue, e.engine_info["engine_id"]) == ("ValueError", "bad", 3)
    assert str(e).startswith("[3:x]") and "ValueError" in str(e)
    ce = error.CompositeError("several", [("KeyError", "k", "tb", {"engine_id": 1, "method": "y"})])
    with pytest.raises(error.RemoteError) as exc:
        ce.raise_exception(0)
    assert exc.value.ename == "KeyError"


# ---------------------------------------------------------------- serialization vs stock


@pytest.mark.parametrize("direction", ["ours->stock", "stock->ours"])
def test_serialized_objects_cross_between_packages(ipp, direction):
    np = pytest.importorskip("numpy")
    obj = {"a": [1, 2.5, "x"], "arr": np.arange(20_000, dtype="int32"), "b": b"\x00" * 100}
    src, dst = (ipp, stock) if direction == "ours->stock" else (stock, ipp)
    bufs = src.serialize_object(obj)
    back, rest = dst.deserialize_object(bufs)
    assert rest == []
    assert back["a"] == obj["a"] and back["b"] == obj["b"]
    assert back["arr"].dtype == obj["arr"].dtype and (back["arr"] == obj["arr"]).all()


@pytest.mark.parametrize("direction", ["ours->stock", "stock->ours"])
def test_apply_messages_cross_between_packages(ipp, direction):
    src, dst = (ipp, stock) if direction == "ours->stock" else (stock, ipp)

    def f(x, y=1):
        return x * y

    bufs = src.pack_apply_message(interactive(f), (6,), {"y": 7})
    g, args, kwargs = dst.unpack_apply_message(bufs, {})
    assert g(*args, **kwargs) == 42


# ---------------------------------------------------------------- two clients, one cluster


def test_namespace_is_shared(rc, stock_rc):
    rc[:].push({"from_ours": 1}, block=True)
    assert stock_rc[:].pull("from_ours", block=True) == [1] * N_ENGINES
    stock_rc[:].push({"from_stock": 2}, block=True)
    assert rc[:].pull("from_stock", block=True) == [2] * N_ENGINES


def test_results_are_visible_through_the_hub(ipp, rc, stock_rc):
    ours = rc.load_balanced_view().apply_async(add, 40, 2)
    assert ours.get(10) == 42
    theirs = stock_rc[1].apply_async(add, 1, 1)
    assert theirs.get(10) == 2
    wait_for(
        lambda: {ours.msg_ids[0], theirs.msg_ids[0]} <= set(rc.hub_history()),
        10,
        "both tasks in the Hub's history",
    )
    assert stock_rc.get_result(ours.msg_ids[0]).get(10) == 42
    fetched = rc.get_result(theirs.msg_ids[0])
    assert isinstance(fetched, ipp.AsyncHubResult)
    assert fetched.get(10) == 2
    assert rc.result_status(theirs.msg_ids)["completed"] == theirs.msg_ids
    recs = stock_rc.db_query({"msg_id": ours.msg_ids[0]}, keys=["msg_id", "engine_uuid"])
    assert len(recs) == 1 and recs[0]["engine_uuid"]


def test_dependency_on_another_clients_task(ipp, rc, stock_rc):
    theirs = stock_rc.load_balanced_view().apply_async(sleep_then, 1.0, "theirs")
    # sent by another client on other sockets: the scheduler must have seen it before a
    # dependency on it can be valid (the Hub hears of tasks from the scheduler)
    wait_for(lambda: theirs.msg_ids[0] in rc.hub_history(), 10, "their task at the Hub")
    assert not theirs.ready()
    lview = rc.load_balanced_view()
    with lview.temp_flags(after=theirs.msg_ids):
        mine = lview.apply_async(add, 1)
    assert mine.get(10) == 1
    theirs.get(10)
    assert mine.metadata["started"] >= theirs.metadata["completed"]


def test_abort_from_the_other_client(rc, stock_rc, error):
    blocker = rc[3].apply_async(sleep_then, 1.0)
    queued = rc[3].apply_async(add, 5)
    wait_for(lambda: "running" in str(blocker.stdout), 15, "the blocker to start")
    stock_rc.abort(queued.msg_ids, targets=3, block=True)
    with pytest.raises(error.TaskAborted):
        queued.get(10)
    blocker.get(10)


def test_membership_news_reaches_both_clients(ipp, make_cluster):
    cluster, ours = make_cluster(1)
    with stock.Client(profile_dir=str(cluster.profile_dir), timeout=10) as theirs:
        theirs.wait_for_engines(1, timeout=30)
        cluster.start_engine()
        ours.wait_for_engines(2, timeout=30)
        theirs.wait_for_engines(2, timeout=30)
        assert ours.ids == theirs.ids == [0, 1]
        ours.shutdown(targets=0, block=True)
        wait_for(lambda: ours.ids == [1] and theirs.ids == [1], 15, "both to drop engine 0")
        assert theirs[1].apply_sync(add, 1) == ours[1].apply_sync(add, 1) == 1
