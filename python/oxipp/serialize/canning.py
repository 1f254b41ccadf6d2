"""Canning: turning objects stdlib pickle cannot send (functions, closures, arrays…) into
picklable stand-ins, and back, with the attribute layout of stock ipyparallel (spec §5.4).

The canned classes are written under their stock names (``ipyparallel.serialize.canning.*``,
see ``_wire``), and their instance attributes are exactly stock's, because a stock peer
unpickles them into *its* classes and calls *its* ``get_object`` on our attributes.

Module globals are part of the contract too: stock clients ship ``use_cloudpickle`` & co. and the
dependency hook as canned functions whose module is ``ipyparallel.serialize.canning``; on an
oxipp engine their code runs with *this* module's globals, so the names that code uses
(``can_map``, ``_original_can_map``, ``FunctionType``, ``pickle`` and the relative import of
``serialize``) exist here with the same meaning.
"""

from __future__ import annotations

import copy
import functools
import pickle
import sys
import types
from types import FunctionType

from . import codeutil  # noqa: F401  (registers the wire name of code_ctor)
from ._wire import dumps as _wire_dumps
from ._wire import loads as _wire_loads
from ._wire import local_module_for, wire_name

__all__ = [
    "CannedArray",
    "CannedBuffer",
    "CannedBytes",
    "CannedCell",
    "CannedClass",
    "CannedFunction",
    "CannedMemoryView",
    "CannedObject",
    "CannedPartial",
    "Reference",
    "can",
    "can_class",
    "can_dependent",
    "can_dict",
    "can_map",
    "can_sequence",
    "interactive",
    "istype",
    "sequence_types",
    "uncan",
    "uncan_dict",
    "uncan_map",
    "uncan_sequence",
    "use_cloudpickle",
    "use_dill",
    "use_pickle",
]

#: the stock module our canned classes and shipped helpers are named after
_CANNING = sys.intern("ipyparallel.serialize.canning")

cell_type = types.CellType


def _shipped_from(module: str):
    """Decorator for functions that travel canned and must find their globals in ``module``.

    A canned function carries its ``__module__``; the receiver runs its code with that module's
    globals (stock's on a stock engine, the oxipp stand-in on an oxipp engine).
    """

    def mark(f):
        f.__module__ = sys.intern(module)
        return wire_name(module)(f)

    return mark


# --------------------------------------------------------------------------------------------
# functions


def interactive(f):
    """Make ``f`` behave as if defined interactively: its globals become the engine's user
    namespace (``__main__``) instead of its defining module's.

    Unlike stock, keyword-only defaults, annotations and closures survive.
    """
    if isinstance(f, FunctionType):
        main = sys.modules.get("__main__") or __import__("__main__")
        new = FunctionType(f.__code__, main.__dict__, f.__name__, f.__defaults__, f.__closure__)
        if f.__kwdefaults__:
            new.__kwdefaults__ = dict(f.__kwdefaults__)
        if f.__annotations__:
            new.__annotations__ = dict(f.__annotations__)
        new.__doc__ = f.__doc__
        new.__dict__.update(f.__dict__)
        f = new
    f.__module__ = "__main__"
    return f


@_shipped_from(_CANNING)
def use_dill():
    """Pickle with ``dill`` from now on (process-wide); functions are no longer canned."""
    import dill

    from . import serialize

    serialize.pickle = dill
    can_map.pop(FunctionType, None)


@_shipped_from(_CANNING)
def use_cloudpickle():
    """Pickle with ``cloudpickle`` from now on (process-wide); functions are no longer canned."""
    import cloudpickle

    from . import serialize

    serialize.pickle = cloudpickle
    can_map.pop(FunctionType, None)


@_shipped_from(_CANNING)
def use_pickle():
    """Go back to stdlib pickle and canned functions."""
    from . import serialize

    serialize.pickle = pickle
    can_map[FunctionType] = _original_can_map[FunctionType]


# --------------------------------------------------------------------------------------------
# canned classes


