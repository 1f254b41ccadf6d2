"""Wire names: how oxipp's pickles name globals, and how oxipp reads stock pickles.

Why this module exists
----------------------
The apply protocol (spec §5) ships pickles that name Python globals by module path. Stock
ipyparallel peers write and expect names such as ``ipyparallel.serialize.canning.CannedFunction``,
``ipyparallel.serialize.codeutil.code_ctor`` and ``ipyparallel.controller.dependency.dependent``;
stock clients also ship their *own helper functions* (``_push``, ``_pull``, ``_map``, …) as canned
functions whose ``module`` field is ``ipyparallel.util`` or ``ipyparallel.client.remotefunction``,
so the engine is expected to import those modules to get the functions' globals.

Two directions, two mechanisms:

* **Writing.** An oxipp object registered with :func:`wire_name` is written under its stock name,
  so a stock peer (which has ipyparallel) loads its own class. CPython's C pickler cannot do this:
  before it writes a global it imports the named module and checks that the attribute *is* the
  object being pickled, and there is no hook to skip that check (``copyreg`` reducers and
  ``__reduce__`` still end in such a checked global). So pickles that contain registered objects
  go through a subclass of the pure-Python pickler whose ``save_global`` writes the stock name
  with the same opcodes the C pickler would use (``STACK_GLOBAL`` + ``MEMOIZE`` for protocol 4),
  giving byte-identical output. Plain data still takes the C pickler (see :func:`dumps`).

* **Reading.** :class:`WireUnpickler` resolves stock names to oxipp's objects *always*, also when
  ipyparallel happens to be importable: an oxipp engine must not need ipyparallel, and stock's
  canned classes would not cooperate with oxipp's uncanning (``oxipp.serialize.uncan`` only knows
  oxipp's ``CannedObject``). Names without an oxipp equivalent fall back to the normal lookup.

The same table of module aliases (:data:`MODULE_ALIASES`) gives the globals of stock helper
functions: a canned ``ipyparallel.util._push`` sent by a stock client runs with the globals of
``oxipp.serialize.stock_helpers``, which defines the names that code uses (``get_ipython``, …).
"""

from __future__ import annotations

import copyreg
import functools
import importlib
import io
import pickle
import random
import sys
from collections import ChainMap
from types import CodeType, FunctionType

__all__ = [
    "MODULE_ALIASES",
    "WireUnpickler",
    "dumps",
    "loads",
    "local_module_for",
    "register_module_alias",
    "resolve_stock_global",
    "wire_name",
]

# id(obj) -> (obj, wire module, wire qualname); obj is kept so ids cannot be reused
_WIRE_BY_ID: dict[int, tuple[object, str, str]] = {}
# (wire module, wire qualname) -> obj
_LOCAL_BY_WIRE: dict[tuple[str, str], object] = {}
# _WIRE_BY_ID plus id(wire-name string) -> (string, None, None); see _CWirePickler
_WIRE_LOOKUP: dict[int, tuple] = {}

#: Stock module name -> oxipp module name. Used for names that are not registered one by one
#: (``find_class``) and for the globals of canned functions whose ``module`` is a stock module.
MODULE_ALIASES: dict[str, str] = {
    "ipyparallel.serialize": "oxipp.serialize",
    "ipyparallel.serialize.canning": "oxipp.serialize.canning",
    "ipyparallel.serialize.serialize": "oxipp.serialize.serialize",
    "ipyparallel.serialize.codeutil": "oxipp.serialize.codeutil",
    "ipyparallel.controller.dependency": "oxipp.serialize.dependency",
    "ipyparallel.util": "oxipp.serialize.stock_helpers",
    "ipyparallel.client.remotefunction": "oxipp.serialize.stock_helpers",
    "ipyparallel.error": "oxipp.serialize.errors",
}


def wire_name(module: str, qualname: str | None = None):
    """Class/function decorator: pickle this object as ``module.qualname`` (a stock name).

    Also registers the reverse mapping used by :class:`WireUnpickler`. Module strings are
    interned so that every global from one module shares one memoized string, as in stock
    pickles (where the strings all come from one module's ``__name__``).
    """
    module = sys.intern(module)

    def register(obj):
        name = sys.intern(qualname or obj.__qualname__)
        _WIRE_BY_ID[id(obj)] = (obj, module, name)
        _LOCAL_BY_WIRE[(module, name)] = obj
        _WIRE_LOOKUP[id(module)] = (module, None, None)
        _WIRE_LOOKUP[id(name)] = (name, None, None)
        _WIRE_LOOKUP[id(obj)] = (obj, module, name)
        return obj

    return register


