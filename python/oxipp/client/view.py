"""Views: how work is addressed to engines.

* :class:`DirectView` sends each request to explicit engines (the mux channel).
* :class:`LoadBalancedView` lets the controller's scheduler pick engines (the task channel),
  with dependencies, timeouts, retries and target restrictions.
* :class:`BroadcastView` sends one request that the broadcast scheduler fans out.

Semantics follow ipyparallel 9.2 (spec §7.3-7.5); flags set with ``set_flags`` or
``temp_flags`` are the defaults of each call.
"""

from __future__ import annotations

import builtins
import concurrent.futures
import inspect
import json
import secrets
import threading
import time
import warnings
from collections import deque
from contextlib import contextmanager
from functools import wraps

from .. import serialize
from ..serialize import Dependency, PrePickled, dependent, interactive
from ..serialize.stock_helpers import _pull, _push
from .asyncresult import AsyncMapResult, AsyncResult
from .history import History
from .map import dists as _map_dists
from .remotefunction import ParallelFunction, getname, parallel, remote

__all__ = ["View", "DirectView", "LoadBalancedView", "BroadcastView", "ViewExecutor"]

# A load-balanced map writes its tasks to the controller in batches of this many (a write
# and a controller wake-up per batch instead of per task).
FLUSH_EVERY = 32


def _saves_ids(method):
    """Records the msg_ids a call sent in the view's history and outstanding set."""

    @wraps(method)
    def wrapper(self, *args, **kwargs):
        before = len(self.client.history)
        try:
            return method(self, *args, **kwargs)
        finally:
            n = len(self.client.history) - before
            if n > 0:
                ids = self.client.history[-n:]
                self.history.extend(ids)
                self._outstanding.update(ids)

    return wrapper


def _syncs_results(method):
    """After the call, forgets outstanding ids the client has results for."""

    @wraps(method)
    def wrapper(self, *args, **kwargs):
        if self._in_sync_results:
            return method(self, *args, **kwargs)
        self._in_sync_results = True
        try:
            return method(self, *args, **kwargs)
        finally:
            self._in_sync_results = False
            self._sync_results()

    return wrapper


def _prepickled(f, args, kwargs):
    """``f``, its args and kwargs pickled once, to be sent to many targets."""
    return (
        PrePickled(f),
        [PrePickled(a) for a in args],
        {k: PrePickled(v) for k, v in kwargs.items()},
    )


def _result_or_future(ar, block):
    """What an apply returns: the result if blocking (the AsyncResult after Ctrl-C), else
    the AsyncResult."""
    if block:
        try:
            return ar.get()
        except KeyboardInterrupt:
            pass
    return ar


