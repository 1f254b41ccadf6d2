"""Pickled functions, remembered: ``rc[0].apply(f)`` in a loop pickles ``f`` once.

Pickling a plain function by value (its code object, name, module and defaults) costs ~25 µs,
about a tenth of the client's whole CPU for a no-op ``apply_sync``, and the result never changes
while the function does not. A cached pickle is reused only while everything that went into it
is provably the same:

* the function has no closure (cell contents are mutable) and no kwdefaults or annotations
  (mutable dicts), and its defaults are immutable atoms;
* ``__code__``, ``__defaults__`` are the very objects pickled (both are replaced, not mutated,
  when user code changes them), ``__module__``/``__name__`` are equal;
* the process still pickles functions with oxipp's own canning and stdlib ``pickle``
  (``use_dill()``/``use_cloudpickle()`` pickle functions with their globals' current values,
  which can change between calls: those are never cached).

Entries are weakly keyed by the function, so a cache entry never keeps a function alive.
"""

from __future__ import annotations

import weakref
from types import FunctionType

__all__ = ["DecodedCache", "FunctionPickleCache", "plain_canned_function"]

#: default values whose pickle cannot change while the defaults tuple is the same object
_ATOMS = frozenset({type(None), bool, int, float, complex, str, bytes})


def _cacheable(f) -> bool:
    if f.__closure__ is not None or f.__kwdefaults__ or f.__annotations__:
        return False
    defaults = f.__defaults__
    return defaults is None or all(type(d) in _ATOMS for d in defaults)


class FunctionPickleCache:
    """Maps a function to the buffers it serialized to, valid under the rules above."""

    def __init__(self):
        self._entries: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()

    def get(self, f, how):
        """The buffers cached for ``f`` if still valid, else None. ``how`` identifies the
        serializer in use (pickle module, function canner, thresholds) and must be equal."""
        entry = self._entries.get(f)
        if entry is None:
            return None
        code, defaults, module, name, cached_how, buffers = entry
        if (
            f.__code__ is code
            and f.__defaults__ is defaults
            and f.__module__ == module
            and f.__name__ == name
            and cached_how == how
            and not f.__kwdefaults__
            and not f.__annotations__
        ):
            return list(buffers)
        del self._entries[f]
        return None

    def put(self, f, how, buffers) -> None:
        if type(f) is FunctionType and _cacheable(f):
            self._entries[f] = (
                f.__code__,
                f.__defaults__,
                f.__module__,
                f.__name__,
                how,
                tuple(buffers),
            )

    def __len__(self) -> int:
        return len(self._entries)


def plain_canned_function(canned) -> bool:
    """Whether a decoded CannedFunction rebuilds the same function every time: the rules
    above, read off the canned form (no closure, kwdefaults, annotations or buffers; atom
    defaults). Rebuilding it still makes a fresh function object per request."""
    from .canning import CannedFunction

    if type(canned) is not CannedFunction:
        return False
    if canned.closure or canned.kwdefaults or canned.annotations or canned.buffers:
        return False
    defaults = canned.defaults
    return defaults is None or all(type(d) in _ATOMS for d in defaults)


class DecodedCache:
    """The engine's side of the function cache: request bytes -> what they decoded to.

    A client that calls the same function again sends the very same pickle (see above), and
    the engine spent ~10 µs per request unpickling it again (its code object above all) out
    of ~100 µs for a whole no-op apply. Only immutable decodings are stored (the caller
    decides: plain canned functions, the apply info dict), at most ``max_entries`` of at most
    ``max_bytes`` each; the oldest goes first when full.
    """

    def __init__(self, max_entries: int = 256, max_bytes: int = 64 * 1024):
        self._entries: dict = {}
        self.max_entries = max_entries
        self.max_bytes = max_bytes

    def key(self, buf):
        """The lookup key for ``buf`` (bytes), or None if it is too big to keep."""
        if len(buf) > self.max_bytes:
            return None
        return buf if type(buf) is bytes else bytes(buf)

    def get(self, key):
        return self._entries.get(key)

    def put(self, key, value) -> None:
        entries = self._entries
        if len(entries) >= self.max_entries:
            del entries[next(iter(entries))]
        entries[key] = value

    def __len__(self) -> int:
        return len(self._entries)
