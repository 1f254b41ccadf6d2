"""Compare a stock-suite run (junit XML) with the stock controller's baseline.

    python tests/compat/compare.py RUN.xml [RUN2.xml ...] [--baseline FILE]
    python tests/compat/compare.py --write-baseline FILE RUN.xml [RUN2.xml ...]

``stock-baseline.txt`` lists the node ids that PASS with the stock controller in this
environment. A run is good when every one of them passed in it; each that did not is listed
(failed, error, skipped or missing from the XML) and the exit status is 1. Tests outside the
baseline (skipped for lack of mpiexec/slurm/docker/mongodb, xfail, flaky with stock too) are
only counted. The last line reads ``N passed, N failed`` over the baseline tests.

With several XML files (e.g. repeated runs) a test counts as passed only if it passed in every
one. ``--write-failed FILE`` writes the baseline tests that did not pass, one node id per line,
for ``run_stock_suite.sh --nodeids FILE``; ``--rerun XML`` (repeatable) then reads that rerun: a
test that failed in the runs but passed in a rerun counts as passed and is reported as FLAKY, so a
timing-sensitive test on a loaded machine does not fail CI while a real regression (failing
twice) still does. ``--write-baseline`` does the same over stock runs to produce the baseline:
tests that did not pass in all of them are left out and printed as flaky candidates.
"""

from __future__ import annotations

import argparse
import sys
import xml.etree.ElementTree as ET
from collections import Counter
from pathlib import Path

HERE = Path(__file__).resolve().parent
DEFAULT_BASELINE = HERE / "stock-baseline.txt"

PASSED, FAILED, SKIPPED, XFAILED, XPASSED = "passed", "failed", "skipped", "xfailed", "xpassed"


def node_id(classname: str, name: str) -> str:
    """Junit (classname, name) -> pytest node id, as if run from a checkout.

    ``ipyparallel.tests.test_view.TestView`` + ``test_x`` becomes
    ``ipyparallel/tests/test_view.py::TestView::test_x``.
    """
    parts = classname.split(".") if classname else []
    for i, part in enumerate(parts):
        if part.startswith("test_") or part.startswith("_test"):
            path = "/".join(parts[: i + 1]) + ".py"
            return "::".join([path, *parts[i + 1 :], name])
    return "::".join([*([classname] if classname else []), name])


def read_run(path: Path) -> tuple[dict[str, str], dict[str, str]]:
    """Return ({node id: outcome}, {global property: value}) of one junit XML file."""
    try:
        root = ET.parse(path).getroot()
    except (OSError, ET.ParseError) as e:
        raise SystemExit(f"compare: cannot read {path}: {e} (did the run die?)") from e
    outcomes: dict[str, str] = {}
    props: dict[str, str] = {}
    for suite in root.iter("testsuite"):
        for prop in suite.findall("./properties/property"):
            props[prop.get("name", "")] = prop.get("value", "")
        for case in suite.iter("testcase"):
            nid = node_id(case.get("classname", ""), case.get("name", ""))
            tags = {child.tag for child in case}
            case_props = {
                p.get("name"): p.get("value") for p in case.findall("./properties/property")
            }
            skipped = case.find("skipped")
            if "failure" in tags or "error" in tags:
                outcome = FAILED
            elif skipped is not None:
                outcome = XFAILED if skipped.get("type") == "pytest.xfail" else SKIPPED
            elif case_props.get("oxipp_outcome") == XPASSED:
                outcome = XPASSED
            else:
                outcome = PASSED
            # a test can appear twice (call failed + teardown error): the worst outcome wins
            if outcomes.get(nid) != FAILED:
                outcomes[nid] = outcome
    return outcomes, props


def merge(runs: list[dict[str, str]]) -> dict[str, str]:
    """Per test: PASSED only if it passed in every run, else the first non-pass outcome."""
    merged: dict[str, str] = {}
    for nid in sorted({n for run in runs for n in run}):
        seen = [run.get(nid, "missing") for run in runs]
        bad = [o for o in seen if o != PASSED]
        merged[nid] = bad[0] if bad else PASSED
    return merged


def read_baseline(path: Path) -> list[str]:
    lines = path.read_text().splitlines()
    return [ln.strip() for ln in lines if ln.strip() and not ln.lstrip().startswith("#")]