def register_module_alias(stock_module: str, local_module: str) -> None:
    """Map every attribute of ``stock_module`` to the same-named attribute of ``local_module``."""
    MODULE_ALIASES[stock_module] = local_module


def local_module_for(module_name: str):
    """The oxipp module standing in for a stock module name, or ``None``."""
    local = MODULE_ALIASES.get(module_name)
    if local is None:
        return None
    return importlib.import_module(local)


def _getattr_dotted(obj, dotted: str):
    for part in dotted.split("."):
        obj = getattr(obj, part)
    return obj


_MISSING = object()


def resolve_stock_global(module: str, name: str):
    """oxipp's object for a global named in a stock pickle, or ``_MISSING``."""
    obj = _LOCAL_BY_WIRE.get((module, name), _MISSING)
    if obj is not _MISSING:
        return obj
    local = local_module_for(module)
    if local is not None:
        try:
            return _getattr_dotted(local, name)
        except AttributeError:
            pass
    return _MISSING


def _find_class(unpickler_super, module: str, name: str):
    obj = resolve_stock_global(module, name)
    if obj is not _MISSING:
        return obj
    try:
        return unpickler_super.find_class(module, name)
    except ImportError as e:
        if module == "ipyparallel" or module.startswith("ipyparallel."):
            raise pickle.UnpicklingError(
                f"the pickle names {module}.{name}, which oxipp does not provide, "
                "and ipyparallel is not importable here"
            ) from e
        raise


class WireUnpickler(pickle.Unpickler):
    """The C unpickler, reading stock ``ipyparallel.*`` names as oxipp objects."""

    def find_class(self, module, name):
        return _find_class(super(), module, name)


# --------------------------------------------------------------------------------------------
# picklers


class _WireNamesMixin:
    """``save_global`` that writes registered objects under their stock names."""

    def save_global(self, obj, name=None):
        entry = _WIRE_BY_ID.get(id(obj))
        if entry is None or entry[0] is not obj:
            return super().save_global(obj, name)
        _, module, qualname = entry
        if self.proto >= 4:
            self.save(module)
            self.save(qualname)
            self.write(pickle.STACK_GLOBAL)
        else:
            self.write(pickle.GLOBAL + module.encode() + b"\n" + qualname.encode() + b"\n")
        self.memoize(obj)


def _save_function(pickler, obj):
    pickler.save_global(obj)


# pickle._Pickler.dispatch maps functions to the *unbound* _Pickler.save_global, which would
# bypass the override above
_PY_DISPATCH = {**pickle._Pickler.dispatch, FunctionType: _save_function}


_dispatch_table = None


def _code_dispatch():
    """``copyreg.dispatch_table`` (live) with stock's code-object reducer in front."""
    global _dispatch_table
    if _dispatch_table is None:
        from .codeutil import reduce_code  # codeutil imports this module

        _dispatch_table = ChainMap({CodeType: reduce_code}, copyreg.dispatch_table)
    return _dispatch_table


class _WirePickler(_WireNamesMixin, pickle._Pickler):
    """Pure-Python pickler with stock wire names and stock's code-object reducer."""

    dispatch = _PY_DISPATCH

    def __init__(self, file, protocol):
        super().__init__(file, protocol)
        self.dispatch_table = _code_dispatch()


