"""Part (b): the controller alone, loaded by `oxipp-sim` (simulated engines and clients).

Each workload gets a fresh controller, so engines left over from one workload (they stay
registered until their heartbeats time out) cannot distort the next.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from controllers import REPO, Controller, ControllerError, Kind
from procs import Group, last_json_line

SIM_BIN = REPO / "target" / "release" / "oxipp-sim"


@dataclass
class SimJob:
    """One oxipp-sim invocation; `args` may differ per controller (stock is too slow for the
    largest sizes, and the table says what was run)."""

    key: str
    subcommand: str
    args: dict[str, list[str]]
    timeout: float
    needs_pid: bool = True
    extra: dict = field(default_factory=dict)

    def argv(self, controller: str, profile_dir: Path, pid: int) -> list[str]:
        args = self.args.get(controller, self.args.get("default", []))
        argv = [str(SIM_BIN), f"--profile-dir={profile_dir}", self.subcommand, *args]
        if self.needs_pid:
            argv.append(f"--pid={pid}")
        return argv


def sim_unavailable() -> str | None:
    if not SIM_BIN.exists():
        return "target/release/oxipp-sim not built (cargo build --release -p oxipp-bench)"
    return None


def run_job(
    job: SimJob, kind: Kind, ping_ms: int, extra: list[str], keep: bool, *, shared=None
) -> dict:
    """Run one simulator workload against `shared` (a running controller) or, by default,
    against a fresh controller that is stopped afterwards."""
    try:
        if shared is not None:
            return _run(job, kind, shared)
        with Controller(kind, ping_ms, extra, keep) as ctl:
            return _run(job, kind, ctl)
    except ControllerError as e:
        return {"ok": False, "error": str(e)}


def _run(job: SimJob, kind: Kind, ctl: Controller) -> dict:
    argv = job.argv(kind.name, ctl.profile_dir, ctl.pid)
    with Group(argv, ctl.profile_dir / f"sim-{job.key}.log", capture=True) as sim:
        code, out = sim.communicate(job.timeout + 60)
    result = last_json_line(out) or {"ok": False}
    result["argv"] = " ".join(argv[2:])
    if code is None:
        result.update(ok=False, error=f"oxipp-sim killed after {job.timeout + 60:.0f} s")
    elif not result.get("error") and code != 0:
        result.update(ok=False, error=f"oxipp-sim exited {code}: {_tail(ctl, job)}")
    if not ctl.group.alive():
        result.update(
            ok=False,
            error=(result.get("error") or "") + f" [controller died: {ctl.log_tail()}]",
        )
    return result


def _tail(ctl: Controller, job: SimJob) -> str:
    try:
        lines = (ctl.profile_dir / f"sim-{job.key}.log").read_text().strip().splitlines()
        return " | ".join(lines[-3:])
    except OSError:
        return ""
