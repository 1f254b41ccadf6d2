"""oxipp.error, oxipp.client.map and oxipp.client.remotefunction against stock ipyparallel 9.2.0.

Stock is installed in the venv, so every check compares oxipp's result with what stock's own
classes produce for the same input (rendered strings, partitions, joined results, pickles).
The remote-function test at the end runs a real cluster (our controller + oxipp engines).
"""

from __future__ import annotations

import inspect
import pickle
import subprocess
import sys

import ipyparallel.client.map as stock_map
import ipyparallel.client.remotefunction as stock_rf
import ipyparallel.error as stock_error
import numpy as np
import oxipp
import oxipp.error as error
import pytest
from clusters import Cluster
from oxipp.client import map as ox_map
from oxipp.client import remotefunction as ox_rf
from oxipp.client._util import getname
from oxipp.serialize import _wire
from oxipp.serialize import errors as serialize_errors

ERROR_NAMES = [
    "IPythonError",
    "KernelError",
    "EngineError",
    "NoEnginesRegistered",
    "TaskAborted",
    "TaskTimeout",
    "UnmetDependency",
    "ImpossibleDependency",
    "DependencyTimeout",
    "InvalidDependency",
    "RemoteError",
    "CompositeError",
    "AlreadyDisplayedError",
    "TaskRejectError",
]

TB = 'Traceback (most recent call last):\n  File "<x>", line 1\nValueError: bad'


def _elist(n):
    return [
        (f"E{i}", f"value {i}", TB if i % 2 else None, {"engine_id": i, "method": "apply"})
        for i in range(n)
    ]


def _same_class_path(ours, theirs):
    """Names of the ipyparallel-specific bases of a class, root last."""

    def names(cls):
        return [c.__name__ for c in cls.__mro__ if c.__name__ in ERROR_NAMES]

    assert names(ours) == names(theirs)


# ------------------------------------------------------------------ error classes


@pytest.mark.parametrize("name", ERROR_NAMES)
def test_error_hierarchy_matches_stock(name):
    _same_class_path(getattr(error, name), getattr(stock_error, name))
    assert name in error.__all__


def test_dependency_errors_are_the_serialize_ones():
    for name in ["IPythonError", "KernelError", "UnmetDependency", "ImpossibleDependency"]:
        assert getattr(error, name) is getattr(serialize_errors, name)
    assert error.DependencyTimeout is serialize_errors.DependencyTimeout
    assert error.InvalidDependency is serialize_errors.InvalidDependency


def test_timeout_error_is_builtin():
    assert error.TimeoutError is TimeoutError is stock_error.TimeoutError


def test_no_engines_message():
    assert str(error.NoEnginesRegistered()) == str(stock_error.NoEnginesRegistered())


@pytest.mark.parametrize(
    "engine_info", [None, {}, {"engine_id": 3, "method": "execute"}], ids=["none", "empty", "info"]
)
@pytest.mark.parametrize("tb", [TB, None, ""], ids=["tb", "no-tb", "empty-tb"])
def test_remote_error_renders_like_stock(engine_info, tb):
    ours = error.RemoteError("ValueError", "bad", tb, engine_info)
    theirs = stock_error.RemoteError("ValueError", "bad", tb, engine_info)
    assert str(ours) == str(theirs)
    assert repr(ours) == repr(theirs)
    assert ours.args == theirs.args
    assert ours.engine_info == theirs.engine_info
    assert ours.render_traceback() == theirs.render_traceback()
    assert ours._render_traceback_() == theirs._render_traceback_()


def test_remote_error_str_format():
    e = error.RemoteError("KeyError", "'x'", TB, {"engine_id": 2, "method": "apply"})
    assert str(e) == "[2:apply] KeyError: 'x'"
    with pytest.raises(error.KernelError):
        raise e


def test_print_traceback_matches_stock(capsys):
    info = {"engine_id": 0, "method": "apply"}
    error.RemoteError("E", "v", TB, info).print_traceback()
    ours = capsys.readouterr().out
    stock_error.RemoteError("E", "v", TB, info).print_traceback()
    assert ours == capsys.readouterr().out
    assert ours.startswith("[0:apply]\nTraceback")


