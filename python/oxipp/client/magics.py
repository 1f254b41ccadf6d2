"""IPython magics for interactive parallel work: ``%px``, ``%%px``, ``%autopx``, ``%pxresult``
(plus the legacy ``%result``) and ``%pxconfig``.

``Client.activate()`` / ``DirectView.activate(suffix)`` register one :class:`ParallelMagics` per
view, so ``view.activate('_a')`` yields ``%px_a``, ``%%px_a``, ``%autopx_a``, ``%pxresult_a`` and
``%pxconfig_a``. The magics only use a view's public API (``execute``, ``targets``, ``block``,
``client.ids``, ``client.send_signal``) and the AsyncResult's (``stream_output``,
``wait_interactive``, ``wait_for_output``, ``display_outputs``, ``get``), so they drive stock
ipyparallel views as well as oxipp's; behaviour matches ipyparallel 9.2's magics.
"""

from __future__ import annotations

import inspect
import os
import re
import sys
import time
from contextlib import nullcontext

from IPython.core import magic_arguments
from IPython.core.error import UsageError
from IPython.core.magic import Magics, no_var_expand

__all__ = ["ParallelMagics", "NO_LAST_RESULT"]

NO_LAST_RESULT = "%pxresult recalls last %px result, which has not yet been used."

# Same switch as stock: notebooks/terminals stream by default, batch runs (CI, nbconvert) don't.
_NONINTERACTIVE = os.getenv("IPP_NONINTERACTIVE", "") not in {"", "0"}


# --------------------------------------------------------------------------- option groups
# Built from tables so %%px and %pxconfig share one definition of the execution options and
# %%px and %pxresult share one definition of the output options.

_EXEC_OPTIONS = [
    (("-b", "--block"), dict(action="store_const", const=True, dest="block",
                             help="wait for the engines (blocking execution)")),
    (("-a", "--noblock"), dict(action="store_const", const=False, dest="block",
                               help="return at once with an AsyncResult (non-blocking)")),
    (("--stream",), dict(action="store_const", const=True, dest="stream",
                         help="print engine stdout/stderr as it arrives (blocking only)")),
    (("--no-stream",), dict(action="store_const", const=False, dest="stream",
                            help="print engine output only once execution has finished")),
    (("-t", "--targets"), dict(type=str,
                               help="engines to run on: 'all', a slice of client.ids such as"
                                    " '::2', or a Python expression such as '[0, 2]'")),
    (("--verbose",), dict(action="store_const", const=True, dest="set_verbose",
                          help="announce each execution and its targets")),
    (("--no-verbose",), dict(action="store_const", const=False, dest="set_verbose",
                             help="do not announce executions")),
    (("--progress-after",), dict(dest="progress_after_seconds", type=float, default=None,
                                 help="seconds of blocking before a progress bar appears;"
                                      " 0 shows it at once, -1 never")),
    (("--signal-on-interrupt",), dict(dest="signal_on_interrupt", type=str, default=None,
                                      help="signal sent to the engines when a blocking run is"
                                           " interrupted (Ctrl-C); a name such as SIGINT or a"
                                           " number such as 2 or 0 (default SIGINT)")),
]  # fmt: skip

_OUTPUT_OPTIONS = [
    (("-r",), dict(action="store_const", dest="groupby", const="order",
                   help="collate outputs in order (--group-outputs=order)")),
    (("-e",), dict(action="store_const", dest="groupby", const="engine",
                   help="group outputs by engine (--group-outputs=engine)")),
    (("--group-outputs",), dict(dest="groupby", type=str, choices=["engine", "order", "type"],
                                default="type",
                                help="how to arrange outputs: 'type' (all stdout, then all"
                                     " stderr, then displays), 'engine' (each engine's outputs"
                                     " together) or 'order' (like type, but the n-th display"
                                     " of every engine before the n+1-th)")),
    (("-o", "--out"), dict(dest="save_name", type=str,
                           help="store the AsyncResult in the user namespace under this name")),
]  # fmt: skip


def _with_options(table):
    """Decorator adding every argparse option of `table` to a magic function."""

    def decorate(func):
        for flags, kwargs in table:
            func = magic_arguments.argument(*flags, **kwargs)(func)
        return func

    return decorate


