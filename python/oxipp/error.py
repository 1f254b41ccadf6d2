"""oxipp's exceptions, with ipyparallel's names and hierarchy (spec §7.8).

Failures on engines reach the client as :class:`RemoteError` (several at once as
:class:`CompositeError`) whose ``ename`` names the remote exception class; the client itself
raises :class:`TaskAborted`, :class:`NoEnginesRegistered` and the builtin ``TimeoutError``.
Every class is registered under its ``ipyparallel.error`` wire name, so pickled instances cross
between stock and oxipp processes.
"""

from __future__ import annotations

import builtins
import sys
import traceback

from .serialize._wire import wire_name
from .serialize.errors import (
    DependencyTimeout,
    ImpossibleDependency,
    InvalidDependency,
    IPythonError,
    KernelError,
    UnmetDependency,
)

__all__ = [
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
]

_WIRE = "ipyparallel.error"
TimeoutError = builtins.TimeoutError  # noqa: A001 - stock re-exports the builtin under this name


@wire_name(_WIRE)
class EngineError(KernelError):
    """An engine died or failed while holding the request."""


@wire_name(_WIRE)
class NoEnginesRegistered(KernelError):
    """An operation needs engines and there are none."""

    def __str__(self):
        return (
            "This operation requires engines."
            " Try client.wait_for_engines(n) to wait for engines to register."
        )


@wire_name(_WIRE)
class TaskAborted(KernelError):
    """The request was aborted before it ran."""


@wire_name(_WIRE)
class TaskTimeout(KernelError):
    """A task waited in the scheduler longer than its ``timeout``."""


@wire_name(_WIRE)
class TaskRejectError(KernelError):
    """Raised by a task to be retried elsewhere (with ``retries``)."""


def _engine_label(engine_info) -> str:
    if not engine_info:
        return "[Engine Exception]"
    return f"[{engine_info.get('engine_id')}:{engine_info.get('method')}]"


@wire_name(_WIRE)
class RemoteError(KernelError):
    """An exception raised on an engine (or by the controller on its behalf)."""

    ename = None
    evalue = None
    traceback = None
    engine_info = None

    def __init__(self, ename, evalue, traceback, engine_info=None):
        self.ename = ename
        self.evalue = evalue
        self.traceback = traceback
        self.engine_info = engine_info or {}
        self.args = (ename, evalue)

    def __repr__(self):
        eid = self.engine_info.get("engine_id", " ")
        return f"<{self.__class__.__name__}[{eid}]:{self.ename}({self.evalue})>"

    def __str__(self):
        return f"{self._get_engine_str(self.engine_info)} {self.ename}: {self.evalue}"

    @staticmethod
    def _get_engine_str(engine_info):
        return _engine_label(engine_info)

    def render_traceback(self):
        """The remote traceback as a list of lines, headed by the engine label."""
        return [self._get_engine_str(self.engine_info)] + (
            self.traceback or "No traceback available"
        ).splitlines()

    def _render_traceback_(self):
        # IPython shows this instead of the (useless) local traceback
        return self.render_traceback()

    def print_traceback(self, excid=None):
        print("\n".join(self.render_traceback()))


@wire_name(_WIRE)
class CompositeError(RemoteError):
    """Several remote errors at once (``elist`` of ``(ename, evalue, traceback, engine_info)``);
    at most ``tb_limit`` tracebacks are rendered."""

    tb_limit = 4

    def __init__(self, message, elist):
        Exception.__init__(self, message, elist)
        self.msg = message
        self.elist = elist
        self.args = [e[0] for e in elist]

    def _get_traceback(self, ev):
        # an evalue that is a live exception may carry IPython's rendered traceback text
        return getattr(ev, "_ipython_traceback_text", "No traceback available")

    def __str__(self):
        s = str(self.msg)
        for en, ev, _etb, ei in self.elist[: self.tb_limit]:
            s += "\n" + self._get_engine_str(ei) + en + ": " + str(ev)
        if len(self.elist) > self.tb_limit:
            s += f"\n.... {len(self.elist) - self.tb_limit} more exceptions ..."
        return s

    def __repr__(self):
        return f"CompositeError({len(self.elist)})"

    def _entry(self, excid):
        try:
            return self.elist[excid]
        except Exception:
            raise IndexError(f"an exception with index {excid} does not exist") from None

    def render_traceback(self, excid=None):
        """One (``excid``) or the first ``tb_limit`` tracebacks as a list of lines."""
        lines = []
        if excid is None:
            for _en, _ev, etb, ei in self.elist[: self.tb_limit]:
                lines.append(self._get_engine_str(ei) + ":")
                lines.extend((etb or "No traceback available").splitlines())
                lines.append("")
            if len(self.elist) > self.tb_limit:
                lines.append(f"... {len(self.elist) - self.tb_limit} more exceptions ...")
        else:
            _en, _ev, etb, ei = self._entry(excid)
            lines.append(self._get_engine_str(ei) + ":")
            lines.extend((etb or "No traceback available").splitlines())
        return lines

    def print_traceback(self, excid=None):
        print("\n".join(self.render_traceback(excid)))

    def raise_exception(self, excid=0):
        """Raises error ``excid`` as a RemoteError."""
        en, ev, etb, ei = self._entry(excid)
        raise RemoteError(en, ev, etb, ei)


@wire_name(_WIRE)
class AlreadyDisplayedError(RemoteError):
    """Raised after streamed output already showed the errors: renders as a count only."""

    def __init__(self, original_error):
        self.original_error = original_error
        self.n = len(original_error.elist)

    def __repr__(self):
        return f"<{self.__class__.__name__}({self.n} errors)>"

    def __str__(self):
        return f"{self.n} errors"

    def render_traceback(self):
        return [str(self)]


def collect_exceptions(rdict_or_list, method="unspecified"):
    """Raises a CompositeError of the RemoteErrors in a result list/dict (flattening nested
    CompositeErrors); returns the input unchanged when there are none."""
    rlist = rdict_or_list.values() if isinstance(rdict_or_list, dict) else rdict_or_list
    elist = []
    for r in rlist:
        if isinstance(r, RemoteError):
            if r.ename == "CompositeError":
                elist.extend(r.evalue.elist)
            else:
                elist.append((r.ename, r.evalue, r.traceback, r.engine_info))
    if not elist:
        return rdict_or_list
    raise CompositeError(f"one or more exceptions raised in: {method}", elist)


def wrap_exception(engine_info={}):  # noqa: B006 - stock signature; never mutated
    """The error content of the exception being handled (call inside ``except``)."""
    etype, evalue, tb = sys.exc_info()
    return {
        "status": "error",
        "traceback": traceback.format_exception(etype, evalue, tb),
        "ename": etype.__name__,
        "evalue": str(evalue),
        "engine_info": engine_info,
    }


def unwrap_exception(content):
    """The RemoteError an error content describes."""
    return RemoteError(
        content["ename"],
        content["evalue"],
        "\n".join(content["traceback"]),
        content.get("engine_info", {}),
    )
