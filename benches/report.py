"""Turning raw workload results into the comparison table.

Every row is one number per controller plus a ratio oriented so that > 1 always means "oxipp is
better" (faster, quicker, smaller), whatever the unit. Goals are printed beside the numbers;
they are targets to read, never assertions that fail a run.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass


def dig(d: dict | None, *path: str) -> object:
    for p in path:
        if not isinstance(d, dict):
            return None
        d = d.get(p)
    return d


def num(x: object) -> float | None:
    return float(x) if isinstance(x, (int, float)) and math.isfinite(x) else None


@dataclass
class Metric:
    key: str
    label: str
    unit: str
    higher_is_better: bool
    workload: str
    value: Callable[[dict], float | None]
    # What was run, for the notes column (sizes may differ per controller).
    ran: Callable[[dict], str] = lambda raw: ""
    goal: str = ""
    # (value, raw) -> met?, or None where the goal does not apply to what ran.
    goal_met: Callable[[float, dict], bool | None] | None = None


def _rss_growth_per_100k(raw: dict) -> float | None:
    """Steady-state tree RSS growth per 100k tasks: from the first sample at or past 20% of
    the run to the last. The first samples are skipped on purpose: allocators, buffers and
    bounded caches (stock DictDB keeps up to 1,024 records) fill up early and then stay put,
    which is not the per-task growth this row is about."""
    series = raw.get("series") or []
    if len(series) < 3 or not series[-1].get("tasks"):
        return None
    total = series[-1]["tasks"]
    base = next(x for x in series if x["tasks"] >= 0.2 * total)
    tasks = total - base["tasks"]
    if tasks <= 0:
        return None
    return (series[-1]["tree_rss_kib"] - base["tree_rss_kib"]) / 1024 / (tasks / 100_000)


def _tasks(raw: dict) -> str:
    n = dig(raw, "result", "tasks")
    return f"{n:,} tasks" if isinstance(n, int) else ""


METRICS = [
    Metric(
        "a.register",
        "(a) engines registered (start to ready)",
        "s",
        False,
        "client",
        lambda r: num(r.get("register_s")),
        lambda r: f"{r.get('engines')} engines",
    ),
    Metric(
        "a.apply_latency",
        "(a) apply_sync no-op latency, median",
        "ms",
        False,
        "client",
        lambda r: num(dig(r, "apply_latency", "median_ms")),
        lambda r: f"{dig(r, 'apply_latency', 'n')} calls",
    ),
    Metric(
        "a.engine_cpu",
        "(a) engine CPU per no-op apply (whole process)",
        "µs",
        False,
        "client",
        lambda r: num(dig(r, "apply_latency", "engine_cpu_us_per_apply")),
        lambda r: f"{dig(r, 'apply_latency', 'n')} calls, {r.get('engine_module')}",
        "oxipp engine ≤ 25 µs",
        lambda v, r: v <= 25 if r.get("engine_module") == "oxipp.engine" else None,
    ),
    Metric(
        "a.lb_map",
        "(a) LB map of no-op tasks, chunksize 1",
        "tasks/s",
        True,
        "client",
        lambda r: num(dig(r, "lb_map", "tasks_per_s")),
        lambda r: f"{dig(r, 'lb_map', 'n')} tasks",
    ),
    Metric(
        "a.push_pull",
        "(a) push+pull numpy array",
        "MB/s",
        True,
        "client",
        lambda r: num(dig(r, "push_pull", "push_pull_mb_s")),
        lambda r: f"{dig(r, 'push_pull', 'megabytes')} MB",
    ),
    Metric(
        "c.start",
        "(c) `start -n N --daemonize` until N engines registered",
        "s",
        False,
        "start",
        lambda r: num(r.get("median_s")),
        lambda r: f"{r.get('engines')} engines, median of {len(r.get('samples_s') or [])}",
        "oxipp < 1 s",
        lambda v, r: v < 1.0 if r.get("kind") == "oxipp-engines" else None,
    ),
    Metric(
        "b.lb",
        "(b) LB tasks via task scheduler (sim)",
        "tasks/s",
        True,
        "lb",
        lambda r: num(r.get("tasks_per_s")),
        _tasks,
        "≥ 100,000 tasks/s",
        lambda v, r: v >= 100_000,
    ),
    Metric(
        "b.mux",
        "(b) mux tasks, round-robin (sim)",
        "tasks/s",
        True,
        "mux",
        lambda r: num(r.get("tasks_per_s")),
        _tasks,
    ),
    Metric(
        "b.reg_small",
        "(b) register simulated engines (small fleet)",
        "s",
        False,
        "reg_small",
        lambda r: num(r.get("registration_s")),
        lambda r: f"{r.get('registered')}/{r.get('engines')} engines",
    ),
    Metric(
        "b.reg_large",
        "(b) register simulated engines (large fleet)",
        "s",
        False,
        "reg_large",
        lambda r: num(r.get("registration_s")),
        lambda r: f"{r.get('registered')}/{r.get('engines')} engines",
        "5,000 engines < 5 s",
        lambda v, r: v < 5 if r.get("engines", 0) >= 5000 else None,
    ),
    Metric(
        "b.execute",
        "(b) execute on every engine via mux, median",
        "ms",
        False,
        "execute",
        lambda r: num(r.get("median_ms")),
        lambda r: f"{r.get('engines')} engines × {r.get('rounds')}",
    ),
    Metric(
        "b.rss_final",
        "(b) controller RSS (process tree) after LB tasks",
        "MiB",
        False,
        "rss",
        lambda r: num(r.get("final_tree_rss_mib")),
        _tasks,
    ),
    Metric(
        "b.rss_growth",
        "(b) controller RSS growth per 100k LB tasks",
        "MiB",
        False,
        "rss",
        _rss_growth_per_100k,
        _tasks,
        "flat (< 1 MiB/100k)",
        # Judged only on long runs: over a few thousand tasks start-up allocations dominate.
        lambda v, r: v < 1.0 if (dig(r, "result", "tasks") or 0) >= 100_000 else None,
    ),
]


def fmt(v: float | None) -> str:
    if v is None:
        return "—"
    if abs(v) >= 100:
        return f"{v:,.0f}"
    if abs(v) >= 10:
        return f"{v:.1f}"
    return f"{v:.3g}"


def ratio(m: Metric, stock: float | None, ours: float | None) -> float | None:
    """> 1 means oxipp is better, for every metric."""
    if stock is None or ours is None or stock <= 0 or ours <= 0:
        return None
    return ours / stock if m.higher_is_better else stock / ours


def build_rows(results: dict[str, dict], names: list[str]) -> list[dict]:
    """One row per metric: values, notes, errors, ratio and goal status."""
    rows = []
    for m in METRICS:
        row: dict = {
            "key": m.key,
            "label": m.label,
            "unit": m.unit,
            "higher_is_better": m.higher_is_better,
            "goal": m.goal,
            "cells": {},
        }
        for name in names:
            ctl = results.get(name, {})
            raw = (ctl.get("workloads") or {}).get(m.workload)
            cell: dict = {"value": None, "ran": "", "error": None}
            if ctl.get("unavailable"):
                cell["error"] = "not run: " + ctl["unavailable"]
            elif raw is None:
                cell["error"] = "not run"
            else:
                cell["value"] = m.value(raw)
                cell["ran"] = m.ran(raw) if cell["value"] is not None else ""
                if cell["value"] is None:
                    cell["error"] = _first_error(raw, m) or "no value"
            if m.goal_met and cell["value"] is not None:
                cell["goal_met"] = m.goal_met(cell["value"], raw)
            row["cells"][name] = cell
        s = row["cells"].get("stock", {}).get("value")
        row["ratios"] = {
            name: ratio(m, s, row["cells"][name]["value"]) for name in names if name != "stock"
        }
        row["ratio"] = row["ratios"].get("oxipp")
        rows.append(row)
    return rows


def _first_error(raw: dict, m: Metric) -> str | None:
    sub = {"a.apply_latency": "apply_latency", "a.lb_map": "lb_map", "a.push_pull": "push_pull"}
    if m.key in sub and isinstance(raw.get(sub[m.key]), dict):
        err = raw[sub[m.key]].get("error")
        if err:
            return str(err)
    err = raw.get("error")
    return str(err) if err else None


def markdown(rows: list[dict], names: list[str], header: str) -> str:
    """The Markdown table, with errors as numbered footnotes so the table stays narrow."""
    cols = ["Benchmark", "unit", *names]
    compared = [n for n in names if n != "stock"] if "stock" in names else []
    cols += [f"{n} vs stock (×, >1 = better)" for n in compared]
    cols += ["goal", "what ran"]
    lines = [header, "", "| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    notes: list[str] = []  # distinct errors; a broken controller fails many rows the same way
    for row in rows:
        if all(c["error"] == "not run" for c in row["cells"].values()):
            continue  # filtered out with --only / --workloads
        cells = [row["label"], row["unit"]]
        ran = []
        for name in names:
            c = row["cells"][name]
            if c["value"] is not None:
                mark = {True: " ✓", False: " ✗"}.get(c.get("goal_met"), "")
                cells.append(fmt(c["value"]) + mark)
            else:
                note = f"{name}: {c['error']}"
                if note not in notes:
                    notes.append(note)
                n = notes.index(note) + 1
                cells.append(f"n/a [{n}]" if c["error"].startswith("not run") else f"error [{n}]")
            if c["ran"]:
                ran.append(f"{name}: {c['ran']}")
        for n in compared:
            r = row["ratios"].get(n)
            cells.append(f"{r:.2f}×" if r is not None else "—")
        cells += [row["goal"], "; ".join(ran)]
        lines.append("| " + " | ".join(cells) + " |")
    if notes:
        flat = [" ".join(n.split()) for n in notes]
        lines += ["", *[f"[{i}] {n[:400]}" for i, n in enumerate(flat, 1)]]
    return "\n".join(lines)
