"""``oxipp.Cluster``: stock ipyparallel's Cluster API, driving the ``oxipp`` launcher CLI.

Stock ``Cluster`` starts the controller and engines itself through launcher objects. Here the Rust
launcher does that work (``oxipp start --daemonize`` runs a background supervisor that starts,
watches and stops the processes, and ``oxipp engines`` adds engines), so this class only runs those
commands and reads back what they record: the cluster file
``<profile>/security/cluster-<id>.json``, written in stock ``Cluster.to_dict()`` shape so that
stock ``ipcluster list`` and ``ipyparallel.Cluster.from_file`` understand it, plus the oxipp
sidecar ``<profile>/pid/oxipp-cluster-<id>.json`` (the supervisor's pid), which stock tools drop
when they re-save the cluster file. The supervisor owns those files; we never rewrite them in
normal operation, which keeps the two writers from racing.

Every async method has a blocking ``<name>_sync`` twin. The blocking ones are the real
implementations (they only wait on subprocesses and files), and the async ones run them in the
loop's default executor, so neither form needs an event loop of its own.
"""

from __future__ import annotations

import asyncio
import atexit
import functools
import glob
import json
import logging
import os
import random
import shutil
import signal
import string
import subprocess
import sys
import time
import weakref
from pathlib import Path

__all__ = ["Cluster", "ClusterManager", "find_oxipp_bin"]

# The class name stock tools import when they load a cluster file: files we write keep it, so
# `ipcluster list` and `ipyparallel.Cluster.from_file` keep working on clusters oxipp started.
STOCK_CLASS = "ipyparallel.cluster.cluster.Cluster"
_OUR_CLASSES = {STOCK_CLASS, "oxipp.cluster.Cluster"}

# Launcher names that mean "processes on this machine", the only kind the oxipp launcher runs.
_LOCAL_LAUNCHERS = {"local", "localcontrollerlauncher", "localenginesetlauncher"}

# Stock gives engines 5 s from SIGTERM to SIGKILL (LocalProcessLauncher.stop_seconds_until_kill).
STOP_GRACE = 5.0
_POLL = 0.02
_ID_CHARS = string.ascii_lowercase + string.digits

# Clusters to stop at interpreter exit; weak so that forgetting a Cluster is not prevented.
_atexit_clusters: weakref.WeakSet = weakref.WeakSet()
_atexit_registered = False


def _stop_clusters_at_exit():
    for cluster in list(_atexit_clusters):
        if cluster.shutdown_atexit and cluster._is_running():
            print(f"Stopping cluster {cluster!r}", file=sys.stderr)
            try:
                cluster.stop_cluster_sync()
            except Exception as e:  # exit must go on; say what is left running
                print(f"Error stopping cluster {cluster!r}: {e}", file=sys.stderr)


def find_oxipp_bin() -> str:
    """The ``oxipp`` command: ``$OXIPP_BIN``, else ``oxipp`` on PATH, else the console script
    next to this interpreter (a venv that is not activated), else a repository build."""
    env = os.environ.get("OXIPP_BIN")
    if env:
        return env
    on_path = shutil.which("oxipp")
    if on_path:
        return on_path
    candidates = [
        Path(sys.executable).parent / "oxipp",
        Path(__file__).resolve().parents[2] / "target" / "release" / "oxipp",
    ]
    for c in candidates:
        if os.access(c, os.X_OK):
            return str(c)
    raise FileNotFoundError(
        "no `oxipp` executable: set $OXIPP_BIN, put `oxipp` on PATH or install the oxipp package"
    )


def _ipython_dir() -> str:
    """$IPYTHONDIR or ~/.ipython, as IPython resolves it (without importing IPython)."""
    d = os.environ.get("IPYTHONDIR") or os.path.join(os.path.expanduser("~"), ".ipython")
    return os.path.abspath(os.path.expanduser(d))


def _default_profile_dir(profile: str = "") -> str:
    """Like stock: the named profile, else the running IPython session's, else ``default``."""
    if not profile and "IPython" in sys.modules:
        ip = sys.modules["IPython"].get_ipython()
        if ip is not None and getattr(ip, "profile_dir", None) is not None:
            return ip.profile_dir.location
    return os.path.join(_ipython_dir(), f"profile_{profile or 'default'}")


def _abbreviate_profile_dir(profile_dir: str) -> str:
    prefix = os.path.join(_ipython_dir(), "profile_")
    return profile_dir[len(prefix) :] if profile_dir.startswith(prefix) else profile_dir


