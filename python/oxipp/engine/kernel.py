"""``bind_kernel()``: the engine also serves as a Jupyter kernel, so ``jupyter console
--existing kernel-<pid>.json`` (or any jupyter_client) runs code in the engine's namespace.

The Rust runtime opens and serves the kernel sockets (``EngineRuntime.bind_kernel``); this
module writes the connection file where Jupyter looks for it and provides the ``%qtconsole``
and ``%connect_info`` magics that a stock engine's kernel has.
"""

from __future__ import annotations

import atexit
import json
import os
import subprocess
import sys

#: set by oxipp.engine.app once registered: (EngineRuntime, engine connection info dict)
_engine: tuple | None = None
_connection_file: str | None = None


def set_engine(rt, info: dict) -> None:
    global _engine
    _engine = (rt, info)


def in_engine() -> bool:
    return _engine is not None


def _runtime_dir() -> str:
    try:
        from jupyter_core.paths import jupyter_runtime_dir

        path = jupyter_runtime_dir()
    except ImportError:  # jupyter_core is optional for engines
        path = os.path.join(os.path.expanduser("~"), ".local", "share", "jupyter", "runtime")
    os.makedirs(path, mode=0o700, exist_ok=True)
    return path


def bind_kernel(ip: str = "127.0.0.1", **_ignored) -> str:
    """Serves this engine as a Jupyter kernel; returns the connection file's path. Idempotent.

    The kernel signs with the engine's own key, like stock ``bind_kernel``."""
    global _connection_file
    if _engine is None:
        raise RuntimeError("bind_kernel must be called from an oxipp engine")
    if _connection_file is not None:
        return _connection_file
    rt, info = _engine
    ports = rt.bind_kernel(ip)
    content = {
        **ports,
        "ip": ip,
        "key": info.get("key", ""),
        "transport": "tcp",
        "signature_scheme": info.get("signature_scheme", "hmac-sha256"),
        "kernel_name": "",
    }
    path = os.path.join(_runtime_dir(), f"kernel-{os.getpid()}.json")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(content, f, indent=1)
    _connection_file = path
    atexit.register(_remove_connection_file, path)  # as ipykernel does at exit
    print(
        f"To connect another client to this kernel, use:\n    --existing {os.path.basename(path)}",
        flush=True,
    )
    return path


def _remove_connection_file(path: str) -> None:
    try:
        os.remove(path)
    except OSError:
        pass


def connection_file() -> str | None:
    return _connection_file


def register_magics(shell) -> None:
    """``%connect_info`` and ``%qtconsole``, as ipykernel's shell has them."""

    def connect_info(line=""):
        path = bind_kernel()
        with open(path) as f:
            print(f.read())
        print(f"Connect with: jupyter console --existing {os.path.basename(path)}")

    def qtconsole(line=""):
        """Starts a Qt console attached to this engine (in the background, as ipykernel does;
        without the qtconsole package that process fails on its own, the engine goes on)."""
        path = bind_kernel()
        argv = [sys.executable, "-m", "qtconsole", "--existing", path, *line.split()]
        subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )

    shell.register_magic_function(connect_info, "line", "connect_info")
    shell.register_magic_function(qtconsole, "line", "qtconsole")
