"""Fixtures for the client API suite (spec §7.2-7.8): the client package under test and real
clusters in every mix a client must cope with.

The package comes from ``OXIPP_TEST_CLIENT`` (default ``oxipp``), so
``OXIPP_TEST_CLIENT=ipyparallel`` runs the very same tests with the stock client; that is how the
tests were checked to describe stock behaviour before oxipp's client had to pass them.

Backends (``backend`` fixture):

* ``oxipp``: our controller (``target/release/oxipp controller``) + oxipp engines;
* ``oxipp-ctl+stock-engines``: our controller + stock ``python -m ipyparallel.engine``;
* ``stock``: stock ``python -m ipyparallel.controller`` + stock engines.

The shared cluster is session scoped (one per backend at a time; pytest orders the tests by
backend), and must not be damaged by tests: anything that kills or shuts down engines uses
``make_cluster`` for a small cluster of its own.

Test modules that define their own ``cluster``/``rc`` fixtures (test_api_matrix.py,
test_magics.py) keep them: a module's fixtures override these.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from clusters import ENGINE_COMMANDS, Cluster, wait_for

N_ENGINES = 4
BACKENDS = ["oxipp", "oxipp-ctl+stock-engines", "stock"]
CLIENT_MODULE = os.environ.get("OXIPP_TEST_CLIENT", "oxipp")


def load_client_package():
    """The package under test, or a pytest skip saying why it cannot be tested yet."""
    mod = importlib.import_module(CLIENT_MODULE)
    if CLIENT_MODULE == "oxipp" and not hasattr(mod, "Client"):
        pytest.skip("oxipp.Client does not exist yet (set OXIPP_TEST_CLIENT=ipyparallel to run)")
    return mod


class BackendCluster(Cluster):
    """A ``Cluster`` whose processes each lead their own process group, so ``stop`` also takes
    down what they fork (the stock controller's schedulers, the stock engines' nannies), and
    whose controller may be stock ipyparallel's."""

    def __init__(self, oxipp_bin: Path, profile_dir: Path, backend: str):
        engine_kind = "oxipp" if backend == "oxipp" else "stock"
        super().__init__(oxipp_bin, profile_dir, engine_kind=engine_kind)
        self.backend = backend
        self.profile_dir.mkdir(parents=True, exist_ok=True)

    def _log(self, name: str):
        return open(self.profile_dir.parent / name, "ab")  # noqa: SIM115

    def start_controller(self, *args: str) -> subprocess.Popen:
        if self.backend == "stock":
            cmd = [sys.executable, "-m", "ipyparallel.controller", "--ip=127.0.0.1"]
        else:
            cmd = [str(self.bin), "controller"]
        cmd += [f"--profile-dir={self.profile_dir}", "--ping=200", *args]
        log = self._log("controller.log")
        self.controller = subprocess.Popen(cmd, stdout=log, stderr=log, start_new_session=True)
        # the stock controller imports a lot before it writes its files
        wait_for(
            lambda: self.client_file.exists() and self.engine_file.exists(),
            30,
            f"{self.backend} connection files",
        )
        return self.controller

    def start_engine(self, *args: str) -> subprocess.Popen:
        cmd = [*ENGINE_COMMANDS[self.engine_kind], f"--profile-dir={self.profile_dir}", *args]
        log = self._log(f"engine{len(self.engines)}.log")
        p = subprocess.Popen(cmd, stdout=log, stderr=log, start_new_session=True)
        self.engines.append(p)
        return p

    def stop(self):
        for p in [*self.engines, self.controller]:
            if p is None:
                continue
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(p.pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                p.wait(5)


def start_cluster(oxipp_bin: Path, path: Path, backend: str, n_engines: int) -> BackendCluster:
    c = BackendCluster(oxipp_bin, path / "profile", backend)
    try:
        c.start_controller()
        for _ in range(n_engines):
            c.start_engine()
    except BaseException:
        c.stop()
        raise
    return c


@pytest.fixture(scope="session")
def ipp():
    """The client package under test (``oxipp`` or, to validate the tests, ``ipyparallel``)."""
    return load_client_package()


@pytest.fixture(scope="session")
def error(ipp):
    return importlib.import_module(f"{ipp.__name__}.error")


@pytest.fixture(scope="session", params=BACKENDS)
def backend(request):
    return request.param


@pytest.fixture(scope="session")
def cluster(ipp, backend, oxipp_bin, tmp_path_factory):
    """The shared cluster of this backend: controller + N_ENGINES engines. Do not hurt it."""
    c = start_cluster(oxipp_bin, tmp_path_factory.mktemp(backend), backend, N_ENGINES)
    yield c
    c.stop()


@pytest.fixture(scope="module")
def rc(ipp, cluster):
    """A client of the shared cluster with all its engines registered; closed afterwards."""
    client = ipp.Client(profile_dir=str(cluster.profile_dir), timeout=10)
    client.wait_for_engines(N_ENGINES, timeout=60)
    yield client
    client.close()


@pytest.fixture
def dview(rc):
    """A fresh blocking view on all engines (flags never leak between tests)."""
    v = rc[:]
    v.block = True
    return v


@pytest.fixture
def lview(rc):
    return rc.load_balanced_view()


@pytest.fixture
def make_cluster(ipp, backend, oxipp_bin, tmp_path):
    """Starts small private clusters of this test's backend (for killing or shutting down
    engines); returns ``(cluster, client)`` pairs and stops everything after the test."""
    made = []

    def make(n_engines: int = 2):
        c = start_cluster(oxipp_bin, tmp_path / f"c{len(made)}", backend, n_engines)
        made.append(c)
        client = ipp.Client(profile_dir=str(c.profile_dir), timeout=10)
        made.append(client)
        client.wait_for_engines(n_engines, timeout=60)
        return c, client

    yield make
    for thing in reversed(made):
        if isinstance(thing, BackendCluster):
            thing.stop()
        else:
            thing.close()


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "slow: long-running client test; runs with OXIPP_RUN_SLOW=1 or `-m slow`"
    )


def pytest_collection_modifyitems(config, items):
    """Slow tests (minutes each) stay out of the default run unless asked for, so the default
    client suite keeps to a few minutes."""
    if os.environ.get("OXIPP_RUN_SLOW") or "slow" in (config.getoption("markexpr") or ""):
        return
    here = Path(__file__).parent
    skip = pytest.mark.skip(reason="slow: set OXIPP_RUN_SLOW=1 or select with -m slow")
    for item in items:
        if "slow" in item.keywords and here in Path(str(item.path)).parents:
            item.add_marker(skip)