def _alive(pid) -> bool:
    """Whether `pid` is a live process (a zombie, dead but not yet reaped, counts as gone)."""
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def _signal(pid: int, signum: int) -> None:
    try:
        os.kill(pid, signum)
    except (ProcessLookupError, PermissionError):
        pass


def _wait_or_kill(pids, grace: float) -> list[int]:
    """Waits up to `grace` s for `pids` to end, SIGKILLs the rest; returns the killed ones."""
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and any(_alive(p) for p in pids):
        time.sleep(_POLL)
    killed = [p for p in pids if _alive(p)]
    for p in killed:
        _signal(p, signal.SIGKILL)
    return killed


def _read_json(path) -> dict | None:
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def _check_local(kind: str, value) -> str:
    """oxipp's launcher runs local processes only: accept stock's names for that, refuse others
    with a message rather than silently launching something different."""
    name = value if isinstance(value, str) else getattr(value, "__name__", repr(value))
    if name.rsplit(".", 1)[-1].lower() in _LOCAL_LAUNCHERS:
        return "local"
    raise ValueError(
        f"{kind}={name!r}: oxipp.Cluster launches local processes only ({kind}='local'); "
        "use stock ipyparallel.Cluster for other launchers"
    )


async def _off_loop(func, *args, **kwargs):
    """Runs blocking `func` in the running loop's default executor."""
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(None, functools.partial(func, *args, **kwargs))


class ControllerState:
    """The controller as the cluster file records it (stock's launcher ``to_dict`` shape)."""

    def __init__(self, pid: int, output_file: str = "", cluster=None):
        self.pid = pid
        self.output_file = output_file
        self._cluster = cluster

    @property
    def running(self) -> bool:
        return _alive(self.pid)

    @property
    def state(self) -> str:
        """Stock launcher states: 'running' while alive, 'after' once it ended."""
        return "running" if self.running else "after"

    def to_dict(self) -> dict:
        c = self._cluster
        return {
            "cluster_id": c.cluster_id if c else "",
            "output_file": self.output_file,
            "pid": self.pid,
            "profile_dir": c.profile_dir if c else "",
            "state": self.state,
        }

    def get_output(self, remove: bool = False) -> str:
        """The controller's log so far (stock launchers offer this for debugging)."""
        try:
            return Path(self.output_file).read_text(errors="replace")
        except OSError:
            return ""

    def __repr__(self):
        return f"<ControllerState pid={self.pid} {self.state}>"


class EngineSet:
    """One set of engines started together (by one ``oxipp start`` or ``oxipp engines``)."""

    def __init__(self, engine_set_id: str, engines: dict, cluster=None):
        self.engine_set_id = engine_set_id
        # index (str, as in the file) -> {"pid": int, "output_file": str}
        self.engines = engines
        self._cluster = cluster

    @property
    def n(self) -> int:
        return len(self.engines)

    engine_count = n

    @property
    def pids(self) -> list[int]:
        return [e["pid"] for e in self.engines.values()]

    @property
    def running(self) -> bool:
        return any(_alive(p) for p in self.pids)

    @property
    def state(self) -> str:
        return "running" if self.running else "after"

    def signal(self, signum: int) -> None:
        for pid in self.pids:
            _signal(pid, signum)

    def to_dict(self) -> dict:
        c = self._cluster
        cluster_id = c.cluster_id if c else ""
        profile_dir = c.profile_dir if c else ""
        each = {
            i: {
                "cluster_id": cluster_id,
                "n": self.n,
                "output_file": e.get("output_file", ""),
                "pid": e["pid"],
                "profile_dir": profile_dir,
                "state": "running" if _alive(e["pid"]) else "after",
            }
            for i, e in self.engines.items()
        }
        return {
            "cluster_id": cluster_id,
            "n": self.n,
            "pid": -1,
            "profile_dir": profile_dir,
            "state": self.state,
            "engines": each,
        }

    @classmethod
    def from_dict(cls, engine_set_id: str, d: dict, cluster=None) -> EngineSet:
        engines = {}
        for i, e in (d.get("engines") or {}).items():
            pid = e.get("pid")
            if isinstance(pid, int) and pid > 0:
                engines[str(i)] = {"pid": pid, "output_file": e.get("output_file", "")}
        return cls(engine_set_id, engines, cluster)

    def __repr__(self):
        return f"<EngineSet {self.engine_set_id} n={self.n} {self.state}>"


