"""``python -m oxipp.engine.nanny``: reports an engine's exit to a stock controller.

A stock controller notices that an engine died only after missed heartbeats (tens of
seconds); stock engines therefore run a *nanny* process that tells it at once. oxipp's
controller notices the engine's closed connections itself, so an oxipp engine starts this
nanny only when its controller is a stock one (``registration_reply`` lacks oxipp's
``oxipp_notices_closed_connections``), or when asked to (``--IPEngine.enable_nanny=True``).

The engine writes one JSON line to the nanny's stdin, ``{"connection": <its connection
info>, "id": <engine id>}``, and keeps the pipe open. The pipe closes when the engine
process ends, however it ends (exit, crash, SIGKILL): the nanny then sends the controller
``unregistration_request {"id": id}``, as stock's nanny does, and exits. It runs in a
session of its own, so a Ctrl-C or a signal to the engine's process group does not end it
before the engine.
"""

from __future__ import annotations

import json
import logging
import os
import select
import subprocess
import sys

log = logging.getLogger("oxipp.engine.nanny")


#: what an engine that unregistered itself writes before closing the pipe
CLEAN_EXIT = b"clean-exit"


def start(connection_info: dict, engine_id: int, stderr: int | None = None) -> subprocess.Popen:
    """Starts the nanny of this engine; keep the returned process (its stdin is the pipe
    whose closing reports the exit). ``stderr``: where its errors go (the engine's original
    fd 2 when fds 1/2 are captured: the nanny must neither write into the capture pipes nor
    hold them open)."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "oxipp.engine.nanny"],
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        stderr=stderr,
        start_new_session=True,
    )
    proc.stdin.write(json.dumps({"connection": connection_info, "id": engine_id}).encode())
    proc.stdin.write(b"\n")
    proc.stdin.flush()
    return proc


def stop(proc: subprocess.Popen) -> None:
    """After the engine unregistered itself: the nanny exits without reporting."""
    try:
        proc.stdin.write(CLEAN_EXIT)
        proc.stdin.close()
    except OSError:
        pass


def read_until_engine_exit(fd: int, parent: int) -> bytes:
    """Everything the engine writes on the pipe, until it closes (EOF) or the engine is gone
    anyway: a process the engine forked may hold the pipe open after the engine died, so the
    parent pid is checked every second too (this process is then re-parented)."""
    data = b""
    while True:
        ready, _, _ = select.select([fd], [], [], 1.0)
        if ready:
            chunk = os.read(fd, 65536)
            if not chunk:
                return data
            data += chunk
        elif os.getppid() != parent:
            return data


def main() -> int:
    logging.basicConfig(level=logging.WARNING, format="[oxipp nanny] %(message)s")
    data = read_until_engine_exit(sys.stdin.fileno(), os.getppid())
    line, _, rest = data.partition(b"\n")
    try:
        order = json.loads(line)
        connection, engine_id = json.dumps(order["connection"]), int(order["id"])
    except (ValueError, KeyError, TypeError) as e:
        log.error("bad instructions on stdin (%s): %r", e, line[:200])
        return 2
    if rest.strip() == CLEAN_EXIT:
        return 0  # the engine unregistered itself on the way out
    from oxipp._oxipp import unregister_engine

    try:
        unregister_engine(connection, engine_id)
    except (OSError, ValueError, TimeoutError) as e:
        log.error("could not report the exit of engine %s: %s", engine_id, e)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