class View:
    """Base of the views: flags, waiting, history and the map/apply family."""

    _flag_names = ("targets", "block", "track", "label")

    def __init__(self, client=None, socket=None, **flags):
        if type(self) is View:
            raise TypeError("Don't use base View objects, use subclasses")
        self.client = client
        self._socket = socket
        self.history = History(client._history_prefix)
        self._outstanding = set()
        self._sync_at = 64
        self.results = client.results
        self.block = client.block
        self.track = False
        self.targets = None
        self.label = None
        self._in_sync_results = False
        self.executor = ViewExecutor(self)
        self.set_flags(**flags)

    def __repr__(self):
        t = str(self.targets)
        if len(t) > 16:
            t = t[:12] + "...]"
        return f"<{self.__class__.__name__} {t}>"

    def __len__(self):
        if isinstance(self.targets, list):
            return len(self.targets)
        if isinstance(self.targets, int):
            return 1
        return len(self.client)

    def set_flags(self, **kwargs):
        """Sets default flags of this view's calls; returns the view."""
        for name, value in kwargs.items():
            if name not in self._flag_names:
                raise KeyError(f"Invalid name: {name!r}")
            setattr(self, name, value)
        return self

    @contextmanager
    def temp_flags(self, **kwargs):
        """Flags in effect only inside the ``with`` block."""
        saved = {f: getattr(self, f) for f in self._flag_names}
        self.set_flags(**kwargs)
        try:
            yield
        finally:
            self.set_flags(**saved)

    @property
    def outstanding(self):
        """msg_ids sent through this view that have no result yet."""
        self._sync_results(force=True)
        return self._outstanding

    @outstanding.setter
    def outstanding(self, value):
        self._outstanding = set(value)

    def _sync_results(self, force=False):
        # Forgetting finished ids costs O(outstanding); after every call that made a loop of
        # N apply_async calls O(N^2). Between reads, prune only when the set has doubled.
        n = len(self._outstanding)
        if n and (force or n >= self._sync_at):
            self._outstanding.intersection_update(self.client.outstanding)
            self._sync_at = 2 * len(self._outstanding) + 64

    def _really_apply(self, f, args, kwargs, block=None, **options):
        raise NotImplementedError("Implement in subclasses")

    def apply(self, __ipp_f, *args, **kwargs):
        """Calls ``f(*args, **kwargs)`` remotely (blocking if the view's ``block`` flag)."""
        return self._really_apply(__ipp_f, args, kwargs)

    def apply_async(self, __ipp_f, *args, **kwargs):
        """Calls ``f(*args, **kwargs)`` remotely; returns an AsyncResult."""
        return self._really_apply(__ipp_f, args, kwargs, block=False)

    def apply_sync(self, __ipp_f, *args, **kwargs):
        """Calls ``f(*args, **kwargs)`` remotely and waits for the result."""
        return self._really_apply(__ipp_f, args, kwargs, block=True)

    def spin(self):
        """Deprecated no-op."""
        self._sync_results()

    @_syncs_results
    def wait(self, jobs=None, timeout=-1):
        """Waits for ``jobs`` (default: everything sent through this view)."""
        if jobs is None:
            jobs = self.history
        return self.client.wait(jobs, timeout)

    def abort(self, jobs=None, targets=None, block=None):
        """Aborts jobs that have not started (default: this view's outstanding ones)."""
        block = self.block if block is None else block
        targets = self.targets if targets is None else targets
        jobs = list(self.outstanding) if jobs is None else jobs
        return self.client.abort(jobs=jobs, targets=targets, block=block)

    def queue_status(self, targets=None, verbose=False):
        targets = self.targets if targets is None else targets
        return self.client.queue_status(targets=targets, verbose=verbose)

    def purge_results(self, jobs=[], targets=[]):  # noqa: B006 - stock signature
        if targets is None or targets == "all":
            targets = self.targets
        return self.client.purge_results(jobs=jobs, targets=targets)

    def shutdown(self, targets=None, restart=False, hub=False, block=None):
        block = self.block if block is None else block
        if targets is None or targets == "all":
            targets = self.targets
        return self.client.shutdown(targets=targets, restart=restart, hub=hub, block=block)

    def get_result(self, indices_or_msg_ids=None, block=None, owner=False):
        if indices_or_msg_ids is None:
            indices_or_msg_ids = -1
        if isinstance(indices_or_msg_ids, int):
            indices_or_msg_ids = self.history[indices_or_msg_ids]
        elif isinstance(indices_or_msg_ids, (list, tuple, set)):
            indices_or_msg_ids = [
                self.history[i] if isinstance(i, int) else i for i in indices_or_msg_ids
            ]
        return self.client.get_result(indices_or_msg_ids, block=block, owner=owner)

    def map(self, f, *sequences, **kwargs):
        raise NotImplementedError()

    def map_async(self, f, *sequences, **kwargs):
        """Non-blocking map: returns an AsyncMapResult."""
        if "block" in kwargs:
            raise TypeError("map_async doesn't take a `block` keyword argument.")
        kwargs["block"] = False
        return self.map(f, *sequences, **kwargs)

    def map_sync(self, f, *sequences, **kwargs):
        """Blocking map: returns the list of results."""
        if "block" in kwargs:
            raise TypeError("map_sync doesn't take a `block` keyword argument.")
        kwargs["block"] = True
        return self.map(f, *sequences, **kwargs)

    def imap(self, f, *sequences, **kwargs):
        """Iterates over results as they arrive."""
        return iter(self.map_async(f, *sequences, **kwargs))

    def remote(self, block=None, **flags):
        """Decorator: calling the function applies it through this view."""
        block = self.block if block is None else block
        return remote(self, block=block, **flags)

    def parallel(self, dist="b", block=None, **flags):
        """Decorator: calling the function maps it over partitions of its arguments."""
        block = self.block if block is None else block
        return parallel(self, dist=dist, block=block, **flags)


