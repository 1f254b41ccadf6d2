"""oxipp: IPython Parallel with a Rust core, wire-compatible with ipyparallel 9.x.

The controller (Hub, schedulers, relays, heartbeat monitor), the engines' runtime and the
client's IO all run in Rust; Python keeps what users touch (``Client``, views, ``AsyncResult``,
magics) and the pickling of user objects. Stock ``ipyparallel`` clients and engines work with an
oxipp controller, and ``import oxipp as ipp`` is meant to be a drop-in switch.

Command line: ``oxipp controller ARGS`` (or ``python -m oxipp.controller ARGS``) runs the
controller with ipcontroller's arguments. The client API arrives in later releases.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
