"""Workload sizes for the full run and for the CI smoke run.

Where stock is too slow for the size oxipp is meant for, the sizes differ per controller
(rates are still comparable, and the table's last column says what each one ran).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class PartA:
    engines: int
    latency_n: int
    map_n: int
    array_mb: int
    repeats: int
    timeout: float


@dataclass(frozen=True)
class PartB:
    lb_engines: int
    window: int
    lb_tasks: dict
    mux_tasks: dict
    registration: tuple[int, int]
    reg_timeout: float
    execute_engines: int
    execute_rounds: int
    rss_tasks: dict
    rss_every: dict
    timeout: float


@dataclass(frozen=True)
class Sizes:
    a: PartA
    b: PartB
    # Heartbeat period for both controllers (registration takes about one period).
    ping_ms: int
    # One controller for all of part (b) instead of a fresh one per workload: faster, less
    # isolated (simulated engines unregister when they stop, so leftovers do not linger).
    share_controller: bool

    def to_json(self) -> dict:
        return asdict(self)


FULL = Sizes(
    a=PartA(engines=4, latency_n=2000, map_n=20_000, array_mb=100, repeats=3, timeout=600),
    b=PartB(
        lb_engines=16,
        window=1000,
        # stock manages a few hundred LB tasks/s: 20k tasks take about a minute.
        lb_tasks={"stock": 20_000, "oxipp": 300_000},
        mux_tasks={"stock": 50_000, "oxipp": 300_000},
        registration=(1000, 5000),
        # stock purges registrations whose first heartbeat it misses (30 s); past that the
        # rest never complete, so waiting longer only wastes time.
        reg_timeout=180,
        execute_engines=1000,
        execute_rounds=20,
        # 1M stock tasks would take about an hour; 100k show its slope.
        rss_tasks={"stock": 100_000, "oxipp": 1_000_000},
        rss_every={"stock": 10_000, "oxipp": 100_000},
        timeout=900,
    ),
    ping_ms=1000,
    share_controller=False,
)

SMOKE = Sizes(
    a=PartA(engines=2, latency_n=20, map_n=200, array_mb=1, repeats=1, timeout=30),
    b=PartB(
        lb_engines=4,
        window=100,
        lb_tasks={"stock": 500, "oxipp": 500},
        mux_tasks={"stock": 500, "oxipp": 500},
        registration=(20, 50),
        reg_timeout=20,
        execute_engines=20,
        execute_rounds=3,
        rss_tasks={"stock": 1000, "oxipp": 1000},
        rss_every={"stock": 250, "oxipp": 250},
        timeout=30,
    ),
    ping_ms=250,
    share_controller=True,
)