class DirectView(View):
    """Sends each request to explicit engines. ``view[key]`` pulls, ``view[key] = v`` pushes."""

    def __init__(self, client=None, socket=None, targets=None, **flags):
        super().__init__(client=client, socket=socket, targets=targets, **flags)

    @property
    def importer(self):
        return self.sync_imports(True)

    @contextmanager
    def sync_imports(self, local=True, quiet=False):
        """Imports in the ``with`` block happen here (if ``local``) and on the engines."""
        local_import = builtins.__import__
        modules = set()
        results = []
        context_frame = inspect.currentframe().f_back.f_back

        @interactive
        def remote_import(name, fromlist, level):
            import sys

            user_ns = globals()
            mod = __import__(name, fromlist=fromlist, level=level)
            if fromlist:
                for key in fromlist:
                    user_ns[key] = getattr(mod, key)
            else:
                user_ns[name] = sys.modules[name]

        def view_import(name, globals={}, locals={}, fromlist=[], level=0):  # noqa: B006
            saved = builtins.__import__
            builtins.__import__ = local_import
            try:
                if inspect.currentframe().f_back is not context_frame:
                    return local_import(name, globals, locals, fromlist, level)
                if not local:
                    raise NotImplementedError("remote-only imports not yet implemented")
                mod = local_import(name, globals, locals, fromlist, level)
                key = name + ":" + ",".join(fromlist or [])
                if level <= 0 and key not in modules:
                    modules.add(key)
                    if not quiet:
                        if fromlist:
                            print(f"importing {','.join(fromlist)} from {name} on engine(s)")
                        else:
                            print(f"importing {name} on engine(s)")
                    results.append(self.apply_async(remote_import, name, fromlist, level))
                return mod
            finally:
                builtins.__import__ = saved

        builtins.__import__ = view_import
        try:
            yield
        except ImportError:
            if local:
                raise
        finally:
            builtins.__import__ = local_import
        for r in results:
            r.get()

    def use_dill(self):
        """Pickle with dill here and on the engines."""
        serialize.use_dill()
        return self.apply(serialize.use_dill)

    def use_cloudpickle(self):
        """Pickle with cloudpickle here and on the engines."""
        serialize.use_cloudpickle()
        return self.apply(serialize.use_cloudpickle)

    def use_pickle(self):
        """Back to plain pickle here and on the engines."""
        serialize.use_pickle()
        return self.apply(serialize.use_pickle)

    @_syncs_results
    @_saves_ids
    def _really_apply(
        self, f, args=None, kwargs=None, targets=None, block=None, track=None, label=None
    ):
        args = [] if args is None else args
        kwargs = {} if kwargs is None else kwargs
        block = self.block if block is None else block
        track = self.track if track is None else track
        targets = self.targets if targets is None else targets
        label = self.label if label is None else label
        metadata = {"label": label}
        idents, int_targets = self.client._build_targets(targets)
        # pickle once, send to every target
        pf, pargs, pkwargs = _prepickled(f, args, kwargs)
        futures = [
            self.client.send_apply_request(
                self._socket, pf, pargs, pkwargs, track=track, ident=ident, metadata=metadata
            )
            for ident in idents
        ]
        if isinstance(targets, int):
            futures = futures[0]
        ar = AsyncResult(self.client, futures, fname=getname(f), targets=int_targets, owner=True)
        return _result_or_future(ar, block)

    @_syncs_results
    def map(self, f, *sequences, block=None, track=False, return_exceptions=False, label=None):
        """Parallel map: each engine gets one contiguous chunk of the sequences."""
        block = self.block if block is None else block
        label = self.label if label is None else label
        if not sequences:
            raise ValueError("must have some sequences to map onto!")
        pf = ParallelFunction(
            self, f, block=block, track=track, return_exceptions=return_exceptions, label=label
        )
        return pf.map(*sequences)

    @_syncs_results
    @_saves_ids
    def execute(self, code, silent=True, targets=None, block=None, label=None):
        """Runs ``code`` on the engines; results are ExecuteReply objects."""
        block = self.block if block is None else block
        targets = self.targets if targets is None else targets
        label = self.label if label is None else label
        idents, int_targets = self.client._build_targets(targets)
        futures = [
            self.client.send_execute_request(
                self._socket, code, silent=silent, ident=ident, metadata={"label": label}
            )
            for ident in idents
        ]
        if isinstance(targets, int):
            futures = futures[0]
        ar = AsyncResult(self.client, futures, fname="execute", targets=int_targets, owner=True)
        if block:
            try:
                ar.get()
                ar.wait_for_output()
            except KeyboardInterrupt:
                pass
        return ar

    def run(self, filename, targets=None, block=None, label=None):
        """Executes the contents of a local file on the engines."""
        with open(filename) as f:
            code = f.read() + "\n"
        return self.execute(code, block=block, targets=targets, label=label)

    def update(self, ns):
        """push(ns) with the view's flags."""
        return self.push(ns, block=self.block, track=self.track)

    def push(self, ns, targets=None, block=None, track=None):
        """Sets the names in dict ``ns`` in the engines' namespaces."""
        block = self.block if block is None else block
        track = self.track if track is None else track
        targets = self.targets if targets is None else targets
        if not isinstance(ns, dict):
            raise TypeError(f"Must be a dict, not {type(ns)}")
        return self._really_apply(_push, kwargs=ns, block=block, track=track, targets=targets)

    def get(self, key_s):
        """Blocking pull."""
        return self.pull(key_s, block=True)

    def pull(self, names, targets=None, block=None):
        """Gets one name (or a list of names) from the engines' namespaces."""
        block = self.block if block is None else block
        targets = self.targets if targets is None else targets
        if isinstance(names, (list, tuple, set)):
            for key in names:
                if not isinstance(key, str):
                    raise TypeError(f"keys must be str, not type {type(key)!r}")
        elif not isinstance(names, str):
            raise TypeError(f"names must be strs, not {names!r}")
        return self._really_apply(_pull, (names,), block=block, targets=targets)

    def scatter(self, key, seq, dist="b", flatten=False, targets=None, block=None, track=None):
        """Partitions ``seq`` over the engines and pushes each part as ``key``."""
        block = self.block if block is None else block
        track = self.track if track is None else track
        targets = self.targets if targets is None else targets
        targets = self.client._build_targets(targets)[1]
        map_object = _map_dists[dist]()
        nparts = len(targets)
        futures = []
        lengths = []
        for index, eid in enumerate(targets):
            part = map_object.getPartition(seq, index, nparts)
            ns = {key: part[0]} if flatten and len(part) == 1 else {key: part}
            r = self.push(ns, block=False, track=track, targets=eid)
            r.owner = False
            futures.extend(r._children)
            lengths.append(len(part))
        r = AsyncResult(self.client, futures, fname="scatter", targets=targets, owner=True)
        r._scatter_lengths = lengths
        if block:
            r.wait()
            return None
        return r

    @_syncs_results
    @_saves_ids
    def gather(self, key, dist="b", targets=None, block=None):
        """Pulls ``key`` from the engines and joins the parts (the inverse of scatter)."""
        block = self.block if block is None else block
        targets = self.targets if targets is None else targets
        map_object = _map_dists[dist]()
        targets = self.client._build_targets(targets)[1]
        futures = []
        for eid in targets:
            ar = self.pull(key, block=False, targets=eid)
            ar.owner = False
            futures.extend(ar._children)
        r = AsyncMapResult(self.client, futures, map_object, fname="gather")
        if block:
            try:
                return r.get()
            except KeyboardInterrupt:
                pass
        return r

    def __getitem__(self, key):
        return self.get(key)

    def __setitem__(self, key, value):
        self.update({key: value})

    def clear(self, targets=None, block=None):
        """Clears the engines' namespaces."""
        block = self.block if block is None else block
        targets = self.targets if targets is None else targets
        return self.client.clear(targets=targets, block=block)

    def activate(self, suffix=""):
        """Registers ``%px{suffix}``, ``%%px{suffix}``, ``%autopx{suffix}``,
        ``%pxresult{suffix}`` and ``%pxconfig{suffix}`` for this view."""
        try:
            from IPython import get_ipython
        except ImportError:
            get_ipython = None
        ip = get_ipython() if get_ipython else None
        if ip is None:
            warnings.warn(
                "The IPython parallel magics (%px, etc.) only work within IPython.",
                stacklevel=2,
            )
            return
        from .magics import ParallelMagics

        ip.magics_manager.register(ParallelMagics(ip, self, suffix))


