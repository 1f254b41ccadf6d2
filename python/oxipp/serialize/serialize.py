"""Serializing objects and apply requests into message buffers (spec §5.2-5.3).

Layouts match stock ipyparallel 9.2 buffer for buffer: same thresholds, same canning of
small top-level containers, same sorted dict keys, same extraction order, same info dict.

``pickle`` below is the process-wide pickle flavour: ``use_cloudpickle()``/``use_dill()`` replace
it with the ``cloudpickle``/``dill`` module (also when a stock client ships those functions to an
oxipp engine: their code assigns this module attribute), ``use_pickle()`` restores stdlib pickle.
"""

from __future__ import annotations

import pickle
from itertools import chain
from types import FunctionType

from ._wire import dumps as _wire_dumps
from ._wire import loads as _wire_loads
from .canning import (
    CannedObject,
    _original_can_map,
    can,
    can_map,
    can_sequence,
    istype,
    sequence_types,
    uncan,
    uncan_sequence,
)
from .function_cache import DecodedCache, FunctionPickleCache, plain_canned_function

__all__ = [
    "MAX_BYTES",
    "MAX_ITEMS",
    "PICKLE_PROTOCOL",
    "PrePickled",
    "deserialize_object",
    "pack_apply_message",
    "serialize_object",
    "unpack_apply_message",
]

PICKLE_PROTOCOL = pickle.DEFAULT_PROTOCOL

#: canned buffers larger than this many bytes travel as their own frames (jupyter_client's value)
MAX_BYTES = 1024
#: top-level containers with fewer items than this are canned item by item
MAX_ITEMS = 64

_function_pickles = FunctionPickleCache()
#: engine side: decoded plain functions and apply info dicts, by their bytes (stdlib pickle only)
_decoded = DecodedCache()
_stdlib_pickle = pickle
#: the serializer under which function pickles may be cached (see function_cache)
_CACHEABLE_HOW = (pickle, _original_can_map.get(FunctionType))


class PrePickled:
    """An object serialized once and sent many times (e.g. ``f`` of a map over many targets)."""

    def __init__(self, obj):
        self.buffers = serialize_object(obj)


def _nbytes(buf) -> int:
    if isinstance(buf, memoryview):
        return buf.nbytes
    return len(buf)


def _extract_buffers(obj, threshold: int) -> list:
    """Take a canned object's large buffers out (``None`` stays in their place)."""
    extracted = []
    if isinstance(obj, CannedObject) and obj.buffers:
        for i, buf in enumerate(obj.buffers):
            if _nbytes(buf) > threshold:
                obj.buffers[i] = None
                extracted.append(buf)
            elif isinstance(buf, memoryview):
                # small: goes inside the pickle, which cannot hold a memoryview
                obj.buffers[i] = buf.tobytes()
    return extracted


def _inline_buffers(obj) -> None:
    if isinstance(obj, CannedObject) and obj.buffers:
        for i, buf in enumerate(obj.buffers):
            if isinstance(buf, memoryview):
                obj.buffers[i] = buf.tobytes()


def _restore_buffers(obj, buffers: list, pos: int) -> int:
    """Put ``buffers[pos:]`` back into ``obj``'s ``None`` slots; return the new position."""
    if isinstance(obj, CannedObject) and obj.buffers:
        for i, buf in enumerate(obj.buffers):
            if buf is None:
                obj.buffers[i] = buffers[pos]
                pos += 1
    return pos


def _sorted_keys(d: dict):
    """Sorted keys, or None when the keys do not sort (mixed types)."""
    try:
        return sorted(d)
    except TypeError:
        return None