@pytest.mark.parametrize("n", [1, 4, 5, 9])
def test_composite_error_renders_like_stock(n, capsys):
    ours = error.CompositeError("one or more exceptions", _elist(n))
    theirs = stock_error.CompositeError("one or more exceptions", _elist(n))
    assert error.CompositeError.tb_limit == 4
    assert str(ours) == str(theirs)
    assert repr(ours) == repr(theirs) == f"CompositeError({n})"
    assert ours.args == theirs.args
    assert ours.render_traceback() == theirs.render_traceback()
    for i in range(n):
        assert ours.render_traceback(i) == theirs.render_traceback(i)
    ours.print_traceback(n - 1)
    mine = capsys.readouterr().out
    theirs.print_traceback(n - 1)
    assert mine == capsys.readouterr().out
    if n > 4:
        assert f"{n - 4} more exceptions" in str(ours)


def test_composite_error_raise_exception():
    ce = error.CompositeError("msg", _elist(3))
    with pytest.raises(error.RemoteError) as info:
        ce.raise_exception(1)
    assert type(info.value) is error.RemoteError
    assert str(info.value) == "[1:apply] E1: value 1"
    with pytest.raises(error.RemoteError, match="E0"):
        ce.raise_exception()
    with pytest.raises(IndexError, match="index 7 does not exist"):
        ce.raise_exception(7)
    with pytest.raises(IndexError, match="index 7 does not exist"):
        ce.render_traceback(7)
    assert ce._get_traceback(ValueError()) == "No traceback available"


def test_already_displayed_error():
    ce = error.CompositeError("msg", _elist(3))
    ours = error.AlreadyDisplayedError(ce)
    theirs = stock_error.AlreadyDisplayedError(stock_error.CompositeError("msg", _elist(3)))
    assert (str(ours), repr(ours)) == (str(theirs), repr(theirs)) == ("3 errors", repr(theirs))
    assert ours.render_traceback() == theirs.render_traceback() == ["3 errors"]
    assert ours.original_error is ce


def _results(mod):
    info = {"engine_id": 5, "method": "apply"}
    nested = mod.CompositeError("inner", _elist(2))
    return [
        1,
        mod.RemoteError("ValueError", "x", TB, info),
        "ok",
        mod.RemoteError("CompositeError", nested, None, info),
    ]


@pytest.mark.parametrize("as_dict", [False, True], ids=["list", "dict"])
def test_collect_exceptions_like_stock(as_dict):
    def run(mod):
        rs = _results(mod)
        if as_dict:
            rs = dict(enumerate(rs))
        with pytest.raises(mod.CompositeError) as info:
            mod.collect_exceptions(rs, "apply")
        return info.value

    ours, theirs = run(error), run(stock_error)
    assert str(ours) == str(theirs)
    assert ours.elist == theirs.elist  # the nested CompositeError is flattened into 3 entries
    assert len(ours.elist) == 3
    assert str(ours).startswith("one or more exceptions raised in: apply")
    clean = {"a": 1, "b": [2]}
    assert error.collect_exceptions(clean) is clean
    assert error.collect_exceptions([]) == []


def test_wrap_and_unwrap_like_stock():
    info = {"engine_id": 1, "method": "execute"}
    try:
        raise ZeroDivisionError("division by zero")
    except ZeroDivisionError:
        ours = error.wrap_exception(info)
        theirs = stock_error.wrap_exception(info)
    assert ours == theirs
    assert ours["ename"] == "ZeroDivisionError"
    assert ours["status"] == "error"
    assert isinstance(ours["traceback"], list)
    ours_err = error.unwrap_exception(ours)
    theirs_err = stock_error.unwrap_exception(theirs)
    assert type(ours_err) is error.RemoteError
    assert str(ours_err) == str(theirs_err) == "[1:execute] ZeroDivisionError: division by zero"
    assert ours_err.traceback == theirs_err.traceback
    no_info = dict(ours)
    del no_info["engine_info"]
    assert str(error.unwrap_exception(no_info)) == str(stock_error.unwrap_exception(no_info))
    assert inspect.signature(error.wrap_exception).parameters["engine_info"].default == {}


SIMPLE = [
    "IPythonError",
    "KernelError",
    "EngineError",
    "NoEnginesRegistered",
    "TaskAborted",
    "TaskTimeout",
    "UnmetDependency",
    "ImpossibleDependency",
    "DependencyTimeout",
    "InvalidDependency",
    "TaskRejectError",
]


