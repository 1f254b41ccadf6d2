"""pytest plugin: run stock ipyparallel's own test suite against another controller / engine.

Load it with ``-p ipp_alt_controller`` (this folder must be on ``PYTHONPATH``)::

    IPP_ALT_CONTROLLER="/path/to/oxipp controller" \\
        pytest -o asyncio_mode=auto -p ipp_alt_controller --pyargs ipyparallel.tests

``IPP_ALT_CONTROLLER`` / ``IPP_ALT_ENGINE`` hold a shell-split command line that replaces
``[sys.executable, "-m", "ipyparallel.controller"]`` / ``[..., "ipyparallel.engine"]``. The suite
launches controllers in three ways (spec §8.2); this plugin covers the two in-process ones:

1. ``ipyparallel.cluster.launcher.ipcontroller_cmd_argv``: the module-level list that
   ``ipyparallel.tests.setup()`` imported *by name*, so it is mutated in place;
2. the default of the ``ControllerLauncher.controller_cmd`` trait (a *copy* of that list taken
   at import), used by the ``Cluster`` fixture, ``test_label`` and every ``ipp.Cluster``.

The third path (``ipcluster`` subprocesses, ``python -m ipyparallel.controller --version``) is
covered by ``install_shim.py``. Engines have the same two hooks (``ipengine_cmd_argv``,
``EngineLauncher.engine_cmd``).

Without either variable the plugin changes no launcher, so the same command runs the stock
baseline. In both modes it records the commands in the junit XML (global properties) and marks
tests that passed despite an ``xfail`` marker (property ``oxipp_outcome=xpassed``), which junit
XML cannot otherwise tell apart from plain passes; ``compare.py`` reads both.
"""

from __future__ import annotations

import os
import shlex

import pytest
from ipyparallel.cluster import launcher as _launcher
from traitlets import Undefined

ENV_CONTROLLER = "IPP_ALT_CONTROLLER"
ENV_ENGINE = "IPP_ALT_ENGINE"


def _alt_argv(env_name: str) -> list[str] | None:
    value = os.environ.get(env_name, "").strip()
    if not value:
        return None
    argv = shlex.split(value)
    if not argv:
        raise pytest.UsageError(f"{env_name}={value!r} does not name a command")
    return argv


def _set_list_trait_default(cls: type, name: str, argv: list[str]) -> None:
    """Change the default of a traitlets ``List`` trait for every (sub)class instance.

    ``List`` builds each instance's default as ``list(*default_args)``; ``default_value`` is
    ``Undefined`` unless someone set it, in which case it wins, so keep it in step too.
    """
    trait = cls.class_traits()[name]
    trait.default_args = (list(argv),)
    if trait.default_value is not Undefined:
        trait.default_value = list(argv)


def apply_hooks() -> dict[str, list[str]]:
    """Point the stock launchers at the alternative commands; return what was applied."""
    applied: dict[str, list[str]] = {}
    controller = _alt_argv(ENV_CONTROLLER)
    if controller:
        _launcher.ipcontroller_cmd_argv[:] = controller  # tests.setup() holds this very list
        _set_list_trait_default(_launcher.ControllerLauncher, "controller_cmd", controller)
        applied["controller"] = controller
    engine = _alt_argv(ENV_ENGINE)
    if engine:
        _launcher.ipengine_cmd_argv[:] = engine
        _set_list_trait_default(_launcher.EngineLauncher, "engine_cmd", engine)
        applied["engine"] = engine
    return applied


_APPLIED = apply_hooks()  # at import, i.e. before any test module is collected


@pytest.hookimpl(trylast=True)  # after junitxml's own pytest_configure
def pytest_configure(config: pytest.Config) -> None:
    try:  # the junitxml plugin's LogXML, there when --junit-xml is given (pytest >= 7)
        from _pytest.junitxml import xml_key

        xml = config.stash.get(xml_key, None)
    except ImportError:
        xml = getattr(config, "_xml", None)
    if xml is not None:
        for role in ("controller", "engine"):
            argv = _APPLIED.get(role)
            xml.add_global_property(f"oxipp_{role}_cmd", shlex.join(argv) if argv else "stock")


def pytest_report_header(config: pytest.Config) -> list[str]:
    lines = []
    for role in ("controller", "engine"):
        argv = _APPLIED.get(role)
        lines.append(f"ipp_alt_controller: {role} = {shlex.join(argv) if argv else 'stock'}")
    return lines


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    outcome = yield
    report = outcome.get_result()
    if report.when == "call" and report.passed and hasattr(report, "wasxfail"):
        # Junit only keeps properties of the teardown report, which copies user_properties.
        item.user_properties.append(("oxipp_outcome", "xpassed"))
