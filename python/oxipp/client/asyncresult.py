"""AsyncResult and friends: the futures users hold for work sent to engines.

An AsyncResult wraps one or more MessageFutures (its *children*). It resolves when every child
has a result, collecting remote failures into RemoteError / CompositeError like stock
ipyparallel; its *output* is complete when every engine has reported ``idle`` for its request.
"""

from __future__ import annotations

import concurrent.futures
import sys
import threading
import time
from concurrent.futures import ALL_COMPLETED, FIRST_COMPLETED, FIRST_EXCEPTION, Future
from concurrent.futures._base import FINISHED
from contextlib import contextmanager
from datetime import datetime, timezone
from functools import partial
from itertools import chain, repeat

from .. import error
from .futures import MessageFuture, PumpingFuture

__all__ = ["AsyncResult", "AsyncMapResult", "AsyncHubResult"]

_DATE_FIELDS = ("submitted", "started", "completed", "received")
_FOREVER = threading.TIMEOUT_MAX
_MISSING = object()


def _get_ipython():
    try:
        from IPython import get_ipython
    except ImportError:
        return None
    return get_ipython()


def _display(obj):
    from IPython.display import display

    display(obj)


def _raw_text(s):
    from IPython.display import display_pretty

    display_pretty(s, raw=True)


def _parse_date(s):
    from .client import parse_date

    return parse_date(s)


def _seconds_between(end, start):
    if end.tzinfo is None:
        end = end.replace(tzinfo=timezone.utc)
    if start.tzinfo is None:
        start = start.replace(tzinfo=timezone.utc)
    return (end - start).total_seconds()


def _progress_bar(widget=None, **kwargs):
    if widget is None:
        ip = _get_ipython()
        widget = ip is not None and getattr(ip, "kernel", None) is not None
    if widget:
        try:
            from tqdm.notebook import tqdm_notebook as tqdm
        except ImportError:
            from tqdm import tqdm
    else:
        from tqdm import tqdm
    kwargs.setdefault("file", sys.stdout)  # where stock's bars go (the magics' output too)
    return tqdm(**kwargs)


def _require_ready(method):
    def checked(self, *args, **kwargs):
        self.wait(0)
        if not self._ready:
            raise TimeoutError("result not ready")
        return method(self, *args, **kwargs)

    checked.__name__ = method.__name__
    checked.__doc__ = method.__doc__
    return checked


