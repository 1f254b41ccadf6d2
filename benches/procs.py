"""Starting and stopping benchmark processes without leaving orphans.

Every process the harness starts gets its own session (and so its own process group): the stock
controller forks scheduler children and a stock client run forks engines, and killing the group
is the only reliable way to take all of them down, whatever state they are in.
"""

from __future__ import annotations

import json
import os
import resource
import signal
import subprocess
import time
from pathlib import Path

# Enough descriptors for a controller or simulator facing 5,000 engines (~5 sockets each).
NOFILE_WANTED = 65536


def raise_nofile() -> None:
    """Raise RLIMIT_NOFILE for this process and so for every child it starts (root may raise
    the hard limit too). Done once at start-up rather than in a preexec_fn, which is unsafe
    once threads exist."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= NOFILE_WANTED:
        return
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (NOFILE_WANTED, max(hard, NOFILE_WANTED)))
    except (ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


class Group:
    """A process started in a new session, killed as a whole group."""

    def __init__(
        self, argv: list[str], log_path: Path, env: dict | None = None, capture: bool = False
    ) -> None:
        self.argv = argv
        self.log_path = log_path
        self._log = open(log_path, "ab")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE if capture else self._log,
            stderr=self._log,
            env=env,
            start_new_session=True,
        )
        self.pid = self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def communicate(self, timeout: float) -> tuple[int | None, str]:
        """Wait for exit and return (returncode, stdout); on timeout the group is killed and
        the returncode is None."""
        try:
            out, _ = self.proc.communicate(timeout=timeout)
            return self.proc.returncode, (out or b"").decode(errors="replace")
        except subprocess.TimeoutExpired:
            self.stop()
            out, _ = self.proc.communicate()
            return None, (out or b"").decode(errors="replace")

    def stop(self, grace: float = 5.0) -> None:
        """SIGTERM the group, then SIGKILL whatever is left after `grace` seconds."""
        for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 2.0)):
            try:
                os.killpg(self.pid, sig)
            except ProcessLookupError:
                break
            deadline = time.monotonic() + wait
            while time.monotonic() < deadline and group_alive(self.pid):
                time.sleep(0.05)
                self.proc.poll()
            if not group_alive(self.pid):
                break
        self.proc.poll()
        self._log.close()

    def __enter__(self) -> Group:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def group_alive(pgid: int) -> bool:
    """True while any process of the group exists (zombies of our own child excluded)."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # Our direct child may linger as a zombie until polled; that is not a live process.
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            return True
    return False


def last_json_line(text: str) -> dict | None:
    """The last line of `text` that parses as a JSON object (tools print one result line)."""
    for raw in reversed(text.strip().splitlines()):
        line = raw.strip()
        if line.startswith("{"):
            try:
                return json.loads(line)
            except json.JSONDecodeError:
                continue
    return None
