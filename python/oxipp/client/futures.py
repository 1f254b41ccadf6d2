"""Futures for messages in flight.

A :class:`MessageFuture` resolves with a request's result (or the reply message, for control
and Hub queries). Requests that produce output (``apply_request``, ``execute_request``) also
have an ``output`` future, resolved when the engine's IOPub ``status: idle`` for that request
arrives, and a ``metadata`` dict that fills in as replies and output come in.
"""

from __future__ import annotations

from concurrent.futures import Future
from threading import Lock

_SENT = Future()
_SENT.set_result(None)


class PumpingFuture(Future):
    """A Future whose waits handle the client's incoming events in the waiting thread
    (``Client._pump_until``) instead of sleeping until the dispatcher thread has done so: one
    thread hand-off less between a reply's arrival and the waiter."""

    _pump = None  # Client._pump_until, set by whoever makes the future

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
        self._tracker = None
        # Sends are handed to the Rust core, which copies the buffers before the send call
        # returns: the user's buffers are free to reuse at once, so every tracker is done.
        self.tracker = _SENT
        self.iopub_callbacks = []

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
