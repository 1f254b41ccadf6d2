"""A function's pickle is reused only while nothing that went into it changed
(python/oxipp/serialize/function_cache.py). Each test changes one input and checks that the
engine side (deserialize_object) sees the change."""

from __future__ import annotations

import gc

import pytest
from oxipp.serialize import canning, serialize
from oxipp.serialize.serialize import deserialize_object, serialize_object


def roundtrip(f):
    obj, rest = deserialize_object(serialize_object(f), {})
    assert rest == []
    return obj


def cached(f) -> bool:
    how = (serialize.pickle, canning.can_map.get(type(f)), serialize.MAX_BYTES)
    return serialize._function_pickles.get(f, how) is not None


def test_second_pickle_of_a_plain_function_comes_from_the_cache():
    def f(x, y=2):
        return x + y

    first = serialize_object(f)
    assert cached(f)
    assert serialize_object(f) == first
    assert roundtrip(f)(1) == 3


def test_new_code_is_pickled_again():
    def f():
        return 1

    def g():
        return 2

    assert roundtrip(f)() == 1
    f.__code__ = g.__code__
    assert roundtrip(f)() == 2


def test_new_defaults_are_pickled_again():
    def f(x=1):
        return x

    assert roundtrip(f)() == 1
    f.__defaults__ = (5,)
    assert roundtrip(f)() == 5


def test_renamed_or_moved_function_is_pickled_again():
    def f():
        return 1

    roundtrip(f)
    f.__name__ = "renamed"
    assert roundtrip(f).__name__ == "renamed"
    f.__module__ = "__main__"
    assert serialize_object(f) != serialize_object(lambda: 1)
    assert roundtrip(f).__name__ == "renamed"


def test_kwdefaults_and_annotations_added_later_are_seen():
    def f(*, k=1):
        return k

    assert roundtrip(f)() == 1
    f.__kwdefaults__["k"] = 7  # mutated in place: never cached
    assert roundtrip(f)() == 7

    def g(x):
        return x

    roundtrip(g)
    assert cached(g)
    g.__annotations__["x"] = int
    assert roundtrip(g).__annotations__ == {"x": int}


def test_closures_and_mutable_defaults_are_not_cached():
    box = [1]

    def reads_cell():
        return box[0]

    def mutable_default(x=box):
        return x[0]

    for f in (reads_cell, mutable_default):
        assert roundtrip(f)() == 1
        assert not cached(f)
    box[0] = 2
    assert roundtrip(reads_cell)() == 2
    assert roundtrip(mutable_default)() == 2


def module_level():
    return 1


def test_another_function_canner_is_never_cached():
    f = module_level  # stdlib pickle (no canner) pickles it by name
    saved = canning.can_map[type(f)]
    canning.can_map.pop(type(f))  # what use_cloudpickle()/use_dill() do
    try:
        serialize_object(f)
        serialize_object(f)
        assert not cached(f)
    finally:
        canning.can_map[type(f)] = saved


def test_an_entry_does_not_keep_its_function_alive():
    def f():
        return 1

    serialize_object(f)
    n = len(serialize._function_pickles)
    del f
    gc.collect()
    assert len(serialize._function_pickles) == n - 1


@pytest.mark.parametrize("threshold", [10, serialize.MAX_BYTES])
def test_thresholds_are_part_of_the_key(threshold):
    def f(x=b"y" * 100):
        return len(x)

    obj, _ = deserialize_object(serialize_object(f, buffer_threshold=threshold), {})
    assert obj() == 100


# --- the engine's side: decoded functions by their bytes (serialize._decoded) ---------------


def unpack(f, *args, ns=None):
    """What an engine does with ``apply(f, *args)``: the function, args and kwargs."""
    bufs = [bytes(b) for b in serialize.pack_apply_message(f, args, {})]
    return serialize.unpack_apply_message(bufs, {} if ns is None else ns)


def decoded_as_cached(f) -> bool:
    key = serialize._decoded.key(bytes(serialize_object(f)[0]))
    return serialize._decoded.get(key) is not None