def serialize_object(obj, buffer_threshold=MAX_BYTES, item_threshold=MAX_ITEMS) -> list:
    """Serialize ``obj`` into ``[pickle, *extracted buffers]``.

    Two cases deliberately differ from stock, where stock's output cannot be read back right:
    a set whose items have more than one large buffer (set order is not kept on the receiver,
    so buffers would land in the wrong items) and a small dict whose keys do not sort. Both are
    pickled with all data inline instead.
    """
    if isinstance(obj, PrePickled):
        return obj.buffers[:]
    if type(obj) is FunctionType:
        # what the pickle depends on besides the function (see function_cache)
        how = (pickle, can_map.get(FunctionType), buffer_threshold)
        cached = _function_pickles.get(obj, how)
        if cached is None:
            cached = _serialize(obj, buffer_threshold, item_threshold)
            if how[:2] == _CACHEABLE_HOW:
                _function_pickles.put(obj, how, cached)
        return cached
    return _serialize(obj, buffer_threshold, item_threshold)


#: types that ``can`` leaves as they are and that hold no buffers: a list or tuple of only
#: these pickles as it is (the arguments of most map tasks: one number or string each)
_PLAIN_TYPES = frozenset({int, float, complex, str, bool, type(None)})


def _plain_sequence(obj, item_threshold) -> bool:
    """Whether ``obj`` is a short list or tuple of plain values that canning would not change
    (and no canner was registered for such values)."""
    return (
        (type(obj) is list or type(obj) is tuple)
        and len(obj) < item_threshold
        and _PLAIN_TYPES.issuperset(map(type, obj))
        and _PLAIN_TYPES.isdisjoint(can_map)
    )


def _serialize(obj, buffer_threshold, item_threshold) -> list:
    if _plain_sequence(obj, item_threshold):
        # what the canning below would pickle, the same bytes, without its per-item calls
        return [_wire_dumps(obj, PICKLE_PROTOCOL, pickle, fast=True)]
    buffers = []
    if istype(obj, sequence_types) and len(obj) < item_threshold:
        cobj = can_sequence(obj)
        canned = any(isinstance(c, CannedObject) for c in cobj)
        for c in cobj:
            buffers.extend(_extract_buffers(c, buffer_threshold))
        if type(cobj) is set and len(buffers) > 1:
            buffers = []
            cobj = can_sequence(obj)
            for c in cobj:
                _inline_buffers(c)
    elif istype(obj, dict) and len(obj) < item_threshold:
        keys = _sorted_keys(obj)
        cobj = {}
        canned = False
        if keys is None:
            for k, v in obj.items():
                c = can(v)
                _inline_buffers(c)
                cobj[k] = c
                canned = canned or isinstance(c, CannedObject)
        else:
            for k in keys:
                c = can(obj[k])
                buffers.extend(_extract_buffers(c, buffer_threshold))
                cobj[k] = c
                canned = canned or isinstance(c, CannedObject)
    else:
        cobj = can(obj)
        canned = isinstance(cobj, CannedObject)
        buffers.extend(_extract_buffers(cobj, buffer_threshold))

    # `pickle` is read at call time: use_cloudpickle()/use_dill() rebind it
    data = _wire_dumps(cobj, PICKLE_PROTOCOL, pickle, fast=not canned)
    buffers.insert(0, data)
    return buffers


def deserialize_object(buffers, g=None):
    """Rebuild one object from the front of ``buffers``.

    Returns ``(obj, remaining_buffers)``: exactly this object's buffers are consumed, so several
    objects can follow each other in one message. ``g`` is the namespace for names resolved on
    this side (the engine's user namespace).
    """
    bufs = list(buffers)
    return _rebuild(_wire_loads(bufs[0], pickle), bufs, g)


def _rebuild(canned, bufs, g):
    """The rest of :func:`deserialize_object` once ``bufs[0]`` is decoded into ``canned``."""
    pos = 1
    if istype(canned, sequence_types) and len(canned) < MAX_ITEMS:
        for c in canned:
            pos = _restore_buffers(c, bufs, pos)
        newobj = uncan_sequence(canned, g)
    elif istype(canned, dict) and len(canned) < MAX_ITEMS:
        keys = _sorted_keys(canned)
        newobj = {}
        for k in canned if keys is None else keys:
            c = canned[k]
            pos = _restore_buffers(c, bufs, pos)
            newobj[k] = uncan(c, g)
    else:
        pos = _restore_buffers(canned, bufs, pos)
        newobj = uncan(canned, g)
    return newobj, bufs[pos:]