exec_args = _with_options(_EXEC_OPTIONS)
output_args = _with_options(_OUTPUT_OPTIONS)


# --------------------------------------------------------------------------- helpers


def _is_async(func) -> bool:
    """True if the shell method we replace for %autopx must be awaited (IPython's async API)."""
    return inspect.iscoroutinefunction(func) or inspect.isgeneratorfunction(func)


def _as_coroutine(func):
    """Gives a plain function the coroutine signature of the shell method it stands in for."""

    async def awaitable(*args, **kwargs):
        return func(*args, **kwargs)

    return awaitable


def _parse_signal(text: str):
    """'2' -> 2, 'SIGINT' -> 'SIGINT' (the client resolves names)."""
    return int(text) if text.isdigit() else text


def _describe_targets(targets) -> str:
    """Targets for the verbose banner; long lists are elided in the middle."""
    if isinstance(targets, list) and len(targets) > 10:
        head, tail = str(targets[:4])[:-1], str(targets[-4:])[1:]
        return f"{head}, ..., {tail}"
    return str(targets)


def _already_displayed(composite):
    """The AlreadyDisplayedError matching `composite`'s error family.

    A stock view raises ``ipyparallel.error.CompositeError`` and an oxipp view oxipp's own, so the
    replacement is taken from the module that defined the raised class, falling back to oxipp's
    and then stock's error modules."""
    candidates = [sys.modules.get(klass.__module__) for klass in type(composite).__mro__]
    for name in ("oxipp.error", "ipyparallel.error"):
        try:
            candidates.append(__import__(name, fromlist=["AlreadyDisplayedError"]))
        except ImportError:
            continue
    for module in candidates:
        cls = getattr(module, "AlreadyDisplayedError", None)
        if cls is not None:
            return cls(composite)
    return composite


def _is_composite(exc: BaseException) -> bool:
    """True for a CompositeError of either oxipp or stock ipyparallel (matched by class name,
    because the two families share names but not classes)."""
    return any(klass.__name__ == "CompositeError" for klass in type(exc).__mro__)


# --------------------------------------------------------------------------- the magics


