"""oxipp's stand-in for the stock modules whose helper functions travel in apply requests.

Stock clients implement ``push``/``pull``/``execute``/``map``/``become_dask`` by applying helper
functions from ``ipyparallel.util`` and ``ipyparallel.client.remotefunction``; those functions
arrive canned with ``module`` set to that stock module, and the receiving engine runs their
*code* with the module's globals. On an oxipp engine the module is this one (see
``_wire.MODULE_ALIASES``), so every global name that stock code uses is defined here:
``get_ipython``, ``asyncio``, ``IOLoop``.

The reverse holds for the oxipp client: it ships the functions below, whose ``__module__`` is the
stock module name, so a stock engine runs them with *its* ``ipyparallel.util`` globals; their
code uses only names that module also has.

``get_ipython()`` returns the running IPython shell when there is one, else a minimal shell over
the namespace registered with :func:`set_user_namespace` (an engine executor without IPython
calls it once), else over ``__main__``.
"""

from __future__ import annotations

import asyncio
import sys

from ._wire import wire_name

try:  # used by stock's stop_distributed_worker; tornado comes with IPython kernels
    from tornado.ioloop import IOLoop
except ImportError:  # pragma: no cover - depends on the environment
    IOLoop = None

__all__ = [
    "_execute",
    "_map",
    "_pull",
    "_push",
    "become_dask_worker",
    "get_ipython",
    "set_user_namespace",
    "stop_distributed_worker",
]

_UTIL = sys.intern("ipyparallel.util")
_REMOTEFUNCTION = sys.intern("ipyparallel.client.remotefunction")

_user_ns: dict | None = None


def set_user_namespace(ns: dict | None) -> None:
    """Register the engine's user namespace for helpers when no IPython shell is running."""
    global _user_ns
    _user_ns = ns


def _engine_kernel():
    from ..engine.eventloop import engine_kernel

    return engine_kernel()


class _NamespaceShell:
    """The part of IPython's shell the helpers use: ``user_ns``/``user_global_ns``, and
    ``kernel`` (the engine's stand-in with an event loop, made on first use)."""

    def __init__(self, ns: dict):
        self.user_ns = ns
        self.user_global_ns = ns

    @property
    def kernel(self):
        return _engine_kernel()


class _ShellWithKernel:
    """An oxipp engine's IPython shell (whose ``kernel`` is None, so that libraries do not take
    it for a Jupyter kernel), as the helpers see it: with the engine's kernel stand-in that
    stock's ``become_dask_worker``/``stop_distributed_worker`` need."""

    __slots__ = ("_shell",)

    def __init__(self, shell):
        self._shell = shell

    @property
    def kernel(self):
        return _engine_kernel()

    def __getattr__(self, name):
        return getattr(self._shell, name)


def get_ipython():
    """The engine's shell: IPython's if one is running, else a namespace-only shell."""
    ipython = sys.modules.get("IPython")
    if ipython is not None:
        shell = ipython.get_ipython()
        if shell is not None:
            return shell if shell.kernel is not None else _ShellWithKernel(shell)
    ns = _user_ns
    if ns is None:
        ns = sys.modules["__main__"].__dict__
    return _NamespaceShell(ns)


def _shipped_from(module: str):
    def mark(f):
        f.__module__ = module
        return wire_name(module)(f)

    return mark


@_shipped_from(_UTIL)
def _push(**ns):
    """Bind each keyword in the user namespace (``view.push``); names may be dotted targets."""
    user_ns = get_ipython().user_global_ns
    tmp = "_IP_PUSH_TMP_"
    while tmp in user_ns:
        tmp += "_"
    try:
        for name, value in ns.items():
            user_ns[tmp] = value
            exec(f"{name} = {tmp}", user_ns)
    finally:
        user_ns.pop(tmp, None)


@_shipped_from(_UTIL)
def _pull(keys):
    """Evaluate one name/expression, or each of a list/tuple/set of them (``view.pull``)."""
    user_ns = get_ipython().user_global_ns
    if isinstance(keys, (list, tuple, set)):
        return [eval(key, user_ns) for key in keys]
    return eval(keys, user_ns)


@_shipped_from(_UTIL)
def _execute(code):
    """Run source code in the user namespace."""
    exec(code, get_ipython().user_global_ns)


@_shipped_from(_REMOTEFUNCTION)
def _map(f, *sequences):
    """One map chunk: ``list(map(f, *sequences))``."""
    return list(map(f, *sequences))


@_shipped_from(_UTIL)
def become_dask_worker(address, nanny=False, **kwargs):
    """Start a dask.distributed worker (or nanny) in this engine's event loop."""
    shell = get_ipython()
    kernel = shell.kernel
    if getattr(kernel, "dask_worker", None) is not None:
        kernel.log.info("Dask worker is already running.")
        return
    from distributed import Nanny, Worker

    worker = Nanny(address, **kwargs) if nanny else Worker(address, **kwargs)
    shell.user_ns["dask_worker"] = shell.user_ns["distributed_worker"] = worker
    kernel.distributed_worker = worker

    def log_start(fut):
        try:
            fut.result()
        except Exception:
            kernel.log.error("Error starting dask worker", exc_info=True)

    asyncio.ensure_future(worker.start()).add_done_callback(log_start)


@_shipped_from(_UTIL)
def stop_distributed_worker():
    """Stop the worker started by :func:`become_dask_worker`."""
    shell = get_ipython()
    kernel = shell.kernel
    worker = getattr(kernel, "distributed_worker", None)
    if worker is None:
        return
    kernel.distributed_worker = None
    if shell.user_ns.get("distributed_worker", None) is worker:
        shell.user_ns.pop("distributed_worker", None)
    IOLoop.current().add_callback(lambda: worker.terminate(None))