def write_baseline(path: Path, files: list[Path], runs: list[dict[str, str]]) -> int:
    merged = merge(runs)
    passing = [nid for nid, o in merged.items() if o == PASSED]
    flaky = [
        nid for nid, o in merged.items() if o != PASSED and any(r.get(nid) == PASSED for r in runs)
    ]
    failing = [nid for nid, o in merged.items() if o in (FAILED, "missing") and nid not in flaky]
    header = [
        "# Stock ipyparallel 9.2.0 test-suite node ids that PASS with the stock controller in this",
        "# environment (every one of the runs below); tests/compat/compare.py fails a run of the",
        "# oxipp controller if any of them does not pass. Regenerate with",
        "#   tests/compat/run_stock_suite.sh --stock --repeat 2 --out DIR",
        "#   python tests/compat/compare.py --write-baseline tests/compat/stock-baseline.txt "
        "DIR/run-*/junit.xml",
        f"# from {len(files)} run(s); flaky with stock (left out): {len(flaky)}",
    ]
    path.write_text("\n".join([*header, *passing]) + "\n")
    counts = Counter(merged.values())
    totals = dict(sorted(counts.items()))
    print(f"compare: wrote {len(passing)} ids to {path}; over the runs: {totals}")
    for nid in flaky:
        outs = ", ".join(run.get(nid, "missing") for run in runs)
        print(f"compare: flaky with stock, left out: {nid} ({outs})")
    for nid in failing:
        print(f"compare: fails with stock, left out: {nid}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("junit", nargs="+", type=Path, help="junit XML file(s) of the run(s)")
    parser.add_argument("--baseline", type=Path, default=DEFAULT_BASELINE)
    parser.add_argument(
        "--write-baseline",
        type=Path,
        metavar="FILE",
        help="write the tests that passed in every given run to FILE",
    )
    parser.add_argument(
        "--write-failed",
        type=Path,
        metavar="FILE",
        help="write the baseline tests that did not pass to FILE (node ids, one per line)",
    )
    parser.add_argument(
        "--rerun",
        type=Path,
        metavar="XML",
        action="append",
        default=[],
        help="junit XML of a rerun of the failed tests (repeatable): passing in one makes them "
        "flaky, not failed",
    )
    args = parser.parse_args(argv)

    loaded = [read_run(p) for p in args.junit]
    runs = [outcomes for outcomes, _ in loaded]
    if args.write_baseline:
        return write_baseline(args.write_baseline, args.junit, runs)

    for path, (outcomes, props) in zip(args.junit, loaded):
        counts = Counter(outcomes.values())
        cmd = props.get("oxipp_controller_cmd", "?")
        summary = ", ".join(f"{n} {o}" for o, n in sorted(counts.items()))
        print(f"compare: {path}: controller {cmd}: {summary}")

    merged = merge(runs)
    baseline = read_baseline(args.baseline)
    not_passed = [
        (nid, merged.get(nid, "missing")) for nid in baseline if merged.get(nid) != PASSED
    ]
    for rerun_xml in args.rerun:
        rerun, _ = read_run(rerun_xml)
        flaky = [(nid, o) for nid, o in not_passed if rerun.get(nid) == PASSED]
        which = rerun_xml.parent.parent.name
        for nid, outcome in flaky:
            print(f"compare: FLAKY ({outcome}, passed on rerun {which}): {nid}")
        not_passed = [(nid, o) for nid, o in not_passed if rerun.get(nid) != PASSED]
    if args.write_failed:
        args.write_failed.write_text("".join(f"{nid}\n" for nid, _ in not_passed))
    extra = sorted(nid for nid, o in merged.items() if o == PASSED and nid not in set(baseline))
    for nid, outcome in not_passed:
        print(f"compare: NOT PASSED ({outcome}): {nid}")
    if extra:
        print(
            f"compare: {len(extra)} test(s) passed that the stock baseline does not list "
            "(skipped or flaky with stock); not counted"
        )
    n_failed = len(not_passed)
    n_passed = len(baseline) - n_failed
    verdict = "OK" if n_failed == 0 else "REGRESSION against the stock baseline"
    print(
        f"compare: {verdict}: {n_passed}/{len(baseline)} baseline tests passed "
        f"(baseline: {args.baseline.name})"
    )
    print(f"{n_passed} passed, {n_failed} failed")
    return 1 if n_failed else 0


if __name__ == "__main__":
    sys.exit(main())
