"""oxipp: IPython Parallel with a Rust core, wire-compatible with ipyparallel 9.x.

The controller (Hub, schedulers, relays, heartbeat monitor), the engines' runtime and the
client's IO all run in Rust; Python keeps what users touch (``Client``, views, ``AsyncResult``,
magics) and the pickling of user objects. Stock ``ipyparallel`` clients and engines work with an
oxipp controller, and ``import oxipp as ipp`` is meant to be a drop-in switch.

Command line: ``oxipp start -n 4`` starts a cluster, ``oxipp controller ARGS`` (or
``python -m oxipp.controller ARGS``) runs the controller with ipcontroller's arguments.

The client API (``Client``, views, ``AsyncResult``, errors, decorators, ``Cluster``) is loaded
on first use, so engines and command-line tools that import this package do not pay for it.
"""

from concurrent.futures import ALL_COMPLETED, FIRST_COMPLETED, FIRST_EXCEPTION

__version__ = "0.1.0"
version_info = (0, 1, 0)

# name -> module that defines it (relative to this package)
_LAZY = {
    "Client": ".client.client",
    "ExecuteReply": ".client.client",
    "DirectView": ".client.view",
    "LoadBalancedView": ".client.view",
    "BroadcastView": ".client.view",
    "ViewExecutor": ".client.view",
    "AsyncResult": ".client.asyncresult",
    "AsyncMapResult": ".client.asyncresult",
    "AsyncHubResult": ".client.asyncresult",
    "RemoteFunction": ".client.remotefunction",
    "ParallelFunction": ".client.remotefunction",
    "remote": ".client.remotefunction",
    "parallel": ".client.remotefunction",
    "Cluster": ".cluster",
    "ClusterManager": ".cluster",
    "Dependency": ".serialize",
    "depend": ".serialize",
    "dependent": ".serialize",
    "require": ".serialize",
    "Reference": ".serialize",
    "PrePickled": ".serialize",
    "interactive": ".serialize",
    "can": ".serialize",
    "uncan": ".serialize",
    "can_map": ".serialize",
    "uncan_map": ".serialize",
    "serialize_object": ".serialize",
    "deserialize_object": ".serialize",
    "pack_apply_message": ".serialize",
    "unpack_apply_message": ".serialize",
    "use_pickle": ".serialize",
    "use_cloudpickle": ".serialize",
    "use_dill": ".serialize",
}
_ERRORS = (
    "IPythonError",
    "KernelError",
    "EngineError",
    "NoEnginesRegistered",
    "TaskAborted",
    "TaskTimeout",
    "TimeoutError",
    "UnmetDependency",
    "ImpossibleDependency",
    "DependencyTimeout",
    "InvalidDependency",
    "RemoteError",
    "CompositeError",
    "AlreadyDisplayedError",
    "TaskRejectError",
    "wrap_exception",
    "unwrap_exception",
    "collect_exceptions",
)
_LAZY.update({name: ".error" for name in _ERRORS})

__all__ = [
    "__version__",
    "version_info",
    "bind_kernel",
    "register_joblib_backend",
    "ALL_COMPLETED",
    "FIRST_COMPLETED",
    "FIRST_EXCEPTION",
    *_LAZY,
]


# submodules users reach as attributes (`ipp.error.RemoteError`)
_SUBMODULES = ("error", "client", "cluster", "serialize")


def __getattr__(name):
    import importlib

    if name in _SUBMODULES:
        return importlib.import_module(f".{name}", __name__)
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'oxipp' has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(_LAZY) | set(_SUBMODULES))


def register_joblib_backend(name="ipyparallel", make_default=False):
    """Registers oxipp as a joblib backend (connecting to the default cluster when used)."""
    from joblib.parallel import register_parallel_backend

    from .client._joblib import IPythonParallelBackend

    return register_parallel_backend(name, IPythonParallelBackend, make_default=make_default)


def bind_kernel(**kwargs):
    """Make the engine this runs on also a Jupyter kernel (``jupyter console --existing``).

    On an oxipp engine the Rust runtime serves the kernel sockets; on a stock ipyparallel
    engine this defers to ``ipyparallel.bind_kernel``. Elsewhere it raises RuntimeError, as
    stock does."""
    from .engine import kernel

    if kernel.in_engine():
        kernel.bind_kernel(**kwargs)  # prints how to connect; returns None like stock
        return None
    try:
        from ipyparallel.engine.app import IPEngine
    except ImportError:
        IPEngine = None
    if IPEngine is not None and IPEngine.initialized():
        import ipyparallel

        return ipyparallel.bind_kernel(**kwargs)
    raise RuntimeError("bind_kernel must be called from an engine")