@wire_name(_CANNING)
class CannedObject:
    """Generic stand-in: a shallow copy of ``obj`` whose ``keys`` attributes are canned.

    ``buffers`` holds large data sent as separate frames (``None`` placeholders in the pickle).
    ``hook(obj, g)``, if given, runs after uncanning.
    """

    # class-level default for subclasses that have no buffers of their own (CannedCell)
    buffers = ()

    def __init__(self, obj, keys=None, hook=None):
        if keys is None:
            keys = []
        self.keys = keys
        self.obj = copy.copy(obj)
        self.hook = can(hook)
        for key in keys:
            setattr(self.obj, key, can(getattr(obj, key)))
        self.buffers = []

    def get_object(self, g=None):
        if g is None:
            g = {}
        obj = self.obj
        for key in self.keys:
            setattr(obj, key, uncan(getattr(obj, key), g))
        if self.hook:
            self.hook = uncan(self.hook, g)
            self.hook(obj, g)
        return self.obj


@wire_name(_CANNING)
class Reference(CannedObject):
    """A name resolved on the engine: uncanned as ``eval(name, user_ns)``."""

    def __init__(self, name):
        if not isinstance(name, str):
            raise TypeError(f"illegal name: {name!r}")
        self.name = name
        self.buffers = []

    def __repr__(self):
        return f"<Reference: {self.name!r}>"

    def get_object(self, g=None):
        if g is None:
            g = {}
        return eval(self.name, g)


@wire_name(_CANNING)
class CannedCell(CannedObject):
    """A closure cell, contents canned."""

    def __init__(self, cell):
        self.cell_contents = can(cell.cell_contents)

    def get_object(self, g=None):
        return cell_type(uncan(self.cell_contents, g))


def _module_globals(module_name: str) -> dict:
    """Globals for a canned function from ``module_name``: oxipp's stand-in for stock modules,
    else the module itself (imported on demand, as stock does)."""
    local = local_module_for(module_name)
    if local is not None:
        return local.__dict__
    __import__(module_name)
    return sys.modules[module_name].__dict__


def _is_stock_code(code, relpath: str) -> bool:
    return code.co_filename.replace("\\", "/").endswith("ipyparallel/" + relpath)


def _local_code_for(code, module: str):
    """Swap in oxipp's code for the one stock helper that cannot run on an oxipp engine.

    Stock's ``@require`` helper ``_require`` is interactive (module ``__main__``) and imports
    ``ipyparallel.error`` and ``ipyparallel.serialize.uncan`` when it runs, so on an oxipp engine
    it fails without ipyparallel, and with it cannot uncan oxipp's canned objects. oxipp's
    ``_require`` has the same signature and meaning.
    """
    if (
        module == "__main__"
        and code.co_name == "_require"
        and _is_stock_code(code, "controller/dependency.py")
    ):
        from .dependency import _require

        return _require.__code__
    return code


@wire_name(_CANNING)
class CannedFunction(CannedObject):
    """A plain function by value: code object, canned defaults/kwdefaults/annotations/closure,
    and the name of the module whose globals it runs with on the receiver."""

    def __init__(self, f):
        self._check_type(f)
        self.code = f.__code__
        self.defaults = [can(d) for d in f.__defaults__] if f.__defaults__ else None
        self.kwdefaults = can_dict(f.__kwdefaults__) if f.__kwdefaults__ else None
        self.annotations = can_dict(f.__annotations__) if f.__annotations__ else None
        closure = f.__closure__
        self.closure = tuple(can(cell) for cell in closure) if closure else None
        self.module = f.__module__ or "__main__"
        self.__name__ = f.__name__
        self.buffers = []

    def _check_type(self, obj):
        if not isinstance(obj, FunctionType):
            raise TypeError(f"Not a function: {obj!r}")

    def get_object(self, g=None):
        module = self.module
        # functions from real modules run with that module's globals; "__main__" (and other
        # dunder names) run in the namespace given by the caller: the engine's user namespace
        if not module.startswith("__"):
            g = _module_globals(module)
        if g is None:
            g = {}
        defaults = tuple(uncan(d, g) for d in self.defaults) if self.defaults else None
        closure = tuple(uncan(c, g) for c in self.closure) if self.closure else None
        code = _local_code_for(self.code, module)
        f = FunctionType(code, g, self.__name__, defaults, closure)
        if self.kwdefaults:
            f.__kwdefaults__ = uncan_dict(self.kwdefaults, g)
        if self.annotations:
            f.__annotations__ = uncan_dict(self.annotations, g)
        return f