class ParallelMagics(Magics):
    """The parallel magics bound to one view (``%px`` & co., with an optional name suffix)."""

    # IPython's Magics base checks this flag (normally set by @magics_class); our magic table is
    # built per instance in __init__ because the names depend on the suffix.
    registered = True
    magics = None

    suffix = ""
    view = None
    _autopx = False
    last_result = None
    verbose = False
    stream_output = not _NONINTERACTIVE
    progress_after_seconds = 2
    signal_on_interrupt = "SIGINT"

    def __init__(self, shell, view=None, suffix=""):
        self.view = view
        self.suffix = suffix
        px = "px" + suffix
        line = {
            px: self.px,
            "pxresult" + suffix: self.result,
            "pxconfig" + suffix: self.pxconfig,
            "auto" + px: self.autopx,
        }
        if not suffix:
            line["result"] = self.result  # legacy name kept by stock
        self.magics = {"line": line, "cell": {px: self.cell_px}}
        super().__init__(shell=shell)

    @property
    def active_view(self):
        """The view the magics run on (alias of ``view``)."""
        return self.view

    @active_view.setter
    def active_view(self, view):
        self.view = view

    # ----------------------------------------------------------------------- option parsing

    def _eval_target_str(self, text: str):
        """Turns a --targets argument into view targets.

        A slice (anything with ':') indexes ``client.ids``; anything mentioning 'all' means all
        engines; any other text is a Python expression (evaluated with the user namespace
        visible, so ``-t my_engines`` works too)."""
        if ":" in text:
            ids = list(self.view.client.ids)
            return eval(f"_ids[{text}]", {"_ids": ids})
        if "all" in text:
            return "all"
        namespace = dict(self.shell.user_ns) if self.shell is not None else {}
        return eval(text, namespace)

    # Stock's private name, kept for code that calls it.
    _eval_signal_str = staticmethod(_parse_signal)

    # ----------------------------------------------------------------------- %pxconfig

    @magic_arguments.magic_arguments()
    @exec_args
    def pxconfig(self, line):
        """Change the defaults (targets, blocking, streaming, verbosity, progress, interrupt
        signal) used by this view's %px magics."""
        args = magic_arguments.parse_argstring(self.pxconfig, line)
        if args.targets:
            self.view.targets = self._eval_target_str(args.targets)
        if args.block is not None:
            self.view.block = args.block
        if args.set_verbose is not None:
            self.verbose = args.set_verbose
        if args.stream is not None:
            self.stream_output = args.stream
        if args.signal_on_interrupt is not None:
            self.signal_on_interrupt = _parse_signal(args.signal_on_interrupt)
        if args.progress_after_seconds is not None:
            self.progress_after_seconds = args.progress_after_seconds

    # ----------------------------------------------------------------------- %pxresult

    @magic_arguments.magic_arguments()
    @output_args
    def result(self, line=""):
        """Show the outputs of the last %px execution (waiting for it if needed).

        This is how the outputs of a non-blocking ``%px`` are seen::

            In [1]: %px -a os.getpid()
            In [2]: %pxresult
            Out[0:1]: 60920
            Out[1:1]: 60921
        """
        args = magic_arguments.parse_argstring(self.result, line)
        if self.last_result is None:
            raise UsageError(NO_LAST_RESULT)
        if args.save_name:
            self.shell.user_ns[args.save_name] = self.last_result
            return
        self.last_result.get()
        self.last_result.display_outputs(groupby=args.groupby)

    # ----------------------------------------------------------------------- %px / %%px

    @no_var_expand
    def px(self, line=""):
        """Run one line of Python on the view's engines.

        ``$x`` and ``{x}`` are *not* expanded from the local namespace: the line reaches the
        engines verbatim, so f-strings refer to engine variables::

            In [1]: %px a = os.getpid()
            In [2]: %px print(a)
            [stdout:0] 1234
            [stdout:1] 1235
        """
        return self.parallel_execute(line)

    def parallel_execute(
        self,
        cell,
        block=None,
        groupby="type",
        save_name=None,
        stream_output=None,
        progress_after=None,
        signal_on_interrupt=None,
    ):
        """Submit `cell` to the view's targets; block (streaming, with progress) or return the
        AsyncResult. Shared by %px, %%px and %autopx."""
        block = self.view.block if block is None else block
        if stream_output is None:
            stream_output = self.stream_output
        if signal_on_interrupt is None:
            signal_on_interrupt = self.signal_on_interrupt
        if progress_after is None:
            progress_after = self.progress_after_seconds

        targets = self.view.targets
        if self.verbose:
            mode = "Parallel" if block else "Async parallel"
            print(f"{mode} execution on engine(s): {_describe_targets(targets)}")

        result = self.view.execute(cell, silent=False, block=False)
        result._fname = "%px"  # label of the progress bar
        self.last_result = result
        if save_name:
            self.shell.user_ns[save_name] = result
        if not block:
            return result

        try:
            streaming = result.stream_output() if stream_output else nullcontext()
            with streaming:
                self._wait_with_progress(result, progress_after)
                try:
                    result.get()
                except Exception as exc:
                    if not _is_composite(exc):
                        raise
                    if stream_output and getattr(result, "_output_ready", True):
                        # the tracebacks were streamed already: raise a one-line summary
                        raise _already_displayed(exc) from None
                    raise
        except KeyboardInterrupt:
            if signal_on_interrupt is None:
                raise
            print(
                f"Received Keyboard Interrupt. Sending signal {signal_on_interrupt} to engines...",
                file=sys.stderr,
            )
            self.view.client.send_signal(signal_on_interrupt, targets=targets, block=True)
        finally:
            if not stream_output:
                # nothing was shown while waiting: show everything now, on success or error
                # (an interrupted run that is still going has nothing complete to show)
                result.wait_for_output(1)
                if result.ready():
                    result.display_outputs(groupby)
        return None

    @staticmethod
    def _wait_with_progress(result, progress_after):
        """Wait for `result`; quick ones finish silently, slower ones get a progress bar after
        `progress_after` seconds (0: at once, negative: never)."""
        if progress_after > 0:
            deadline = time.perf_counter() + progress_after
            result.wait(timeout=progress_after)
            result.wait_for_output(timeout=max(deadline - time.perf_counter(), 0))
            if result.ready():
                return
        if progress_after >= 0:
            result.wait_interactive()
            result.wait_for_output(1)

    @magic_arguments.magic_arguments()
    @exec_args
    @output_args
    @magic_arguments.argument(
        "--local",
        action="store_const",
        const=True,
        dest="local",
        help="run the cell in the local namespace too (after submitting it to the engines)",
    )
    def cell_px(self, line="", cell=None):
        """Run the cell on the view's engines; options override the %pxconfig defaults for this
        cell only.

        Example::

            In [1]: %%px --noblock --targets ::2
               ...: a = os.getpid()
        """
        args = magic_arguments.parse_argstring(self.cell_px, line)
        signal_on_interrupt = None
        if args.signal_on_interrupt:
            signal_on_interrupt = _parse_signal(args.signal_on_interrupt)

        saved_targets = self.view.targets
        if args.targets:
            self.view.targets = self._eval_target_str(args.targets)
        try:
            # with --local the remote run must not block before the local one has started
            ar = self.parallel_execute(
                cell,
                block=False if args.local else args.block,
                groupby=args.groupby,
                save_name=args.save_name,
                stream_output=args.stream,
                progress_after=args.progress_after_seconds,
                signal_on_interrupt=signal_on_interrupt,
            )
        finally:
            if args.targets:
                self.view.targets = saved_targets

        block = self.view.block if args.block is None else args.block
        if args.local:
            self.shell.run_cell(cell)
            if block:
                ar.get()
                ar.display_outputs(args.groupby)
        if not block:
            return ar
        return None

    # ----------------------------------------------------------------------- %autopx

    def autopx(self, line=""):
        """Toggle automatic parallel mode: while on, every cell runs on the engines instead of
        locally (as if prefixed with %%px); run %autopx again to turn it off.

            In [1]: %autopx
            %autopx enabled
            In [2]: a = 10
            In [3]: %autopx
            %autopx disabled
        """
        if self._autopx:
            self._disable_autopx()
        else:
            self._enable_autopx()

    def _enable_autopx(self):
        """Swap the shell's run_cell/run_ast_nodes for ours, keeping the originals.

        run_cell is wrapped (not replaced) so IPython still records history, transforms input
        and counts executions; the parsed nodes are then sent to the engines as raw text."""
        self._original_run_cell = self.shell.run_cell
        self._original_run_nodes = self.shell.run_ast_nodes
        run_cell, run_nodes = self.pxrun_cell, self.pxrun_nodes
        if _is_async(self._original_run_cell):
            run_cell = _as_coroutine(run_cell)
        if _is_async(self._original_run_nodes):
            run_nodes = _as_coroutine(run_nodes)
        self.shell.run_cell = run_cell
        self.shell.run_ast_nodes = run_nodes
        self._autopx = True
        print("%autopx enabled")

    def _disable_autopx(self):
        """Put back the shell methods saved by _enable_autopx."""
        if not self._autopx:
            return
        self.shell.run_cell = self._original_run_cell
        self.shell.run_ast_nodes = self._original_run_nodes
        self._autopx = False
        print("%autopx disabled")

    def pxrun_cell(self, raw_cell, *args, **kwargs):
        """Stands in for InteractiveShell.run_cell under %autopx: remembers the raw cell and lets
        the original run_cell proceed (it calls our run_ast_nodes)."""
        self._px_cell = raw_cell
        return self._original_run_cell(raw_cell, *args, **kwargs)

    def pxrun_nodes(self, *args, **kwargs):
        """Stands in for InteractiveShell.run_ast_nodes: runs the remembered cell remotely, or
        leaves autopx mode if the cell is %autopx. Returns True when an error was shown."""
        cell = self._px_cell
        if re.search(rf"^\s*%autopx{re.escape(self.suffix)}\b", cell):
            self._disable_autopx()
            return False
        try:
            self.parallel_execute(cell)
        except Exception:
            self.shell.showtraceback()
            return True
        return False
