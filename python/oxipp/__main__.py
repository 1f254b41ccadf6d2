"""``python -m oxipp ARGS`` and the ``oxipp`` console script: the Rust command line."""

from __future__ import annotations

import os
import signal
import sys

from oxipp import _oxipp


def run(args: list[str]) -> int:
    """Run ``oxipp ARGS`` in this process (GIL released) and return its exit code."""
    # While Rust runs, Python never gets the chance to raise KeyboardInterrupt, so Python's SIGINT
    # handler would just swallow Ctrl-C; give the signal its default action, as in the native
    # binary. Long-running commands (the controller) install their own handlers over this.
    if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
        signal.signal(signal.SIGINT, signal.SIG_DFL)
    # Commands that re-run oxipp (`start --daemonize`) must use this interpreter: the Rust side
    # sees only the resolved binary, which for a venv is the base Python without oxipp.
    os.environ["OXIPP_SELF_PYTHON"] = sys.executable
    return _oxipp.main(["oxipp", *args])


def main() -> None:
    sys.exit(run(sys.argv[1:]))


if __name__ == "__main__":
    main()
