"""``oxipp.Client``: a connection to an IPython Parallel controller.

The sockets, signing and receiving live in the Rust core (``oxipp._oxipp.ClientCore``). This
module owns what users touch: engine ids, views, results and their metadata. One daemon thread
(the *dispatcher*) waits in Rust with the GIL released and resolves futures from the batches of
messages the core hands it; callers block on those futures.
"""

from __future__ import annotations

import json
import os
import re
import sys
import threading
import time
import warnings
from collections import defaultdict
from collections.abc import Iterable
from datetime import datetime, timezone
from pathlib import Path

from .. import error
from .._oxipp import ClientCore
from ..serialize import PrePickled, Reference, deserialize_object, pack_apply_message
from ..serialize.stock_helpers import become_dask_worker, stop_distributed_worker
from . import tunnel
from .asyncresult import AsyncHubResult, AsyncResult
from .futures import MessageFuture, multi_future
from .history import History
from .view import BroadcastView, DirectView, LoadBalancedView

__all__ = ["Client", "ExecuteReply", "Metadata"]

_CR_PAT = re.compile(r".*\r(?=[^\n])")

_NO_CONTROLLER = (
    "You have attempted to connect to an IPython Cluster but no Controller could be found.\n"
    "Please double-check your configuration and ensure that a cluster is running."
)


def _as_bytes(buffers):
    """Message buffers as ``bytes``, as stock gives them to users. (Big ones arrive as
    ``_oxipp.Frame``: read-only buffers shared with the received message, which the client's
    own deserialization reads without a copy.)"""
    return [b if type(b) is bytes else bytes(b) for b in buffers]


_scan_json = json.JSONDecoder().scan_once


def _loads(data):
    """A message part's JSON (UTF-8 bytes from the core). The C scanner alone, without what
    ``json.loads`` wraps around it for bytes (encoding detection in Python: ~1.5 of its 2.3 µs,
    and a reply has four parts); what it does not take whole (leading whitespace, trailing
    data) and any error go through ``json.loads``, so the result is always its result."""
    try:
        text = data.decode()
        obj, end = _scan_json(text, 0)
        if end == len(text):
            return obj
    except (StopIteration, ValueError):
        pass
    return json.loads(data)


def utcnow():
    return datetime.now(timezone.utc)


def parse_date(s):
    """ISO 8601 string -> aware datetime; anything else is returned unchanged."""
    if not isinstance(s, str):
        return s
    try:
        dt = datetime.fromisoformat(s.replace("Z", "+00:00"))
    except ValueError:
        return s
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    return dt


class Metadata(dict):
    """A result's metadata: a dict with a fixed set of keys, also readable as attributes."""

    def __init__(self, *args, **kwargs):
        dict.__init__(self)
        self.update(
            {
                "msg_id": None,
                "submitted": None,
                "started": None,
                "completed": None,
                "received": None,
                "engine_uuid": None,
                "engine_id": None,
                "follow": None,
                "after": None,
                "status": None,
                "execute_input": None,
                "execute_result": None,
                "error": None,
                "stdout": "",
                "stderr": "",
                "outputs": [],
                "data": {},
                "label": None,
            }
        )
        self.update(dict(*args, **kwargs))

    def __getattr__(self, key):
        if key in self:
            return self[key]
        raise AttributeError(key)

    def __setattr__(self, key, value):
        if key in self:
            self[key] = value
        else:
            raise AttributeError(key)

    def __setitem__(self, key, value):
        if key in self:
            dict.__setitem__(self, key, value)
        else:
            raise KeyError(key)


class ExecuteReply:
    """The result of ``execute``: execution count and the rich ``execute_result``."""

    def __init__(self, msg_id, content, metadata):
        self.msg_id = msg_id
        self._content = content
        self.execution_count = content.get("execution_count")
        self.metadata = metadata

    @property
    def _execute_result(self):
        return self.metadata["execute_result"] or {}

    @property
    def source(self):
        return self._execute_result.get("source", "")

    @property
    def data(self):
        return self._execute_result.get("data", {})

    @property
    def _metadata(self):
        return self._execute_result.get("metadata", {})

    def display(self):
        from IPython.display import publish_display_data

        publish_display_data(self.data, self._metadata)

    def _repr_mime_(self, mime):
        if mime not in self.data:
            return None
        if mime in self._metadata:
            return self.data[mime], self._metadata[mime]
        return self.data[mime]

    def _repr_mimebundle_(self, *args, **kwargs):
        data = self.data
        if "text/plain" in data:
            data = dict(data)
            data["text/plain"] = self._plaintext()
        return data, self._metadata

    def __getitem__(self, key):
        return self.metadata[key]

    def __getattr__(self, key):
        if key.startswith("__") or key not in self.metadata:
            raise AttributeError(key)
        return self.metadata[key]

    def __repr__(self):
        text = self.data.get("text/plain", "")
        if len(text) > 32:
            text = text[:29] + "..."
        return f"<ExecuteReply[{self.execution_count}]: {text}>"

    def _plaintext(self):
        text = self.data.get("text/plain", "")
        if not text:
            return ""
        count = self.execution_count
        sep = "\n" if "\n" in text else ""
        eid = self.metadata.get("engine_id")
        return f"Out[{eid}:{count}]: {sep}{text}"

    def _repr_pretty_(self, p, cycle):
        p.text(self._plaintext())


class _SessionInfo:
    """What stock exposes as ``client.session`` that users read: the session id and user."""

    def __init__(self, core, key):
        self.session = core.session
        self.username = core.username
        self.key = key
        self.bsession = self.session.encode()

    def __repr__(self):
        return f"<Session {self.session}>"


def _open_tunnel(cfg, server, sshkey, password, timeout, paramiko=None):
    """SSH tunnels as stock opens them: without a password first; when that is refused and
    none was given, ask for one (on a terminal only) and try again. ``paramiko``: the
    transport, as stock chooses it (see ``tunnel.use_paramiko``)."""
    try:
        return tunnel.tunneled(cfg, server, sshkey, password or None, timeout, paramiko)
    except tunnel.TunnelError as e:
        if password is not None or "Permission denied" not in str(e) or not sys.stdin.isatty():
            raise
    from getpass import getpass

    password = getpass(f"SSH Password for {server}: ")
    return tunnel.tunneled(cfg, server, sshkey, password, timeout, paramiko)


# longest sleep of a thread that waits for a result in Client._pump_until
_PUMP_SLICE = 0.5


def _profile_dir(profile, profile_dir, ipython_dir) -> Path:
    if profile_dir:
        return Path(profile_dir).expanduser()
    if ipython_dir is None:
        ipython_dir = os.environ.get("IPYTHONDIR") or Path.home() / ".ipython"
    return Path(ipython_dir).expanduser() / f"profile_{profile or 'default'}"