@wire_name(_CANNING)
class CannedPartial(CannedObject):
    """``functools.partial`` with canned func/args/keywords; the buffers of canned arguments are
    gathered into this object's ``buffers`` so they can be sent as frames."""

    def __init__(self, f):
        self._check_type(f)
        self.func = can(f.func)
        self.args = [can(a) for a in f.args]
        self.keywords = {k: can(v) for k, v in f.keywords.items()}
        self.buffers = []
        self.arg_buffer_counts = []
        self.keyword_buffer_counts = {}
        for canned in self.args:
            if not isinstance(canned, CannedObject):
                self.arg_buffer_counts.append(0)
                continue
            self.arg_buffer_counts.append(len(canned.buffers))
            self.buffers.extend(canned.buffers)
            canned.buffers = []
        for key in sorted(self.keywords):
            canned = self.keywords[key]
            if not isinstance(canned, CannedObject):
                continue
            self.keyword_buffer_counts[key] = len(canned.buffers)
            self.buffers.extend(canned.buffers)
            canned.buffers = []

    def _check_type(self, obj):
        if not isinstance(obj, functools.partial):
            raise ValueError(f"Not a functools.partial: {obj!r}")

    def get_object(self, g=None):
        if g is None:
            g = {}
        if self.buffers:
            buffers = list(self.buffers)
            for canned, count in zip(self.args, self.arg_buffer_counts):
                if count:
                    canned.buffers, buffers = buffers[:count], buffers[count:]
            for key in sorted(self.keyword_buffer_counts):
                count = self.keyword_buffer_counts[key]
                self.keywords[key].buffers, buffers = buffers[:count], buffers[count:]
            if buffers:
                raise ValueError(f"{len(buffers)} unclaimed buffers in canned partial")
            self.buffers = []
        args = [uncan(a, g) for a in self.args]
        keywords = {k: uncan(v, g) for k, v in self.keywords.items()}
        return functools.partial(uncan(self.func, g), *args, **keywords)


@wire_name(_CANNING)
class CannedClass(CannedObject):
    """A class defined in ``__main__`` (not importable on the engine), rebuilt with ``type()``."""

    def __init__(self, cls):
        self._check_type(cls)
        self.name = cls.__name__
        self.old_style = not isinstance(cls, type)
        self._canned_dict = {}
        for k, v in cls.__dict__.items():
            if k not in ("__weakref__", "__dict__"):
                self._canned_dict[k] = can(v)
        mro = [] if self.old_style else cls.mro()
        self.parents = [can(c) for c in mro[1:]]
        self.buffers = []

    def _check_type(self, obj):
        if not isinstance(obj, type):
            raise TypeError(f"Not a class: {obj!r}")

    def get_object(self, g=None):
        parents = tuple(uncan(p, g) for p in self.parents)
        return type(self.name, parents, uncan_dict(self._canned_dict, g=g))


def _array_memoryview(a):
    try:
        return memoryview(a)
    except (ValueError, TypeError, BufferError):
        # dtypes the buffer protocol cannot describe (datetime64, timedelta64…): same bytes
        return memoryview(a.reshape(-1).view("u1"))


@wire_name(_CANNING)
class CannedArray(CannedObject):
    """A numpy array: shape + dtype, data as one buffer (zero-copy frame when large).

    Arrays whose ``sum(shape) == 0`` (0-d and empty 1-d arrays) and arrays holding Python
    objects are pickled into the buffer instead (``pickled=True``), like stock.
    """

    def __init__(self, obj):
        from numpy import ascontiguousarray

        self.shape = obj.shape
        self.dtype = obj.dtype.descr if obj.dtype.fields else obj.dtype.str
        # stock's rule is sum(shape) == 0, not size == 0: a (0, 5) array takes the buffer path
        self.pickled = sum(obj.shape) == 0 or obj.dtype.hasobject
        if self.pickled:
            from . import serialize

            self.buffers = [_wire_dumps(obj, serialize.PICKLE_PROTOCOL, serialize.pickle)]
        else:
            self.buffers = [_array_memoryview(ascontiguousarray(obj, dtype=None))]

    def get_object(self, g=None):
        from numpy import frombuffer

        data = self.buffers[0]
        if self.pickled:
            from . import serialize

            return _wire_loads(data, serialize.pickle)
        return frombuffer(data, dtype=self.dtype).reshape(self.shape)


@wire_name(_CANNING)
class CannedBytes(CannedObject):
    """``bytes``, sent as a frame when large."""

    def __init__(self, obj):
        self.buffers = [obj]

    def get_object(self, g=None):
        return self.wrap(self.buffers[0])

    @staticmethod
    def wrap(data):
        if isinstance(data, bytes):
            return data
        return memoryview(data).tobytes()