class AsyncResult(PumpingFuture):
    """The result of a non-blocking call (a ``concurrent.futures.Future``, plus the
    ``multiprocessing.pool.AsyncResult`` API and metadata about the remote execution)."""

    msg_ids = None
    _targets = None
    _single_result = False
    owner = False
    _last_display_prefix = ""
    _stream_trailing_newline = True
    _chunk_sizes = None

    def __init__(
        self,
        client,
        children,
        fname="unknown",
        targets=None,
        owner=False,
        return_exceptions=False,
        chunk_sizes=None,
    ):
        super().__init__()
        if not isinstance(children, list):
            children = [children]
            self._single_result = True
        else:
            self._single_result = False
        if not children:
            raise ValueError("an AsyncResult needs at least one message")
        self._return_exceptions = return_exceptions
        self._chunk_sizes = chunk_sizes or {}
        if isinstance(children[0], str):
            self.msg_ids = children
            self._children = []
        else:
            self._children = children
            self.msg_ids = [f.msg_id for f in children]
        self._client = client
        self._pump = client._pump_method
        self._fname = fname
        self._targets = targets
        self.owner = owner
        self._ready = False
        self._output_ready = False
        self._output_event = None
        self._lock = threading.Lock()
        self._success = None
        self._raw_results = None
        self._len = None
        if self._children:
            self._metadata = [f.output.metadata for f in self._children]
        else:
            self._metadata = [self._client.metadata[m] for m in self.msg_ids]
        self._init_futures()

    def _init_futures(self):
        if not self._children:
            for msg_id in self.msg_ids:
                future = self._client._futures.get(msg_id)
                if future is None:
                    result = self._client.results.get(msg_id, _MISSING)
                    if result is _MISSING:
                        raise KeyError(f"No Future or result for msg_id: {msg_id}")
                    future = MessageFuture(msg_id)
                    future.output = Future()
                    future.output.metadata = self._client.metadata[msg_id]
                    future.set_result(result)
                    future.output.set_result(None)
                self._children.append(future)
        # countdowns instead of intermediate futures: an AsyncResult is made per call, so
        # its bookkeeping is on every request's path
        self._results_left = len(self._children)
        self._outputs_left = len(self._children) + 1  # +1: output counts after the result
        # bound once for all children (each bound method is an object the garbage
        # collector tracks, and a map's children are all alive at once)
        child_done, child_output_done = self._child_done, self._child_output_done
        for child in self._children:
            child.add_done_callback(child_done)
            child.output.add_done_callback(child_output_done)

    def _child_done(self, _f):
        with self._lock:
            self._results_left -= 1
            last = self._results_left == 0
        if last:
            self._resolve_result()
            self._child_output_done(None)

    def _child_output_done(self, _f):
        with self._lock:
            self._outputs_left -= 1
            last = self._outputs_left == 0
        if last:
            self._resolve_output()

    # ------------------------------------------------------------------ resolution

    def _reconstruct_result(self, res):
        """The user-facing result from the list of child results."""
        return res[0] if self._single_result else res

    def _child_results(self):
        """Each child's result, or its exception. Called once all are done: a finished
        child's outcome is read directly (a map has one child per task, and each
        ``exception()`` + ``result()`` pair takes the child's lock twice)."""
        out = []
        for f in self._children:
            if f._state == FINISHED:
                exc = f._exception
                out.append(exc if exc is not None else f._result)
            else:  # cancelled (raises CancelledError), or not done yet
                exc = f.exception()
                out.append(exc if exc is not None else f.result())
        return out

    def _resolve_result(self):
        if self.done():
            return
        results = self._child_results()
        self._raw_results = results
        try:
            if self._single_result:
                r = results[0]
                if isinstance(r, Exception):
                    raise r
            else:
                results = self._collect_exceptions(results)
            value = self._reconstruct_result(results)
        except Exception as e:  # noqa: BLE001 - the future carries it
            self._success = False
            self._finalize_result()
            self.set_exception(e)
        else:
            self._success = True
            self._finalize_result()
            self.set_result(value)

    def _collect_exceptions(self, results):
        if self._return_exceptions:
            return results
        return error.collect_exceptions(results, self._fname)

    def _finalize_result(self):
        # before set_result, so that whoever wakes up on the future sees _ready
        if self.owner:
            for m in self.msg_ids:
                self._client.results.pop(m, None)
        self._ready = True

    def _resolve_output(self):
        if self.owner:
            for m in self.msg_ids:
                self._client.metadata.pop(m, None)
        with self._lock:
            self._output_ready = True
            evt = self._output_event
        if evt is not None:
            evt.set()

    # ------------------------------------------------------------------ waiting

    def get(self, timeout=None, return_exceptions=None, return_when=None):
        """The result, waiting up to ``timeout`` seconds (TimeoutError after it). A remote
        failure raises RemoteError (CompositeError for several) unless return_exceptions."""
        if return_when == FIRST_COMPLETED:
            import warnings

            warnings.warn(
                "Ignoring unsupported AsyncResult.get(return_when=FIRST_COMPLETED)",
                UserWarning,
                stacklevel=2,
            )
            return_when = None
        elif return_when == ALL_COMPLETED:
            return_when = None
        wait_result = None
        if not self.ready():
            wait_result = self.wait(timeout, return_when=return_when)
        if return_exceptions is None:
            return_exceptions = self._return_exceptions
        if self._ready:
            if self._success:
                return self.result()
            if return_exceptions:
                return self._reconstruct_result(self._raw_results)
            raise self.exception()
        if return_when == FIRST_EXCEPTION and wait_result is not None:
            done, _pending = wait_result
            for ar in done:
                if not ar._success:
                    return ar.get(return_exceptions=return_exceptions)
        raise TimeoutError("Result not ready.")

    def _check_ready(self):
        if not self.ready():
            raise TimeoutError("Result not ready.")

    def ready(self):
        """Whether the call has completed."""
        if not self._ready:
            self.wait(0)
        return self._ready

    def wait(self, timeout=-1, return_when=None):
        """Waits up to ``timeout`` seconds (-1/None: forever). Returns whether everything is
        done, or with ``return_when`` the ``(done, pending)`` sets of split results."""
        if timeout is not None and timeout < 0:
            timeout = None
        if return_when is None:
            if not self._ready and timeout != 0:
                try:
                    self.exception(timeout)
                except TimeoutError:
                    pass
            if self._ready:
                self.wait_for_output(0)
            return self._ready
        futures = self.split()
        done, pending = concurrent.futures.wait(futures, timeout=timeout, return_when=return_when)
        if done:
            self.wait_for_output(0)
        return done, pending

    def wait_for_output(self, timeout=-1):
        """Waits until every engine has published all output of this request."""
        if self._output_ready:
            return True
        if timeout is not None and timeout < 0:
            timeout = None
        if timeout == 0:
            return False
        with self._lock:
            if self._output_ready:
                return True
            if self._output_event is None:
                self._output_event = threading.Event()
            evt = self._output_event
        return evt.wait(self._client._pump_until(evt.is_set, timeout))

    def successful(self):
        """Whether the call succeeded (RuntimeError if it is not done)."""
        if not self.ready():
            raise RuntimeError("Cannot check successful() if not done.")
        return self._success

    @classmethod
    def join(cls, *async_results):
        """Joins AsyncResults into one (the inverse of split)."""
        if not async_results:
            raise ValueError("Must specify at least one AsyncResult to join")
        first = async_results[0]
        if len(async_results) == 1:
            return first
        return cls(
            client=first._client,
            fname=first._fname,
            return_exceptions=first._return_exceptions,
            children=list(chain(*(ar._children for ar in async_results))),
            targets=list(
                chain(*(ar._targets or [None] * len(ar._children) for ar in async_results))
            ),
            owner=False,
        )

    def split(self):
        """One AsyncResult per message, for ``concurrent.futures.wait`` and friends."""
        cached = getattr(self, "_split", None)
        if cached is not None:
            return cached
        if len(self._children) == 1:
            self._split = (self,)
            return self._split
        targets = repeat(None) if self._targets is None else self._targets
        flatten = not isinstance(self, AsyncMapResult)
        self._split = tuple(
            AsyncResult(
                client=self._client,
                children=child if flatten else [child],
                targets=[eid],
                fname=self._fname,
                owner=False,
                return_exceptions=self._return_exceptions,
            )
            for eid, child in zip(targets, self._children)
        )
        return self._split

    def abort(self):
        """Aborts the tasks that have not started yet (RuntimeError if done)."""
        if self.ready():
            raise RuntimeError("Can't abort, I am already done!")
        return self._client.abort(self.msg_ids, targets=self._targets, block=True)

    # ------------------------------------------------------------------ sending

    def _send_trackers(self):
        trackers = (getattr(f, "_send_tracker", lambda: None)() for f in self._children)
        return [t for t in trackers if t is not None]

    @property
    def sent(self):
        """Whether the core is done with the request's buffers. Big buffers are sent from
        their own memory: with ``track=True`` this turns True once they were written, after
        which they may be changed in place; untracked requests count as sent at once."""
        return all(t.done for t in self._send_trackers())

    def wait_for_send(self, timeout=-1):
        """Waits until ``sent``; ``timeout`` in seconds (negative or None: no limit). Raises
        TimeoutError if the buffers are still in use then."""
        deadline = None if timeout is None or timeout < 0 else time.monotonic() + timeout
        for t in self._send_trackers():
            t.wait(None if deadline is None else max(deadline - time.monotonic(), 0.0))
        return True

    # ------------------------------------------------------------------ results and metadata

    def get_dict(self, timeout=-1):
        """Results keyed by engine id (ValueError if several jobs ran on one engine)."""
        results = self.get(timeout)
        if self._single_result:
            results = [results]
        engine_ids = [md["engine_id"] for md in self._metadata]
        rdict = {}
        for eid, r in zip(engine_ids, results):
            if eid in rdict:
                raise ValueError(
                    f"Cannot build dict, {engine_ids.count(eid)} jobs ran on engine #{eid}"
                )
            rdict[eid] = r
        return rdict

    @property
    def result_dict(self):
        return self.get_dict()

    @property
    def r(self):
        """``get()``."""
        return self.get()

    def _parse_metadata_dates(self):
        for md in self._metadata:
            for key in _DATE_FIELDS:
                if isinstance(md.get(key), str):
                    md[key] = _parse_date(md[key])

    @property
    def metadata(self):
        """Metadata of the execution (one dict, or a list for several messages)."""
        self._parse_metadata_dates()
        return self._metadata[0] if self._single_result else self._metadata

    def __getitem__(self, key):
        """Results by int/slice; metadata by str (e.g. ``ar['stdout']``)."""
        if isinstance(key, int):
            self._check_ready()
            return self._collect_exceptions([self.result()[key]])[0]
        if isinstance(key, slice):
            self._check_ready()
            return self._collect_exceptions(self.result()[key])
        if isinstance(key, str):
            self.wait(0)
            self.wait_for_output(0)
            self._parse_metadata_dates()
            values = [md[key] for md in self._metadata]
            return values[0] if self._single_result else values
        raise TypeError(f"Invalid key type {type(key)!r}, must be 'int','slice', or 'str'")

    def __getattr__(self, key):
        if key.startswith("_"):
            raise AttributeError(key)
        try:
            return self.__getitem__(key)
        except (TimeoutError, KeyError):
            raise AttributeError(
                f"{self.__class__.__name__!r} object has no attribute {key!r}"
            ) from None

    def __dir__(self):
        from .client import Metadata

        return sorted(set(dir(self.__class__)) | set(Metadata().keys()))

    def __repr__(self):
        if self._ready:
            state = "finished" if self._success else "failed"
        else:
            state = "pending"
        return f"<{self.__class__.__name__}({self._fname}): {state}>"

    # ------------------------------------------------------------------ iteration

    @staticmethod
    def _wait_for_child(child, timeout=_FOREVER):
        if not child.done():
            if child._pump is not None:
                timeout = child._pump(child.done, None if timeout == _FOREVER else timeout)
                if timeout is None:
                    timeout = _FOREVER
            evt = threading.Event()
            child.add_done_callback(lambda f: evt.set())
            evt.wait(timeout)

    def __iter__(self):
        if self._single_result:
            raise TypeError("AsyncResults with a single result are not iterable.")
        try:
            rlist = self.get(0)
        except TimeoutError:
            for child in self._children:
                self._wait_for_child(child)
                result = child.result()
                self._collect_exceptions([result])
                yield result
        else:
            yield from rlist

    def __len__(self):
        if self._len is None:
            self._len = self._count_chunks(*self.msg_ids)
        return self._len

    def _count_chunks(self, *msg_ids):
        return sum(self._chunk_sizes.setdefault(m, 1) for m in msg_ids)

    # ------------------------------------------------------------------ timing

    def timedelta(self, start, end, start_key=min, end_key=max):
        """Seconds between two (sets of) timestamps: by default the earliest ``start`` and the
        latest ``end``."""
        if not isinstance(start, datetime):
            start = start_key(start)
        if not isinstance(end, datetime):
            end = end_key(end)
        return _seconds_between(end, start)

    @property
    def progress(self):
        """How many tasks have completed."""
        self.wait(0)
        unfinished = set(self.msg_ids).intersection(self._client.outstanding)
        return len(self) - self._count_chunks(*unfinished)

    @property
    def elapsed(self):
        """Seconds since the first submission (the wall time once done)."""
        if self.ready():
            return self.wall_time
        now = datetime.now(timezone.utc)
        submitted = now
        self._parse_metadata_dates()
        for md in self._metadata:
            stamp = md["submitted"]
            if stamp and stamp < submitted:
                submitted = stamp
        return _seconds_between(now, submitted)

    @property
    @_require_ready
    def serial_time(self):
        """Sum of (completed - started) over the tasks."""
        self._parse_metadata_dates()
        return sum(_seconds_between(md["completed"], md["started"]) for md in self._metadata)

    @property
    @_require_ready
    def wall_time(self):
        """Seconds from the first submission to the last reply received."""
        return self.timedelta(self.submitted, self.received)

    def wait_interactive(self, interval=0.1, timeout=-1, widget=None, return_when=ALL_COMPLETED):
        """Waits while showing a progress bar."""
        if timeout is not None and timeout < 0:
            timeout = None
        if return_when == ALL_COMPLETED:
            return_when = None
        tic = time.perf_counter()
        bar = _progress_bar(widget=widget, total=len(self), unit="tasks", desc=self._fname)
        finished = self.ready()
        while not finished and (timeout is None or time.perf_counter() - tic <= timeout):
            result = self.wait(interval, return_when=return_when)
            bar.update(self.progress - bar.n)
            if return_when is None:
                finished = result
            else:
                done, pending = result
                if return_when == FIRST_COMPLETED:
                    finished = bool(done)
                elif return_when == FIRST_EXCEPTION:
                    finished = (not pending) or any(not ar._success for ar in done)
                else:
                    raise ValueError(f"Unrecognized return_when={return_when!r}")
        bar.update(self.progress - bar.n)
        bar.close()

    # ------------------------------------------------------------------ output

    def _display_stream(self, text, prefix="", file=None):
        if not text:
            return
        file = sys.stdout if file is None else file
        if prefix:
            if prefix == self._last_display_prefix:
                prefix = ""
            else:
                self._last_display_prefix = prefix
        pre = "\n" if prefix and not self._stream_trailing_newline else ""
        sep = "\n" if prefix else ""
        self._stream_trailing_newline = text.endswith("\n")
        print(f"{pre}{prefix}{sep}{text}", file=file, end="")

    def _republish_displaypub(self, content, eid):
        ip = _get_ipython()
        if ip is None:
            return
        md = content.get("metadata") or {}
        md["engine"] = eid
        ip.display_pub.publish(data=content["data"], metadata=md)

    def _iopub_streaming_output_callback(self, eid, msg_future, msg):
        msg_type = msg["header"]["msg_type"]
        ip = _get_ipython()
        in_kernel = ip is not None and getattr(ip, "kernel", None) is not None
        if msg_type == "stream":
            content = msg["content"]
            name = content["name"]
            if in_kernel:
                from IPython.display import publish_display_data

                parent_id = msg.get("parent_header", {}).get("msg_id", msg_future.msg_id)
                display_id = f"{parent_id}-{name}"
                update = display_id in self._already_streamed
                self._already_streamed[display_id] = True
                full = msg_future.output.metadata[name]
                publish_display_data(
                    {"text/plain": f"[{name}:{eid}] " + full},
                    transient={"display_id": display_id},
                    update=update,
                )
                return
            self._display_stream(
                content["text"], f"[{name}:{eid}] ", file=getattr(sys, name, sys.stdout)
            )
        elif msg_type == "error":
            content = msg["content"]
            if "engine_info" not in content:
                md = msg_future.output.metadata
                content["engine_info"] = {
                    "engine_id": md.engine_id,
                    "engine_uuid": md.engine_uuid,
                    "method": msg_future.header["msg_type"].partition("_")[0],
                }
            err = self._client._unwrap_exception(content)
            self._streamed_errors += 1
            if self._streamed_errors <= error.CompositeError.tb_limit:
                print("\n".join(err.render_traceback()), file=sys.stderr)
            else:
                print(err, file=sys.stderr)
        elif msg_type == "execute_result":
            from .client import ExecuteReply

            _display(ExecuteReply(msg_future.msg_id, msg["content"], msg_future.output.metadata))
        if ip is not None and msg_type == "display_data":
            _raw_text(f"[output:{eid}]")
            self._republish_displaypub(msg["content"], eid)

    @contextmanager
    def stream_output(self):
        """While the context is open, print output as it arrives."""
        callbacks = {}
        self._already_streamed = {}
        self._stream_trailing_newline = True
        self._last_display_prefix = ""
        self._streamed_errors = 0
        targets = self._targets if self._targets is not None else [None] * len(self._children)
        if not isinstance(targets, (list, tuple)):
            targets = [targets]
        for eid, child in zip(targets, self._children):
            cb = partial(self._iopub_streaming_output_callback, eid, child)
            callbacks[child] = cb
            md = child.output.metadata
            child.iopub_callbacks.append(cb)
            for name in ("stdout", "stderr"):
                if md[name]:
                    cb(
                        {
                            "header": {"msg_type": "stream"},
                            "content": {"name": name, "text": md[name]},
                        }
                    )
            for output in md["outputs"]:
                cb({"header": {"msg_type": "display_data"}, "content": output})
            if md["execute_result"]:
                cb({"header": {"msg_type": "execute_result"}, "content": md["execute_result"]})
        try:
            yield
        finally:
            self._already_streamed = {}
            for child, cb in callbacks.items():
                if cb in child.iopub_callbacks:
                    child.iopub_callbacks.remove(cb)

    def _display_single_result(self, result_only=False):
        if not result_only:
            self._display_stream(self.stdout)
            self._display_stream(self.stderr, file=sys.stderr)
        if _get_ipython() is None:
            return
        if not result_only:
            for output in self.outputs:
                self._republish_displaypub(output, self.engine_id)
        if self.execute_result is not None:
            _display(self.get())

    @_require_ready
    def display_outputs(self, groupby="type", result_only=False):
        """Re-displays stdout, stderr, display outputs and results, grouped by ``type``,
        ``engine`` or ``order``."""
        self.wait_for_output()
        if self._single_result:
            self._display_single_result(result_only=result_only)
            return
        stdouts = self.stdout
        stderrs = self.stderr
        execute_results = self.execute_result
        output_lists = self.outputs
        results = self.get(return_exceptions=True)
        targets = self.engine_id
        in_ipython = _get_ipython() is not None
        if groupby == "engine":
            for eid, out, err, outputs, r, er in zip(
                targets, stdouts, stderrs, output_lists, results, execute_results
            ):
                if not result_only:
                    self._display_stream(out, f"[stdout:{eid}] ")
                    self._display_stream(err, f"[stderr:{eid}] ", file=sys.stderr)
                if not in_ipython:
                    continue
                if (outputs and not result_only) or er is not None:
                    _raw_text(f"[output:{eid}]")
                if not result_only:
                    for output in outputs:
                        self._republish_displaypub(output, eid)
                if er is not None:
                    _display(r)
        elif groupby in ("type", "order"):
            if not result_only:
                for eid, out in zip(targets, stdouts):
                    self._display_stream(out, f"[stdout:{eid}] ")
                for eid, err in zip(targets, stderrs):
                    self._display_stream(err, f"[stderr:{eid}] ", file=sys.stderr)
            if not in_ipython:
                return
            if not result_only:
                if groupby == "order":
                    by_engine = dict(zip(targets, output_lists))
                    n = max((len(o) for o in output_lists), default=0)
                    for i in range(n):
                        for eid in targets:
                            outputs = by_engine[eid]
                            if len(outputs) > i:
                                _raw_text(f"[output:{eid}]")
                                self._republish_displaypub(outputs[i], eid)
                else:
                    for eid, outputs in zip(targets, output_lists):
                        if outputs:
                            _raw_text(f"[output:{eid}]")
                        for output in outputs:
                            self._republish_displaypub(output, eid)
            for r, er in zip(results, execute_results):
                if er is not None:
                    _display(r)
        else:
            raise ValueError(f"groupby must be one of 'type', 'engine', 'order', not {groupby!r}")


