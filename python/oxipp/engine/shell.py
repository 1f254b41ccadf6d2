"""The IPython shell of an oxipp engine: ``execute_request`` runs here, and so do tracebacks.

Imported lazily by the executor (IPython costs ~0.3 s to import and build), the first time a
request needs it: an ``execute_request``, an error to format, ``get_ipython()``/``display()``
from user code. Apply requests that succeed never touch it.

It plays the part of ipykernel's ``ZMQInteractiveShell`` with the socket plumbing replaced by
the runtime's ``io.publish``: the display hook sends ``execute_result``, the display publisher
``display_data``/``update_display_data``/``clear_output``, ``_showtraceback`` the ``error``
message (and keeps the formatted traceback for the reply, as ipykernel does), the pager writes
payloads. Message contents follow ipykernel's so stock clients read them unchanged.
"""

from __future__ import annotations

from IPython.core import page, payloadpage
from IPython.core.displayhook import DisplayHook
from IPython.core.displaypub import DisplayPublisher
from IPython.core.interactiveshell import InteractiveShell
from traitlets.config import Config
from traitlets.config.configurable import SingletonConfigurable

from .jsonutil import dumps

__all__ = ["EngineDisplayHook", "EngineDisplayPublisher", "EngineShell", "create_shell"]


class EngineDisplayHook(DisplayHook):
    """Publishes the value of a cell's last expression as ``execute_result``."""

    msg = None

    def start_displayhook(self):
        self.msg = {"data": {}, "metadata": {}}

    def write_output_prompt(self):
        if self.msg is not None:
            self.msg["execution_count"] = self.prompt_count

    def write_format_data(self, format_dict, md_dict=None):
        if self.msg is not None:
            self.msg["data"] = format_dict
            self.msg["metadata"] = md_dict or {}

    def finish_displayhook(self):
        msg, self.msg = self.msg, None
        if msg and msg["data"]:
            shell = self.shell
            shell._oxipp_io.publish("execute_result", dumps(msg), shell._oxipp_context.parent)


class EngineDisplayPublisher(DisplayPublisher):
    """``IPython.display.display`` → ``display_data`` (``update_display_data`` on update)."""

    def publish(self, data, metadata=None, source=None, *, transient=None, update=False, **kw):
        content = {
            "data": data,
            "metadata": metadata if metadata is not None else {},
            "transient": transient if transient is not None else {},
        }
        msg_type = "update_display_data" if update else "display_data"
        shell = self.shell
        shell._oxipp_io.publish(msg_type, dumps(content), shell._oxipp_context.parent)

    def clear_output(self, wait=False):
        shell = self.shell
        shell._oxipp_io.publish(
            "clear_output", dumps({"wait": bool(wait)}), shell._oxipp_context.parent
        )


class EngineShell(InteractiveShell):
    """InteractiveShell whose output goes to IOPub through the engine runtime."""

    displayhook_class = EngineDisplayHook
    display_pub_class = EngineDisplayPublisher

    # ZMQInteractiveShell's attribute: libraries test ``get_ipython().kernel is not None`` to
    # find a Jupyter kernel; an oxipp engine has no ipykernel Kernel object
    kernel = None

    # set by create_shell right after construction; nothing publishes during __init__
    _oxipp_io = None
    _oxipp_context = None
    _last_traceback = None
    _last_traceback_during_displayhook = False

    def init_virtualenv(self):
        """No virtualenv detection: an engine runs in the interpreter it was started with."""

    def enable_gui(self, gui=None):
        """``%matplotlib inline`` / ``%pylab inline`` ask for a GUI event loop; like
        ipykernel's shell, an engine needs none (the base class raises NotImplementedError)."""

    def init_hooks(self):
        super().init_hooks()
        # ``obj?``, %pdoc, … go back in the reply's payload instead of spawning a pager
        self.set_hook("show_in_pager", page.as_hook(payloadpage.page), 99)

    keepkernel_on_exit = False

    def ask_exit(self):
        """``exit()``/``quit()`` in a cell: ipykernel's behaviour (an ``ask_exit`` payload and
        ``exit_now``); the engine loop reads ``Executor.exit_requested`` and shuts down, as a
        stock engine's kernel stops its loop."""
        self.exit_now = not self.keepkernel_on_exit
        self.payload_manager.write_payload(
            {"source": "ask_exit", "keepkernel": self.keepkernel_on_exit}
        )

    def run_cell(self, *args, **kwargs):
        self._last_traceback = None
        self._last_traceback_during_displayhook = False
        return super().run_cell(*args, **kwargs)

    def _showtraceback(self, etype, evalue, stb):
        """Publish the ``error`` message and keep ``stb`` for the reply (ipykernel's contract)."""
        if getattr(self.displayhook, "msg", None) is not None:
            # formatting the cell's result failed: the execute_request failed too
            self._last_traceback_during_displayhook = True
        try:
            evalue_str = str(evalue)
        except Exception as e:
            evalue_str = f"Failed to cast exception to string: {e}"
        content = {"traceback": stb, "ename": str(etype.__name__), "evalue": evalue_str}
        self._oxipp_io.publish("error", dumps(content), self._oxipp_context.parent)
        self._last_traceback = stb


def _register_singleton(shell) -> None:
    """Make ``IPython.get_ipython()`` / ``InteractiveShell.instance()`` return ``shell``.

    Done by hand rather than with ``instance()``, which refuses to run when another shell was
    registered before (tests build several executors in one process).
    """
    for cls in type(shell).__mro__:
        if (
            isinstance(cls, type)
            and issubclass(cls, SingletonConfigurable)
            and cls is not SingletonConfigurable
        ):
            cls._instance = shell


def unregister_singleton(shell) -> None:
    """Undo :func:`_register_singleton` (``Executor.close``): later code in the process must not
    find a shell whose executor is gone."""
    for cls in type(shell).__mro__:
        if cls.__dict__.get("_instance") is shell:
            cls._instance = None


def create_shell(io, context, user_module, data_pub, shell_config=None) -> EngineShell:
    """Build the engine's shell over ``user_module`` (whose ``__dict__`` is the namespace).

    ``shell_config`` holds ``InteractiveShell`` traits from the command line (``colors``, …)."""
    config = Config()
    for trait, value in (shell_config or {}).items():
        config.InteractiveShell[trait] = value
    # engines keep history in memory, as stock engines do: N engines must not share one sqlite
    config.HistoryManager.hist_file = ":memory:"
    shell = EngineShell(user_module=user_module, config=config)
    shell._oxipp_io = io
    shell._oxipp_context = context
    shell.data_pub = data_pub
    _register_singleton(shell)
    from .kernel import register_magics

    register_magics(shell)
    return shell