def _not_coalescing(method):
    @wraps(method)
    def wrapper(self, *args, **kwargs):
        saved = self.is_coalescing
        try:
            self.is_coalescing = False
            return method(self, *args, **kwargs)
        finally:
            self.is_coalescing = saved

    return wrapper


def _broadcast_map(f, *sequence_names):
    """Runs on each engine: maps ``f`` over the scattered parts named ``sequence_names``."""
    from IPython import get_ipython

    ip = get_ipython()
    sequences = [ip.user_ns.pop(name) for name in sequence_names]
    return list(map(f, *sequences))


class BroadcastView(DirectView):
    """One request per call; the controller's broadcast scheduler delivers it to every target.
    With ``is_coalescing`` the replies come back as one."""

    is_coalescing = False

    def __init__(self, client=None, socket=None, targets=None, is_coalescing=False, **flags):
        self.is_coalescing = is_coalescing
        super().__init__(client=client, socket=socket, targets=targets, **flags)

    def _init_metadata(self, target_tuples):
        return {
            "targets": target_tuples,
            "is_broadcast": True,
            "is_coalescing": self.is_coalescing,
        }

    def _make_async_result(self, message_future, s_idents, **kwargs):
        client = self.client
        original = message_future.msg_id
        if not self.is_coalescing:
            futures = []
            for ident in s_idents:
                derived = f"{original}_{ident}"
                future = client.create_message_futures(
                    derived, message_future.header, async_result=True, track=True
                )
                future[0]._sent_by = message_future
                client.outstanding.add(derived)
                client._outstanding_dict[ident].add(derived)
                self._outstanding.add(derived)
                futures.append(future[0])
            # the original id is never answered itself
            self._outstanding.discard(original)
            client.outstanding.discard(original)
            client._futures.pop(original, None)
            client._output_futures.pop(original, None)
        else:
            client.outstanding.add(original)
            for ident in s_idents:
                client._outstanding_dict[ident].add(original)
            futures = message_future
        ar = AsyncResult(client, futures, owner=True, **kwargs)
        if self.is_coalescing:

            def forget(_):
                for ident in s_idents:
                    client._outstanding_dict.get(ident, set()).discard(original)

            ar.add_done_callback(forget)
        return ar

    @_syncs_results
    @_saves_ids
    def _really_apply(
        self, f, args=None, kwargs=None, block=None, track=None, targets=None, label=None
    ):
        args = [] if args is None else args
        kwargs = {} if kwargs is None else kwargs
        block = self.block if block is None else block
        track = self.track if track is None else track
        targets = self.targets if targets is None else targets
        idents, int_targets = self.client._build_targets(targets)
        s_idents = [i.decode("utf8") for i in idents]
        metadata = self._init_metadata([list(t) for t in zip(s_idents, int_targets)])
        result = []

        def hook(message_future):
            result.append(
                self._make_async_result(
                    message_future, s_idents, fname=getname(f), targets=int_targets
                )
            )

        self.client.send_apply_request(
            self._socket,
            *_prepickled(f, args, kwargs),
            track=track,
            metadata=metadata,
            message_future_hook=hook,
        )
        ar = result[0]
        return _result_or_future(ar, block)

    @_syncs_results
    @_saves_ids
    @_not_coalescing
    def execute(self, code, silent=True, targets=None, block=None, label=None):
        block = self.block if block is None else block
        targets = self.targets if targets is None else targets
        idents, int_targets = self.client._build_targets(targets)
        s_idents = [i.decode("utf8") for i in idents]
        metadata = self._init_metadata([list(t) for t in zip(s_idents, int_targets)])
        result = []

        def hook(message_future):
            result.append(
                self._make_async_result(
                    message_future, s_idents, fname="execute", targets=int_targets
                )
            )

        self.client.send_execute_request(
            self._socket, code, silent=silent, metadata=metadata, message_future_hook=hook
        )
        ar = result[0]
        if block:
            try:
                ar.get()
                ar.wait_for_output()
            except KeyboardInterrupt:
                pass
        return ar

    @_not_coalescing
    def map(self, f, *sequences, block=None, track=False, return_exceptions=False):
        """Scatters the sequences, applies ``f`` elementwise in one broadcast, gathers."""
        block = self.block if block is None else block
        key = secrets.token_hex(5)
        map_object = _map_dists["b"]()
        names = []
        chunk_sizes = None
        for i, seq in enumerate(sequences):
            name = f"_seq_{key}_{i}"
            names.append(name)
            try:
                len(seq)
            except TypeError:
                seq = list(seq)
            ar = self.scatter(name, seq, dist="b", block=False, track=track)
            chunk_sizes = ar._scatter_lengths
        ar = self.apply(_broadcast_map, f, *names)
        ar.owner = False
        amr = AsyncMapResult(
            self.client,
            ar._children,
            map_object,
            fname=getname(f),
            return_exceptions=return_exceptions,
            chunk_sizes={c.msg_id: n for c, n in zip(ar._children, chunk_sizes or [])},
        )
        if block:
            return amr.get()
        return amr

    scatter = _not_coalescing(DirectView.scatter)
    gather = _not_coalescing(DirectView.gather)


