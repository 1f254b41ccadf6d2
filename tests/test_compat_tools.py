"""Unit tests of the compat harness's own tools (tests/compat/compare.py)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent / "compat"))

import compare  # noqa: E402

JUNIT = """<?xml version="1.0" encoding="utf-8"?>
<testsuites><testsuite name="pytest" tests="6">
<properties><property name="oxipp_controller_cmd" value="/x/oxipp controller" /></properties>
<testcase classname="ipyparallel.tests.test_view.TestView" name="test_ok" time="0.1" />
<testcase classname="ipyparallel.tests.test_apps" name="test_version[controller]" time="0.1">
  <failure message="boom">trace</failure>
</testcase>
<testcase classname="ipyparallel.tests.test_mpi.TestMPI" name="test_start" time="0.0">
  <skipped type="pytest.skip" message="no mpiexec">skip</skipped>
</testcase>
<testcase classname="ipyparallel.tests.test_view.TestView" name="test_xf" time="0.1">
  <skipped type="pytest.xfail" message="xfail" />
</testcase>
<testcase classname="ipyparallel.tests.test_view.TestView" name="test_xp" time="0.1">
  <properties><property name="oxipp_outcome" value="xpassed" /></properties>
</testcase>
<testcase classname="ipyparallel.tests.test_view.TestView" name="test_td" time="0.1" />
<testcase classname="ipyparallel.tests.test_view.TestView" name="test_td" time="0.1">
  <error message="teardown failed" />
</testcase>
</testsuite></testsuites>
"""

OK = "ipyparallel/tests/test_view.py::TestView::test_ok"
BAD = "ipyparallel/tests/test_apps.py::test_version[controller]"


@pytest.fixture
def junit(tmp_path: Path) -> Path:
    path = tmp_path / "junit.xml"
    path.write_text(JUNIT)
    return path


def test_node_id():
    assert compare.node_id("ipyparallel.tests.test_view.TestView", "test_ok") == OK
    assert compare.node_id("ipyparallel.tests.test_apps", "test_version[controller]") == BAD
    assert compare.node_id("", "x") == "x"


def test_read_run(junit: Path):
    outcomes, props = compare.read_run(junit)
    assert props == {"oxipp_controller_cmd": "/x/oxipp controller"}
    assert outcomes == {
        OK: "passed",
        BAD: "failed",
        "ipyparallel/tests/test_mpi.py::TestMPI::test_start": "skipped",
        "ipyparallel/tests/test_view.py::TestView::test_xf": "xfailed",
        "ipyparallel/tests/test_view.py::TestView::test_xp": "xpassed",
        "ipyparallel/tests/test_view.py::TestView::test_td": "failed",
    }


def test_compare_against_baseline(junit: Path, tmp_path: Path, capsys):
    baseline = tmp_path / "baseline.txt"
    baseline.write_text(f"# comment\n{OK}\n")
    assert compare.main([str(junit), "--baseline", str(baseline)]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == "1 passed, 0 failed"

    baseline.write_text(f"{OK}\n{BAD}\nipyparallel/tests/test_gone.py::test_missing\n")
    assert compare.main([str(junit), "--baseline", str(baseline)]) == 1
    out = capsys.readouterr().out
    assert f"NOT PASSED (failed): {BAD}" in out
    assert "NOT PASSED (missing): ipyparallel/tests/test_gone.py::test_missing" in out
    assert out.splitlines()[-1] == "1 passed, 2 failed"


def test_repeated_runs_must_all_pass(junit: Path, tmp_path: Path, capsys):
    second = tmp_path / "second.xml"
    second.write_text(
        JUNIT.replace('name="test_ok" time="0.1" />', 'name="test_ok"><failure/></testcase>')
    )
    baseline = tmp_path / "baseline.txt"
    assert compare.main(["--write-baseline", str(baseline), str(junit), str(second)]) == 0
    out = capsys.readouterr().out
    assert f"flaky with stock, left out: {OK} (passed, failed)" in out
    assert f"fails with stock, left out: {BAD}" in out
    assert compare.read_baseline(baseline) == []  # xpassed is not a pass to rely on

    baseline.write_text(f"{OK}\n")
    assert compare.main([str(junit), str(second), "--baseline", str(baseline)]) == 1


def test_unreadable_junit_is_a_clear_error(tmp_path: Path):
    broken = tmp_path / "broken.xml"
    broken.write_text("<testsuites><testsuite>")
    with pytest.raises(SystemExit, match="cannot read"):
        compare.read_run(broken)


def test_a_failure_passing_in_any_rerun_is_flaky_and_one_failing_every_rerun_is_not(
    junit: Path, tmp_path: Path, capsys
):
    baseline = tmp_path / "baseline.txt"
    baseline.write_text(f"{OK}\n{BAD}\n")
    still_failing = tmp_path / "rerun1" / "run-1" / "junit.xml"
    still_failing.parent.mkdir(parents=True)
    still_failing.write_text(JUNIT)  # BAD fails again
    passing = tmp_path / "rerun2" / "run-1" / "junit.xml"
    passing.parent.mkdir(parents=True)
    passing.write_text(JUNIT.replace('<failure message="boom">trace</failure>', ""))
    left = tmp_path / "still-failed.txt"
    args = [str(junit), "--baseline", str(baseline), "--rerun", str(still_failing)]
    assert compare.main([*args, "--write-failed", str(left)]) == 1
    assert left.read_text() == f"{BAD}\n"
    capsys.readouterr()
    assert compare.main([*args, "--rerun", str(passing)]) == 0
    assert f"FLAKY (failed, passed on rerun rerun2): {BAD}" in capsys.readouterr().out