@pytest.mark.parametrize("name", SIMPLE)
def test_pickles_cross_to_stock_and_back(name):
    """An oxipp error pickles under the stock name, a stock peer loads its own class, and a
    stock pickle loads as oxipp's class."""
    data = _wire.dumps(getattr(error, name)("why"))
    assert b"ipyparallel.error" in data
    assert b"oxipp" not in data
    theirs = pickle.loads(data)  # what a stock peer does
    assert type(theirs) is getattr(stock_error, name)
    assert theirs.args == ("why",)
    back = _wire.loads(pickle.dumps(theirs))
    assert type(back) is getattr(error, name)
    assert back.args == ("why",)


@pytest.mark.parametrize("name", ["RemoteError", "CompositeError", "AlreadyDisplayedError"])
def test_remote_error_classes_pickle_by_stock_name(name):
    cls = getattr(error, name)
    data = _wire.dumps(cls)
    assert pickle.loads(data) is getattr(stock_error, name)
    assert _wire.loads(pickle.dumps(getattr(stock_error, name))) is cls


def test_remote_error_pickle_behaves_like_stock():
    """Stock's RemoteError keeps only (ename, evalue) in args, so unpickling it fails; oxipp's
    does exactly the same thing rather than silently inventing a format. In a fresh
    interpreter: once ``distributed`` is imported (tblib), every exception pickles."""
    code = """
import pickle
import subprocess
import ipyparallel.error as stock_error
import oxipp.error as error
from oxipp.serialize import _wire
info = {"engine_id": 0, "method": "apply"}
for name, data in [
    ("stock", pickle.dumps(stock_error.RemoteError("E", "v", "tb", info))),
    ("oxipp", _wire.dumps(error.RemoteError("E", "v", "tb", info))),
]:
    try:
        pickle.loads(data)
    except TypeError:
        print(name, "TypeError")
    else:
        print(name, "unpickled")
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.split("\n")[:2] == ["stock TypeError", "oxipp TypeError"], out.stderr


# ------------------------------------------------------------------ map


SEQS = {
    "list0": [],
    "list1": [7],
    "list10": list(range(10)),
    "list17": [f"x{i}" for i in range(17)],
    "tuple5": tuple(range(5)),
    "range11": range(11),
    "str13": "abcdefghijklm",
    "np7": np.arange(7),
    "np2d": np.arange(30.0).reshape(10, 3),
}


def _eq(a, b):
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        return type(a) is type(b) and a.dtype == b.dtype and np.array_equal(a, b)
    return type(a) is type(b) and a == b


@pytest.mark.parametrize("dist", ["b", "r"])
@pytest.mark.parametrize("q", [1, 2, 3, 4, 7, 16])
@pytest.mark.parametrize("key", list(SEQS))
def test_partitions_and_joins_match_stock(key, q, dist):
    seq = SEQS[key]
    ours, theirs = ox_map.dists[dist](), stock_map.dists[dist]()
    assert type(ours).__name__ == type(theirs).__name__
    ours_parts = [ours.getPartition(seq, p, q) for p in range(q)]
    theirs_parts = [theirs.getPartition(seq, p, q) for p in range(q)]
    for a, b in zip(ours_parts, theirs_parts, strict=True):
        assert _eq(a, b)
    # explicit n, as ParallelFunction passes the longest sequence's length
    assert all(_eq(ours.getPartition(seq, p, q, len(seq)), theirs_parts[p]) for p in range(q))
    joined, stock_joined = ours.joinPartitions(ours_parts), theirs.joinPartitions(theirs_parts)
    if isinstance(stock_joined, np.ndarray):
        assert _eq(joined, stock_joined)
    else:
        assert joined == stock_joined
    if dist == "b" and isinstance(seq, (list, tuple)):  # ranges join as a list of ranges
        assert list(joined) == list(seq)


def test_block_partition_sizes():
    parts = [ox_map.Map().getPartition(list(range(10)), p, 4) for p in range(4)]
    assert parts == [[0, 1, 2], [3, 4, 5], [6, 7], [8, 9]]
    rr = [ox_map.RoundRobinMap().getPartition(list(range(10)), p, 4) for p in range(4)]
    assert rr == [[0, 4, 8], [1, 5, 9], [2, 6], [3, 7]]
    assert ox_map.RoundRobinMap().joinPartitions(rr) == list(range(10))


def test_partition_errors_like_stock():
    for bad in [(-1, 3), (3, 3), (5, 2)]:
        with pytest.raises(ValueError) as ours:
            ox_map.Map().getPartition([1, 2, 3], *bad)
        with pytest.raises(ValueError) as theirs:
            stock_map.Map().getPartition([1, 2, 3], *bad)
        assert str(ours.value) == str(theirs.value)


def test_unsliceable_sequence_uses_islice():
    def gen():
        return iter(range(9))

    for p in range(3):
        assert ox_map.Map().getPartition(gen(), p, 3, 9) == stock_map.Map().getPartition(
            gen(), p, 3, 9
        )


def test_join_scalars_and_round_robin_arrays():
    assert ox_map.Map().joinPartitions([1, 2, 3]) == [1, 2, 3]
    assert ox_map.RoundRobinMap().joinPartitions([1, 2]) == [1, 2]
    parts = [np.array([0, 3, 6]), np.array([1, 4]), np.array([2, 5])]
    ours = ox_map.RoundRobinMap().joinPartitions(parts)
    theirs = stock_map.RoundRobinMap().joinPartitions(parts)
    assert _eq(ours, theirs)
    assert ours.dtype == np.float64  # stock builds the result with np.ndarray(shape)


@pytest.mark.parametrize(
    "obj", [[], (1,), np.zeros(2), "abc", range(3), {1: 2}, {1}, 5, iter([])], ids=repr
)
def test_mappable_like_stock(obj):
    assert ox_map.mappable(obj) == stock_map.mappable(obj)
    assert set(ox_map.dists) == {"b", "r"}
    assert ox_map.dists["b"] is ox_map.Map
    assert ox_map.dists["r"] is ox_map.RoundRobinMap


def test_is_array_without_numpy_imported(python):
    """Checking for arrays must not import numpy (stock avoids that cost too)."""
    import subprocess

    code = (
        "import sys; from oxipp.client import map as m; "
        "assert not m.is_array([1]) and not m.mappable('x'); "
        "print('numpy' in sys.modules)"
    )
    out = subprocess.run([python, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


# ------------------------------------------------------------------ remotefunction


class _Named:
    name = "by-name"

    def __call__(self):
        pass


class _Anonymous:
    def __call__(self):
        pass

    def __str__(self):
        return "anon"


@pytest.mark.parametrize("f", [len, _Named(), _Anonymous(), lambda: 0], ids=repr)
def test_getname_like_stock(f):
    assert getname(f) == stock_rf.getname(f)
    assert ox_rf.getname is getname


def test_public_names_like_stock():
    assert sorted(ox_rf.__all__) == sorted(stock_rf.__all__)
    for name in ["remote", "parallel", "sync_view_results", "RemoteFunction", "ParallelFunction"]:
        assert callable(getattr(ox_rf, name))


def documented(a, b=2, *rest, key=None):
    """Adds things."""
    return a + b


def test_decorators_build_objects_like_stock():
    view = object()  # the objects are only built here; nothing is called through the view
    for mod in (ox_rf, stock_rf):
        rf = mod.remote(view, block=True, targets=[0], after=["x"])(documented)
        assert type(rf).__name__ == "RemoteFunction"
        assert (rf.view, rf.func, rf.block, rf.flags) == (
            view,
            documented,
            True,
            {"targets": [0], "after": ["x"]},
        )
        assert rf.__name__ == "documented"
        assert rf.__doc__ == "RemoteFunction wrapping:\nAdds things."
        assert rf.__signature__ == inspect.signature(documented)

        pf = mod.parallel(view, dist="r", ordered=False, retries=2)(documented)
        assert type(pf).__name__ == "ParallelFunction"
        assert type(pf.mapObject).__name__ == "RoundRobinMap"
        assert (pf.block, pf.ordered, pf.chunksize, pf.return_exceptions) == (
            None,
            False,
            None,
            False,
        )
        assert pf.flags == {"retries": 2}
        assert pf.__doc__ == "ParallelFunction wrapping:\nAdds things."
        assert type(mod.parallel(view)(documented).mapObject).__name__ == "Map"

        direct = mod.ParallelFunction(view, len, chunksize=3, return_exceptions=True)
        assert (direct.chunksize, direct.return_exceptions, direct.__name__) == (3, True, "len")
        assert direct.__doc__ == "ParallelFunction wrapping:\n" + len.__doc__
        with pytest.raises(KeyError):
            mod.ParallelFunction(view, len, dist="x")


def test_callable_whose_signature_raises_is_fine():
    """inspect.signature may raise anything for odd callables; stock ignores it, so do we."""

    class Odd:
        name = "odd"

        def __call__(self, *a):
            return a

        @property
        def __wrapped__(self):
            raise RuntimeError("no signature here")

    with pytest.raises(RuntimeError):
        inspect.signature(Odd())
    for mod in (ox_rf, stock_rf):
        rf = mod.RemoteFunction(object(), Odd())
        assert rf.__name__ == "odd"
        assert "__signature__" not in vars(rf)


# ----------------------------------------------- remotefunction over a real cluster


@pytest.fixture(scope="module")
def rc(oxipp_bin, tmp_path_factory):
    cluster = Cluster(oxipp_bin, tmp_path_factory.mktemp("rf") / "profile", engine_kind="oxipp")
    try:
        cluster.start_controller()
        for _ in range(2):
            cluster.start_engine()
        client = oxipp.Client(profile_dir=str(cluster.profile_dir), timeout=20)
        client.wait_for_engines(2, timeout=60)
        yield client
        client.close()
    finally:
        cluster.stop()


@oxipp.interactive
def _pair(a, b):
    return (a, b)


@oxipp.interactive
def _total(seq):
    return [sum(seq)]


def test_parallel_and_remote_on_a_cluster(rc):
    dview = rc[:]
    lview = rc.load_balanced_view()

    remote_getpid = ox_rf.remote(dview, block=True)(
        oxipp.interactive(lambda: __import__("os").getpid())
    )
    assert len(set(remote_getpid())) == 2

    # block-split: one call per engine on its contiguous part; results concatenated
    assert ox_rf.parallel(dview, block=True)(_total)(list(range(10))) == [10, 35]
    # round-robin striping: engine 0 gets the even elements
    assert ox_rf.parallel(dview, dist="r", block=True)(_total)(list(range(10))) == [20, 25]
    # map: elementwise; generators are materialised; unequal lengths are allowed for map
    pf = ox_rf.ParallelFunction(dview, _pair, dist="r", block=True)
    assert pf.map((i for i in range(5)), "abcde") == list(zip(range(5), "abcde", strict=True))
    assert pf.map([1, 2, 3], [4]) == [(1, 4)]
    with pytest.raises(ValueError, match="equal length"):
        pf([1, 2], [1])
    assert pf.map([]) == []

    # non-blocking: an AsyncMapResult; the view forgets the finished ids afterwards
    amr = ox_rf.ParallelFunction(lview, _pair, chunksize=3).map(range(7), range(7))
    assert type(amr).__name__ == "AsyncMapResult"
    assert len(amr.msg_ids) == 3  # 7 elements in chunks of 3
    assert amr.get(timeout=20) == [(i, i) for i in range(7)]
    assert not dview._in_sync_results and not lview._in_sync_results

    with pytest.warns(UserWarning, match="chunksize"):
        ox_rf.ParallelFunction(dview, _pair, chunksize=2, block=True).map([1], [2])


@pytest.mark.parametrize(
    "data",
    [
        b'{"msg_id": "a", "date": "2026-12-07T02:33:11.123456Z", "n": [1, 2.5, null, true]}',
        b"{}",
        '{"text": "caf\u00e9 \u2603"}'.encode(),
        b' {"leading": "space"}',
        b'{"trailing": "space"}\n',
        b"[1, 2]",
        b"42",
    ],
)
def test_message_json_reads_as_json_loads_does(data):
    """The client's reply parser (the C scanner without json.loads' wrapper) gives exactly
    json.loads' result, whitespace around the document included."""
    import json  # noqa: PLC0415

    from oxipp.client.client import _loads  # noqa: PLC0415

    assert _loads(data) == json.loads(data)


@pytest.mark.parametrize("data", [b'{"a": 1} x', b'{"a": ', b"\xff\xfe{}", b"", b"{'a': 1}"])
def test_message_json_refuses_what_json_loads_refuses(data):
    import json  # noqa: PLC0415

    from oxipp.client.client import _loads  # noqa: PLC0415

    with pytest.raises(ValueError) as expected:
        json.loads(data)
    with pytest.raises(type(expected.value)):
        _loads(data)