def _json_default(obj):
    if isinstance(obj, datetime):
        return obj.isoformat()
    if isinstance(obj, (set, frozenset, tuple)):
        return list(obj)
    if isinstance(obj, bytes):
        return obj.decode("utf8", "replace")
    raise TypeError(f"{type(obj).__name__} is not JSON serializable")


def _dumps(obj) -> bytes:
    if not obj:
        return b"{}"
    return json.dumps(obj, default=_json_default, separators=(",", ":")).encode()


def _is_future(f):
    return hasattr(f, "add_done_callback") and hasattr(f, "result")


class Client:
    """A connection to an IPython Parallel cluster (same API as ``ipyparallel.Client``).

    ``Client()`` connects to the default profile's controller; ``Client(profile=...)``,
    ``Client(profile_dir=..., cluster_id=...)``, ``Client("path/ipcontroller-client.json")``
    or ``Client(connection_dict)`` pick another one. ``timeout`` bounds waiting for the
    connection file and for the controller's answer.
    """

    block = False
    debug = False
    _closed = True
    _core = None
    _tunnel = None

    def __init__(
        self,
        connection_info=None,
        *,
        url_file=None,
        profile=None,
        profile_dir=None,
        ipython_dir=None,
        context=None,
        debug=False,
        sshserver=None,
        sshkey=None,
        password=None,
        paramiko=None,
        timeout=10,
        cluster_id=None,
        cluster=None,
        **extra_args,
    ):
        for argname in ("url_or_file",):
            if argname in extra_args:
                connection_info = extra_args.pop(argname)
                warnings.warn(
                    f"{argname} arg no longer supported, use positional connection_info argument",
                    DeprecationWarning,
                    stacklevel=2,
                )
        if url_file is not None and connection_info is None:
            connection_info = url_file
        if isinstance(connection_info, str) and re.match(r"^\w+://", connection_info):
            raise ValueError(
                f"single urls ({connection_info!r}) cannot be specified, url-files must be used."
            )
        self.debug = debug
        self.cluster = cluster
        if cluster is not None:
            profile_dir = profile_dir or getattr(cluster, "profile_dir", None)
            cluster_id = (
                cluster_id if cluster_id is not None else getattr(cluster, "cluster_id", None)
            )
        self.profile = profile or "default"
        self._profile_dir = _profile_dir(profile, profile_dir, ipython_dir)
        cfg = self._load_connection_info(connection_info, cluster_id, timeout)
        self._config = cfg
        self._tunnel = None
        core_cfg = cfg
        server = tunnel.choose_server(cfg, sshserver, sshkey, password)
        if server is not None:
            core_cfg, self._tunnel = _open_tunnel(cfg, server, sshkey, password, timeout, paramiko)
        self._task_scheme = cfg.get("task_scheme", "leastload")

        self.outstanding = set()
        self.results = {}
        self.metadata = defaultdict(Metadata)
        self._engines = {}
        self._engine_ids = {}  # uuid -> id, the reverse of _engines (looked up per reply)
        self._ids = []
        self._futures = {}
        self._output_futures = {}
        self._outstanding_dict = defaultdict(set)
        self._registration_callbacks = []
        self._lock = threading.RLock()
        self._pump = threading.Lock()
        # bound once: every future of this client holds these (see _part_done)
        self._pump_method = self._pump_until
        self._part_done_method = self._part_done
        self._parts_left = {}  # msg_id -> futures of the request not done yet
        self._pump_owner = None
        self._leftover = None
        self._shutdown_initiated = False
        self._task_enabled = True

        try:
            self._core = ClientCore(json.dumps(core_cfg))
        except BaseException:
            if self._tunnel is not None:
                self._tunnel.close()
            raise
        self.session = _SessionInfo(self._core, cfg.get("key", ""))
        self._history_prefix = f"{self.session.session}_{os.getpid()}_"
        self.history = History(self._history_prefix)
        self._closed = False
        self._dispatcher = threading.Thread(
            target=self._dispatch_loop, name="oxipp-client-dispatch", daemon=True
        )
        self._dispatcher.start()
        try:
            self._connect(timeout)
        except BaseException:
            self.close()
            raise
        self._maybe_activate()

    # ------------------------------------------------------------------ connecting

    def _load_connection_info(self, connection_info, cluster_id, timeout) -> dict:
        if connection_info is None:
            name = (
                f"ipcontroller-{cluster_id}-client.json"
                if cluster_id
                else "ipcontroller-client.json"
            )
            path = self._profile_dir / "security" / name
            if not path.exists():
                print(f"Waiting for connection file: {path}")
                deadline = time.monotonic() + (timeout or 0)
                while not path.exists() and time.monotonic() < deadline:
                    time.sleep(0.1)
            if not path.exists():
                raise OSError(f"Connection file {str(path)!r} not found.\n{_NO_CONTROLLER}")
            connection_info = str(path)
        if isinstance(connection_info, dict):
            cfg = dict(connection_info)
        else:
            path = Path(os.fspath(connection_info)).expanduser()
            if not path.exists():
                raise OSError(f"Connection file {str(path)!r} not found. Is a controller running?")
            with open(path) as f:
                cfg = json.load(f)
        missing = [k for k in ("interface", "registration", "key") if k not in cfg]
        if missing:
            raise ValueError(f"Connection info is invalid (missing {missing[0]!r})")
        return cfg

    def _connect(self, timeout):
        fut = self._send("query", "connection_request", {})
        if not fut.wait(timeout if timeout and timeout > 0 else None):
            raise TimeoutError("Hub connection request timed out")
        msg = fut.result()
        content = msg["content"]
        if content.get("status") != "ok":
            raise self._unwrap_exception(content)
        self._update_engines(content.get("engines", {}))

    def _refresh_engines(self):
        """Re-reads the engine table from the Hub (connection_request)."""
        try:
            fut = self._send("query", "connection_request", {})
        except OSError:
            return
        if fut.wait(5):
            content = fut.result()["content"]
            if content.get("status") == "ok":
                self._update_engines(content.get("engines", {}))

    def _maybe_activate(self):
        try:
            from IPython import get_ipython
        except ImportError:
            return
        ip = get_ipython()
        if ip is None:
            return
        if not ip.magics_manager.magics["line"].get("px"):
            self.activate()

    # ------------------------------------------------------------------ engines

    def _update_engines(self, engines):
        with self._lock:
            for k, v in engines.items():
                eid = int(k)
                if eid not in self._engines:
                    self._ids.append(eid)
                else:
                    self._engine_ids.pop(self._engines[eid], None)
                self._engines[eid] = v
                self._engine_ids[v] = eid
            self._ids = sorted(self._ids)
            if self._task_scheme == "pure" and sorted(self._engines) != list(
                range(len(self._engines))
            ):
                self._stop_scheduling_tasks()

    def _stop_scheduling_tasks(self):
        if not self._task_enabled:
            return
        self._task_enabled = False
        msg = (
            "An engine has been unregistered, and we are using pure ZMQ task scheduling."
            "  Task farming will be disabled."
        )
        if self.outstanding:
            msg += (
                " If you were running tasks when this happened,"
                " some `outstanding` msg_ids may never resolve."
            )
        warnings.warn(msg, RuntimeWarning, stacklevel=2)

    @property
    def ids(self):
        """Sorted ids of the registered engines (kept current by the notification feed)."""
        return list(self._ids)

    def __len__(self):
        return len(self._ids)

    def __getitem__(self, key):
        """DirectViews: ``rc[0]``, ``rc[-1]``, ``rc[:]``, ``rc[::2]``, ``rc[[0, 2]]``, ``rc[0, 1]``
        (a tuple is a list of engine ids)."""
        if isinstance(key, tuple) and any(isinstance(k, slice) for k in key):
            raise TypeError(
                f"Engine ids must be ints, a slice or a list of ints, not {key!r}: "
                "there is no 2-D indexing; use rc[::2] for every other engine"
            )
        if not isinstance(key, (int, slice, tuple, list, range)):
            raise TypeError(f"key by int/slice/iterable of ints only, not {type(key)}")
        return self.direct_view(key)

    def __iter__(self):
        for eid in self.ids:
            yield self.direct_view(eid)

    def _build_targets(self, targets):
        """targets (None/'all'/int/slice/list/range) -> (uuid bytes list, int id list)."""
        if not self._ids and not self._closed:
            self._refresh_engines()  # a registration notification may have been missed
        if not self._ids:
            raise error.NoEnginesRegistered("Can't build targets without any engines")
        ids = self._ids
        if targets is None:
            targets = ids
        elif isinstance(targets, str):
            if targets.lower() == "all":
                targets = ids
            else:
                raise TypeError(f"{targets!r} not valid str target, must be 'all'")
        elif isinstance(targets, int):
            if targets < 0:
                targets = ids[targets]
            targets = [targets]  # unknown ids: IndexError below, after a refresh
        if isinstance(targets, slice):
            targets = [ids[i] for i in range(len(ids))[targets]]
        if not isinstance(targets, (tuple, list, range)):
            raise TypeError(f"targets by int/slice/collection of ints only, not {type(targets)}")
        targets = list(targets)
        missing = [t for t in targets if t not in self._engines]
        if missing and not self._closed:
            self._refresh_engines()
            missing = [t for t in targets if t not in self._engines]
        if missing:
            raise IndexError(f"No such engine: {missing[0]}")
        return [self._engines[t].encode("utf8") for t in targets], targets

    def _engine_id(self, uuid):
        return self._engine_ids.get(uuid)

    # ------------------------------------------------------------------ sending

    def _send(
        self,
        channel,
        msg_type,
        content=None,
        parent=None,
        ident=None,
        buffers=None,
        track=False,
        header=None,
        metadata=None,
        track_outstanding=False,
        message_future_hook=None,
        record_history=True,
        metadata_json=None,
        flush=True,
    ):
        """Sends one message through the Rust core; returns its MessageFuture (None for
        messages without replies). ``record_history=False`` keeps it out of ``history`` (imap
        streams: a million tasks must not grow the client); ``metadata_json``: ``metadata``
        already encoded (one encoding for the many tasks of a map); ``flush=False`` only
        queues the message until a flushing send or ``_flush()`` (a batch of tasks goes out in
        a few writes)."""
        if self._closed:
            raise OSError("Connections have been closed.")
        msg_id, header_bytes = self._core.new_header(msg_type)
        expect_reply = msg_type not in {"comm_msg", "comm_close", "comm_open"}
        future = None
        if expect_reply:
            label = metadata.get("label") if metadata else None
            hdr = {"msg_id": msg_id, "msg_type": msg_type, "session": self.session.session}
            with self._lock:
                if track_outstanding:
                    self.outstanding.add(msg_id)
                    if record_history:
                        self.history.append(msg_id)
                    if ident:
                        engine_uuid = (ident[-1] if isinstance(ident, list) else ident).decode()
                        self._outstanding_dict[engine_uuid].add(msg_id)
                futures = self.create_message_futures(
                    msg_id,
                    hdr,
                    async_result=msg_type in ("execute_request", "apply_request"),
                    track=track,
                    label=label,
                )
            future = futures[0]
            if message_future_hook is not None:
                message_future_hook(future)
        if isinstance(ident, list):
            ident = ident[-1]
        tracker = self._core.send(
            channel,
            header_bytes,
            _dumps(content or {}),
            metadata_json if metadata_json is not None else _dumps(metadata or {}),
            buffers,
            ident,
            _dumps(parent) if parent else None,
            flush,
            track,
        )
        if tracker is not None and future is not None:
            future._set_send_tracker(tracker)
        return future

    def _flush(self):
        """Writes the messages that sends with ``flush=False`` queued."""
        if not self._closed:
            self._core.flush()

    def create_message_futures(self, msg_id, header, async_result=False, track=False, label=None):
        future = MessageFuture(msg_id, header=header, track=track)
        future._pump = self._pump_method
        futures = [future]
        self._futures[msg_id] = future
        if async_result:
            output = MessageFuture(msg_id, header=header)
            self._output_futures[msg_id] = output
            md = self.metadata[msg_id]
            md["msg_id"] = msg_id
            md["submitted"] = utcnow()
            md["label"] = label
            output.metadata = md
            future.output = output
            futures.append(output)

        self._parts_left[msg_id] = len(futures)
        for f in futures:
            f.add_done_callback(self._part_done_method)
        return futures

    def _part_done(self, future):
        """Drops a request's bookkeeping once its reply and (if any) all its output are in.
        (Callbacks of one request run on the thread that handles events. One bound method
        and a count per request, not a closure: a map keeps all its tasks' objects alive
        at once, and each object is more work for the garbage collector.)"""
        msg_id = future.msg_id
        left = self._parts_left.get(msg_id, 1) - 1
        if left > 0:
            self._parts_left[msg_id] = left
            return
        self._parts_left.pop(msg_id, None)
        self.results.pop(msg_id, None)
        self._futures.pop(msg_id, None)
        self._output_futures.pop(msg_id, None)
        self.metadata.pop(msg_id, None)

    def _send_recv(self, *args, **kwargs):
        future = self._send(*args, **kwargs)
        future.wait()
        return future.result()

    def send_apply_request(
        self,
        socket,
        f,
        args=None,
        kwargs=None,
        metadata=None,
        track=False,
        ident=None,
        message_future_hook=None,
        record_history=True,
        metadata_json=None,
        flush=True,
    ):
        """Packs ``f(*args, **kwargs)`` and sends an apply_request on ``socket`` (mux, task or
        broadcast); returns its MessageFuture (``flush``: see ``_send``)."""
        if self._closed:
            raise RuntimeError("Client cannot be used after its sockets have been closed")
        args = args if args is not None else []
        kwargs = kwargs if kwargs is not None else {}
        metadata = metadata if metadata is not None else {}
        if not callable(f) and not isinstance(f, (Reference, PrePickled)):
            raise TypeError(f"f must be callable, not {type(f)}")
        if not isinstance(args, (tuple, list)):
            raise TypeError(f"args must be tuple or list, not {type(args)}")
        if not isinstance(kwargs, dict):
            raise TypeError(f"kwargs must be dict, not {type(kwargs)}")
        if not isinstance(metadata, dict):
            raise TypeError(f"metadata must be dict, not {type(metadata)}")
        socket = self._channel(socket)
        bufs = pack_apply_message(f, args, kwargs)
        return self._send(
            socket,
            "apply_request",
            buffers=bufs,
            ident=ident,
            metadata=metadata,
            track=track,
            track_outstanding=True,
            message_future_hook=message_future_hook,
            record_history=record_history,
            metadata_json=metadata_json,
            flush=flush,
        )

    def send_execute_request(
        self, socket, code, silent=True, metadata=None, ident=None, message_future_hook=None
    ):
        """Sends an execute_request of ``code``; returns its MessageFuture."""
        if self._closed:
            raise RuntimeError("Client cannot be used after its sockets have been closed")
        metadata = metadata if metadata is not None else {}
        if not isinstance(code, str):
            raise TypeError(f"code must be text, not {type(code)}")
        if not isinstance(metadata, dict):
            raise TypeError(f"metadata must be dict, not {type(metadata)}")
        return self._send(
            self._channel(socket),
            "execute_request",
            content={"code": code, "silent": silent, "user_expressions": {}},
            ident=ident,
            metadata=metadata,
            track_outstanding=True,
            message_future_hook=message_future_hook,
        )

    def _channel(self, socket):
        name = socket if isinstance(socket, str) else getattr(socket, "channel", None)
        if name == "task" and not self._task_enabled:
            raise RuntimeError("Task farming is disabled")
        if name not in ("mux", "task", "broadcast", "control", "query"):
            raise TypeError(f"not a client channel: {socket!r}")
        return name

    # stock attribute names for the channels, accepted wherever a socket is
    _mux_socket = "mux"
    _task_socket = "task"
    _broadcast_socket = "broadcast"
    _control_socket = "control"
    _query_socket = "query"
    _mux_stream = "mux"
    _task_stream = "task"
    _broadcast_stream = "broadcast"
    _control_stream = "control"
    _query_stream = "query"

    # ------------------------------------------------------------------ receiving

    # Incoming events are handled by whichever thread is there first: a thread blocked on a
    # result (``_pump_until``: the reply reaches it without a hand-off through another thread)
    # or else the dispatcher thread, which the Rust core keeps off the events while such a
    # waiter is there and for a moment after it left (LINGER in crates/oxipp-client). Taking a
    # batch and handling it happen under ``_pump``, so batches are handled in arrival order.

    def _dispatch_loop(self):
        core = self._core
        while True:
            try:
                # timed: events a Ctrl-C left behind (``_leftover``) are picked up soon
                state = core.wait_events(False, _PUMP_SLICE)
                if state == "closed":
                    break
                if (state == "ready" or self._leftover) and self._pump_batch() is None:
                    break
            except Exception:  # noqa: BLE001 - keep receiving; a dead dispatcher hangs users
                import traceback

                traceback.print_exc()
        self._fail_pending(OSError("Client connections have been closed"))

    def _pump_batch(self):
        """Takes and handles the events that are in; the batch (None once closed).

        A waiting user thread may get a KeyboardInterrupt (Ctrl-C) in the middle of a batch:
        the event it interrupted and the rest of the batch are then kept in ``_leftover`` and
        handled first by the next thread that pumps (the interrupted one again, so at least
        once), instead of being lost with the results they carry."""
        batch = None
        with self._pump:
            self._pump_owner = threading.get_ident()
            try:
                batch, self._leftover = self._leftover or self._core.take_events(), None
                i = 0
                try:
                    while batch and i < len(batch):
                        try:
                            self._dispatch(batch[i])
                        except Exception:  # noqa: BLE001 - one bad message must not stop us
                            if not self._closed:
                                import traceback

                                traceback.print_exc()
                        i += 1
                except BaseException:
                    self._leftover = batch[i:]
                    raise
            finally:
                self._pump_owner = None
        if batch:
            self._core.kick()  # other waiting threads' results may have been among them
        return batch

    def _pump_until(self, done, timeout=None):
        """Handles incoming events in this thread until ``done()`` or ``timeout`` seconds
        (None: no limit); returns the time left (None: no limit), for the caller's own wait,
        which then returns at once unless the client was closed meanwhile (the dispatcher
        fails what is pending then)."""
        if done() or self._pump_owner == threading.get_ident():
            # done, or called from an event handler: waiting here must not handle events
            # out of order; the caller's own wait does what it always did
            return timeout
        deadline = None if timeout is None else time.monotonic() + timeout
        core = self._core
        while True:
            try:
                if self._pump_batch() is None:
                    break
            except OSError:
                break
            # read before the check: a batch another thread handles after it ends the wait
            seen = core.generation
            if done():
                break
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                return 0
            # in slices: whatever resolves a future outside event handling is seen soon
            left = _PUMP_SLICE if left is None else min(left, _PUMP_SLICE)
            if core.wait_events(True, left, seen) == "closed":
                break
        return None if deadline is None else max(deadline - time.monotonic(), 0)

    def _dispatch(self, event):
        source, msg_type, parent_id, idents, header, parent, md, content, buffers = event
        if source == "iopub":
            self._dispatch_iopub(msg_type, parent_id, header, md, content, buffers)
        elif source == "notification":
            self._dispatch_notification(msg_type, _loads(content))
        elif msg_type in ("apply_reply", "execute_reply") and source in (
            "mux",
            "task",
            "broadcast",
        ):
            msg = {
                "header": _loads(header),
                "parent_header": _loads(parent),
                "metadata": _loads(md),
                "content": _loads(content),
                "buffers": buffers,
            }
            self._handle_reply(msg)
        else:
            msg = {
                "msg_type": msg_type,
                "header": _loads(header),
                "parent_header": _loads(parent),
                "metadata": _loads(md),
                "content": _loads(content),
                "buffers": buffers,
            }
            future = self._futures.get(parent_id) if parent_id else None
            if future is not None and not future.done():
                future.set_result(msg)
            elif parent_id is None:
                pass
            elif self.debug:
                print(f"unexpected {msg_type} on {source}: {parent_id}")

    def _dispatch_notification(self, msg_type, content):
        if msg_type == "registration_notification":
            self._update_engines({content["id"]: content["uuid"]})
            self._notify_registration({"event": "register", **content})
        elif msg_type == "unregistration_notification":
            self._unregister_engine(content)
        elif msg_type == "shutdown_notification":
            if not self._shutdown_initiated:
                threading.Thread(target=self.close, daemon=True).start()

    def _notify_registration(self, event):
        for cb in list(self._registration_callbacks):
            try:
                cb(event)
            except Exception:  # noqa: BLE001
                import traceback

                traceback.print_exc()

    def _unregister_engine(self, content):
        eid = int(content["id"])
        with self._lock:
            uuid = None
            if eid in self._ids:
                self._ids.remove(eid)
                uuid = self._engines.pop(eid)
                self._engine_ids.pop(uuid, None)
        if uuid is not None:
            self._handle_stranded_msgs(eid, uuid)
        if self._task_scheme == "pure":
            self._stop_scheduling_tasks()
        self._notify_registration({"event": "unregister", **content})

    def _handle_stranded_msgs(self, eid, uuid):
        """Requests sent to an engine that unregistered get an EngineError reply."""
        for msg_id in list(self._outstanding_dict.get(uuid, ())):
            if msg_id in self.results:
                continue
            try:
                raise error.EngineError(f"Engine {eid!r} died while running task {msg_id!r}")
            except error.EngineError:
                content = error.wrap_exception()
            now = utcnow().isoformat()
            self._handle_reply(
                {
                    "header": {"msg_type": "apply_reply", "date": now},
                    "parent_header": {"msg_id": msg_id},
                    "metadata": {"engine": uuid},
                    "content": content,
                    "buffers": [],
                }
            )

    def _unwrap_exception(self, content):
        e = error.unwrap_exception(content)
        if e.engine_info and "engine_id" not in e.engine_info:
            eid = self._engine_id(e.engine_info.get("engine_uuid"))
            e.engine_info["engine_id"] = eid
        return e

    def _extract_metadata(self, msg):
        header = msg["header"]
        parent = msg["parent_header"]
        meta = msg["metadata"]
        content = msg["content"]
        md = {
            "msg_id": parent.get("msg_id"),
            "received": utcnow(),
            "engine_uuid": meta.get("engine"),
            "follow": meta.get("follow", []),
            "after": meta.get("after", []),
            "status": content.get("status"),
            "is_broadcast": meta.get("is_broadcast", False),
            "is_coalescing": meta.get("is_coalescing", False),
            "label": meta.get("label"),
        }
        if md["engine_uuid"] is not None:
            md["engine_id"] = self._engine_id(md["engine_uuid"])
        if md["is_coalescing"]:
            targets = meta.get("broadcast_targets", [])
            md["engine_uuid"] = [t[0] for t in targets]
            md["engine_id"] = [t[1] for t in targets]
        if "date" in parent:
            md["submitted"] = parse_date(parent["date"])
        if "started" in meta:
            md["started"] = parse_date(meta["started"])
        if "date" in header:
            md["completed"] = parse_date(header["date"])
        return md

    def _handle_reply(self, msg):
        """An apply_reply or execute_reply: store the result and resolve its future."""
        meta = msg["metadata"]
        if meta.get("is_broadcast") and meta.get("is_coalescing"):
            msg_id = meta.get("original_msg_id") or msg["parent_header"].get("msg_id")
        else:
            msg_id = msg["parent_header"].get("msg_id")
        with self._lock:
            if msg_id in self.outstanding:
                self.outstanding.discard(msg_id)
            elif msg_id not in self._futures:
                if self.debug:
                    print(f"got unknown result: {msg_id}")
                return
            future = self._futures.get(msg_id)
        content = msg["content"]
        md = self.metadata[msg_id]
        md.update(self._extract_metadata(msg))
        uuids = md["engine_uuid"] if md.get("is_coalescing") else [md["engine_uuid"]]
        for uuid in uuids or ():
            if uuid is not None:
                self._outstanding_dict[uuid].discard(msg_id)
        status = content.get("status")
        is_execute = msg["header"].get("msg_type") == "execute_reply"
        if status == "ok":
            if is_execute:
                result = ExecuteReply(msg_id, content, md)
            elif md.get("is_coalescing"):
                result = []
                bufs = list(msg["buffers"])
                while bufs:
                    obj, bufs = deserialize_object(bufs)
                    result.append(obj)
            else:
                result = deserialize_object(msg["buffers"])[0]
        elif status == "aborted":
            result = error.TaskAborted(msg_id)
            self._resolve_output(msg_id)
        elif status == "resubmitted":
            return
        else:
            result = self._unwrap_exception(content)
        if status != "ok" and not content.get("engine_info"):
            # a failure from the controller, not the engine: no output will follow
            self._resolve_output(msg_id)
        self.results[msg_id] = result
        if future is not None and not future.done():
            future.set_result(result)

    def _resolve_output(self, msg_id):
        out = self._output_futures.get(msg_id)
        if out is not None and not out.done():
            out.set_result(None)

    def _dispatch_iopub(self, msg_type, msg_id, header, meta, content, buffers):
        if msg_id is None:
            return
        if msg_type == "status":
            # the core only passes `idle`, which follows every output of the request
            self._resolve_output(msg_id)
            return
        if msg_id not in self.metadata and msg_id not in self._futures:
            return
        md = self.metadata[msg_id]
        content = _loads(content)
        meta = _loads(meta)
        if md["engine_id"] is None and "engine" in meta:
            md["engine_uuid"] = meta["engine"]
            md["engine_id"] = self._engine_id(meta["engine"])
        if msg_type == "stream":
            name = content.get("name", "stdout")
            if name in ("stdout", "stderr"):
                text = (md[name] or "") + content.get("text", "")
                if "\r" in content.get("text", ""):
                    text = _CR_PAT.sub("", text)
                md[name] = text
        elif msg_type == "error":
            md["error"] = self._unwrap_exception(content)
        elif msg_type == "execute_input":
            md["execute_input"] = content.get("code")
        elif msg_type == "display_data":
            md["outputs"].append(content)
        elif msg_type == "execute_result":
            md["execute_result"] = content
        elif msg_type == "data_message":
            data, _ = deserialize_object(buffers)
            md["data"].update(data)
        future = self._futures.get(msg_id)
        if future is not None and future._iopub_callbacks:
            msg = {
                "header": _loads(header),
                "msg_type": msg_type,
                "metadata": meta,
                "content": content,
                "buffers": _as_bytes(buffers),
            }
            for cb in list(future.iopub_callbacks):
                cb(msg)

    def _fail_pending(self, exc):
        for f in list(self._futures.values()):
            if not f.done():
                f.set_exception(exc)
            out = getattr(f, "output", None)
            if out is not None and not out.done():
                out.set_result(None)

    # ------------------------------------------------------------------ lifecycle

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __del__(self):
        try:
            self.close()
        except Exception:  # noqa: BLE001, S110 - interpreter shutdown
            pass

    def close(self, linger=None):
        """Closes the sockets; pending futures fail with OSError."""
        if self._closed:
            return
        self._closed = True
        core = self._core
        if core is not None:
            core.close()
        d = getattr(self, "_dispatcher", None)
        if d is not None and d is not threading.current_thread():
            d.join(5)
        if self._tunnel is not None:
            self._tunnel.close()

    def spin(self):
        """Deprecated no-op: the IO thread always runs."""

    def spin_thread(self, interval=1):
        """Deprecated no-op."""

    def stop_spin_thread(self):
        """Deprecated no-op."""

    def activate(self, targets="all", suffix=""):
        """Registers ``%px`` & co. for a DirectView on ``targets``; returns the view."""
        view = self.direct_view(targets)
        view.block = True
        view.activate(suffix)
        return view

    # ------------------------------------------------------------------ waiting

    def _await_futures(self, futures, timeout):
        if not futures:
            return True
        if timeout is not None and timeout < 0:
            timeout = None
        evt = threading.Event()
        multi_future(futures).add_done_callback(lambda f: evt.set())
        return evt.wait(self._pump_until(evt.is_set, timeout))

    def _futures_for_msgs(self, msg_ids):
        return [f for f in (self._futures.get(m) for m in msg_ids) if f is not None]

    def wait(self, jobs=None, timeout=-1):
        """Waits for ``jobs`` (default: everything outstanding); False on timeout."""
        futures = []
        if jobs is None:
            if not self.outstanding:
                return True
            ids = set(self.outstanding)
        else:
            if isinstance(jobs, (str, int, AsyncResult)) or not isinstance(jobs, Iterable):
                jobs = [jobs]
            ids = set()
            for job in jobs:
                if isinstance(job, int):
                    job = self.history[job]
                elif isinstance(job, AsyncResult):
                    ids.update(job.msg_ids)
                    continue
                elif _is_future(job):
                    futures.append(job)
                    continue
                ids.add(job)
            if not futures and not ids.intersection(self.outstanding):
                return True
        futures.extend(self._futures_for_msgs(ids))
        return self._await_futures(futures, timeout)

    def wait_interactive(self, jobs=None, interval=1.0, timeout=-1.0):
        """Waits with a progress bar."""
        if jobs is None:
            futures = [f for f in list(self._futures.values()) if hasattr(f, "output")]
            if not futures:
                return None
            ar = AsyncResult(self, futures, owner=False)
        else:
            ar = self._asyncresult_from_jobs(jobs, owner=False)
        return ar.wait_interactive(interval=interval, timeout=timeout)

    def wait_for_engines(self, n=None, *, timeout=-1, block=True, interactive=None, widget=None):
        """Waits until at least ``n`` engines are registered (TimeoutError after ``timeout``;
        EngineError if the cluster's engines stop meanwhile). Returns a Future if not block."""
        from concurrent.futures import Future

        if n is None:
            cluster = self.cluster
            n = getattr(cluster, "n", None) if cluster is not None else None
            if n is None:
                raise TypeError("n engines to wait for must be specified")
        if timeout is None or timeout < 0:
            timeout = None
        future = Future()
        deadline = None if timeout is None else time.monotonic() + timeout

        def check():
            if len(self._ids) >= n:
                return True
            return None

        def waiter():
            bar = None
            if interactive:
                from tqdm.auto import tqdm

                bar = tqdm(total=n, unit="engine", desc="Waiting for engines")
            try:
                last_refresh = time.monotonic()
                while not check():
                    if time.monotonic() - last_refresh > 1.0:
                        # a registration that raced our connect can be missed by the
                        # notification feed (SUB sockets join late): ask the Hub again
                        last_refresh = time.monotonic()
                        self._refresh_engines()
                    if bar is not None:
                        bar.n = len(self._ids)
                        bar.refresh()
                    if self._closed:
                        future.set_exception(error.EngineError("client closed"))
                        return
                    if deadline is not None and time.monotonic() >= deadline:
                        future.set_exception(
                            TimeoutError(
                                f"{n} engines not ready in {timeout} seconds."
                                f" Currently ready: {len(self._ids)}"
                            )
                        )
                        return
                    time.sleep(0.01)
                if bar is not None:
                    bar.n = len(self._ids)
                    bar.refresh()
                future.set_result(None)
            finally:
                if bar is not None:
                    bar.close()

        if interactive is None:
            interactive = False
        if block:
            waiter()
            return future.result()
        threading.Thread(target=waiter, daemon=True).start()
        return future

    # ------------------------------------------------------------------ control

    def _send_control_request(self, targets, msg_type, content, block):
        idents = self._build_targets(targets)[0]
        futures = [self._send("control", msg_type, content=content, ident=i) for i in idents]
        if not block:
            return multi_future(futures)
        for f in futures:
            f.wait()
            msg = f.result()
            if msg["content"].get("status") != "ok":
                raise self._unwrap_exception(msg["content"])
        return None

    def send_signal(self, sig, targets=None, block=None):
        """Sends signal ``sig`` (number or name like "SIGINT") to the engines' processes."""
        block = self.block if block is None else block
        return self._send_control_request(targets, "signal_request", {"sig": sig}, block)

    def clear(self, targets=None, block=None):
        """Clears the engines' namespaces."""
        block = self.block if block is None else block
        return self._send_control_request(targets, "clear_request", {}, block)

    def abort(self, jobs=None, targets=None, block=None):
        """Aborts queued jobs (default: every outstanding one) on ``targets``."""
        block = self.block if block is None else block
        jobs = jobs if jobs is not None else list(self.outstanding)
        if isinstance(jobs, (str, AsyncResult)):
            jobs = [jobs]
        bad = [j for j in jobs if not isinstance(j, (str, AsyncResult))]
        if bad:
            raise TypeError(f"Invalid msg_id type {bad[0]!r}, expected str or AsyncResult")
        msg_ids = []
        for j in jobs:
            if isinstance(j, AsyncResult):
                msg_ids.extend(j.msg_ids)
            else:
                msg_ids.append(j)
        return self._send_control_request(targets, "abort_request", {"msg_ids": msg_ids}, block)

    def shutdown(self, targets="all", restart=False, hub=False, block=None):
        """Stops engines (and the controller with ``hub=True``)."""
        if restart:
            raise NotImplementedError("Engine restart is not yet implemented")
        block = self.block if block is None else block
        if hub:
            targets = "all"
        try:
            idents = self._build_targets(targets)[0]
        except error.NoEnginesRegistered:
            idents = []
        futures = [
            self._send("control", "shutdown_request", content={"restart": restart}, ident=i)
            for i in idents
        ]
        err = None
        if block or hub:
            for f in futures:
                f.wait()
                msg = f.result()
                if msg["content"].get("status") != "ok":
                    err = self._unwrap_exception(msg["content"])
        if hub:
            self._shutdown_initiated = True
            msg = self._send_recv("query", "shutdown_request")
            if msg["content"].get("status") != "ok":
                err = self._unwrap_exception(msg["content"])
            if err is None:
                self.close()
        if err is not None:
            raise err

    def become_dask(self, targets="all", port=0, nanny=False, scheduler_args=None, **worker_args):
        """Turns the engines into dask.distributed workers of a scheduler the controller starts;
        returns a connected ``distributed.Client``."""
        import distributed

        scheduler_args = dict(scheduler_args or {})
        if port:
            scheduler_args.setdefault("port", port)
        content = self._query("become_dask_request", {"scheduler_args": scheduler_args})["content"]
        worker_args["address"] = content["address"]
        worker_args["nanny"] = nanny
        worker_args.setdefault("nthreads", 1)
        self.direct_view(targets).apply_sync(become_dask_worker, **worker_args)
        return distributed.Client(content["address"])

    become_distributed = become_dask

    def stop_dask(self, targets="all"):
        """Stops the scheduler and the workers started by become_dask."""
        self._query("stop_distributed_request")
        self.direct_view(targets).apply_sync(stop_distributed_worker)

    stop_distributed = stop_dask

    # ------------------------------------------------------------------ views

    def load_balanced_view(self, targets=None, **kwargs):
        """A LoadBalancedView over ``targets`` (default: every engine, current and future)."""
        if targets == "all":
            targets = None
        if targets is not None:
            targets = self._build_targets(targets)[1]
        return LoadBalancedView(client=self, socket="task", targets=targets, **kwargs)

    def executor(self, targets=None):
        """A concurrent.futures Executor over a LoadBalancedView."""
        return self.load_balanced_view(targets).executor

    def direct_view(self, targets="all", **kwargs):
        """A DirectView on ``targets``; 'all' means every engine at the time of each call."""
        single = isinstance(targets, int)
        if targets != "all":
            targets = self._build_targets(targets)[1]
        if single:
            targets = targets[0]
        return DirectView(client=self, socket="mux", targets=targets, **kwargs)

    def broadcast_view(self, targets="all", is_coalescing=False, **kwargs):
        """A BroadcastView: one request per call, fanned out by the broadcast scheduler."""
        targets = self._build_targets(targets)[1]
        return BroadcastView(
            client=self, socket="broadcast", targets=targets, is_coalescing=is_coalescing, **kwargs
        )

    # ------------------------------------------------------------------ Hub queries

    def _query(self, msg_type, content=None):
        msg = self._send_recv("query", msg_type, content or {})
        content = msg["content"]
        if content.get("status") != "ok":
            raise self._unwrap_exception(content)
        return msg

    def _msg_ids_from_target(self, targets=None):
        return [
            msg_id
            for msg_id in self.history
            if self.metadata.get(msg_id, {}).get("engine_id") in self._build_targets(targets)[1]
        ]

    def _msg_ids_from_jobs(self, jobs=None):
        if jobs is None:
            return []
        if isinstance(jobs, (str, int, AsyncResult)):
            jobs = [jobs]
        msg_ids = []
        for job in jobs:
            if isinstance(job, int):
                msg_ids.append(self.history[job])
            elif isinstance(job, str):
                msg_ids.append(job)
            elif isinstance(job, AsyncResult):
                msg_ids.extend(job.msg_ids)
            else:
                raise TypeError(f"Expected msg_id, int, or AsyncResult, got {job!r}")
        return msg_ids

    def _asyncresult_from_jobs(self, jobs=None, owner=False, single=False):
        if not isinstance(jobs, (list, tuple)):
            jobs = [jobs]
        futures = []
        for job in jobs:
            if isinstance(job, int):
                job = self.history[job]
            if isinstance(job, str):
                if job in self._futures:
                    futures.append(self._futures[job])
                elif job in self.results:
                    f = MessageFuture(job)
                    f.output = MessageFuture(job)
                    f.output.metadata = self.metadata[job]
                    f.set_result(self.results[job])
                    f.output.set_result(None)
                    futures.append(f)
                else:
                    raise KeyError(f"No such msg_id: {job!r}")
            elif isinstance(job, AsyncResult):
                futures.extend(job._children)
            elif _is_future(job):
                futures.append(job)
            else:
                raise TypeError(f"Expected msg_id, int, or AsyncResult, got {job!r}")
        if single and len(futures) == 1:
            return AsyncResult(self, futures[0], owner=owner)
        return AsyncResult(self, futures, owner=owner)

    def _history_ids(self, indices_or_msg_ids):
        """msg_ids from one or a list of msg_ids and ``history`` indices."""
        if not isinstance(indices_or_msg_ids, (list, tuple)):
            indices_or_msg_ids = [indices_or_msg_ids]
        ids = []
        for i in indices_or_msg_ids:
            if isinstance(i, int):
                i = self.history[i]
            if not isinstance(i, str):
                raise TypeError(f"indices must be str or int, not {i!r}")
            ids.append(i)
        return ids

    def get_result(self, indices_or_msg_ids=None, block=None, owner=True):
        """An AsyncResult for jobs sent by this client, else an AsyncHubResult fetched from
        the Hub's database."""
        block = self.block if block is None else block
        if indices_or_msg_ids is None:
            indices_or_msg_ids = -1
        single = isinstance(indices_or_msg_ids, (int, str))
        theids = self._history_ids(indices_or_msg_ids)
        local = [m for m in theids if m in self._futures or m in self.results]
        if len(local) == len(theids):
            ar = self._asyncresult_from_jobs(theids, owner=owner, single=single)
        else:
            ar = AsyncHubResult(self, theids[0] if single else theids, owner=owner)
        if block:
            ar.wait()
        return ar

    def resubmit(self, indices_or_msg_ids=None, metadata=None, block=None):
        """Resubmits finished or pending tasks through the Hub; returns an AsyncHubResult."""
        block = self.block if block is None else block
        if indices_or_msg_ids is None:
            indices_or_msg_ids = -1
        theids = self._history_ids(indices_or_msg_ids)
        msg = self._query("resubmit_request", {"msg_ids": theids})
        mapping = msg["content"]["resubmitted"]
        new_ids = [mapping[m] for m in theids]
        ar = AsyncHubResult(self, new_ids)
        if block:
            ar.wait()
        return ar

    def result_status(self, msg_ids, status_only=True):
        """Asks the Hub about ``msg_ids``: ``{'pending': [...], 'completed': [...]}`` plus the
        results of completed ones unless ``status_only``."""
        if not isinstance(msg_ids, (list, tuple)):
            msg_ids = [msg_ids]
        theids = []
        for id in msg_ids:
            if isinstance(id, int):
                id = self.history[id]
            if isinstance(id, AsyncResult):
                theids.extend(id.msg_ids)
                continue
            if not isinstance(id, str):
                raise TypeError(f"msg_ids must be str, not {id!r}")
            theids.append(id)
        completed = []
        local_results = {}
        for msg_id in theids:
            if msg_id in self.results:
                completed.append(msg_id)
                local_results[msg_id] = self.results[msg_id]
                theids.remove(msg_id)
        if theids:
            msg = self._query("result_request", {"msg_ids": theids, "status_only": status_only})
            content = msg["content"]
            buffers = list(msg["buffers"])
        else:
            content = {"completed": [], "pending": []}
            buffers = []
        content["completed"].extend(completed)
        if status_only:
            return content
        failures = []
        # results arrive in sorted msg_id order, with buffers concatenated in that order
        for msg_id in sorted(theids):
            if msg_id not in content or msg_id not in content["completed"]:
                continue
            rec = content[msg_id]
            parent = parse_date(rec["header"])
            header = rec["result_header"]
            rcontent = rec["result_content"]
            iodict = rec.get("io", {})
            md = self.metadata[msg_id]
            md_msg = {
                "header": header,
                "parent_header": parent,
                "metadata": rec.get("result_metadata", {}),
                "content": rcontent,
            }
            md.update(self._extract_metadata(md_msg))
            if rec.get("received"):
                md["received"] = parse_date(rec["received"])
            md.update({k: v for k, v in iodict.items() if k in md and v is not None})
            if rcontent.get("status") == "ok":
                if header.get("msg_type") == "apply_reply":
                    res, buffers = deserialize_object(buffers)
                elif header.get("msg_type") == "execute_reply":
                    res = ExecuteReply(msg_id, rcontent, md)
                else:
                    raise KeyError(f"unhandled msg type: {header.get('msg_type')!r}")
            else:
                res = self._unwrap_exception(rcontent)
                failures.append(res)
            self.results[msg_id] = res
            content[msg_id] = res
        if len(theids) == 1 and failures:
            raise failures[0]
        error.collect_exceptions(failures, "result_status")
        return content

    def queue_status(self, targets="all", verbose=False):
        """Queue counts (or msg_id lists with verbose) per engine id, plus 'unassigned'."""
        if targets == "all":
            engine_ids = None
        else:
            engine_ids = self._build_targets(targets)[1]
        msg = self._query("queue_request", {"targets": engine_ids, "verbose": verbose})
        content = dict(msg["content"])
        content.pop("status")
        status = {}
        for k, v in content.items():
            try:
                status[int(k)] = v
            except ValueError:
                status[k] = v
        if isinstance(targets, int):
            return status[targets]
        return status

    def purge_local_results(self, jobs=[], targets=[]):  # noqa: B006 - stock signature
        """Forgets local results (``'all'`` for everything that is done)."""
        if not targets and not jobs:
            raise ValueError("Must specify at least one of `targets` and `jobs`")
        if jobs == "all":
            if self.outstanding:
                raise RuntimeError(f"Can't purge outstanding tasks: {self.outstanding}")
            self.results.clear()
            self.metadata.clear()
            self._futures.clear()
            self._output_futures.clear()
            return
        msg_ids = set(self._msg_ids_from_jobs(jobs))
        if targets:
            msg_ids.update(self._msg_ids_from_target(targets))
        still = msg_ids.intersection(self.outstanding)
        if still:
            raise RuntimeError(f"Can't purge outstanding tasks: {still}")
        for m in msg_ids:
            self.results.pop(m, None)
            self.metadata.pop(m, None)
            self._futures.pop(m, None)
            self._output_futures.pop(m, None)

    def purge_hub_results(self, jobs=[], targets=[]):  # noqa: B006 - stock signature
        """Forgets results in the Hub's database (``'all'`` for everything completed)."""
        if not targets and not jobs:
            raise ValueError("Must specify at least one of `targets` and `jobs`")
        if targets:
            targets = self._build_targets(targets)[1]
        if jobs == "all":
            msg_ids = "all"
        else:
            msg_ids = self._msg_ids_from_jobs(jobs)
        self._query("purge_request", {"msg_ids": msg_ids, "engine_ids": targets})

    def purge_results(self, jobs=[], targets=[]):  # noqa: B006 - stock signature
        """purge_local_results and purge_hub_results."""
        self.purge_local_results(jobs=jobs, targets=targets)
        self.purge_hub_results(jobs=jobs, targets=targets)

    def purge_everything(self):
        """Forgets every result, local and in the Hub, and the history."""
        self.purge_results("all")
        self.history = History(self._history_prefix)

    def hub_history(self):
        """msg_ids of every task the Hub has recorded, oldest first."""
        return self._query("history_request")["content"]["history"]

    def db_query(self, query, keys=None):
        """Queries the Hub's task database (MongoDB-like ``query``); returns records."""
        if isinstance(keys, str):
            keys = [keys]
        msg = self._query("db_request", {"query": query, "keys": keys})
        content = msg["content"]
        records = content["records"]
        buffer_lens = content.get("buffer_lens")
        result_buffer_lens = content.get("result_buffer_lens")
        buffers = _as_bytes(msg["buffers"])
        has_bufs = buffer_lens is not None
        has_rbufs = result_buffer_lens is not None
        for i, rec in enumerate(records):
            for key in ("submitted", "started", "completed", "received"):
                if key in rec:
                    rec[key] = parse_date(rec[key])
            if has_bufs:
                n = buffer_lens[i]
                rec["buffers"], buffers = buffers[:n], buffers[n:]
            if has_rbufs:
                n = result_buffer_lens[i]
                rec["result_buffers"], buffers = buffers[:n], buffers[n:]
        return records

    def __repr__(self):
        state = "closed" if self._closed else f"{len(self._ids)} engines"
        return f"<oxipp.Client {self.session.session} ({state})>"
