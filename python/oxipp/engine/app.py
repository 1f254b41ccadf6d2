"""The engine process: parse ipengine flags, register through the Rust runtime, serve requests.

The loop is section 2 of ``docs/engine-runtime.md``: Rust queues requests and answers control
messages; this module hands shell requests to the ``Executor`` one at a time and sends replies.
"""

from __future__ import annotations

import importlib
import inspect
import io
import json
import logging
import os
import signal
import sys
import time
import traceback

from . import connection, kernel, nanny, outstream
from .options import EngineOptions, parse_args

log = logging.getLogger("oxipp.engine")

# Overrides the executor class ("module:attribute"); used by tests until the real executor lands
# and by anyone embedding a different executor.
EXECUTOR_ENV = "OXIPP_ENGINE_EXECUTOR"


def load_executor_class():
    spec = os.environ.get(EXECUTOR_ENV, "")
    if spec:
        module, _, attr = spec.partition(":")
        return getattr(importlib.import_module(module), attr or "Executor")
    from .executor import Executor

    return Executor


def mpi_rank(opts: EngineOptions) -> int | None:
    """MPI is initialised before registering, and the rank becomes the requested id."""
    if not opts.use_mpi:
        return None
    from mpi4py import MPI

    rank = MPI.COMM_WORLD.Get_rank()
    if rank >= 100 and opts.mpi_registration_delay:
        # stock staggers large jobs so the Hub is not flooded
        time.sleep(rank * opts.mpi_registration_delay)
    return rank


class _Interrupts:
    """SIGINT is ignored while idle and raises KeyboardInterrupt while a request runs (ipykernel
    semantics: ``Client.send_signal(SIGINT)`` interrupts the running task only)."""

    def __init__(self) -> None:
        self.busy = False

    def on_sigint(self, signum, frame):
        if self.busy:
            raise KeyboardInterrupt

    @staticmethod
    def on_sigterm(signum, frame):
        raise SystemExit(0)


def _error_reply(rt, exc: BaseException, method: str) -> tuple[str, str, list, bool]:
    """Error content for an exception the executor itself let escape."""
    content = {
        "status": "error",
        "ename": type(exc).__name__,
        "evalue": str(exc),
        "traceback": traceback.format_exception(type(exc), exc, exc.__traceback__),
        "engine_info": {"engine_uuid": rt.uuid, "engine_id": rt.id, "method": method},
    }
    return "error", json.dumps(content), [], True


def _stop_on_error(ex, req, status: str) -> bool:
    """Whether ipykernel would now abort the queue. An executor may decide itself through a
    ``stop_on_error`` attribute (the real one does, knowing ``silent`` and the content);
    otherwise: an ``execute_request`` failed, and neither ``silent`` nor ``stop_on_error: false``.
    """
    if req.msg_type != "execute_request":
        return False
    decided = getattr(ex, "stop_on_error", None)
    if isinstance(decided, bool):
        return decided
    if status != "error":
        return False
    try:
        content = json.loads(req.content)
        return not content.get("silent", False) and content.get("stop_on_error", True) is not False
    except (ValueError, AttributeError):
        return True


def use_original_fds(fds: tuple[int, int]) -> None:
    """fds 1 and 2 now feed IOPub (``capture_fd``): the engine's own output (logging, warnings,
    ``sys.stdout``/``sys.stderr`` outside the executor, the OutStream fallback, tracebacks at
    exit) goes to their originals instead, so it still reaches the engine's log and never loops
    into IOPub. ``sys.__stdout__``/``sys.__stderr__`` stay on fds 1/2, as in stock engines,
    where writing to them reaches the client through the watched descriptors."""
    out, err = (
        io.TextIOWrapper(
            io.FileIO(fd, "w", closefd=False),
            encoding="utf-8",
            errors="backslashreplace",
            line_buffering=True,
            write_through=True,
        )
        for fd in fds
    )
    replace = {id(sys.stderr): err, id(sys.__stderr__): err}
    replace.update({id(sys.stdout): out, id(sys.__stdout__): out})
    for name in (None, "oxipp", "oxipp.engine"):
        for handler in logging.getLogger(name).handlers:
            if isinstance(handler, logging.StreamHandler) and id(handler.stream) in replace:
                handler.setStream(replace[id(handler.stream)])
    outstream.set_original_streams(out, err)
    sys.stdout, sys.stderr = out, err


def _flush_std_streams() -> None:
    """Text buffered in Python's own streams on fds 1/2 goes out now (into the pipes while
    they are captured, so to the client)."""
    for stream in (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__):
        try:
            if stream is not None:
                stream.flush()
        except Exception:
            pass


