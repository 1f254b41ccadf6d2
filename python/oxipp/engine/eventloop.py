"""The engine's asyncio event loop, for the helpers that expect a kernel with one.

A stock engine runs requests inside ipykernel's event loop, so stock's ``become_dask_worker``
starts a dask worker with ``asyncio.ensure_future(worker.start())`` and the worker then lives in
that loop between requests. An oxipp engine runs requests on a plain thread, so it keeps an
event loop on a daemon thread of its own, started the first time something asks for it, and
makes it the requesting thread's *current* loop: ``asyncio.ensure_future``,
``asyncio.get_event_loop()`` and tornado's ``IOLoop.current()`` called from user code then all
land on the loop that keeps running between requests, as on a stock engine (and, as there,
``run_until_complete`` on it fails because it is already running).

The loop accepts ``call_soon`` from other threads (asyncio's own ``call_soon`` is for the loop's
thread only): that is what ``Task`` creation from the executor thread calls.
"""

from __future__ import annotations

import asyncio
import logging
import threading

_lock = threading.Lock()
_loop: asyncio.AbstractEventLoop | None = None
_kernel: EngineKernel | None = None


class _CrossThreadLoop(asyncio.SelectorEventLoop):
    """A selector loop whose ``call_soon`` from another thread wakes it (via
    ``call_soon_threadsafe``) instead of appending silently while it sleeps in ``select``."""

    def call_soon(self, callback, *args, context=None):
        owner = self._thread_id
        if owner is not None and owner != threading.get_ident():
            return self.call_soon_threadsafe(callback, *args, context=context)
        return super().call_soon(callback, *args, context=context)


def engine_loop() -> asyncio.AbstractEventLoop:
    """The engine's running event loop (started on first use), made current in this thread."""
    global _loop
    with _lock:
        if _loop is None:
            loop = _CrossThreadLoop()
            started = threading.Event()
            loop.call_soon(started.set)
            threading.Thread(target=loop.run_forever, name="oxipp-engine-loop", daemon=True).start()
            started.wait()
            _loop = loop
    asyncio.set_event_loop(_loop)
    return _loop


class EngineKernel:
    """What helpers written for ipykernel's ``Kernel`` use of it: ``log``, the
    ``distributed_worker`` slot of ``become_dask_worker``, and the event loop."""

    distributed_worker = None

    def __init__(self):
        self.log = logging.getLogger("oxipp.engine")

    @property
    def io_loop(self):
        """The loop as tornado's IOLoop (tornado comes with IPython and dask)."""
        from tornado.ioloop import IOLoop

        engine_loop()
        return IOLoop.current()


def engine_kernel() -> EngineKernel:
    """The engine's kernel stand-in; asking for it starts the loop and makes it current."""
    global _kernel
    engine_loop()
    with _lock:
        if _kernel is None:
            _kernel = EngineKernel()
        return _kernel
