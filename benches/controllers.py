"""The controllers under comparison, each started on a fresh temporary profile directory.

Both are started with the same stock command-line flags, so any difference in the table comes
from the controller and not from its configuration.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from procs import Group

REPO = Path(__file__).resolve().parent.parent
OXIPP_BIN = REPO / "target" / "release" / "oxipp"
START_TIMEOUT = 30.0


class ControllerError(RuntimeError):
    """A controller could not be started or used; the message says why."""


@dataclass
class Kind:
    name: str
    python: str
    # The oxipp executable (another build can be compared with --oxipp-bin).
    binary: Path = OXIPP_BIN

    @property
    def engine_module(self) -> str:
        """Which engines part (a) starts: `oxipp-engines` is the oxipp controller with oxipp
        engines; the other two run stock engines."""
        return "oxipp.engine" if self.name == "oxipp-engines" else "ipyparallel.engine"

    def argv(self, profile_dir: Path, ping_ms: int, extra: list[str]) -> list[str]:
        flags = [f"--profile-dir={profile_dir}", f"--ping={ping_ms}", *extra]
        if self.name == "stock":
            return [self.python, "-m", "ipyparallel.controller", *flags]
        return [str(self.binary), "controller", *flags]

    def unavailable(self) -> str | None:
        """Why this controller cannot run here, or None if it can."""
        if self.name == "stock":
            argv = [self.python, "-c", "import ipyparallel; print(ipyparallel.__version__)"]
        else:
            if not self.binary.exists():
                return f"{self.binary} not found (cargo build --release -p oxipp-cluster)"
            argv = [str(self.binary), "controller", "--version"]
        try:
            r = subprocess.run(argv, check=False, capture_output=True, timeout=20, text=True)
        except (OSError, subprocess.TimeoutExpired) as e:
            return f"{' '.join(argv[:3])}: {e}"
        if r.returncode != 0:
            tail = (r.stderr or r.stdout).strip().splitlines()[-1:] or [""]
            return f"`{' '.join(argv[1:])}` exited {r.returncode}: {tail[0][:200]}"
        return None

    def version(self) -> str:
        """What ran: the version string, plus for oxipp the build time of the binary (the
        version is the stock one it is compatible with, so it says nothing about the build)."""
        if self.name != "stock":
            built = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(self.binary.stat().st_mtime))
            return f"{self._version_output()} (binary built {built}, repo at {git_head()})"
        return self._version_output()

    def _version_output(self) -> str:
        if self.name == "stock":
            argv = [self.python, "-c", "import ipyparallel; print(ipyparallel.__version__)"]
        else:
            argv = [str(self.binary), "controller", "--version"]
        try:
            r = subprocess.run(argv, check=False, capture_output=True, timeout=20, text=True)
            return r.stdout.strip()
        except (OSError, subprocess.TimeoutExpired):
            return "?"


def git_head() -> str:
    try:
        r = subprocess.run(
            ["git", "-C", str(REPO), "describe", "--always", "--dirty"],
            check=False,
            capture_output=True,
            text=True,
            timeout=10,
        )
        return r.stdout.strip() or "?"
    except (OSError, subprocess.TimeoutExpired):
        return "?"


class Controller:
    """A running controller. Use as a context manager: the profile directory and every process
    of the controller's group are removed on exit."""

    def __init__(self, kind: Kind, ping_ms: int, extra: list[str], keep: bool = False) -> None:
        self.kind = kind
        self.profile_dir = Path(tempfile.mkdtemp(prefix=f"oxipp-bench-{kind.name}-"))
        self.keep = keep
        self.log_path = self.profile_dir / "controller.log"
        self.group = Group(kind.argv(self.profile_dir, ping_ms, extra), self.log_path)
        self.pid = self.group.pid
        try:
            self._wait_ready()
        except BaseException:
            self.close()
            raise

    def _wait_ready(self) -> None:
        """Ready = both connection files parse and every port in them accepts connections
        (the stock controller writes the files before its scheduler children have bound)."""
        security = self.profile_dir / "security"
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if not self.group.alive():
                raise ControllerError(f"{self.kind.name} controller exited: {self.log_tail()}")
            try:
                client = json.loads((security / "ipcontroller-client.json").read_text())
                engine = json.loads((security / "ipcontroller-engine.json").read_text())
            except (OSError, ValueError):
                time.sleep(0.1)
                continue
            if all(_listening(p) for p in _ports(client) + _ports(engine)):
                return
            time.sleep(0.1)
        raise ControllerError(
            f"{self.kind.name} controller not ready after {START_TIMEOUT:.0f} s: {self.log_tail()}"
        )

    def log_tail(self, lines: int = 3) -> str:
        try:
            text = self.log_path.read_text(errors="replace").strip().splitlines()
        except OSError:
            return "(no log)"
        return " | ".join(text[-lines:]) or "(empty log)"

    def close(self) -> None:
        self.group.stop()
        if not self.keep:
            shutil.rmtree(self.profile_dir, ignore_errors=True)

    def __enter__(self) -> Controller:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _ports(info: dict) -> list[int]:
    keys = ("registration", "control", "mux", "task", "iopub", "notification", "hb_ping", "hb_pong")
    ports = [info[k] for k in keys if isinstance(info.get(k), int)]
    bcast = info.get("broadcast")
    ports += bcast if isinstance(bcast, list) else [bcast] if isinstance(bcast, int) else []
    return ports


def _listening(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False