def serve(rt, ex) -> None:
    """Runs requests until a ``shutdown`` item arrives."""
    rt.set_kernel_info(json.dumps(ex.kernel_info()))
    interrupts = _Interrupts()
    if threading_is_main():
        signal.signal(signal.SIGINT, interrupts.on_sigint)
        signal.signal(signal.SIGTERM, interrupts.on_sigterm)
    while (req := rt.next_request()) is not None:
        if req.kind == "shutdown":
            log.info("shutdown requested")
            return
        if req.kind == "clear":
            try:
                ex.clear()
                rt.reply(req, json.dumps({"status": "ok"}))
            except Exception as e:
                status, content, bufs, deps = _error_reply(rt, e, "clear")
                rt.reply(req, content, bufs, status, deps)
            continue
        interrupts.busy = True
        try:
            result = ex.handle(req)
        except (Exception, KeyboardInterrupt) as e:
            log.error("executor failed on %s %s", req.msg_type, req.msg_id, exc_info=True)
            result = _error_reply(rt, e, req.msg_type.replace("_request", ""))
        finally:
            interrupts.busy = False
        if result is None:
            # no reply (comm messages, unknown types), but clients still expect busy -> idle
            rt.publish("status", json.dumps({"execution_state": "idle"}), req)
            continue
        status, content_json, buffers, deps_met = result
        rt.reply(req, content_json, buffers or [], status, deps_met)
        if _stop_on_error(ex, req, status):
            rt.abort_queued()
        if getattr(ex, "exit_requested", False):
            # user code called exit(): a stock engine stops after replying
            log.info("exit requested by user code")
            return


def threading_is_main() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()


USAGE = """usage: python -m oxipp.engine [ipengine options]

Start an oxipp engine and connect it to a controller (stock ipengine options):
  --profile=NAME  --profile-dir=DIR  --ipython-dir=DIR  --cluster-id=ID
  --file=PATH (engine connection file)  --url=tcp://HOST:PORT (registration url)
  --timeout=SECONDS  --log-level=LEVEL  --debug  --mpi  --work-dir=DIR  --location=HOST
  --IPEngine.<trait>=VALUE  --Session.key=KEY   (unsupported traits are warned about)
  --no-capture-fd  (output written to fds 1/2, e.g. by os.system or C code, stays in the
                    engine's log instead of reaching clients; also $OXIPP_ENGINE_CAPTURE_FD=0)
Environment: IPP_CONNECTION_INFO, IPP_PROFILE_DIR, IPP_CLUSTER_ID, IPYTHONDIR.
"""


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if any(a in ("-h", "--help", "--help-all") for a in argv):
        print(USAGE)
        return 0
    if "--version" in argv:
        # stock tooling (test_apps) expects the ipyparallel version we are compatible with
        from oxipp._oxipp import COMPAT_VERSION

        print(COMPAT_VERSION)
        return 0
    opts = parse_args(argv)
    logging.basicConfig(
        level=opts.log_level,
        format="%(asctime)s.%(msecs).03d [IPEngine] %(message)s",
        datefmt="%Y-%m-%d %H:%M:%S",
    )
    for w in opts.warnings:
        log.warning(w)
    for name in ("startup_command", "startup_script", "sshserver", "log_url"):
        if getattr(opts, name):
            log.warning("IPEngine.%s is not supported by oxipp engines; ignored", name)
    if opts.work_dir:
        os.chdir(os.path.expanduser(opts.work_dir))

    from oxipp._oxipp import EngineRuntime

    requested = opts.requested_id
    rank = mpi_rank(opts)
    if rank is not None:
        requested = rank
    try:
        info = connection.load(opts)
    except (OSError, ValueError) as e:
        log.critical("cannot load connection info: %s", e)
        return 1
    try:
        executor_class = load_executor_class()
    except (ImportError, AttributeError) as e:
        log.critical("cannot load the executor: %s", e)
        return 1
    # what Python buffered so far belongs to the log, not to the pipes fds 1/2 may become
    _flush_std_streams()
    try:
        rt = EngineRuntime(
            json.dumps(info),
            requested_id=requested,
            timeout=opts.timeout,
            max_heartbeat_misses=opts.max_heartbeat_misses,
            log_level=opts.log_level,
            capture_fd=opts.capture_fd,
        )
    except (TimeoutError, ConnectionError, ValueError) as e:
        # stock exits 255 when registration fails or times out
        log.critical("registration failed: %s", e)
        return 255
    if rt.original_fds is not None:
        use_original_fds(rt.original_fds)
    log.info("Completed registration with id %i", rt.id)
    kernel.set_engine(rt, info)
    guard = None
    if rt.needs_nanny if opts.enable_nanny is None else opts.enable_nanny:
        try:
            fds = rt.original_fds
            guard = nanny.start(info, rt.id, stderr=fds[1] if fds else None)
        except OSError as e:
            log.warning("cannot start the nanny (engine exits are then found by heartbeats): %s", e)
    ex = None
    try:
        # shell configuration only for executors that take it ($OXIPP_ENGINE_EXECUTOR may not)
        takes_config = "shell_config" in inspect.signature(executor_class).parameters
        extra = {"shell_config": opts.shell_config} if takes_config else {}
        ex = executor_class(rt, rt.id, rt.uuid, **extra)
        run_startup = getattr(ex, "run_startup_files", None)
        if callable(run_startup):
            run_startup(connection.profile_dir(opts))
        serve(rt, ex)
    except (KeyboardInterrupt, SystemExit):
        pass
    finally:
        # the executor may have redirected sys.stdout to IOPub: undo that before the runtime
        # stops, so late output goes to the real stdout
        close = getattr(ex, "close", None)
        if callable(close):
            try:
                close()
            except Exception:
                log.error("executor close failed", exc_info=True)
        # output still buffered in Python's streams on fds 1/2 goes to the client; rt.close
        # restores fds 1/2 and sends what is left in the pipes
        _flush_std_streams()
        rt.close()
        if guard is not None:
            nanny.stop(guard)
    return 0