class AsyncMapResult(AsyncResult):
    """The result of a non-blocking map: reassembles the chunks, and iterates element by
    element as results arrive (in order, or first come first served with ordered=False)."""

    def __init__(
        self,
        client,
        children,
        mapObject,
        fname="",
        ordered=True,
        return_exceptions=False,
        chunk_sizes=None,
    ):
        self._mapObject = mapObject
        self.ordered = ordered
        AsyncResult.__init__(
            self,
            client,
            children,
            fname=fname,
            return_exceptions=return_exceptions,
            chunk_sizes=chunk_sizes,
        )
        self._single_result = False

    def _reconstruct_result(self, res):
        if self._return_exceptions and any(isinstance(r, Exception) for r in res):
            flat = []
            for r in res:
                if isinstance(r, Exception):
                    flat.append(r)
                else:
                    flat.extend(r)
            return flat
        return self._mapObject.joinPartitions(res)

    def __iter__(self):
        yield from (self._ordered_iter() if self.ordered else self._unordered_iter())

    def _yield_child_results(self, child):
        rlist = child.result()
        if not isinstance(rlist, list):
            rlist = [rlist]
        self._collect_exceptions(rlist)
        yield from rlist

    def _ordered_iter(self):
        try:
            rlist = self.get(0)
        except TimeoutError:
            for child in self._children:
                self._wait_for_child(child)
                yield from self._yield_child_results(child)
        else:
            yield from rlist

    def _unordered_iter(self):
        try:
            rlist = self.get(0)
        except TimeoutError:
            pending = self._children
            while pending:
                done, pending = concurrent.futures.wait(pending, return_when=FIRST_COMPLETED)
                for child in done:
                    yield from self._yield_child_results(child)
        else:
            yield from rlist


