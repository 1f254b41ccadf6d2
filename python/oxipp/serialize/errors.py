"""Errors raised while (un)canning, with the class names stock ipyparallel uses.

These live here only until the client work gives oxipp a single ``oxipp.error`` module; they
are registered with the ``ipyparallel.error.*`` wire names (see ``_wire``), so a pickled
instance reads as the stock class on a stock peer and as these classes on an oxipp peer.

Only the class *names* matter across processes: a stock engine reports a failed dependency as an
error reply whose ``ename`` is ``"UnmetDependency"`` and the scheduler reacts to that string, so
an oxipp engine raising this class is indistinguishable from a stock one.
"""

from __future__ import annotations

from ._wire import wire_name

__all__ = [
    "IPythonError",
    "KernelError",
    "UnmetDependency",
    "ImpossibleDependency",
    "DependencyTimeout",
    "InvalidDependency",
]

_ERROR_MODULE = "ipyparallel.error"


@wire_name(_ERROR_MODULE)
class IPythonError(Exception):
    """Base class of every oxipp/ipyparallel-specific exception."""


@wire_name(_ERROR_MODULE)
class KernelError(IPythonError):
    """An error tied to executing work on an engine."""


@wire_name(_ERROR_MODULE)
class UnmetDependency(KernelError):
    """A task's dependency function returned ``False`` (or a required module is missing).

    The task scheduler then offers the task to another engine.
    """


@wire_name(_ERROR_MODULE)
class ImpossibleDependency(UnmetDependency):
    """A dependency that can never be met anywhere."""


@wire_name(_ERROR_MODULE)
class DependencyTimeout(ImpossibleDependency):
    """A dependency was not met before the task's timeout."""


@wire_name(_ERROR_MODULE)
class InvalidDependency(ImpossibleDependency):
    """A dependency refers to unknown tasks."""