class _CWirePickler(pickle.Pickler):
    """The C pickler, writing registered objects under stock names via a verified rewrite.

    The C pickler cannot write a global it cannot import, but it can write *persistent ids*.
    The first time a registered object is met, ``persistent_id`` returns a tuple of two fresh
    random strings ``(m, n)`` whose UTF-8 lengths are ``len(module)`` and ``len(qualname) - 1``;
    the C pickler writes ``<m> MEMOIZE <n> MEMOIZE TUPLE2 MEMOIZE BINPERSID``, which has exactly
    the length and the number of memo entries of the stock
    ``<module> MEMOIZE <qualname> MEMOIZE STACK_GLOBAL MEMOIZE``, so frame sizes and all later
    memo indices are already right, and the bytes are swapped afterwards. The random ``m`` is
    one string per module, so a second global from the same module is a memo reference in both.
    When the object comes again, the memo entry of its tuple is moved to the object itself, so
    the C pickler writes the same ``BINGET`` stock would.

    ``finish`` gives up (returns None, and the caller uses the pure-Python pickler) whenever the
    result could differ: a replacement pattern found other than exactly once, or a wire-name
    string object met as data (stock would share its memo entry with the global).
    """

    def __init__(self, file, protocol):
        super().__init__(file, protocol)
        self.dispatch_table = _code_dispatch()
        self._pids: dict[int, tuple[str, str]] = {}
        self._moved: set[int] = set()
        self._module_nonces: dict[str, str] = {}
        self._names: list[tuple[str, str]] = []  # (name nonce, wire qualname)
        self._unsafe = False

    # called by the C pickler for every object it saves: keep the common path to one lookup
    def persistent_id(self, obj, _get=_WIRE_LOOKUP.get, _id=id):
        entry = _get(_id(obj))
        if entry is None:
            return None
        return self._wire_pid(obj, entry)

    def _wire_pid(self, obj, entry):
        if entry[1] is None or entry[0] is not obj:
            # a wire-name string met as data: stock shares its memo entry with the global
            self._unsafe = True
            return None
        key = id(obj)
        pid = self._pids.get(key)
        if pid is None:
            _, module, name = entry
            mod_nonce = self._module_nonces.get(module)
            if mod_nonce is None:
                mod_nonce = self._module_nonces[module] = _nonce(len(module))
            pid = self._pids[key] = (mod_nonce, _nonce(len(name) - 1))
            self._names.append((pid[1], name))
            return pid
        if key not in self._moved:
            memo = self.memo.copy()
            index, _ = memo.pop(id(pid))
            memo[key] = (index, obj)
            self.memo = memo
            self._moved.add(key)
        return None

    def finish(self, data: bytes):
        if self._unsafe:
            return None
        if not self._names:
            return data
        out = bytearray(data)
        swaps = [(_short_str(n) + _PERSID, _global_bytes(q)) for n, q in self._names]
        swaps += [(_short_str(m), _module_bytes(mod)) for mod, m in self._module_nonces.items()]
        for old, new in swaps:
            at = out.find(old)
            if at < 0 or out.find(old, at + 1) >= 0 or len(old) != len(new):
                return None
            out[at : at + len(old)] = new
        return bytes(out)


_PERSID = pickle.TUPLE2 + pickle.MEMOIZE + pickle.BINPERSID


# a private generator: serializing must not advance (or depend on) the user's random.seed() stream
_rng = random.Random()


def _nonce(n: int) -> str:
    """``n`` random hex digits, fresh for every pickle (randomness only makes a fallback rare;
    exactness comes from the once-only check in ``finish``)."""
    return format(_rng.getrandbits(4 * n), f"0{n}x")


def _short_str(s: str) -> bytes:
    """``SHORT_BINUNICODE`` + ``MEMOIZE`` as the C pickler writes a new short str."""
    raw = s.encode("utf-8")
    if len(raw) > 255:
        raise ValueError("wire names are short")
    return pickle.SHORT_BINUNICODE + bytes((len(raw),)) + raw + pickle.MEMOIZE


@functools.cache
def _global_bytes(qualname: str) -> bytes:
    return _short_str(qualname) + pickle.STACK_GLOBAL + pickle.MEMOIZE


_module_bytes = functools.cache(_short_str)


def _dumps_c_wire(obj, protocol):
    buf = io.BytesIO()
    pickler = _CWirePickler(buf, protocol)
    pickler.dump(obj)
    return pickler.finish(buf.getvalue())


#: tests switch the C path off to compare with the reference pickler
_c_wire_enabled = True
_cloud_pickler_class = None
_dill_classes = None


def _cloudpickle_pickler_class(cloudpickle_module):
    """A pure-Python pickler behaving like ``cloudpickle.Pickler`` plus wire names.

    ``cloudpickle.Pickler`` subclasses the C pickler (it customizes through ``reducer_override``),
    so the wire names cannot be added to it; its reducers are reused on the Python pickler.
    """
    global _cloud_pickler_class
    if _cloud_pickler_class is not None:
        return _cloud_pickler_class
    base = cloudpickle_module.Pickler
    cp_impl = sys.modules[base.__module__]

    class _CloudWirePickler(_WireNamesMixin, pickle._Pickler):
        dispatch = _PY_DISPATCH
        _dynamic_function_reduce = base._dynamic_function_reduce
        _function_reduce = base._function_reduce
        _function_getnewargs = base._function_getnewargs

        def __init__(self, file, protocol):
            super().__init__(file, protocol)
            self.globals_ref = {}
            self.proto = int(protocol)
            self.dispatch_table = ChainMap(base._dispatch_table, copyreg.dispatch_table)

        def reducer_override(self, obj):
            entry = _WIRE_BY_ID.get(id(obj))
            if entry is not None and entry[0] is obj:
                return NotImplemented  # by reference, under the stock name
            t = type(obj)
            try:
                is_anyclass = issubclass(t, type)
            except TypeError:
                is_anyclass = False
            if is_anyclass:
                return cp_impl._class_reduce(obj)
            if isinstance(obj, FunctionType):
                return self._function_reduce(obj)
            return NotImplemented

    _cloud_pickler_class = _CloudWirePickler
    return _cloud_pickler_class


