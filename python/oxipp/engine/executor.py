"""The engine's Python half: runs shell requests in one user namespace (docs/engine-runtime.md §2).

The Rust runtime owns sockets, headers, reply metadata, status messages and stream buffering;
:class:`Executor` turns one request into reply *content* (JSON text) plus buffers, and publishes
what a stock engine publishes on IOPub while the request runs (``stream``, ``execute_input``,
``execute_result``, ``display_data``, ``error``, ``data_message``).

Design points, each for a measured or stock-visible reason:

* **Apply is the hot path** (goal: ≤ 25 µs of engine CPU per no-op apply end to end). It touches
  no IPython machinery: unpack with ``oxipp.serialize``, call, serialize, return a constant
  ``{"status": "ok"}``. The call goes through a precompiled ``exec`` of one line, so a failing
  task's traceback has the same frames as stock's (stock execs ``_<id>_result = _<id>_f(...)``,
  which shows up as ``File <string>:1``), without compiling per request.
* **IPython is imported only when needed** (execute_request, formatting an error, or user code
  calling ``get_ipython()``/``display()``): importing and building a shell costs ~0.3 s, and an
  engine must register well under a second after start.
* **One namespace for everything**: ``user_ns`` is the ``__dict__`` of a module installed as
  ``sys.modules["__main__"]``, as IPython does for kernels. Apply'd functions (whose globals are
  the namespace), ``%px``/execute code, push/pull helpers (``stock_helpers``) and pickles naming
  ``__main__.Something`` all see the same objects; the IPython shell, once created, adopts that
  module instead of making its own.
* **Every request ends with a reply**: garbage buffers, malformed content and bugs here become an
  error reply with stock's error content (spec §3.1), never an exception out of :meth:`handle`.
"""

from __future__ import annotations

import builtins
import getpass
import json
import logging
import os
import sys
import traceback
import types

from ..serialize import serialize_object, stock_helpers, unpack_apply_message
from . import datapub
from .jsonutil import dumps
from .kernel_info import kernel_info as _kernel_info
from .outstream import OutStream, RequestContext, original_stream

__all__ = ["Executor"]

log = logging.getLogger("oxipp.engine")

# `f`, `args`, `kwargs` and `result` live in a per-call locals dict, so the user namespace is not
# touched; compiled once, with stock's "<string>" filename.
_APPLY_CODE = compile("result = f(*args, **kwargs)", "<string>", "exec")
_OK = '{"status": "ok"}'
# keys IPython's reset keeps in the namespace (InteractiveShell.reset)
_KEEP_ON_CLEAR = ("__builtin__", "__builtins__", "__name__")


class _SysDisplayHook:
    """``sys.displayhook`` outside of cells (e.g. ``exec(src, ns, "single")`` in a task).

    What stock engines install (ipykernel's ``ZMQDisplayHook``): the repr as ``execute_result``
    with execution_count 0. Inside ``execute_request`` IPython swaps in the shell's own hook.
    """

    def __init__(self, io, context):
        self._io = io
        self._context = context

    def __call__(self, obj):
        if obj is None:
            return
        builtins._ = obj
        content = {"execution_count": 0, "data": {"text/plain": repr(obj)}, "metadata": {}}
        self._io.publish("execute_result", dumps(content), self._context.parent)


