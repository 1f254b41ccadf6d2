"""Real clusters for end-to-end tests: our controller plus stock or oxipp engines on a private
profile directory, with each process's output in a log file beside it."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

# How each kind of engine is started (the profile dir and any extra flags are appended).
ENGINE_COMMANDS = {
    "stock": [sys.executable, "-m", "ipyparallel.engine"],
    "oxipp": [sys.executable, "-m", "oxipp.engine"],
}


def wait_for(predicate, timeout: float, what: str):
    """Polls `predicate` until it returns something truthy, which is returned."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


class Cluster:
    """Our controller plus engines of one kind (`stock` or `oxipp`) on `profile_dir`."""

    def __init__(self, oxipp_bin: Path, profile_dir: Path, engine_kind: str = "stock"):
        self.bin = oxipp_bin
        self.profile_dir = profile_dir
        self.engine_kind = engine_kind
        self.controller: subprocess.Popen | None = None
        self.engines: list[subprocess.Popen] = []

    @property
    def client_file(self) -> Path:
        return self.profile_dir / "security" / "ipcontroller-client.json"

    @property
    def engine_file(self) -> Path:
        return self.profile_dir / "security" / "ipcontroller-engine.json"

    def start_controller(self, *args: str) -> subprocess.Popen:
        cmd = [str(self.bin), "controller", f"--profile-dir={self.profile_dir}", "--ping=200"]
        cmd += args
        log = open(self.profile_dir.parent / "controller.log", "ab")  # noqa: SIM115
        # the interpreter our controller runs become_dask's dask.distributed scheduler with
        env = {**os.environ, "OXIPP_PYTHON": sys.executable}
        self.controller = subprocess.Popen(cmd, stdout=log, stderr=log, env=env)
        wait_for(
            lambda: self.client_file.exists() and self.engine_file.exists(), 10, "connection files"
        )
        return self.controller

    def start_engine(self, *args: str) -> subprocess.Popen:
        cmd = [*ENGINE_COMMANDS[self.engine_kind], f"--profile-dir={self.profile_dir}", *args]
        log = open(self.profile_dir.parent / f"engine{len(self.engines)}.log", "ab")  # noqa: SIM115
        p = subprocess.Popen(cmd, stdout=log, stderr=log)
        self.engines.append(p)
        return p

    def client(self):
        import ipyparallel as ipp

        return ipp.Client(profile_dir=str(self.profile_dir), timeout=10)

    def stop(self):
        for p in [*self.engines, self.controller]:
            if p is not None and p.poll() is None:
                p.kill()
                p.wait(5)


class StockControllerCluster(Cluster):
    """Stock ipcontroller (heartbeat every `ping_ms`) + engines of `engine_kind` on a private
    profile."""

    ping_ms = 200

    def start_controller(self, *args: str):
        cmd = [
            sys.executable,
            "-m",
            "ipyparallel.controller",
            f"--profile-dir={self.profile_dir}",
            "--ip=127.0.0.1",
            f"--ping={self.ping_ms}",
            *args,
        ]
        self.profile_dir.mkdir(parents=True, exist_ok=True)
        log = open(self.profile_dir.parent / "controller.log", "ab")  # noqa: SIM115
        # its own process group: the stock controller forks its schedulers, and stop() must
        # take them down too
        self.controller = subprocess.Popen(cmd, stdout=log, stderr=log, start_new_session=True)
        wait_for(
            lambda: self.client_file.exists() and self.engine_file.exists(),
            30,
            "stock connection files",
        )
        return self.controller

    def stop(self):
        if self.controller is not None and self.controller.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.controller.pid, signal.SIGKILL)
        super().stop()
