"""A compact, list-like record of sent msg_ids.

``Client.history`` and ``View.history`` list every request ever sent, as in ipyparallel, so
they grow by one entry per task. Our msg_ids are ``<session>_<pid>_<counter>``: storing just the
counter (8 bytes) instead of a ~100-byte str keeps a million-task ``imap`` from holding ~100 MB
of history. Anything else appended (derived broadcast ids, ids from other clients) is kept
verbatim.
"""

from __future__ import annotations

from array import array
from collections.abc import MutableSequence

_FOREIGN = 0xFFFF_FFFF_FFFF_FFFF


class History(MutableSequence):
    """A list of msg_id strings, stored compactly when they carry ``prefix``."""

    def __init__(self, prefix: str, items=()):
        self._prefix = prefix
        self._n = array("Q")
        self._foreign: dict[int, str] = {}
        self.extend(items)

    def _encode(self, index: int, msg_id: str) -> int:
        if msg_id.startswith(self._prefix):
            tail = msg_id[len(self._prefix) :]
            if tail.isdigit() and len(tail) < 19 and (tail == "0" or tail[0] != "0"):
                return int(tail)
        self._foreign[index] = msg_id
        return _FOREIGN

    def _decode(self, index: int) -> str:
        n = self._n[index]
        if n == _FOREIGN:
            return self._foreign[index]
        return f"{self._prefix}{n}"

    def __len__(self):
        return len(self._n)

    def __getitem__(self, index):
        if isinstance(index, slice):
            return [self._decode(i) for i in range(len(self._n))[index]]
        if index < 0:
            index += len(self._n)
        if not 0 <= index < len(self._n):
            raise IndexError("history index out of range")
        return self._decode(index)

    def append(self, msg_id: str):
        self._n.append(self._encode(len(self._n), msg_id))

    def extend(self, items):
        for m in items:
            self.append(m)

    def __setitem__(self, index, value):
        items = list(self)
        items[index] = value
        self._reset(items)

    def __delitem__(self, index):
        items = list(self)
        del items[index]
        self._reset(items)

    def insert(self, index, value):
        items = list(self)
        items.insert(index, value)
        self._reset(items)

    def clear(self):
        self._n = array("Q")
        self._foreign = {}

    def _reset(self, items):
        self.clear()
        self.extend(items)

    def __iter__(self):
        for i in range(len(self._n)):
            yield self._decode(i)

    def __contains__(self, msg_id):
        return any(m == msg_id for m in self)

    def __eq__(self, other):
        if isinstance(other, (list, History)):
            return list(self) == list(other)
        return NotImplemented

    def __repr__(self):
        return repr(list(self))