class Executor:
    """Runs the shell requests of one engine; see docs/engine-runtime.md §2.

    ``io`` has ``publish(msg_type, content_json, parent, topic=None, buffers=())`` and
    ``stream(name, text, parent)`` (``EngineRuntime`` in production, a recorder in tests).

    Keyword-only options exist for tests and embedding: ``redirect_output`` installs
    ``sys.stdout``/``sys.stderr``/``sys.displayhook`` replacements, ``install_main`` makes the
    user namespace ``sys.modules["__main__"]``. :meth:`close` undoes both.
    """

    def __init__(
        self,
        io,
        engine_id: int,
        engine_uuid: str,
        *,
        redirect_output: bool = True,
        install_main: bool = True,
        shell_config: dict | None = None,
    ):
        self.io = io
        self.engine_id = engine_id
        self.engine_uuid = engine_uuid
        #: set after each execute_request: True when ipykernel would now abort the queue
        #: (reply status error, ``stop_on_error`` not false, not ``silent``)
        self.stop_on_error = False
        self._context = RequestContext()
        self._engine_info = {
            "apply": {"engine_uuid": engine_uuid, "engine_id": engine_id, "method": "apply"},
            "execute": {"engine_uuid": engine_uuid, "engine_id": engine_id, "method": "execute"},
        }
        self._shell = None
        self._shell_config = dict(shell_config or {})

        self.user_module = types.ModuleType(
            "__main__", doc="Automatically created module for the oxipp engine's user namespace"
        )
        self.user_ns = self.user_module.__dict__
        self._init_namespace()
        self._saved_main = None
        self._installed_main = False
        if install_main:
            self._saved_main = sys.modules.get("__main__")
            sys.modules["__main__"] = self.user_module
            self._installed_main = True
        stock_helpers.set_user_namespace(self.user_ns)
        if "display" not in builtins.__dict__:
            builtins.display = self._lazy_display  # IPython puts `display` there; so do we

        self.data_pub = datapub.DataPublisher(io, self._context)
        datapub.set_current(self.data_pub)
        datapub.install_stock_compat()

        # the fallback is the engine's own stream: fds 1/2 may be captured into IOPub
        self.stdout = OutStream("stdout", io, self._context, fallback=original_stream("stdout"))
        self.stderr = OutStream("stderr", io, self._context, fallback=original_stream("stderr"))
        self.displayhook = _SysDisplayHook(io, self._context)
        self._saved_streams = None
        if redirect_output:
            self.install_streams()

        self._handlers = {
            "apply_request": self._apply,
            "execute_request": self._execute,
            "complete_request": self._complete,
            "inspect_request": self._inspect,
            "history_request": self._history,
            "is_complete_request": self._is_complete,
            "comm_info_request": self._comm_info,
            "kernel_info_request": self._kernel_info_request,
            "connect_request": self._connect,
        }

    # --- public API (contract) ----------------------------------------------------------------

    def handle(self, req):
        """Run one shell request. Returns ``(status, content_json, buffers, dependencies_met)``,
        or ``None`` for message types that get no reply (unknown types are logged, as ipykernel
        does)."""
        self._context.parent = req
        handler = self._handlers.get(req.msg_type)
        if handler is None:
            if not req.msg_type.startswith("comm_"):
                log.warning("Unknown shell message type %r (msg_id %s)", req.msg_type, req.msg_id)
            return None
        try:
            return handler(req)
        except BaseException as e:  # a bug here, or an interrupt between user code and reply
            return self._internal_error(req, e)

    def clear(self) -> None:
        """``clear_request``: empty the user namespace (the same dict stays in use)."""
        shell = self._shell
        if shell is not None:
            try:
                shell.reset(False)  # what stock's clear_request does
                return
            except Exception:
                log.error("shell.reset failed; clearing the namespace by hand", exc_info=True)
        ns = self.user_ns
        for key in [k for k in ns if k not in _KEEP_ON_CLEAR]:
            del ns[key]
        self._init_namespace()
        if shell is not None:
            shell.init_user_ns()

    def kernel_info(self) -> dict:
        """Content of ``kernel_info_reply`` (what a stock ipykernel-based engine reports)."""
        return _kernel_info()

    # --- extras ---------------------------------------------------------------------------------

    @property
    def shell(self):
        """The IPython shell, created on first use (imports IPython)."""
        shell = self._shell
        if shell is None:
            from .shell import create_shell

            shell = self._shell = create_shell(
                self.io, self._context, self.user_module, self.data_pub, self._shell_config
            )
        return shell

    def run_startup_files(self, profile_dir: str | None) -> None:
        """Runs what IPython runs when a shell starts, as a stock engine does after it
        registered: ``$PYTHONSTARTUP`` and ``<profile>/startup/*.py|*.ipy``, in the user
        namespace. Only builds the shell (importing IPython) when there is something to run,
        so a plain engine stays quick to start."""
        files = []
        if profile_dir:
            startup = os.path.join(profile_dir, "startup")
            if os.path.isdir(startup):
                files += sorted(
                    os.path.join(startup, f)
                    for f in os.listdir(startup)
                    if f.endswith((".py", ".ipy"))
                )
        env_file = os.environ.get("PYTHONSTARTUP")
        if env_file and os.path.isfile(env_file):
            files.append(env_file)
        for path in files:
            if path.endswith(".ipy"):
                self.shell.safe_execfile_ipy(path)
            else:
                self.shell.safe_execfile(path, self.user_ns, raise_exceptions=False)

    @property
    def exit_requested(self) -> bool:
        """True once user code called ``exit()``/``quit()`` in a cell: the app should shut the
        engine down after sending the reply (a stock engine stops its kernel loop then)."""
        shell = self._shell
        return bool(shell is not None and shell.exit_now)

    def install_streams(self) -> None:
        """Point ``sys.stdout``/``sys.stderr``/``sys.displayhook`` at this engine's IOPub."""
        if self._saved_streams is None:
            self._saved_streams = (sys.stdout, sys.stderr, sys.displayhook)
        sys.stdout = self.stdout
        sys.stderr = self.stderr
        sys.displayhook = self.displayhook

    def close(self) -> None:
        """Undo the process-wide changes made by the executor (streams, ``__main__``, the
        shell registered as IPython's running instance)."""
        if self._saved_streams is not None:
            sys.stdout, sys.stderr, sys.displayhook = self._saved_streams
            self._saved_streams = None
        if self._installed_main:
            if sys.modules.get("__main__") is self.user_module and self._saved_main is not None:
                sys.modules["__main__"] = self._saved_main
            self._installed_main = False
        if self._shell is not None:
            from .shell import unregister_singleton

            unregister_singleton(self._shell)
        if datapub._current is self.data_pub:
            datapub.set_current(None)
        if stock_helpers._user_ns is self.user_ns:
            stock_helpers.set_user_namespace(None)

    # --- namespace --------------------------------------------------------------------------------

    def _init_namespace(self) -> None:
        ns = self.user_ns
        ns.setdefault("__name__", "__main__")
        ns.setdefault("__builtin__", builtins)
        ns.setdefault("__builtins__", builtins)
        # stock engines have IPython's get_ipython in the namespace from the start; ours builds
        # the shell when first called (the shell then binds its own method here)
        ns.setdefault("get_ipython", self._lazy_get_ipython)

    def _lazy_get_ipython(self):
        """Return the engine's IPython shell (``get_ipython()`` before the shell exists)."""
        return self.shell

    def _lazy_display(self, *objs, **kwargs):
        """``display()`` before the shell exists: build it, then display as IPython does."""
        self.shell  # noqa: B018 - creates the shell, which registers the display publisher
        from IPython.display import display

        return display(*objs, **kwargs)

    # --- apply ----------------------------------------------------------------------------------

    def _apply(self, req):
        ns = self.user_ns
        try:
            f, args, kwargs = unpack_apply_message(req.buffers, ns)
            local = {"f": f, "args": args, "kwargs": kwargs}
            exec(_APPLY_CODE, ns, local)
            result_bufs = serialize_object(local["result"])
        except BaseException as e:
            return self._apply_error(e)
        return ("ok", _OK, result_bufs, True)

    def _apply_error(self, e: BaseException):
        """Error reply for a failed apply, as stock's ``do_apply``: the traceback is IPython's
        (published as an ``error`` message too); an ``UnmetDependency`` means the scheduler
        should try another engine (``dependencies_met`` false)."""
        ename = type(e).__name__
        try:
            evalue = str(e)
        except Exception as str_error:
            evalue = f"Failed to cast exception to string: {str_error}"
        tb = self._format_traceback(e)
        content = {
            "traceback": tb,
            "ename": ename,
            "evalue": evalue,
            "engine_info": self._engine_info["apply"],
            "status": "error",
        }
        log.info("Exception in apply request:\n%s", "\n".join(tb))
        return ("error", dumps(content), [], ename != "UnmetDependency")

    def _format_traceback(self, e: BaseException) -> list:
        """Format the exception being handled with IPython (and publish ``error``), falling back
        to the stdlib format when IPython cannot be used."""
        try:
            shell = self.shell
            shell._last_traceback = None
            shell.showtraceback()
            tb = shell._last_traceback
            shell._last_traceback = None
            if tb is not None:
                return list(tb)
        except Exception:
            log.error("IPython could not format a traceback", exc_info=True)
        # exception groups (IPython prints those itself), or no IPython: stdlib format
        tb = traceback.format_exception(type(e), e, e.__traceback__)
        content = {"traceback": tb, "ename": type(e).__name__, "evalue": _safe_str(e)}
        try:
            self.io.publish("error", dumps(content), self._context.parent)
        except Exception:
            log.error("Could not publish an error message", exc_info=True)
        return tb

    # --- execute ----------------------------------------------------------------------------------

    def _execute(self, req):
        self.stop_on_error = False
        content = _load_content(req)
        code = content["code"]
        if not isinstance(code, str):
            raise TypeError(f"execute_request code must be a string, not {type(code).__name__}")
        silent = bool(content.get("silent", False))
        store_history = bool(content.get("store_history", not silent))
        user_expressions = content.get("user_expressions") or {}
        stop_on_error = content.get("stop_on_error", True)

        shell = self.shell
        if not silent:
            self.io.publish(
                "execute_input",
                dumps({"code": code, "execution_count": shell.execution_count}),
                req,
            )
        saved_input = self._forbid_stdin()
        try:
            res = shell.run_cell(code, store_history=store_history, silent=silent)
        finally:
            builtins.input, getpass.getpass = saved_input
        err = res.error_before_exec if res.error_before_exec is not None else res.error_in_exec

        if res.success and not shell._last_traceback_during_displayhook:
            reply = {"status": "ok"}
        else:
            reply = {
                "status": "error",
                "traceback": shell._last_traceback or [],
                "ename": str(type(err).__name__),
                "evalue": _safe_str(err),
                "engine_info": self._engine_info["execute"],
            }
            log.info("Exception in execute request:\n%s", "\n".join(reply["traceback"]))
        reply["execution_count"] = shell.execution_count - 1
        if reply["status"] == "ok":
            reply["user_expressions"] = shell.user_expressions(user_expressions)
        else:
            reply["user_expressions"] = {}
        reply["payload"] = shell.payload_manager.read_payload()
        shell.payload_manager.clear_payload()

        status = reply["status"]
        self.stop_on_error = status == "error" and not silent and stop_on_error is not False
        return (status, dumps(reply), [], True)

    @staticmethod
    def _forbid_stdin():
        """Make ``input()``/``getpass()`` raise during a cell, as ipykernel does when the client
        does not allow stdin (ipyparallel clients never do): an engine has no one to ask, and a
        read from the process's stdin could block the engine forever."""
        from IPython.core.error import StdinNotImplementedError

        def no_input(*args, **kwargs):
            raise StdinNotImplementedError(
                "raw_input was called, but this frontend does not support input requests."
            )

        saved = (builtins.input, getpass.getpass)
        builtins.input = no_input
        getpass.getpass = no_input
        return saved

    # --- the other shell requests (as ipykernel's IPythonKernel answers them) ---------------

    def _complete(self, req):
        """ipykernel's (default) Jedi-based completion, with its ``_jupyter_types_experimental``
        metadata; IPython's older ``shell.complete`` finds nothing in IPython 9."""
        from IPython.core.completer import provisionalcompleter, rectify_completions

        content = _load_content(req)
        code = content["code"]
        cursor_pos = content.get("cursor_pos")
        if cursor_pos is None:
            cursor_pos = len(code)
        with provisionalcompleter():
            raw = self.shell.Completer.completions(code, cursor_pos)
            completions = list(rectify_completions(code, raw))
            comps = [
                {
                    "start": c.start,
                    "end": c.end,
                    "text": c.text,
                    "type": c.type,
                    "signature": c.signature,
                }
                for c in completions
            ]
        if completions:
            start, end = completions[0].start, completions[0].end
        else:
            start = end = cursor_pos
        reply = {
            "matches": [c.text for c in completions],
            "cursor_end": end,
            "cursor_start": start,
            "metadata": {"_jupyter_types_experimental": comps},
            "status": "ok",
        }
        return ("ok", dumps(reply), [], True)

    def _inspect(self, req):
        from IPython.utils.tokenutil import token_at_cursor

        content = _load_content(req)
        code = content["code"]
        cursor_pos = content.get("cursor_pos")
        if cursor_pos is None:
            cursor_pos = len(code)
        name = token_at_cursor(code, cursor_pos)
        shell = self.shell
        reply = {"status": "ok", "data": {}, "metadata": {}}
        try:
            bundle = shell.object_inspect_mime(
                name,
                detail_level=content.get("detail_level", 0),
                omit_sections=set(content.get("omit_sections", [])),
            )
            reply["data"].update(bundle)
            if not shell.enable_html_pager:
                reply["data"].pop("text/html", None)
            reply["found"] = True
        except KeyError:
            reply["found"] = False
        return ("ok", dumps(reply), [], True)

    def _history(self, req):
        content = _load_content(req)
        hm = self.shell.history_manager
        kind = content.get("hist_access_type")
        raw = content.get("raw", True)
        output = content.get("output", False)
        if kind == "tail":
            hist = hm.get_tail(content.get("n", 10), raw=raw, output=output, include_latest=True)
        elif kind == "range":
            hist = hm.get_range(
                content.get("session", 0),
                content.get("start", 0),
                content.get("stop"),
                raw=raw,
                output=output,
            )
        elif kind == "search":
            hist = hm.search(
                content.get("pattern", "*"),
                raw=raw,
                output=output,
                n=content.get("n"),
                unique=content.get("unique", False),
            )
        else:
            hist = []
        return ("ok", dumps({"status": "ok", "history": list(hist)}), [], True)

    def _is_complete(self, req):
        content = _load_content(req)
        status, indent_spaces = self.shell.input_transformer_manager.check_complete(content["code"])
        reply = {"status": status}
        if status == "incomplete":
            reply["indent"] = " " * indent_spaces
        return ("ok", dumps(reply), [], True)

    def _comm_info(self, req):
        # no comm manager on oxipp engines (yet): no comms to report
        return ("ok", dumps({"comms": {}, "status": "ok"}), [], True)

    def _kernel_info_request(self, req):
        # normally answered by the runtime from set_kernel_info; here if it ever reaches Python
        return ("ok", dumps(self.kernel_info()), [], True)

    def _connect(self, req):
        # engines record no kernel ports unless bind_kernel() was called (not supported yet)
        return ("ok", _OK, [], True)

    # --- failures of the executor itself ----------------------------------------------------------

    def _internal_error(self, req, e: BaseException):
        """Error reply for a request that failed outside user code (bad content, a bug here).

        Formatted with the stdlib only: IPython may be what failed.
        """
        method = "apply" if req.msg_type == "apply_request" else "execute"
        try:
            tb = traceback.format_exception(type(e), e, e.__traceback__)
            content = {
                "traceback": tb,
                "ename": type(e).__name__,
                "evalue": _safe_str(e),
                "engine_info": self._engine_info[method],
                "status": "error",
            }
            log.error("Failed to handle %s %s:\n%s", req.msg_type, req.msg_id, "".join(tb))
            return ("error", dumps(content), [], True)
        except BaseException:  # pragma: no cover - last resort, keep the engine alive
            content = {
                "traceback": [],
                "ename": "EngineError",
                "evalue": "the engine failed to report an error",
                "engine_info": self._engine_info[method],
                "status": "error",
            }
            return ("error", json.dumps(content), [], True)


def _load_content(req) -> dict:
    """The request content as a dict (bad JSON or a non-object raise, becoming an error reply)."""
    content = json.loads(req.content)
    if not isinstance(content, dict):
        raise TypeError(f"{req.msg_type} content must be a JSON object")
    return content


def _safe_str(e) -> str:
    try:
        return str(e)
    except Exception as str_error:
        return f"Failed to cast exception to string: {str_error}"