@wire_name(_CANNING)
class CannedMemoryView(CannedBytes):
    """A ``memoryview``; arrives as a memoryview over the received data."""

    wrap = memoryview


CannedBuffer = CannedMemoryView


# --------------------------------------------------------------------------------------------
# dispatch


def istype(obj, check) -> bool:
    """``isinstance`` without subclasses: ``type(obj) is check`` (or one of a tuple)."""
    if type(check) is tuple:
        return type(obj) in check
    return type(obj) is check


def _resolve_string_keys(mapping: dict) -> None:
    """Replace ``"module.Name"`` keys by the class, for modules that are already imported.

    A key whose module is not imported yet stays a string: no object of that class can exist,
    so nothing is missed, and canning never imports numpy just to look.
    """
    for key in list(mapping):
        if not isinstance(key, str):
            continue
        module_name, _, name = key.rpartition(".")
        module = sys.modules.get(module_name)
        if module is None:
            continue
        cls = getattr(module, name, None)
        value = mapping.pop(key)
        if cls is not None:
            mapping[cls] = value


# id(mapping) -> ((len(mapping), len(sys.modules)) at the last scan, has tuple keys)
_scans: dict[int, tuple[tuple[int, int], bool]] = {}


def _rescan(mapping: dict) -> bool:
    """Resolve string keys if the mapping or the set of imported modules changed since the
    last look (cheap to test, so the common miss costs two ``len`` calls); return whether the
    mapping has tuple keys, which need a scan per lookup."""
    fingerprint = (len(mapping), len(sys.modules))
    scan = _scans.get(id(mapping))
    if scan is None or scan[0] != fingerprint:
        _resolve_string_keys(mapping)
        has_tuples = any(type(k) is tuple for k in mapping)
        scan = _scans[id(mapping)] = ((len(mapping), len(sys.modules)), has_tuples)
    return scan[1]


def _lookup(mapping: dict, obj):
    t = type(obj)
    found = mapping.get(t)
    if found is not None:
        return found
    if _rescan(mapping):
        for key, value in mapping.items():
            if type(key) is tuple and t in key:
                return value
    return mapping.get(t)


def can(obj):
    """Prepare ``obj`` for pickling (exact-type dispatch through :data:`can_map`)."""
    canner = _lookup(can_map, obj)
    if canner is None:
        return obj
    return canner(obj)


def can_class(obj):
    if isinstance(obj, type) and obj.__module__ == "__main__":
        return CannedClass(obj)
    return obj


def can_dict(obj):
    """Can the values of a dict."""
    if istype(obj, dict):
        return {k: can(v) for k, v in obj.items()}
    return obj


sequence_types = (list, tuple, set)


def can_sequence(obj):
    """Can the elements of a list, tuple or set."""
    if istype(obj, sequence_types):
        return type(obj)([can(i) for i in obj])
    return obj


def uncan(obj, g=None):
    """Invert :func:`can`; ``g`` is the namespace for names resolved on this side."""
    _rescan(uncan_map)
    for cls, uncanner in uncan_map.items():
        if isinstance(obj, cls):
            return uncanner(obj, g)
    return obj


def uncan_dict(obj, g=None):
    if istype(obj, dict):
        return {k: uncan(v, g) for k, v in obj.items()}
    return obj


def uncan_sequence(obj, g=None):
    if istype(obj, sequence_types):
        return type(obj)([uncan(i, g) for i in obj])
    return obj


@_shipped_from(_CANNING)
def _uncan_dependent_hook(dep, g=None):
    dep.check_dependency()


def can_dependent(obj):
    """A ``dependent`` travels as a generic CannedObject; uncanning checks the dependency."""
    return CannedObject(obj, keys=("f", "df"), hook=_uncan_dependent_hook)


#: exact type (or "module.Name" string, resolved once that module is imported) -> canner.
#: Extend it to can new types; ``use_cloudpickle``/``use_dill`` remove the function entry.
#: ``dependent`` adds itself where it is defined (``dependency.py``).
can_map = {
    "numpy.ndarray": CannedArray,
    FunctionType: CannedFunction,
    functools.partial: CannedPartial,
    bytes: CannedBytes,
    memoryview: CannedMemoryView,
    cell_type: CannedCell,
    type: can_class,
}

#: class (isinstance) -> uncanner(obj, g)
uncan_map = {
    CannedObject: lambda obj, g: obj.get_object(g),
    dict: uncan_dict,
}

_original_can_map = can_map.copy()
_original_uncan_map = uncan_map.copy()
