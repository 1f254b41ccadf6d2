"""The oxipp engine: ``python -m oxipp.engine [ipengine flags]``.

Rust (``oxipp._oxipp.EngineRuntime``) owns registration, heartbeats, sockets and control
messages; Python runs user code through ``oxipp.engine.executor.Executor``. The split and both
interfaces are described in ``docs/engine-runtime.md``.
"""

from __future__ import annotations


def main(argv: list[str] | None = None) -> int:
    """Runs an engine until it is shut down; returns the process exit code."""
    from .app import main as _main

    return _main(argv)


__all__ = ["main"]
