"""Shared fixtures for oxipp's own pytest tests.

``tests/compat`` is not a test folder of ours: it holds the harness that runs *stock*
ipyparallel's suite against oxipp (``tests/compat/run_stock_suite.sh``), so it is not collected.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

collect_ignore = ["compat"]

REPO_ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO_ROOT


@pytest.fixture(scope="session")
def oxipp_bin() -> Path:
    """The release ``oxipp`` executable (``OXIPP_BIN`` overrides), built by scripts/setup.sh."""
    path = Path(os.environ.get("OXIPP_BIN", REPO_ROOT / "target" / "release" / "oxipp"))
    if not os.access(path, os.X_OK):
        pytest.fail(f"{path} is missing: run `cargo build --release --bin oxipp`")
    return path


@pytest.fixture(scope="session")
def python() -> str:
    return sys.executable
