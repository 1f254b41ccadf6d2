"""``publish_data``: send a namespace of Python objects to the client while a task runs.

A stock client collects these ``data_message``s (IOPub, topic ``datapub``, content
``{"keys": [...]}``, buffers = ``serialize_object(data)``) into ``AsyncResult.data``. The
message is built exactly as stock's ``ZMQDataPublisher`` builds it.

Two ways in:

* ``oxipp.datapub.publish_data(data)`` (this module's :func:`publish_data`) finds the running
  engine's publisher through a module global that the executor sets.
* Stock's ``ipyparallel.datapub.publish_data`` does ``ZMQInteractiveShell.instance().data_pub``.
  When user code on an oxipp engine imports it (ipyparallel installed there), the import hook of
  :func:`install_stock_compat` answers that lookup with an object whose ``data_pub`` is this
  engine's publisher, without oxipp importing ipykernel (which costs a quarter second).
"""

from __future__ import annotations

import sys

from ..serialize import serialize_object
from .jsonutil import dumps

__all__ = ["DataPublisher", "install_stock_compat", "publish_data"]

_ZMQSHELL = "ipykernel.zmqshell"

#: the publisher of the executor running in this process (set by ``Executor``)
_current: DataPublisher | None = None


class DataPublisher:
    """Publishes ``data_message``s for the request that is running."""

    topic = "datapub"

    def __init__(self, io, context):
        self._io = io
        self._context = context

    def set_parent(self, parent) -> None:
        """Accepted for API compatibility with stock's ZMQDataPublisher; the parent is the
        running request, tracked by the executor."""

    def publish_data(self, data) -> None:
        """Publish ``data`` (a dict: think of it as a namespace; keys should be strings)."""
        if not isinstance(data, dict):
            raise TypeError(f"publish_data needs a dict, not {type(data).__name__}")
        buffers = serialize_object(data)
        content = dumps({"keys": list(data.keys())})
        self._io.publish(
            "data_message", content, self._context.parent, topic=self.topic, buffers=buffers
        )


def set_current(publisher: DataPublisher | None) -> None:
    """Make ``publisher`` the one :func:`publish_data` (and stock's) uses."""
    global _current
    _current = publisher
    if publisher is not None and _ZMQSHELL in sys.modules:
        _patch_zmqshell(sys.modules[_ZMQSHELL])


def publish_data(data) -> None:
    """Publish a ``data_message`` on IOPub from inside a task running on an engine.

    ``data`` is a dict; the client merges it into ``AsyncResult.data``.
    """
    if _current is None:
        raise RuntimeError("publish_data() can only be called inside a task on an engine")
    _current.publish_data(data)


# --- stock ipyparallel.datapub.publish_data --------------------------------------------------


def _patch_zmqshell(module) -> None:
    """Let ``ZMQInteractiveShell.instance().data_pub`` reach our publisher.

    traitlets' ``instance()`` returns ``cls._instance`` when it is an instance of ``cls``; a bare
    instance made with ``__new__`` (no ``__init__``: no kernel, sockets or second IPython) whose
    ``_data_pub`` is set satisfies that and the ``data_pub`` property. Only done while no real
    ZMQ shell exists in the process.
    """
    cls = getattr(module, "ZMQInteractiveShell", None)
    if cls is None or _current is None:
        return
    existing = cls.__dict__.get("_instance")
    if existing is not None and not getattr(existing, "_oxipp_stand_in", False):
        return  # a real kernel shell runs in this process: leave it alone
    try:
        stand_in = cls.__new__(cls)
        stand_in._oxipp_stand_in = True
        stand_in._data_pub = _StockDataPub()
    except Exception:  # pragma: no cover - depends on the ipykernel version
        return
    cls._instance = stand_in


class _StockDataPub:
    """The ``data_pub`` stock's publish_data finds: forwards to the current publisher."""

    def publish_data(self, data) -> None:
        publish_data(data)

    def set_parent(self, parent) -> None:
        pass


class _ZmqShellFinder:
    """Meta-path finder that patches ``ipykernel.zmqshell`` right after it is imported.

    Installed once by :func:`install_stock_compat`; it only answers for that one module name and
    delegates finding and loading to the rest of ``sys.meta_path``.
    """

    def find_spec(self, name, path, target=None):
        if name != _ZMQSHELL:
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(name, path, target)
            if spec is not None:
                break
        else:
            return None
        loader = spec.loader
        if loader is None or not hasattr(loader, "exec_module"):
            return spec
        spec.loader = _PatchingLoader(loader)
        return spec


class _PatchingLoader:
    def __init__(self, loader):
        self._loader = loader

    def create_module(self, spec):
        return self._loader.create_module(spec)

    def exec_module(self, module):
        self._loader.exec_module(module)
        try:
            _patch_zmqshell(module)
        except Exception:  # pragma: no cover - never break the user's import
            pass

    def __getattr__(self, name):
        return getattr(self._loader, name)


_finder: _ZmqShellFinder | None = None


def install_stock_compat() -> None:
    """Make stock ``ipyparallel.datapub.publish_data`` work in this process (idempotent)."""
    global _finder
    if _ZMQSHELL in sys.modules:
        _patch_zmqshell(sys.modules[_ZMQSHELL])
        return
    if _finder is None:
        _finder = _ZmqShellFinder()
        sys.meta_path.insert(0, _finder)
