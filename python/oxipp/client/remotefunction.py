"""``@remote`` and ``@parallel``: functions that run through a view when called.

A RemoteFunction applies the function through its view. A ParallelFunction partitions its
argument sequences: one task per engine for a DirectView, one per ``chunksize`` elements for a
LoadBalancedView; calling it applies the function to each part, ``.map`` applies it to each
element. Both honour the view's flags plus the ones given here.
"""

from __future__ import annotations

import warnings
from functools import wraps
from inspect import signature

from ..serialize import PrePickled
from ..serialize.stock_helpers import _map
from . import map as _maps
from ._util import getname

# getname stays importable from here (views use it), as in stock, but is not exported
__all__ = ["remote", "parallel", "RemoteFunction", "ParallelFunction"]


def remote(view, block=None, **flags):
    """Decorator: ``f(...)`` becomes ``view.apply(f, ...)``."""

    def remote_function(f):
        return RemoteFunction(view, f, block=block, **flags)

    return remote_function


def parallel(view, dist="b", block=None, ordered=True, **flags):
    """Decorator: ``f(seq)`` runs on partitions of ``seq``; ``f.map(seq)`` elementwise."""

    def parallel_function(f):
        return ParallelFunction(view, f, dist=dist, block=block, ordered=ordered, **flags)

    return parallel_function


def sync_view_results(method):
    """Forget finished msg_ids of the view after the call (as view methods do)."""

    @wraps(method)
    def wrapper(self, *args, **kwargs):
        view = self.view
        if view._in_sync_results:
            return method(self, *args, **kwargs)
        view._in_sync_results = True
        try:
            return method(self, *args, **kwargs)
        finally:
            view._in_sync_results = False
            view._sync_results()

    return wrapper


class RemoteFunction:
    """A function that runs through ``view`` (with ``flags``) when called."""

    view = None
    func = None
    block = None
    flags = None

    def __init__(self, view, f, block=None, **flags):
        self.view = view
        self.func = f
        self.block = block
        self.flags = flags
        self.__name__ = getname(f)
        if getattr(f, "__doc__", None):
            self.__doc__ = f"{self.__class__.__name__} wrapping:\n{f.__doc__}"
        if getattr(f, "__signature__", None):
            self.__signature__ = f.__signature__
        else:
            try:
                self.__signature__ = signature(f)
            except Exception:  # noqa: BLE001 - builtins and odd callables have none; fine
                pass

    def __call__(self, *args, **kwargs):
        block = self.view.block if self.block is None else self.block
        with self.view.temp_flags(block=block, **self.flags):
            return self.view.apply(self.func, *args, **kwargs)


_prepickled_map = None


class ParallelFunction(RemoteFunction):
    """Calls split their sequence arguments into parts that run in parallel."""

    chunksize = None
    ordered = None
    mapObject = None

    def __init__(
        self,
        view,
        f,
        dist="b",
        block=None,
        chunksize=None,
        ordered=True,
        return_exceptions=False,
        **flags,
    ):
        super().__init__(view, f, block=block, **flags)
        self.chunksize = chunksize
        self.ordered = ordered
        self.return_exceptions = return_exceptions
        self.mapObject = _maps.dists[dist]()

    @sync_view_results
    def __call__(self, *sequences, **kwargs):
        from .asyncresult import AsyncMapResult

        global _prepickled_map
        if _prepickled_map is None:
            _prepickled_map = PrePickled(_map)
        client = self.view.client
        mapping = kwargs.pop("__ipp_mapping", False)
        if kwargs:
            raise TypeError(f"Unexpected keyword arguments: {kwargs}")
        sequences = list(sequences)
        lens = []
        for i, seq in enumerate(sequences):
            try:
                n = len(seq)
            except Exception:  # noqa: BLE001 - generators etc.: materialise, as stock does
                seq = sequences[i] = list(seq)
                n = len(seq)
            lens.append(n)
        maxlen = max(lens, default=0)
        if maxlen == 0:
            return []
        if not mapping and min(lens) != maxlen:
            raise ValueError(f"all sequences must have equal length, but have {lens}")

        balanced = "Balanced" in type(self.view).__name__
        if balanced:
            if self.chunksize:
                nparts = maxlen // self.chunksize + int(maxlen % self.chunksize > 0)
            else:
                nparts = maxlen
            targets = [None] * nparts
        else:
            if self.chunksize:
                warnings.warn(
                    "`chunksize` is ignored unless load balancing", UserWarning, stacklevel=2
                )
            targets = self.view.targets
            if targets == "all" or targets is None:
                targets = client._build_targets(targets)[1]
            elif isinstance(targets, int):
                targets = [targets]
            nparts = len(targets)

        futures = []
        chunk_sizes = {}
        pf = PrePickled(self.func)
        f = _prepickled_map if mapping else pf
        chunks = []  # (target, args, chunk size)
        for index, t in enumerate(targets):
            args = [self.mapObject.getPartition(seq, index, nparts, maxlen) for seq in sequences]
            if sum(len(a) for a in args) == 0:
                continue
            chunk_size = min(len(a) for a in args) if mapping else 1
            if mapping:
                # the engine only iterates a mapped part: a short range goes as a list,
                # which pickles in a third of the time (no global to look up) and as fewer bytes
                args = [list(a) if type(a) is range and len(a) <= 8 else a for a in args]
            args = [PrePickled(a) for a in args]
            chunks.append((t, [pf, *args] if mapping else args, chunk_size))
        if balanced:
            # every chunk with the same flags: one submission, no AsyncResult per chunk
            with self.view.temp_flags(**self.flags):
                futures = self.view._apply_chunks(f, [args for _, args, _ in chunks])
            for future, (_, _, size) in zip(futures, chunks):
                chunk_sizes[future.msg_id] = size
        for t, args, chunk_size in chunks if not balanced else ():
            view = client[t]
            with view.temp_flags(block=False, **self.flags):
                ar = view.apply(f, *args)
                ar.owner = False
            chunk_sizes[ar.msg_ids[0]] = chunk_size
            futures.extend(ar._children)

        r = AsyncMapResult(
            client,
            futures,
            self.mapObject,
            fname=getname(self.func),
            ordered=self.ordered,
            return_exceptions=self.return_exceptions,
            chunk_sizes=chunk_sizes,
        )
        if self.block:
            try:
                return r.get()
            except KeyboardInterrupt:
                return r
        return r

    def map(self, *sequences):
        """Applies the function to each element (sequences of unequal length are allowed)."""
        return self(*sequences, __ipp_mapping=True)