class Cluster:
    """One controller and its engine sets on this machine (``ipyparallel.Cluster``'s API).

    ``with Cluster(n=2) as rc:`` starts the cluster, returns a client connected to it once the
    engines registered, and stops everything on exit. Launcher choice is limited to ``'local'``.
    Extra keywords beyond stock: ``engine_cmd`` (list: how engines start; default this
    interpreter's ``-m oxipp.engine``) and ``client_class`` (which ``Client`` ``connect_client``
    builds; default ``oxipp.Client`` if it exists, else ``ipyparallel.Client``).
    """

    def __init__(
        self,
        *,
        cluster_id: str | None = None,
        profile: str = "",
        profile_dir: str = "",
        cluster_file: str | None = None,
        n: int | None = None,
        engines="local",
        controller="local",
        controller_args=(),
        controller_ip: str = "",
        controller_location: str = "",
        delay: float = 1.0,
        engine_timeout: float = 60,
        shutdown_atexit: bool = True,
        log_level: int = logging.INFO,
        log: logging.Logger | None = None,
        engine_cmd=None,
        client_class=None,
        engine_launcher_class=None,
        controller_launcher_class=None,
        load_profile: bool = True,
        send_engines_connection_env: bool = True,
        parent=None,
        config=None,
    ):
        if engine_launcher_class is not None:
            engines = engine_launcher_class
        if controller_launcher_class is not None:
            controller = controller_launcher_class
        self.engine_launcher_class = _check_local("engines", engines)
        self.controller_launcher_class = _check_local("controller", controller)
        if cluster_id is None:
            suffix = "".join(random.choice(_ID_CHARS) for _ in range(4))
            cluster_id = f"{int(time.time())}-{suffix}"
        self.cluster_id = cluster_id
        self.profile = profile
        self.profile_dir = os.path.abspath(profile_dir) if profile_dir else ""
        if not self.profile_dir:
            self.profile_dir = _default_profile_dir(profile)
        self._cluster_file = cluster_file
        self.n = n
        self.controller_args = list(controller_args)
        self.controller_ip = controller_ip
        self.controller_location = controller_location
        self.delay = delay
        self.engine_timeout = engine_timeout
        self.shutdown_atexit = shutdown_atexit
        self.log_level = log_level
        self.engine_cmd = list(engine_cmd) if engine_cmd else None
        if self.engine_cmd and any(len(part.split()) != 1 for part in self.engine_cmd):
            # the launcher takes the command as one string and splits it on whitespace
            raise ValueError(f"engine_cmd parts must not contain whitespace: {self.engine_cmd}")
        self.client_class = client_class
        # accepted for signature compatibility; the oxipp launcher has no use for them
        self.load_profile = load_profile
        self.send_engines_connection_env = send_engines_connection_env
        self.parent = parent
        self.config = config
        if log is None:
            log = logging.getLogger(f"oxipp.cluster.{cluster_id}")
            log.setLevel(log_level)
        self.log = log
        self.controller: ControllerState | None = None
        self.engines: dict[str, EngineSet] = {}
        self._supervisor_pid = 0
        self._context_client = None

    # --- file locations -------------------------------------------------------------------

    @property
    def cluster_file(self) -> str:
        """Where this cluster is recorded ('' disables our own writes, as in stock)."""
        if self._cluster_file is not None:
            return self._cluster_file
        return self._default_cluster_file()

    @cluster_file.setter
    def cluster_file(self, value):
        self._cluster_file = value

    def _default_cluster_file(self) -> str:
        return os.path.join(self.profile_dir, "security", f"cluster-{self.cluster_id}.json")

    def _sidecar_file(self) -> str:
        return os.path.join(self.profile_dir, "pid", f"oxipp-cluster-{self.cluster_id}.json")

    def _client_file(self) -> str:
        name = f"ipcontroller-{self.cluster_id}-client.json" if self.cluster_id else None
        return os.path.join(self.profile_dir, "security", name or "ipcontroller-client.json")

    def _engine_state_file(self) -> str:
        """The controller rewrites this whenever engines (un)register: a socket-free count."""
        return os.path.join(self.profile_dir, "log", f"engines{self.cluster_id}.json")

    # --- state ----------------------------------------------------------------------------

    @property
    def engine_set(self) -> EngineSet | None:
        """The first engine set (most clusters have exactly one)."""
        return next(iter(self.engines.values()), None)

    def _is_running(self) -> bool:
        if self.controller is not None and self.controller.running:
            return True
        return any(es.running for es in self.engines.values())

    def _all_pids(self) -> list[int]:
        pids = [p for es in self.engines.values() for p in es.pids]
        if self.controller is not None:
            pids.append(self.controller.pid)
        if self._supervisor_pid:
            pids.append(self._supervisor_pid)
        return pids

    def _registered_count(self) -> int:
        d = _read_json(self._engine_state_file()) or {}
        engines = d.get("engines")
        return len(engines) if isinstance(engines, dict) else 0

    def _refresh(self) -> None:
        """Reloads controller and engine sets from what the launcher recorded; a missing file
        means the launcher stopped (or never started) the cluster."""
        d = _read_json(self._default_cluster_file())
        if d is None:
            self.controller = None
            self.engines = {}
            self._supervisor_pid = 0
        else:
            sidecar = _read_json(self._sidecar_file())
            if sidecar is not None:
                d["oxipp"] = sidecar
            self._load_state(d)
        self._mirror_cluster_file()

    def _load_state(self, d: dict) -> None:
        """Takes controller/engines from a cluster dict, dropping processes that are gone
        (stock's launchers refuse to load a dead pid the same way)."""
        state = (d.get("controller") or {}).get("state") or {}
        pid = state.get("pid")
        self.controller = None
        if isinstance(pid, int) and _alive(pid):
            self.controller = ControllerState(pid, state.get("output_file", ""), self)
        self.engines = {}
        for set_id, s in ((d.get("engines") or {}).get("sets") or {}).items():
            es = EngineSet.from_dict(set_id, s, self)
            es.engines = {i: e for i, e in es.engines.items() if _alive(e["pid"])}
            if es.engines:
                self.engines[set_id] = es
        sup = (d.get("oxipp") or {}).get("supervisor_pid", 0)
        self._supervisor_pid = sup if isinstance(sup, int) and _alive(sup) else 0

    def _mirror_cluster_file(self) -> None:
        """A custom ``cluster_file`` gets a copy of the state (the launcher writes only the
        default path)."""
        mine = self.cluster_file
        if mine and os.path.abspath(mine) != self._default_cluster_file():
            self.update_cluster_file()

    # --- stock's cluster file methods -----------------------------------------------------

    def to_dict(self) -> dict:
        """The cluster in stock ``Cluster.to_dict()`` shape (loadable by stock tools too)."""
        d = {
            "cluster": {
                "cluster_id": self.cluster_id,
                "controller_args": list(self.controller_args),
                "controller_ip": self.controller_ip,
                "controller_location": self.controller_location,
                "delay": self.delay,
                "n": self.n,
                "profile_dir": self.profile_dir,
                "class": STOCK_CLASS,
            }
        }
        if self.controller is not None and self.controller.running:
            d["controller"] = {"class": "local", "state": self.controller.to_dict()}
        d["engines"] = {
            "class": "local",
            "sets": {k: es.to_dict() for k, es in self.engines.items() if es.running},
        }
        if self._supervisor_pid:
            d["oxipp"] = {"supervisor_pid": self._supervisor_pid}
        return d

    @classmethod
    def from_dict(cls, d: dict, **kwargs) -> Cluster:
        """A Cluster for serialized state; like stock, it does not stop the cluster at exit
        unless told to (``shutdown_atexit=True``)."""
        info = d["cluster"]
        klass = info.get("class")
        if klass and klass not in _OUR_CLASSES:
            raise ValueError(f"cluster class {klass!r} is not one oxipp.Cluster can load")
        kwargs.setdefault("shutdown_atexit", False)
        for key in (
            "cluster_id",
            "profile_dir",
            "controller_args",
            "controller_ip",
            "controller_location",
            "delay",
            "n",
        ):
            if key in info:
                kwargs.setdefault(key, info[key])
        self = cls(**kwargs)
        self._load_state(d)
        if self.shutdown_atexit and self._is_running():
            self._register_atexit()
        return self

    @classmethod
    def from_file(
        cls, cluster_file=None, *, profile=None, profile_dir=None, cluster_id="", **kwargs
    ) -> Cluster:
        """Loads a cluster from its file: a path, or profile/profile_dir plus cluster_id (with
        no arguments: the default cluster of the default profile, as ``oxipp start`` makes)."""
        if cluster_file is None:
            where = {"cluster_id": cluster_id}
            if profile is not None:
                where["profile"] = profile
            if profile_dir is not None:
                where["profile_dir"] = profile_dir
            cluster_file = cls(shutdown_atexit=False, **where).cluster_file
        kwargs.setdefault("cluster_file", cluster_file)
        with open(cluster_file) as f:
            d = json.load(f)
        # the oxipp sidecar beside a file in its usual place knows the supervisor
        cid = os.path.basename(cluster_file)[len("cluster-") : -len(".json")]
        prof = os.path.dirname(os.path.dirname(os.path.abspath(cluster_file)))
        sidecar = _read_json(os.path.join(prof, "pid", f"oxipp-cluster-{cid}.json"))
        if sidecar is not None:
            d["oxipp"] = sidecar
        return cls.from_dict(d, **kwargs)

    def write_cluster_file(self) -> None:
        os.makedirs(os.path.dirname(self.cluster_file), exist_ok=True)
        d = self.to_dict()
        d.pop("oxipp", None)  # the sidecar holds it
        with open(self.cluster_file, "w") as f:
            json.dump(d, f, indent=1)

    def remove_cluster_file(self) -> None:
        try:
            os.remove(self.cluster_file)
        except FileNotFoundError:
            pass

    def update_cluster_file(self) -> None:
        """Writes the cluster file while something runs, removes it once nothing does."""
        if not self.cluster_file:
            return
        if self._is_running():
            self.write_cluster_file()
        else:
            self.remove_cluster_file()

    # --- running the launcher -------------------------------------------------------------

    def _where(self) -> list[str]:
        return [f"--profile-dir={self.profile_dir}", f"--cluster-id={self.cluster_id}"]

    def _engine_cmd(self) -> str:
        cmd = self.engine_cmd or [sys.executable, "-m", "oxipp.engine"]
        return " ".join(cmd)

    def _oxipp(self, *args: str, timeout: float) -> subprocess.CompletedProcess:
        argv = [find_oxipp_bin(), *args]
        env = dict(os.environ, OXIPP_PYTHON=sys.executable)
        # When `oxipp` is the console script, the launcher re-runs itself as `<python> -m oxipp`
        # with the interpreter's resolved path, which in a venv is the base Python: without
        # this it could not import oxipp.
        here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [here, env.get("PYTHONPATH")]))
        self.log.debug("running %s", argv)
        return subprocess.run(
            argv, capture_output=True, text=True, timeout=timeout, env=env, stdin=subprocess.DEVNULL
        )

    def _launch(self, what: str, *args: str) -> None:
        """Runs a launcher command that waits for engines; raises with its report on failure
        (the state is reloaded either way, so a half-started cluster can still be stopped)."""
        try:
            r = self._oxipp(*args, timeout=float(self.engine_timeout) + 60)
        finally:
            self._refresh()
        if r.returncode != 0:
            report = (r.stderr or r.stdout).strip()
            timed_out = "registered within" in report or "registered after" in report
            exc = TimeoutError if timed_out else RuntimeError
            raise exc(f"{what} failed (oxipp exit {r.returncode}):\n{report}")
        self.log.info("%s: %s", what, (r.stdout.strip().splitlines() or [""])[-1])

    def _controller_args(self) -> list[str]:
        args = []
        if self.controller_ip:
            args.append(f"--ip={self.controller_ip}")
        if self.controller_location:
            args.append(f"--location={self.controller_location}")
        return args + list(self.controller_args)

    def _start(self, n: int) -> None:
        """``oxipp start``: the supervisor, the controller and `n` engines in one command."""
        self._refresh()
        if self.controller is not None:
            raise RuntimeError("controller is already running. Call stop_controller() first.")
        self._register_atexit()
        args = ["start", f"-n={n}", "--daemonize", *self._where()]
        args += [f"--engine-cmd={self._engine_cmd()}", f"--engine-timeout={self.engine_timeout}"]
        extra = self._controller_args()
        self._launch("starting the cluster", *args, *(["--", *extra] if extra else []))

    def _register_atexit(self) -> None:
        global _atexit_registered
        if not self.shutdown_atexit:
            return
        _atexit_clusters.add(self)
        if not _atexit_registered:
            atexit.register(_stop_clusters_at_exit)
            _atexit_registered = True

    def _default_n(self, n):
        if n is None:
            n = self.n
        return (os.cpu_count() or 1) if n is None else n

    # --- blocking API (the implementations) -------------------------------------------------

    def start_controller_sync(self, **kwargs) -> None:
        """Starts the controller (and the supervisor that watches the cluster), no engines."""
        if kwargs:
            self.log.debug("ignoring controller launcher options %s", kwargs)
        self._start(0)

    def start_engines_sync(self, n=None, engine_set_id=None, **kwargs) -> str:
        """Adds a set of `n` engines (default ``self.n``, else one per CPU), returns once they
        registered, and returns the new set's id (chosen by the launcher: `engine_set_id` is
        not honoured)."""
        n = self._default_n(n)
        self._refresh()
        if self.controller is None:
            raise RuntimeError("no running controller: call start_controller() first")
        before = set(self.engines)
        args = ["engines", f"-n={n}", *self._where(), f"--engine-cmd={self._engine_cmd()}"]
        self._launch(f"starting {n} engine(s)", *args, f"--timeout={self.engine_timeout}")
        new = [k for k in self.engines if k not in before]
        return new[-1] if new else ""

    def start_cluster_sync(self, n=None) -> Cluster:
        """Starts the controller and `n` engines (or only engines if the controller runs);
        returns self for chaining."""
        n = self._default_n(n)
        self._refresh()
        if self.controller is None:
            self._start(n)
        elif n:
            self.start_engines_sync(n)
        return self

    def connect_client_sync(self, **client_kwargs):
        """A client connected to this cluster's controller."""
        path = self._client_file()
        if not os.path.exists(path):
            raise RuntimeError(f"no connection file {path}: is the controller running?")
        client_class = self.client_class or _default_client_class()
        if client_class.__module__.split(".")[0] == "ipyparallel":
            # stock's Client only takes a stock Cluster as `cluster`; keep us alive beside it
            where = {"profile_dir": self.profile_dir, "cluster_id": self.cluster_id}
            client = client_class(path, **where, **client_kwargs)
            client._oxipp_cluster = self
            return client
        return client_class(connection_info=path, cluster=self, **client_kwargs)

    def _wanted(self, n) -> int:
        return n if n is not None else sum(es.n for es in self.engines.values())

    def start_and_connect_sync(self, n=None, activate=False):
        """Starts the cluster, connects a client and waits until the engines registered."""
        n = self.n if n is None else n
        self.start_cluster_sync(n)
        client = self.connect_client_sync()
        want = self._wanted(n)
        deadline = time.monotonic() + self.engine_timeout
        while len(client.ids) < want:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{len(client.ids)} of {want} engines registered")
            time.sleep(0.05)
        return _activated(client, activate)

    def stop_engines_sync(self, engine_set_id=None) -> None:
        """Stops one engine set, or all: SIGTERM, SIGKILL after 5 s, then waits (briefly) for the
        controller to forget them so that engines started next are counted correctly."""
        self._refresh()
        ids = list(self.engines) if engine_set_id is None else [engine_set_id]
        sets = [self.engines[i] for i in ids if i in self.engines]
        if engine_set_id is not None and not sets:
            raise KeyError(engine_set_id)
        pids = [p for es in sets for p in es.pids]
        if not pids:
            return
        self.log.info("Stopping engine(s): %s", ids)
        registered = self._registered_count()
        for p in pids:
            _signal(p, signal.SIGTERM)
        killed = _wait_or_kill(pids, STOP_GRACE)
        if killed:
            self.log.warning("engines %s did not stop within %s s; killed", killed, STOP_GRACE)
        target = max(0, registered - len(pids))
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and (
            self._registered_count() > target or self._file_lists_any(pids)
        ):
            time.sleep(_POLL)
        self._refresh()
        for i in ids:
            self.engines.pop(i, None)

    def _file_lists_any(self, pids) -> bool:
        """Whether the supervisor still records any of `pids` (it drops dead engines)."""
        if not self._supervisor_pid or not _alive(self._supervisor_pid):
            return False
        d = _read_json(self._default_cluster_file()) or {}
        sets = ((d.get("engines") or {}).get("sets")) or {}
        listed = {e.get("pid") for s in sets.values() for e in (s.get("engines") or {}).values()}
        return bool(listed & set(pids))

    def restart_engines_sync(self, engine_set_id=None) -> None:
        """Replaces engine sets by as many new engines (new processes, new engine ids)."""
        self._refresh()
        ids = list(self.engines) if engine_set_id is None else [engine_set_id]
        for i in ids:
            n = self.engines[i].n
            self.stop_engines_sync(i)
            self.start_engines_sync(n)

    def signal_engines_sync(self, signum, engine_set_id=None) -> None:
        """Sends `signum` to every engine of one set, or of all sets."""
        self._refresh()
        ids = list(self.engines) if engine_set_id is None else [engine_set_id]
        for i in ids:
            self.log.info("Sending signal %s to engine(s) %s", signum, i)
            self.engines[i].signal(signum)

    def stop_controller_sync(self) -> None:
        """Stops the controller. The oxipp supervisor then stops the engines too (stock would
        leave them to notice the lost heartbeat and exit on their own)."""
        self._refresh()
        if self._supervisor_pid or self.controller is not None:
            self._stop_all()
        self.controller = None

    def stop_cluster_sync(self) -> None:
        """Stops the engines and the controller and removes the cluster's files."""
        self._refresh()
        if self._supervisor_pid or self.controller is not None or self.engines:
            self._stop_all()

    def _stop_all(self) -> None:
        pids = self._all_pids()
        r = self._oxipp("stop", *self._where(), f"--timeout={STOP_GRACE}", timeout=60)
        if r.returncode != 0:
            # no file for the launcher to act on: signal what we know directly
            self.log.debug("oxipp stop: %s", r.stderr.strip())
            for p in pids:
                _signal(p, signal.SIGTERM)
        _wait_or_kill(pids, STOP_GRACE)
        for path in (self._default_cluster_file(), self._sidecar_file()):
            try:
                os.remove(path)
            except FileNotFoundError:
                pass
        self.controller = None
        self.engines = {}
        self._supervisor_pid = 0
        if self.cluster_file:
            self.remove_cluster_file()

    # --- async API ----------------------------------------------------------------------

    async def start_controller(self, **kwargs) -> None:
        """Starts the controller, no engines."""
        return await _off_loop(self.start_controller_sync, **kwargs)

    async def start_engines(self, n=None, engine_set_id=None, **kwargs) -> str:
        """Adds `n` engines; returns the new engine set id."""
        return await _off_loop(self.start_engines_sync, n, engine_set_id, **kwargs)

    async def start_cluster(self, n=None) -> Cluster:
        """Starts the controller and `n` engines; returns self."""
        return await _off_loop(self.start_cluster_sync, n)

    async def connect_client(self, **client_kwargs):
        """A client connected to this cluster (made on the calling thread: clients may hold
        thread-affine sockets)."""
        return self.connect_client_sync(**client_kwargs)

    async def start_and_connect(self, n=None, activate=False):
        """Starts the cluster, connects a client, waits for the engines; returns the client."""
        n = self.n if n is None else n
        await self.start_cluster(n)
        client = await self.connect_client()
        want = self._wanted(n)
        deadline = time.monotonic() + self.engine_timeout
        while len(client.ids) < want:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{len(client.ids)} of {want} engines registered")
            await asyncio.sleep(0.05)
        return _activated(client, activate)

    async def stop_engines(self, engine_set_id=None) -> None:
        """Stops one engine set, or all."""
        return await _off_loop(self.stop_engines_sync, engine_set_id)

    async def restart_engines(self, engine_set_id=None) -> None:
        """Replaces one engine set, or all, by fresh engines."""
        return await _off_loop(self.restart_engines_sync, engine_set_id)

    async def signal_engines(self, signum, engine_set_id=None) -> None:
        """Signals the engines of one set, or of all sets."""
        return await _off_loop(self.signal_engines_sync, signum, engine_set_id)

    async def stop_controller(self) -> None:
        """Stops the controller (and, through the supervisor, the engines)."""
        return await _off_loop(self.stop_controller_sync)

    async def stop_cluster(self) -> None:
        """Stops everything."""
        return await _off_loop(self.stop_cluster_sync)

    async def stop_engine(self, engine_id):
        raise NotImplementedError("How do we find an engine by id?")

    async def restart_engine(self, engine_id):
        raise NotImplementedError("How do we find an engine by id?")

    async def signal_engine(self, signum, engine_id):
        raise NotImplementedError("How do we find an engine by id?")

    # --- context managers -----------------------------------------------------------------

    def __enter__(self):
        self._context_client = self.start_and_connect_sync()
        return self._context_client

    def __exit__(self, *exc):
        self._close_context_client()
        self.stop_cluster_sync()

    async def __aenter__(self):
        self._context_client = await self.start_and_connect()
        return self._context_client

    async def __aexit__(self, *exc):
        self._close_context_client()
        await self.stop_cluster()

    def _close_context_client(self):
        if self._context_client is not None:
            self._context_client.close()
            self._context_client = None

    def __del__(self):
        # like stock: a Cluster that is dropped while running stops its processes
        try:
            if self.shutdown_atexit and self._is_running():
                self.stop_cluster_sync()
        except Exception:
            pass

    def __repr__(self):
        fields = {"cluster_id": repr(self.cluster_id)}
        prefix = os.path.join(_ipython_dir(), "profile_")
        if self.profile_dir.startswith(prefix):
            fields["profile"] = repr(self.profile_dir[len(prefix) :])
        else:
            home = os.path.expanduser("~")
            shown = self.profile_dir
            if shown.startswith(home + os.sep):
                shown = "~" + shown[len(home) :]
            fields["profile_dir"] = repr(shown)
        if self.controller is not None:
            fields["controller"] = f"<{self.controller.state}>"
        if self.engines:
            fields["engine_sets"] = list(self.engines)
        inner = ", ".join(f"{k}={v}" for k, v in fields.items())
        return f"<{type(self).__name__}({inner})>"