class LazyMapIterator:
    """The iterator ``imap`` returns; ``cancel()`` stops submitting new tasks."""

    def __init__(self, gen, signal_done):
        self._gen = gen
        self._signal_done = signal_done

    def __iter__(self):
        return self._gen

    def __next__(self):
        return next(self._gen)

    def cancel(self):
        self._signal_done()


class LoadBalancedView(View):
    """Requests go to whichever engine the controller's scheduler picks."""

    _flag_names = ("targets", "block", "track", "follow", "after", "timeout", "retries", "label")

    def __init__(self, client=None, socket=None, **flags):
        self.follow = None
        self.after = None
        self.timeout = None
        self.retries = 0
        self._outstanding_maps = set()
        self._task_scheme = client._task_scheme
        super().__init__(client=client, socket=socket, **flags)

    @staticmethod
    def _validate_dependency(dep):
        if dep is None or isinstance(dep, (str, AsyncResult, Dependency)):
            return True
        if isinstance(dep, (list, set, tuple)):
            return all(isinstance(d, (str, AsyncResult)) for d in dep)
        if isinstance(dep, dict):
            if set(dep) != set(Dependency().as_dict()):
                return False
            ids = dep.get("msg_ids", dep.get("dependencies"))
            return isinstance(ids, list) and all(isinstance(d, str) for d in ids)
        return False

    @staticmethod
    def _render_dependency(dep):
        if isinstance(dep, Dependency):
            return dep.as_dict()
        if isinstance(dep, AsyncResult):
            return dep.msg_ids
        if dep is None:
            return []
        return list(Dependency(dep))

    def set_flags(self, **kwargs):
        """Sets flags; ``after``/``follow`` are validated dependencies, ``timeout`` seconds."""
        for name in ("follow", "after"):
            if name in kwargs and not self._validate_dependency(kwargs[name]):
                raise ValueError(f"Invalid dependency: {kwargs[name]!r}")
        if "timeout" in kwargs:
            t = kwargs["timeout"]
            if not isinstance(t, (int, float, type(None))):
                raise TypeError(f"Invalid type for timeout: {type(t)!r}")
            if t is not None and t < 0:
                raise ValueError(f"Invalid timeout: {t}")
            kwargs["timeout"] = float(t) if t is not None else None
        return super().set_flags(**kwargs)

    def _check_task_farming(self, f, *flags):
        """Refuses tasks when the client stopped task farming, and flags the pure scheduler
        cannot honour (from the call's flags or, without any, the view's)."""
        if not self.client._task_enabled:
            msg = "Task farming is disabled"
            if self._task_scheme == "pure":
                msg += " because the pure ZMQ scheduler cannot handle disappearing engines."
            raise RuntimeError(msg)
        if self._task_scheme == "pure":
            if not flags:
                flags = (self.follow, self.after, self.retries, self.targets, self.timeout)
            msg = (
                "Pure ZMQ scheduler doesn't support the following flags:"
                " follow, after, retries, targets, timeout"
            )
            if any(flags):
                raise RuntimeError(msg)
            if isinstance(f, dependent):
                warnings.warn(msg, RuntimeWarning, stacklevel=2)

    @_syncs_results
    @_saves_ids
    def _really_apply(
        self,
        f,
        args=None,
        kwargs=None,
        block=None,
        track=None,
        after=None,
        follow=None,
        timeout=None,
        targets=None,
        retries=None,
        label=None,
        _record_history=True,
    ):
        self._check_task_farming(f, follow, after, retries, targets, timeout)
        args = [] if args is None else args
        kwargs = {} if kwargs is None else kwargs
        block = self.block if block is None else block
        track = self.track if track is None else track
        metadata = self._task_metadata(after, follow, timeout, targets, retries, label)
        future = self.client.send_apply_request(
            self._socket,
            f,
            args,
            kwargs,
            track=track,
            metadata=metadata,
            record_history=_record_history,
        )
        ar = AsyncResult(self.client, future, fname=getname(f), targets=None, owner=True)
        return _result_or_future(ar, block)

    def _task_metadata(self, after, follow, timeout, targets, retries, label):
        """The request metadata the task scheduler reads, from these flags or the view's."""
        after = self.after if after is None else after
        retries = self.retries if retries is None else retries
        follow = self.follow if follow is None else follow
        timeout = self.timeout if timeout is None else timeout
        targets = self.targets if targets is None else targets
        label = self.label if label is None else label
        if not isinstance(retries, int):
            raise TypeError(f"retries must be int, not {type(retries)!r}")
        idents = []
        if targets is not None:
            idents = [i.decode() for i in self.client._build_targets(targets)[0]]
        return {
            "after": self._render_dependency(after),
            "follow": self._render_dependency(follow),
            "timeout": timeout,
            "targets": idents,
            "retries": retries,
            "label": label,
        }

    @_syncs_results
    @_saves_ids
    def _apply_chunks(self, f, chunks):
        """One task per argument list in ``chunks``, all with this view's flags (validated and
        encoded once, instead of an ``apply`` with its own AsyncResult per task); returns
        their futures, the children of a map's AsyncMapResult."""
        self._check_task_farming(f)
        metadata = self._task_metadata(None, None, None, None, None, None)
        metadata_json = json.dumps(metadata).encode()
        send = self.client.send_apply_request
        futures = []
        try:
            for i, args in enumerate(chunks, 1):
                # the first task goes out at once (an engine starts on it while the rest are
                # packed), then every FLUSH_EVERY-th writes the ones queued before it
                futures.append(
                    send(
                        self._socket,
                        f,
                        args,
                        metadata=metadata,
                        metadata_json=metadata_json,
                        flush=i % FLUSH_EVERY == 1,
                    )
                )
        finally:
            self.client._flush()
        return futures

    @_syncs_results
    @_saves_ids
    def map(
        self,
        f,
        *sequences,
        block=None,
        chunksize=1,
        ordered=True,
        return_exceptions=False,
        label=None,
    ):
        """Load-balanced map: one task per ``chunksize`` elements; ``ordered`` only changes
        the order of iteration over the result."""
        block = self.block if block is None else block
        label = self.label if label is None else label
        if not sequences:
            raise ValueError("must have some sequences to map onto!")
        pf = ParallelFunction(
            self,
            f,
            block=block,
            chunksize=chunksize,
            ordered=ordered,
            return_exceptions=return_exceptions,
            label=label,
        )
        return pf.map(*sequences)

    def imap(self, f, *sequences, ordered=True, max_outstanding="auto", return_exceptions=False):
        """Lazily maps ``f`` over (possibly infinite) iterables, keeping at most
        ``max_outstanding`` tasks in flight (default: one per engine); results are released
        as they are consumed."""
        if not sequences:
            raise ValueError("must have some sequences to map onto!")
        if max_outstanding == "auto":
            max_outstanding = max(len(self), 1)
        pf = PrePickled(f)
        map_id = secrets.token_bytes(16)
        self._outstanding_maps.add(map_id)
        args_iter = iter(zip(*sequences))
        lock = threading.Lock()
        ready = threading.Condition(lock)
        pending = deque() if ordered else set()
        state = {"exhausted": False, "in_flight": 0}

        def signal_done():
            state["exhausted"] = True
            self._outstanding_maps.discard(map_id)
            with ready:
                ready.notify_all()

        pumping = threading.local()

        def on_done(_ar):
            with ready:
                state["in_flight"] -= 1
                ready.notify_all()
            if not getattr(pumping, "active", False):  # else the running loop refills
                submit_more()

        def fail(e):
            failed = concurrent.futures.Future()
            failed.set_exception(e)
            failed.get = lambda *a, _f=failed, **k: _f.result()
            pending.append(failed) if ordered else pending.add(failed)
            state["exhausted"] = True
            self._outstanding_maps.discard(map_id)
            ready.notify_all()

        def submit_more():
            # Taking the next arguments, sending them and queueing the result happen under one
            # lock: two threads refilling at once (the consumer and the dispatcher's
            # callbacks) can then neither reorder results nor let the consumer see
            # "exhausted" before the last result is queued.
            pumping.active = True
            try:
                while True:
                    with ready:
                        if state["exhausted"]:
                            return
                        if max_outstanding and state["in_flight"] >= max_outstanding:
                            return
                        try:
                            args = next(args_iter)
                        except StopIteration:
                            state["exhausted"] = True
                            self._outstanding_maps.discard(map_id)
                            ready.notify_all()
                            return
                        except Exception as e:  # noqa: BLE001 - surfaced by the iterator
                            fail(e)
                            return
                        try:
                            # not in history: an imap may stream without end
                            ar = self._really_apply(
                                pf, args, None, block=False, _record_history=False
                            )
                        except Exception as e:  # noqa: BLE001 - e.g. the client was closed
                            fail(e)
                            return
                        state["in_flight"] += 1
                        pending.append(ar) if ordered else pending.add(ar)
                        ready.notify_all()
                    ar.add_done_callback(on_done)
            finally:
                pumping.active = False

        submit_more()

        def results():
            while True:
                with ready:
                    while not pending and not state["exhausted"]:
                        ready.wait(0.5)
                    if not pending and state["exhausted"]:
                        return
                    if ordered:
                        ar = pending.popleft()
                    else:
                        ar = next((a for a in pending if a.done()), None)
                        if ar is None:
                            ready.wait(0.05)
                            continue
                        pending.discard(ar)
                yield ar.get(return_exceptions=return_exceptions)
                if max_outstanding == 0:
                    submit_more()

        return LazyMapIterator(results(), signal_done)

    def register_joblib_backend(self, name="ipyparallel", make_default=False):
        """Registers this view as a joblib parallel backend named ``name``."""
        from joblib.parallel import register_parallel_backend

        from ._joblib import IPythonParallelBackend

        register_parallel_backend(
            name,
            lambda **kwargs: IPythonParallelBackend(view=self, **kwargs),
            make_default=make_default,
        )


class ViewExecutor(concurrent.futures.Executor):
    """A ``concurrent.futures.Executor`` over a view."""

    def __init__(self, view):
        self.view = view
        self._max_workers = len(view) if view.client is not None and view.client._ids else 0

    def submit(self, fn, *args, **kwargs):
        return self.view.apply_async(fn, *args, **kwargs)

    def map(self, func, *iterables, **kwargs):
        if "timeout" in kwargs:
            warnings.warn("timeout unsupported in ViewExecutor.map", stacklevel=2)
            kwargs.pop("timeout")
        if "chunksize" in kwargs:
            kwargs.pop("chunksize")
        return self.view.imap(func, *iterables, **kwargs)

    def shutdown(self, wait=True, *, cancel_futures=False):
        if wait:
            while self.view._outstanding_maps if hasattr(self.view, "_outstanding_maps") else False:
                time.sleep(0.1)
            self.view.wait()