def pack_apply_message(
    f, args, kwargs, buffer_threshold=MAX_BYTES, item_threshold=MAX_ITEMS
) -> list:
    """Buffers of an apply request: ``f``, info dict, each arg, each kwarg (sorted keys).

    ``f`` itself is serialized with the default thresholds, as stock does.
    """
    arg_bufs = list(
        chain.from_iterable(serialize_object(a, buffer_threshold, item_threshold) for a in args)
    )
    kw_keys = sorted(kwargs.keys())
    kwarg_bufs = list(
        chain.from_iterable(
            serialize_object(kwargs[k], buffer_threshold, item_threshold) for k in kw_keys
        )
    )
    info = dict(nargs=len(args), narg_bufs=len(arg_bufs), kw_keys=kw_keys)
    msg = serialize_object(f)
    msg.append(_wire_dumps(info, PICKLE_PROTOCOL, pickle))
    msg.extend(arg_bufs)
    msg.extend(kwarg_bufs)
    return msg


def unpack_apply_message(bufs, g=None, copy=True):
    """Invert :func:`pack_apply_message`: ``(f, args, kwargs)``. ``copy`` is accepted for
    signature compatibility; buffers are never copied here."""
    bufs = list(bufs)
    if len(bufs) < 2:
        raise ValueError(f"an apply request needs at least 2 buffers, got {len(bufs)}")
    f, bufs = _apply_function(bufs, g)
    info = _apply_info(bufs.pop(0))
    narg_bufs = info["narg_bufs"]
    arg_bufs, kwarg_bufs = bufs[:narg_bufs], bufs[narg_bufs:]

    args = []
    for _ in range(info["nargs"]):
        arg, arg_bufs = _apply_arg(arg_bufs, g)
        args.append(arg)
    if arg_bufs:
        raise ValueError(f"{len(arg_bufs)} unclaimed positional-argument buffers")

    kwargs = {}
    for key in info["kw_keys"]:
        kwargs[key], kwarg_bufs = deserialize_object(kwarg_bufs, g)
    if kwarg_bufs:
        raise ValueError(f"{len(kwarg_bufs)} unclaimed keyword-argument buffers")
    return f, tuple(args), kwargs


def _apply_function(bufs, g):
    """:func:`deserialize_object` for an apply request's function (or a function passed as
    an argument), through ``_decoded``: a plain function sent again is rebuilt from its cached
    canned form without unpickling."""
    # `pickle` is read at call time: use_dill()/use_cloudpickle() rebind it
    key = _decoded.key(bufs[0]) if pickle is _stdlib_pickle else None
    if key is None:
        return deserialize_object(bufs, g)
    canned = _decoded.get(key)
    if canned is None:
        canned = _wire_loads(key, pickle)
        if plain_canned_function(canned):
            _decoded.put(key, canned)
    return _rebuild(canned, bufs, g)


def _apply_arg(bufs, g):
    """:func:`deserialize_object` for a positional argument. A function passed as one is
    decoded through ``_decoded`` like the request's own function: every task of a
    load-balanced map carries the user's function as an argument of stock's ``_map`` helper,
    and unpickling its code object again per task cost the engine ~10% of its CPU."""
    first = bufs[0]
    if type(first) is bytes and b"CannedFunction" in first:
        return _apply_function(bufs, g)
    return deserialize_object(bufs, g)


def _apply_info(buf):
    """The info dict of an apply request (``nargs``, ``narg_bufs``, ``kw_keys``): only read,
    so the same bytes may share one decoded dict."""
    key = _decoded.key(buf) if pickle is _stdlib_pickle else None
    if key is None:
        return _wire_loads(buf, pickle)
    info = _decoded.get(key)
    if info is None:
        info = _wire_loads(key, pickle)
        if type(info) is dict:
            _decoded.put(key, info)
    return info