class AsyncHubResult(AsyncResult):
    """Results fetched from the Hub's database (for jobs this client did not send, or has
    forgotten); waiting polls the Hub every 0.1 s."""

    def _init_futures(self):
        pass

    def wait(self, timeout=-1, return_when=None):
        start = time.perf_counter()
        if timeout is not None and timeout < 0:
            timeout = None
        if self._ready:
            return True
        local_ids = [m for m in self.msg_ids if m in self._client.outstanding]
        if self._client.wait(local_ids, timeout):
            remote_ids = [m for m in self.msg_ids if m not in self._client.results]
            if not remote_ids:
                self._ready = True
            else:
                pending = self._client.result_status(remote_ids, status_only=False)["pending"]
                while pending and (timeout is None or time.perf_counter() < start + timeout):
                    time.sleep(0.1)
                    pending = self._client.result_status(remote_ids, status_only=False)["pending"]
                if not pending:
                    self._ready = True
        if self._ready:
            self._output_ready = True
            try:
                results = [self._client.results.get(m) for m in self.msg_ids]
                if self._single_result:
                    r = results[0]
                    if isinstance(r, Exception) and not self._return_exceptions:
                        raise r
                else:
                    results = self._collect_exceptions(results)
                self._success = True
                if not self.done():
                    self.set_result(self._reconstruct_result(results))
            except Exception as e:  # noqa: BLE001
                self._success = False
                self._raw_results = results
                if not self.done():
                    self.set_exception(e)
            finally:
                if self.owner:
                    for m in self.msg_ids:
                        self._client.metadata.pop(m, None)
                        self._client.results.pop(m, None)
        return self._ready
