"""The oxipp controller: ``python -m oxipp.controller ARGS`` is ``oxipp controller ARGS``.

The controller itself is Rust (crate ``oxipp-controller``); it accepts ipcontroller's command
line (``--profile=NAME --ping=MS --dictdb --ip=ADDR --Class.trait=value …``) and writes the same
connection files, so stock launchers and clients can use it.
"""

from __future__ import annotations


def main(argv: list[str] | None = None) -> int:
    """Run the controller with ipcontroller-style ``argv`` (default: ``sys.argv[1:]``)."""
    import sys

    from oxipp.__main__ import run

    return run(["controller", *(sys.argv[1:] if argv is None else argv)])
