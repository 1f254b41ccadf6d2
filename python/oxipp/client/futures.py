"""Futures for messages in flight.

A :class:`MessageFuture` resolves with a request's result (or the reply message, for control
and Hub queries). Requests that produce output (``apply_request``, ``execute_request``) also
have an ``output`` future, resolved when the engine's IOPub ``status: idle`` for that request
arrives, and a ``metadata`` dict that fills in as replies and output come in.
"""

from __future__ import annotations

import _thread
from concurrent.futures import Future
from concurrent.futures._base import PENDING
from threading import Lock

_SENT = Future()
_SENT.set_result(None)


class _FutureCondition:
    """What a Future uses of ``threading.Condition`` (``with``, ``acquire``/``release``,
    ``wait``, ``notify``/``notify_all``) in two objects the garbage collector tracks instead
    of nine (a Condition keeps bound methods of its lock, a deque and a ``__dict__``). Every
    request has two futures, and all the tasks of a map are in flight at once: with
    ``threading.Condition`` the collector's full passes over them took ~20% of the client's
    CPU in a 20,000-task map. Reentrant like the Condition it replaces."""

    __slots__ = ("_lock", "_sleepers")

    def __init__(self):
        self._lock = _thread.RLock()
        self._sleepers = None  # locks of waiting threads, each released to wake one

    def acquire(self, blocking=True, timeout=-1):
        return self._lock.acquire(blocking, timeout)

    def release(self):
        self._lock.release()

    def __enter__(self):
        return self._lock.acquire()

    def __exit__(self, *exc):
        self._lock.release()

    def wait(self, timeout=None):
        if not self._lock._is_owned():
            raise RuntimeError("cannot wait on un-acquired lock")
        sleeper = _thread.allocate_lock()
        sleeper.acquire()
        if self._sleepers is None:
            self._sleepers = []
        self._sleepers.append(sleeper)
        state = self._lock._release_save()
        woke = False
        try:
            if timeout is None:
                woke = sleeper.acquire()
            elif timeout > 0:
                woke = sleeper.acquire(True, timeout)
            else:
                woke = sleeper.acquire(False)
            return woke
        finally:
            self._lock._acquire_restore(state)
            if not woke:
                # timed out (or interrupted): no longer waiting; a notify may have taken
                # the list meanwhile, which is as good
                try:
                    self._sleepers.remove(sleeper)
                except (AttributeError, ValueError):
                    pass

    def notify(self, n=1):
        if not self._lock._is_owned():
            raise RuntimeError("cannot notify on un-acquired lock")
        sleepers = self._sleepers or []
        for sleeper in sleepers[:n]:
            sleeper.release()
        del sleepers[:n]

    def notify_all(self):
        if not self._lock._is_owned():
            raise RuntimeError("cannot notify on un-acquired lock")
        sleepers, self._sleepers = self._sleepers, None
        for sleeper in sleepers or ():
            sleeper.release()


# Future.__init__ only sets these (CPython 3.8-3.13); PumpingFuture sets them itself so
# that no threading.Condition is made just to be replaced. Should a later Python set more,
# it runs Future.__init__ and replaces the condition after.
_FUTURE_FIELDS = {"_condition", "_state", "_result", "_exception", "_waiters", "_done_callbacks"}
_OWN_INIT = set(vars(Future())) == _FUTURE_FIELDS


class PumpingFuture(Future):
    """A Future whose waits handle the client's incoming events in the waiting thread
    (``Client._pump_until``) instead of sleeping until the dispatcher thread has done so: one
    thread hand-off less between a reply's arrival and the waiter."""

    _pump = None  # Client._pump_until, set by whoever makes the future

    def __init__(self):
        if _OWN_INIT:
            self._state = PENDING
            self._result = None
            self._exception = None
            self._waiters = []
            self._done_callbacks = []
        else:
            super().__init__()
        self._condition = _FutureCondition()

    def _invoke_callbacks(self):
        # Each callback runs once (later ones run at once when added), so it is dropped
        # after: callbacks are mostly bound methods of whoever holds this future (the
        # AsyncResult over a request's futures), and keeping them made every request a
        # reference cycle that only the cyclic garbage collector freed (55 objects per
        # apply; collections of a 20,000-task map in flight cost ~15% of the client's CPU).
        try:
            super()._invoke_callbacks()
        finally:
            self._done_callbacks = []

    def result(self, timeout=None):
        if self._pump is not None and not self.done():
            timeout = self._pump(self.done, timeout)
        return super().result(timeout)

    def exception(self, timeout=None):
        if self._pump is not None and not self.done():
            timeout = self._pump(self.done, timeout)
        return super().exception(timeout)


class MessageFuture(PumpingFuture):
    """The future of one message (``msg_id``) sent by a client."""

    def __init__(self, msg_id, header=None, *, track=False):
        super().__init__()
        self.msg_id = msg_id
        self.header = header if header is not None else {"msg_type": "unknown_request"}
        self.track = track
        # `_tracker`: the core's SendTracker of a tracked request (done once its big buffers,
        # sent from their own memory, are no longer read); `tracker`: a future resolved with
        # it once the send call returned, as stock's is with pyzmq's MessageTracker. Untracked
        # requests count as sent at once, as in stock.
        self._tracker = None
        self.tracker = _SENT

    def _set_send_tracker(self, tracker):
        self._tracker = tracker
        self.tracker = Future()
        self.tracker.set_result(tracker)

    #: the future of the message that carried this request, when that is another one (a
    #: broadcast's per-engine futures): its tracker is this request's
    _sent_by = None

    def _send_tracker(self):
        """The core's SendTracker of the message that carried this request, if tracked."""
        if self._tracker is None and self._sent_by is not None:
            return self._sent_by._tracker
        return self._tracker

    _iopub_callbacks = None

    @property
    def iopub_callbacks(self):
        """Functions called with each IOPub message of this request (a list, made when first
        asked for: few requests have any)."""
        if self._iopub_callbacks is None:
            self._iopub_callbacks = []
        return self._iopub_callbacks

    def wait(self, timeout=None):
        """Waits for the result; True when done."""
        if self.done():
            return True
        try:
            self.exception(timeout)
        except TimeoutError:
            return False
        return True


def multi_future(children):
    """A future resolved with the list of `children`'s results once all of them are done
    (children that failed contribute their exception object)."""
    future = Future()
    if not children:
        future.set_result([])
        return future
    remaining = [len(children)]
    lock = Lock()

    def child_done(_f):
        with lock:
            remaining[0] -= 1
            last = remaining[0] == 0
        if not last:
            return
        results = []
        for f in children:
            exc = f.exception()
            results.append(exc if exc is not None else f.result())
        if not future.done():
            future.set_result(results)

    for child in children:
        child.add_done_callback(child_done)
    return future
