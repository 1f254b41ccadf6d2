"""The oxipp Python package and its compiled module, as installed by ``maturin develop``."""

from __future__ import annotations

import importlib
import subprocess
import sys
import types
from importlib.metadata import version

import oxipp
from oxipp import _oxipp


def test_versions_agree():
    # pyproject takes its version from the Rust crate; __init__ repeats it by hand
    assert oxipp.__version__ == _oxipp.__version__ == version("oxipp")


def test_main_returns_exit_codes(capfd):
    assert _oxipp.main(["oxipp", "--version"]) == 0
    assert capfd.readouterr().out.strip() == f"oxipp {oxipp.__version__}"
    assert _oxipp.main(["oxipp", "no-such-command"]) == 2


def test_main_rejects_a_string():
    # a str would silently become a list of characters with a looser binding
    try:
        _oxipp.main("oxipp --version")
    except TypeError:
        pass
    else:
        raise AssertionError("main() accepted a str")


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=60)


def test_python_m_oxipp():
    out = run("-m", "oxipp", "--version")
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == f"oxipp {oxipp.__version__}"


def test_python_m_oxipp_controller_reaches_rust(oxipp_bin):
    # `python -m oxipp.controller ARGS` and `oxipp controller ARGS` run the same Rust code:
    # same exit code and output, whatever the controller's state of completion
    args = ["--version"]
    via_python = run("-m", "oxipp.controller", *args)
    native = subprocess.run(
        [str(oxipp_bin), "controller", *args], capture_output=True, text=True, timeout=60
    )
    assert (via_python.returncode, via_python.stdout, via_python.stderr) == (
        native.returncode,
        native.stdout,
        native.stderr,
    )
    assert "Traceback" not in via_python.stderr


def test_top_level_names_match_stock():
    """`import oxipp as ipp` must offer what code written for ipyparallel reaches for."""
    import ipyparallel
    import oxipp

    # stock's module namespace also leaks its own imports and server-extension hooks
    internals = {"MultipleInstanceError", "builtins", "controller", "os", "sys", "traceback"}
    internals |= {"traitlets", "util", "load_jupyter_server_extension"}
    importlib.import_module("ipyparallel.apps")  # as other tests in the session may have
    # submodules show up in dir() once anything imported them (ipyparallel.apps, ...): the
    # ones users reach through the package are checked by name instead
    stock = {
        n
        for n in dir(ipyparallel)
        if not n.startswith("_") and not isinstance(getattr(ipyparallel, n), types.ModuleType)
    } - internals
    missing = sorted(n for n in stock if not hasattr(oxipp, n))
    assert missing == []
    for sub in ("error", "client", "cluster", "serialize"):
        assert isinstance(getattr(oxipp, sub), types.ModuleType)
    assert oxipp.error.RemoteError.__name__ == "RemoteError"
    assert issubclass(oxipp.CompositeError, oxipp.RemoteError)
    assert oxipp.TimeoutError is TimeoutError
