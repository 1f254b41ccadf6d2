"""Partitioning sequences for scatter/gather and DirectView.map.

``Map`` ('b'): contiguous blocks, the first ``len % n`` parts one element longer.
``RoundRobinMap`` ('r'): part ``p`` is ``seq[p::n]``. Parts of numpy arrays are arrays and join
back with numpy; lists and tuples join into a list; anything else is left as a list of parts.
"""

from __future__ import annotations

import sys
from itertools import chain, islice

__all__ = ["Map", "RoundRobinMap", "dists", "mappable", "is_array"]


def is_array(obj) -> bool:
    """Is ``obj`` a numpy array? (without importing numpy if nobody has)"""
    np = sys.modules.get("numpy")
    return np is not None and isinstance(obj, np.ndarray)


class Map:
    """Contiguous-block partitioning."""

    def getPartition(self, seq, p, q, n=None):
        """Part ``p`` of ``q`` of ``seq`` (``n`` = its length, if known)."""
        n = len(seq) if n is None else n
        if p < 0 or p >= q:
            raise ValueError(f"must have 0 <= p <= q, but have p={p},q={q}")
        base, extra = divmod(n, q)
        low = p * base + min(p, extra)
        high = low + base + (1 if p < extra else 0)
        try:
            return seq[low:high]
        except TypeError:  # iterators cannot be sliced
            return list(islice(seq, low, high))

    def joinPartitions(self, listOfPartitions):
        return self.concatenate(listOfPartitions)

    def concatenate(self, listOfPartitions):
        first = listOfPartitions[0]
        if is_array(first):
            return sys.modules["numpy"].concatenate(listOfPartitions)
        if isinstance(first, (list, tuple)):
            return list(chain.from_iterable(listOfPartitions))
        return listOfPartitions


class RoundRobinMap(Map):
    """Striped partitioning: part ``p`` holds elements ``p, p+q, p+2q, ...``."""

    def getPartition(self, seq, p, q, n=None):
        n = len(seq) if n is None else n
        return seq[p:n:q]

    def joinPartitions(self, listOfPartitions):
        first = listOfPartitions[0]
        if is_array(first):
            return self.flatten_array(listOfPartitions)
        if isinstance(first, (list, tuple)):
            return self.flatten_list(listOfPartitions)
        return listOfPartitions

    def flatten_array(self, listOfPartitions):
        np = sys.modules["numpy"]
        shape = list(listOfPartitions[0].shape)
        shape[0] = sum(part.shape[0] for part in listOfPartitions)
        out = np.ndarray(shape)
        q = len(listOfPartitions)
        for p, part in enumerate(listOfPartitions):
            out[p : shape[0] : q] = part
        return out

    def flatten_list(self, listOfPartitions):
        flat = []
        for i in range(len(listOfPartitions[0])):
            flat.extend(part[i] for part in listOfPartitions if len(part) > i)
        return flat


def mappable(obj) -> bool:
    """Can ``obj`` be partitioned?"""
    return isinstance(obj, (tuple, list)) or is_array(obj)


dists = {"b": Map, "r": RoundRobinMap}