def _dill_wire_classes(dill_module):
    global _dill_classes
    if _dill_classes is not None:
        return _dill_classes

    class _DillWirePickler(_WireNamesMixin, dill_module.Pickler):
        # dill is a pure-Python pickler already; only registered objects need a detour, since
        # dill would pickle a function whose module it cannot import by value

        # dill.is_dill(pickler, child=False) looks for "dill" in the pickler's module name, and
        # dill writes the main namespace as its `__builtin__.__main__` pseudo-global only then
        __module__ = __name__ + ".dill"

        def save(self, obj, save_persistent_id=True):
            entry = _WIRE_BY_ID.get(id(obj))
            if entry is None or entry[0] is not obj:
                return super().save(obj, save_persistent_id)
            self.framer.commit_frame()
            memoized = self.memo.get(id(obj))
            if memoized is not None:
                self.write(self.get(memoized[0]))
            else:
                self.save_global(obj)

    class _DillWireUnpickler(dill_module.Unpickler):
        def find_class(self, module, name):
            return _find_class(super(), module, name)

    _dill_classes = (_DillWirePickler, _DillWireUnpickler)
    return _dill_classes


def _module_kind(pickle_module) -> str:
    if pickle_module is pickle or pickle_module is None:
        return "pickle"
    name = getattr(pickle_module, "__name__", "")
    if name.startswith("cloudpickle"):
        return "cloudpickle"
    if name.startswith("dill"):
        return "dill"
    return "other"


def _dump_with(pickler_class, obj, protocol) -> bytes:
    buf = io.BytesIO()
    pickler_class(buf, protocol).dump(obj)
    return buf.getvalue()


def dumps(obj, protocol=None, pickle_module=pickle, *, fast=True) -> bytes:
    """Pickle ``obj`` with stock wire names, using ``pickle_module``'s flavour.

    With stdlib pickle (protocol >= 4) the C pickler does the work: plainly if ``fast`` (kept
    unless it fails or the result mentions ``oxipp`` at all: an oxipp object written under its
    own name, or merely a user string containing "oxipp"), then through :class:`_CWirePickler`;
    the pure-Python :class:`_WirePickler` is the reference and the last resort. All three give
    the same bytes whenever they succeed. Callers pass ``fast=False`` when they know the object
    holds registered objects, skipping a wasted plain attempt.
    """
    if protocol is None:
        protocol = pickle.DEFAULT_PROTOCOL
    kind = _module_kind(pickle_module)
    if kind == "dill":
        return _dump_with(_dill_wire_classes(pickle_module)[0], obj, protocol)
    if kind == "other":
        return pickle_module.dumps(obj, protocol)
    if fast:
        c_dumps = pickle.dumps if kind == "pickle" else pickle_module.dumps
        try:
            data = c_dumps(obj, protocol)
        except Exception:
            pass
        else:
            if b"oxipp" not in data:
                return data
    if kind == "pickle":
        if protocol >= 4 and _c_wire_enabled:
            try:
                data = _dumps_c_wire(obj, protocol)
            except Exception:
                data = None  # the Python pickler raises the real error, if there is one
            if data is not None:
                return data
        return _dump_with(_WirePickler, obj, protocol)
    return _dump_with(_cloudpickle_pickler_class(pickle_module), obj, protocol)


def loads(data, pickle_module=pickle):
    """Unpickle ``data`` (bytes-like), reading stock names as oxipp objects."""
    kind = _module_kind(pickle_module)
    if kind == "other":
        return pickle_module.loads(data)
    if kind == "dill":
        return _dill_wire_classes(pickle_module)[1](io.BytesIO(data)).load()
    return WireUnpickler(io.BytesIO(data)).load()