def test_engine_rebuilds_a_plain_function_it_has_seen_without_unpickling_it(monkeypatch):
    def f(x):
        return x + offset  # noqa: F821 - resolved in the engine's namespace

    f.__module__ = "__main__"  # as if interactive: runs in the namespace the engine gives
    unpack(f, 1, ns={"offset": 0})
    assert decoded_as_cached(f)

    def no_unpickling(*a, **kw):
        raise AssertionError("unpickled again")

    monkeypatch.setattr(serialize, "_wire_loads", no_unpickling)
    monkeypatch.setattr(
        serialize, "_apply_info", lambda buf: {"nargs": 1, "narg_bufs": 1, "kw_keys": []}
    )
    monkeypatch.setattr(serialize, "deserialize_object", lambda bufs, g: (5, bufs[1:]))
    ns1, ns2 = {"offset": 10}, {"offset": 20}
    f1, args, _ = unpack(f, 5, ns=ns1)
    f2, _, _ = unpack(f, 5, ns=ns2)
    assert f1 is not f2, "each request gets its own function object"
    assert (f1(*args), f2(*args)) == (15, 25), "each runs in the namespace it was given"
    f1.counter = 1  # an attribute set by one call must not show up in the next
    assert not hasattr(unpack(f, 5)[0], "counter")


def test_engine_never_reuses_closures_or_mutable_defaults():
    def make():
        seen = []

        def f(x):
            seen.append(x)
            return len(seen)

        return f

    f = make()
    assert unpack(f, 1)[0](1) == 1
    assert unpack(f, 1)[0](1) == 1, "a fresh closure cell per request, as stock"
    assert not decoded_as_cached(f)

    def g(x, acc=[]):  # noqa: B006 - the point of the test
        acc.append(x)
        return len(acc)

    assert unpack(g, 1)[0](1) == 1
    assert unpack(g, 1)[0](1) == 1
    assert not decoded_as_cached(g)


def test_engine_cache_is_bounded():
    cache = serialize.DecodedCache(max_entries=3, max_bytes=10)
    for i in range(5):
        cache.put(cache.key(b"k%d" % i), i)
    assert len(cache) == 3
    assert cache.get(b"k0") is None and cache.get(b"k4") == 4, "oldest entries go first"
    assert cache.key(b"x" * 11) is None, "big buffers are not kept"


def test_engine_cache_is_off_under_another_pickler(monkeypatch):
    def f():
        return 1

    import pickle as stdlib_pickle

    class OtherPickle:
        """Stands for dill/cloudpickle: another module bound to serialize.pickle."""

        loads = staticmethod(stdlib_pickle.loads)
        dumps = staticmethod(stdlib_pickle.dumps)
        Unpickler = stdlib_pickle.Unpickler
        Pickler = stdlib_pickle.Pickler

    bufs = [bytes(b) for b in serialize.pack_apply_message(f, (), {})]
    before = len(serialize._decoded)
    monkeypatch.setattr(serialize, "pickle", OtherPickle)
    key = serialize._decoded.key(bufs[0])
    assert serialize._decoded.get(key) is None
    serialize.unpack_apply_message(bufs, {})
    assert len(serialize._decoded) == before


def test_a_function_passed_as_an_argument_is_decoded_once(monkeypatch):
    """Stock's load-balanced map sends the user's function as an argument of its ``_map``
    helper in every task: the engine unpickles it once, then rebuilds it from the cache."""

    def f(x):
        return x * 2

    def apply_map(g, *xs):
        return list(map(g, xs))

    f.__module__ = "__main__"
    _, args, _ = unpack(apply_map, f, 3)
    assert args[0](3) == 6
    assert decoded_as_cached(f)
    decoded = []
    real = serialize._wire_loads
    monkeypatch.setattr(
        serialize, "_wire_loads", lambda buf, *a: decoded.append(buf) or real(buf, *a)
    )
    _, again, _ = unpack(apply_map, f, 4)
    assert again[0] is not args[0], "each request gets its own function object"
    assert (again[0](4), again[1]) == (8, 4)
    assert decoded and not any(b"CannedFunction" in bytes(b) for b in decoded)
