"""oxipp: IPython Parallel with a Rust core, wire-compatible with ipyparallel 9.x.

The controller (Hub, schedulers, relays, heartbeat monitor), the engines' runtime and the
client's IO all run in Rust; Python keeps what users touch (``Client``, views, ``AsyncResult``,
magics) and the pickling of user objects. Stock ``ipyparallel`` clients and engines work with an
oxipp controller, and ``import oxipp as ipp`` is meant to be a drop-in switch.

Command line: ``oxipp controller ARGS`` (or ``python -m oxipp.controller ARGS``) runs the
controller with ipcontroller's arguments. The client API arrives in later releases.
"""

__version__ = "0.1.0"

__all__ = ["__version__", "bind_kernel"]


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
