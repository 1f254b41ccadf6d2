"""The ipengine command line, as stock launchers and the stock test suite pass it.

Parsed by hand rather than with traitlets: the engine only needs a dozen settings, and the rule
is "accept every flag stock ``ipengine`` accepts, warn about what we ignore, never crash".
"""

from __future__ import annotations

import ast
import logging
import os
from dataclasses import dataclass, field

log = logging.getLogger("oxipp.engine")

# --alias -> (field, kind): kinds are str, float, int, level
ALIASES = {
    "profile": ("profile", str),
    "profile-dir": ("profile_dir", str),
    "ipython-dir": ("ipython_dir", str),
    "cluster-id": ("cluster_id", str),
    "file": ("url_file", str),
    "url": ("registration_url", str),
    "timeout": ("timeout", float),
    "log-level": ("log_level", "level"),
    "location": ("location", str),
    "work-dir": ("work_dir", str),
    "ssh": ("sshserver", str),
    "sshkey": ("sshkey", str),
    "c": ("startup_command", str),
    "s": ("startup_script", str),
    "log-url": ("log_url", str),
    "config": ("config_file", str),
    "ident": ("session_id", str),
    "user": ("username", str),
    "keyfile": ("keyfile", str),
    "signature-scheme": ("signature_scheme", str),
}
FLAGS = {
    "mpi": ("use_mpi", True),
    "debug": ("log_level", logging.DEBUG),
    "quiet": ("log_level", logging.CRITICAL),
    "log-to-file": ("log_to_file", True),
    "secure": (None, None),
    "no-secure": (None, None),
    "init": (None, None),
    # oxipp: forward what is written to fds 1/2 (os.system, C extensions) to clients, as stock
    # engines' ipykernel OutStream(watchfd=True) does; on unless turned off
    "capture-fd": ("capture_fd", True),
    "no-capture-fd": ("capture_fd", False),
}
# --Class.trait=value: the traits we honour (others of these classes are accepted and ignored)
TRAITS = {
    "IPEngine.url_file": "url_file",
    "IPEngine.registration_url": "registration_url",
    "IPEngine.wait_for_url_file": "wait_for_url_file",
    "IPEngine.timeout": "timeout",
    "IPEngine.max_heartbeat_misses": "max_heartbeat_misses",
    "IPEngine.use_mpi": "use_mpi",
    "IPEngine.id": "requested_id",
    "IPEngine.location": "location",
    "IPEngine.mpi_registration_delay": "mpi_registration_delay",
    "IPEngine.connection_info_env": "connection_info_env",
    "IPEngine.enable_nanny": "enable_nanny",
    "IPEngine.startup_command": "startup_command",
    "IPEngine.startup_script": "startup_script",
    "IPEngine.log_level": "log_level",
    "Application.log_level": "log_level",
    "BaseParallelApplication.cluster_id": "cluster_id",
    "BaseParallelApplication.work_dir": "work_dir",
    "BaseIPythonApplication.profile": "profile",
    "BaseIPythonApplication.ipython_dir": "ipython_dir",
    "ProfileDir.location": "profile_dir",
    # ipykernel's switch for the same thing (IPKernelApp.capture_fd_output)
    "IPKernelApp.capture_fd_output": "capture_fd",
    "Session.key": "session_key",
    "Session.signature_scheme": "signature_scheme",
}
KNOWN_CLASSES = {
    "IPEngine",
    "Application",
    "BaseParallelApplication",
    "BaseIPythonApplication",
    "ProfileDir",
    "Session",
    "Kernel",
    "IPythonKernel",
    "IPKernelApp",
    "InteractiveShell",
    "ZMQInteractiveShell",
    "EngineFactory",
    "MPI",
}


#: ``0``/``false``/``no``/``off`` turns fd capture off (``--capture-fd`` overrides)
CAPTURE_FD_ENV = "OXIPP_ENGINE_CAPTURE_FD"


def _capture_fd_default() -> bool:
    return os.environ.get(CAPTURE_FD_ENV, "1").strip().lower() not in ("0", "false", "no", "off")


