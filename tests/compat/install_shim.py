"""Patch stock ipyparallel's ``python -m`` entry points so an env var can swap the program.

``python -m ipyparallel.controller`` is how every stock launcher starts a controller, including
the ``ipcluster`` *subprocesses* of ``test_apps.py`` that no in-process pytest plugin reaches, and
``test_apps`` also runs ``python -m ipyparallel.controller --version`` directly. This script
rewrites ``site-packages/ipyparallel/controller/__main__.py`` (and ``engine/__main__.py``) so that:

* with ``IPP_ALT_CONTROLLER`` (``IPP_ALT_ENGINE``) set, the module ``os.execvp``'s that
  shell-split command with the original arguments appended;
* otherwise it runs the stock ``main()`` exactly as before, so the same venv still runs the stock
  controller (baseline, benchmarks).

It is idempotent (re-running rewrites the shim to the current version), keeps the original file
as ``__main__.py.orig``, and can ``--check`` or ``--uninstall``. The interpreter it patches is the
one running it: use ``.venv/bin/python tests/compat/install_shim.py``.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
from pathlib import Path

MARKER = "# oxipp-compat-shim"
VERSION = 1

SHIM = """{marker} v{version}: installed by oxipp tests/compat/install_shim.py; the original is
# __main__.py.orig beside this file. With ${env} set (a shell-split command line) this
# module execs that command with our arguments appended; otherwise it is the stock entry point.
import os
import shlex
import sys

if __name__ == '__main__':
    _alt = os.environ.get({env!r}, "").strip()
    # The guard stops an endless exec loop if the alternative command is this module again.
    if _alt and not os.environ.get({guard!r}):
        _argv = shlex.split(_alt) + sys.argv[1:]
        os.environ[{guard!r}] = "1"
        try:
            os.execvp(_argv[0], _argv)
        except OSError as e:
            sys.exit(f"{env}: cannot run {{_argv[0]!r}}: {{e}}")
    from .app import main

    main()
"""

TARGETS = {
    # subpackage of ipyparallel -> (env var, loop guard)
    "controller": ("IPP_ALT_CONTROLLER", "_OXIPP_SHIM_IN_ALT_CONTROLLER"),
    "engine": ("IPP_ALT_ENGINE", "_OXIPP_SHIM_IN_ALT_ENGINE"),
}


def package_dir() -> Path:
    spec = importlib.util.find_spec("ipyparallel")
    if spec is None or not spec.submodule_search_locations:
        sys.exit(f"install_shim: ipyparallel is not installed for {sys.executable}")
    return Path(next(iter(spec.submodule_search_locations)))


def shim_text(sub: str) -> str:
    env, guard = TARGETS[sub]
    return SHIM.format(marker=MARKER, version=VERSION, env=env, guard=guard)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--check", action="store_true", help="exit 1 unless the shim is current")
    mode.add_argument("--uninstall", action="store_true", help="restore the stock files")
    parser.add_argument("-q", "--quiet", action="store_true")
    args = parser.parse_args(argv)

    def say(msg: str) -> None:
        if not args.quiet:
            print(f"install_shim: {msg}")

    pkg = package_dir()
    status = 0
    for sub in TARGETS:
        main_py = pkg / sub / "__main__.py"
        orig = main_py.with_name("__main__.py.orig")
        current = main_py.read_text()
        wanted = shim_text(sub)
        if args.check:
            if current != wanted:
                print(f"install_shim: {main_py} is not the current shim", file=sys.stderr)
                status = 1
            else:
                say(f"{main_py}: current")
        elif args.uninstall:
            if orig.exists():
                orig.replace(main_py)
                say(f"{main_py}: restored")
            elif MARKER in current:
                sys.exit(f"install_shim: {main_py} is a shim but {orig.name} is missing")
            else:
                say(f"{main_py}: not shimmed")
        elif current == wanted:
            say(f"{main_py}: already current")
        else:
            if MARKER not in current:
                orig.write_text(current)
            main_py.write_text(wanted)
            # a stale .pyc would be ignored anyway (mtime check); remove it for clarity
            for pyc in (main_py.parent / "__pycache__").glob("__main__.*.pyc"):
                pyc.unlink()
            say(f"{main_py}: shim installed ({TARGETS[sub][0]})")
    return status


if __name__ == "__main__":
    sys.exit(main())