def _default_client_class():
    """oxipp's own Client once it exists, else stock's (wire-compatible with our controller)."""
    try:
        from oxipp import Client  # type: ignore[attr-defined]
    except ImportError:
        try:
            from oxipp.client import Client  # type: ignore[import-not-found]
        except ImportError:
            from ipyparallel import Client
    return Client


def _activated(client, activate: bool):
    """Stock's `activate=True`: a blocking view on all engines registered as %px's target."""
    if activate:
        view = client[:]
        view.block = True
        view.activate()
    return client


class ClusterManager:
    """Clusters by key ``<profile>:<cluster id>``, loaded from cluster files on disk."""

    def __init__(self, *, log: logging.Logger | None = None, **kwargs):
        self.log = log or logging.getLogger("oxipp.cluster")
        self.clusters: dict[str, Cluster] = {}

    @staticmethod
    def _cluster_key(cluster: Cluster) -> str:
        return f"{_abbreviate_profile_dir(cluster.profile_dir)}:{cluster.cluster_id}"

    @staticmethod
    def _cluster_files_in_profile_dir(profile_dir: str) -> list[str]:
        return glob.glob(os.path.join(profile_dir, "security", "cluster-*.json"))

    def load_clusters(
        self,
        *,
        profile_dirs=None,
        profile_dir=None,
        profiles=None,
        profile=None,
        init_default_clusters=False,
        **kwargs,
    ) -> dict[str, Cluster]:
        """Adds the clusters recorded on disk (default: in every IPython profile) and drops
        loaded ones that stopped."""
        for key, cluster in list(self.clusters.items()):
            if cluster.controller is not None and not cluster._is_running():
                self.clusters.pop(key)
        if profile_dirs is None:
            if profile_dir is not None:
                profile_dirs = [profile_dir]
            elif profiles is not None or profile is not None:
                names = profiles if profiles is not None else [profile]
                profile_dirs = [os.path.join(_ipython_dir(), f"profile_{p}") for p in names]
            else:
                root = _ipython_dir()
                profile_dirs = sorted(glob.glob(os.path.join(root, "profile_*")))
        loaded = {c.cluster_file for c in self.clusters.values()}
        for pd in profile_dirs:
            files = self._cluster_files_in_profile_dir(pd)
            if init_default_clusters and not files:
                c = Cluster(profile_dir=pd, cluster_id="", shutdown_atexit=False)
                self.clusters.setdefault(self._cluster_key(c), c)
            for f in files:
                if f in loaded:
                    continue
                try:
                    c = Cluster.from_file(f)
                except Exception as e:
                    self.log.warning("Failed to load cluster from %s: %s", f, e)
                    continue
                self.clusters[self._cluster_key(c)] = c
        return self.clusters

    def new_cluster(self, **kwargs) -> tuple[str, Cluster]:
        cluster = Cluster(**kwargs)
        key = self._cluster_key(cluster)
        if key in self.clusters:
            raise KeyError(f"Cluster {key} already exists!")
        self.clusters[key] = cluster
        return key, cluster

    def get_cluster(self, cluster_id: str) -> Cluster:
        return self.clusters[cluster_id]

    def remove_cluster(self, cluster_id: str) -> None:
        del self.clusters[cluster_id]