@dataclass
class EngineOptions:
    profile: str | None = None
    profile_dir: str | None = None
    ipython_dir: str | None = None
    cluster_id: str = field(default_factory=lambda: os.environ.get("IPP_CLUSTER_ID", ""))
    url_file: str | None = None
    registration_url: str | None = None
    wait_for_url_file: float = 10.0
    timeout: float = 5.0
    max_heartbeat_misses: int = 50
    log_level: int = logging.WARNING
    use_mpi: bool = False
    requested_id: int | None = None
    mpi_registration_delay: float = 0.02
    location: str | None = None
    work_dir: str | None = None
    connection_info_env: str | None = None
    session_key: str | None = None
    signature_scheme: str | None = None
    startup_command: str | None = None
    startup_script: str | None = None
    sshserver: str | None = None
    sshkey: str | None = None
    log_url: str | None = None
    log_to_file: bool = False
    config_file: str | None = None
    session_id: str | None = None
    username: str | None = None
    keyfile: str | None = None
    #: start a nanny process that reports this engine's exit to the controller (stock's
    #: ``IPEngine.enable_nanny``); None: only when the controller is a stock one, which would
    #: otherwise notice the exit only by missed heartbeats (``oxipp.engine.nanny``)
    enable_nanny: bool | None = None
    #: redirect fds 1/2 into pipes whose output reaches clients (docs/engine-runtime.md)
    capture_fd: bool = field(default_factory=_capture_fd_default)
    #: ``--InteractiveShell.<trait>=value`` (and ZMQInteractiveShell's): applied to the engine's
    #: IPython shell, e.g. ``colors=nocolor``, which the stock test suite passes
    shell_config: dict = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)


def parse_level(value: object) -> int:
    """A logging level from a number or a name (``20``, ``"INFO"``, ``"debug"``)."""
    if isinstance(value, int):
        return value
    text = str(value).strip()
    if text.lstrip("-").isdigit():
        return int(text)
    level = logging.getLevelName(text.upper())
    if isinstance(level, int):
        return level
    raise ValueError(f"unknown log level {value!r}")


def _literal(text: str) -> object:
    """traitlets-style value: a Python literal if it is one, else the string itself."""
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def _convert(opts: EngineOptions, name: str, value: object) -> None:
    current = getattr(opts, name)
    if name == "log_level":
        value = parse_level(value)
    elif name in ("timeout", "wait_for_url_file", "mpi_registration_delay"):
        value = float(value)
    elif name in ("max_heartbeat_misses", "requested_id"):
        value = None if value is None else int(value)
    elif name in ("use_mpi", "capture_fd", "enable_nanny"):
        value = value if isinstance(value, bool) else str(value).lower() in ("1", "true", "yes")
    elif isinstance(current, str) or current is None:
        value = None if value is None else str(value)
    setattr(opts, name, value)


def parse_args(argv: list[str]) -> EngineOptions:
    """Parses ipengine arguments; unknown ones become warnings in ``opts.warnings``."""
    opts = EngineOptions()
    i = 0
    while i < len(argv):
        arg = argv[i]
        i += 1
        if not arg.startswith("-") or arg in ("-", "--"):
            opts.warnings.append(f"ignoring positional argument {arg!r}")
            continue
        body = arg.lstrip("-")
        name, eq, value = body.partition("=")
        try:
            if "." in name:
                if not eq:
                    if i < len(argv):
                        value, i = argv[i], i + 1
                    else:
                        raise ValueError(f"{arg} needs a value")
                cls = name.split(".", 1)[0]
                if name in TRAITS:
                    _convert(opts, TRAITS[name], _literal(value))
                elif cls in ("InteractiveShell", "ZMQInteractiveShell"):
                    opts.shell_config[name.split(".", 1)[1]] = _literal(value)
                elif cls in KNOWN_CLASSES:
                    opts.warnings.append(f"--{name} is accepted but has no effect in oxipp")
                else:
                    opts.warnings.append(f"unknown option --{name} ignored")
            elif name in FLAGS and not eq:
                target, flag_value = FLAGS[name]
                if target is not None:
                    setattr(opts, target, flag_value)
            elif name in ALIASES:
                if not eq:
                    if i < len(argv):
                        value, i = argv[i], i + 1
                    else:
                        raise ValueError(f"{arg} needs a value")
                _convert(opts, ALIASES[name][0], value)
            else:
                opts.warnings.append(f"unknown option {arg} ignored")
        except (ValueError, TypeError) as e:
            opts.warnings.append(f"bad value for {arg}: {e}")
    return opts
