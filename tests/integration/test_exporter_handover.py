"""The exporter hand-over as a real Prometheus sees it: two or three real workers on Apache Kafka, scraped
at production intervals, through a fresh start, a rolling replacement with new replica ids (at 15 s and at
60 s) and a kill -9 of the exporter. At every rule evaluation (each second) Prometheus records the fleet's
sums and how many replicas' business series it sees; read back at the end, `sum()` never exceeds the
truth, never more than one replica exports, the longest gap stays within its bound, no alert fires, and
the values end exact. The measured figures are printed, so CI logs carry them."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from streams.local.prometheus_server import LocalPrometheus
from streams.local.sidecar_proc import SidecarProc, wait_until
from streams.local.topics import make_topics
from streams.local.workload import Truth
from tests.integration.conftest import Names, sidecar_env
from tests.integration.handover_fleet import (
    PARTITIONS,
    PROBES,
    STEP_S,
    Figures,
    Fleet,
    first_business_after,
    produce_backlog,
    read_figures,
    rule_files,
    scraped_business,
)

pytestmark = [pytest.mark.integration, pytest.mark.kafka_only]  # minutes of real scrapes: once is enough

LEASE_S = 10.0  # STREAMS_LEADER_LEASE_SECONDS as shipped (the suite's default of 3 would flatter kill -9)
RAW_EVENTS = 20_000  # folded in a few seconds: the scenario measures the hand-over, not the fold


@dataclass(frozen=True)
class Scenario:
    name: str
    scrape_s: float
    replicas: int
    disruption: str  # "rollout": every worker replaced in turn, the exporter first; "kill-9"
    seed: int

    @property
    def shutdown_s(self) -> float:
        """STREAMS_SHUTDOWN_TIMEOUT_SECONDS as the chart derives it from the scrape interval (its helper
        ecomind-streams.shutdownSeconds): the SIGTERM drain must outlast one scrape. With the default 20 s
        at 60 s the drain is cut after 18 s and the next exporter waits out the dropped-target bound."""
        return max(20.0, int(self.scrape_s * 11 / 10) + 4)

    @property
    def gap_bound_s(self) -> float:
        # kill -9: the lease runs out, the taker waits one scrape interval more, and its first scrape is
        # up to an interval later. SIGTERM: the next exporter starts at once, seen at its next scrape.
        if self.disruption == "kill-9":
            return LEASE_S + 2 * self.scrape_s + 2
        return self.scrape_s + 2


# STREAMS_SCRAPE_INTERVAL_SECONDS is the scrape interval, as the chart and compose set it: it is the floor
# of the hand-over's waits (tests/unit/streams/test_exporter.py covers what the scrapes teach beyond it).
SCENARIOS = [
    Scenario("rollout-15s", 15, 3, "rollout", seed=81),
    Scenario("kill9-15s", 15, 2, "kill-9", seed=82),
    # A minute per scrape: two workers keep it near four minutes. A fixed backlog sets
    # EcoMindNoEventsIngested pending once the exporter has two equal samples; its `for: 5m` ends after
    # the scenario does, so the run must stay short for "no alert fires" to judge only the hand-over.
    Scenario("rollout-60s", 60, 2, "rollout", seed=83),
]


def _now(prom: LocalPrometheus, probe: str) -> float | None:
    result = prom.query(PROBES[probe][0])
    return float(result[0]["value"][1]) if result else None  # type: ignore[index]


def _exact(prom: LocalPrometheus, truth: Truth) -> bool:
    """Prometheus' live view: one replica's business series, and they hold the truth."""
    got = (_now(prom, "exporters"), _now(prom, "dau"), _now(prom, "ingested"))
    return got == (1.0, float(len(truth.users)), float(truth.raw_count))


def _instance(proc: SidecarProc) -> str:
    return f"127.0.0.1:{proc.port}"


def _disrupt(fleet: Fleet, scenario: Scenario) -> dict[str, float]:
    """The scenario's disruption; returns how long each SIGTERM took to exit."""
    drains: dict[str, float] = {}
    exporter = fleet.exporter()
    if scenario.disruption == "kill-9":
        # A container restart: the same port (so the same target, and ServiceDown stays quiet), a new id.
        fleet.kill(exporter)
        fleet.wait_ready(fleet.launch(port=exporter.port))
        return drains
    # The exporter first: the order a rollout may take that is hardest, as its successor may go next.
    for old in [exporter, *(p for p in fleet.live if p is not exporter)]:
        # A Deployment rollout with maxSurge: the new pod starts and becomes ready (a target from then on),
        # the old one gets SIGTERM and leaves service discovery once it has exited.
        new = fleet.launch()
        fleet.wait_ready(new)
        fleet.publish()
        drains[old.name] = fleet.sigterm(old)
        fleet.publish()
    return drains


@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda s: s.name)
def test_exporter_handover_seen_by_prometheus(  # type: ignore[no-untyped-def]
    broker, redis_server, names: Names, workdir: Path, capsys, scenario: Scenario
) -> None:
    make_topics(broker.bootstrap, [names.raw, names.enriched], partitions=PARTITIONS)
    truth = produce_backlog(broker.bootstrap, names, scenario.seed, RAW_EVENTS)
    home = workdir / f"handover-{scenario.name}-{names.app_id}"
    env = sidecar_env(
        broker,
        redis_server,
        names,
        STREAMS_LEADER_LEASE_SECONDS=f"{LEASE_S:g}",
        STREAMS_SHUTDOWN_TIMEOUT_SECONDS=f"{scenario.shutdown_s:g}",
        STREAMS_SCRAPE_INTERVAL_SECONDS=f"{scenario.scrape_s:g}",  # as the chart sets it from its monitor
    )
    rules = rule_files(home / "rules", scenario.scrape_s)
    prom = LocalPrometheus(
        home / "prom", [], rules, interval_s=scenario.scrape_s, evaluation_interval_s=STEP_S, file_sd=True
    )
    fleet = Fleet(home, env, prom, scenario.shutdown_s)
    figures: Figures | None = None
    fresh: list[tuple[float, bool]] = []
    drains: dict[str, float] = {}
    prom_start = time.time()
    try:
        for proc in [fleet.launch() for _ in range(scenario.replicas)]:
            fleet.wait_ready(proc)
        holder, holder_ready = fleet.exporter(), time.time()
        fleet.note(f"lease holder: {holder.name}")
        # Prometheus starts once the fresh install is ready: its alerts then judge the sidecar, not how
        # long a cold Kafka client takes to join its group.
        fleet.publish()
        prom_start = time.time()
        prom.start()
        fleet.note("Prometheus started")
        wait_until(lambda: _exact(prom, truth), 3 * scenario.scrape_s + 30, 0.5, what="the fresh fleet's values")
        fleet.note("exact values in Prometheus")
        fresh = scraped_business(prom, _instance(holder), holder_ready)
        # An exporter that has run a while: it measured the interval from two scrapes, and a lease round
        # (every third of the lease) put the grace it implies on record for whoever takes over.
        twice = f'count_over_time(ecomind_daily_active_orgs{{instance="{_instance(holder)}"}}[30m]) >= 2'
        wait_until(lambda: prom.query(twice), 2 * scenario.scrape_s + 30, 0.5, what="two scrapes of the exporter")
        time.sleep(LEASE_S / 3 + 1)
        drains = _disrupt(fleet, scenario)
        # Until a live worker's series hold the truth: the old exporter's stay visible until they are stale.
        # After a rollout, a scrape of each successor's business series too, so that the scenario never ends
        # before the hand-over it measures.
        wait_until(
            lambda: (
                fleet.exporting_process()
                and _exact(prom, truth)
                and all(first_business_after(prom, sent, instance) is not None for _, instance, sent, _ in fleet.handed)
            ),
            LEASE_S + 4 * scenario.scrape_s + 30,
            0.5,
            what="a live worker's exact values after the disruption",
        )
        fleet.note("exact values in Prometheus again")
        time.sleep(3 * STEP_S)  # a few evaluations of the settled state end the recorded range
    finally:
        successors: dict[str, float | None] = {}
        try:
            if prom.server is not None and prom.ready():
                figures = read_figures(prom, prom_start, time.time(), truth)
                # From SIGTERM on, another instance's business series can only be the successor's (the exporter
                # goes quiet at SIGTERM); it may be scraped before the old process has exited, hence <= 0 s.
                for name, instance, sent, exited in fleet.handed:
                    after = first_business_after(prom, sent, instance)
                    successors[name] = None if after is None else after - exited
        finally:
            with capsys.disabled():
                print(_report(scenario, fleet, figures, fresh, drains, successors, truth))
            fleet.stop_all()
            prom.stop()
    _check(scenario, figures, fresh, successors, truth, fleet)


def _report(
    scenario: Scenario,
    fleet: Fleet,
    figures: Figures | None,
    fresh: list[tuple[float, bool]],
    drains: dict[str, float],
    successors: dict[str, float | None],
    truth: Truth,
) -> str:
    t0 = fleet.t0
    head = f"scrape {scenario.scrape_s:g}s, lease {LEASE_S:g}s, shutdown budget {scenario.shutdown_s:g}s"
    lines = [f"\nexporter hand-over [{scenario.name}]: {head}"]
    lines += [f"  {at - t0:7.1f}s  {what}" for at, what in fleet.events]
    if fresh:
        first_business = next((t for t, carried in fresh if carried), None)
        late = "never" if first_business is None else f"{first_business - fresh[0][0]:.1f}s"
        lines.append(
            f"  fresh start: holder's first scrape at {fresh[0][0] - t0:.1f}s, its business series {late} later"
        )
    lines.append(f"  SIGTERM to exit: { {k: round(v, 1) for k, v in drains.items()} }")
    shown = {k: None if v is None else round(v, 1) for k, v in successors.items()}
    lines.append(f"  exporter's exit to its successor's first business scrape: {shown}")
    if figures is not None:
        exact, seen = figures.first("exact"), figures.first("seen")
        lines.append(f"  first business series at {_rel(seen, t0)}, first exact value at {_rel(exact, t0)}")
        for probe in ("exporters", "hindsight"):
            gaps = figures.gaps(probe)
            longest = max((g for _, g in gaps), default=0.0)
            view = "live (as alerts saw it)" if probe == "exporters" else "in hindsight (query_range afterwards)"
            lines.append(f"  gaps {view}: {[(round(s - t0, 1), g) for s, g in gaps]}; longest {longest:g}s")
        lines.append(f"  gap bound (live): {scenario.gap_bound_s:g}s")
        for probe, want in (("dau", len(truth.users)), ("ingested", truth.raw_count), ("exporters", 1)):
            top = max((v for v in figures.series[probe] if v is not None), default=None)
            lines.append(f"  max {probe}: {top} (truth {want})")
        lines.append(f"  alerts pending at some point: {sorted(figures.pending)}; firing: {figures.firing or 'none'}")
    lines += ["  lease log:", *(f"    {line}" for line in fleet.lease_log()[-40:])]
    return "\n".join(lines)


def _rel(at: float | None, t0: float) -> str:
    return "never" if at is None else f"{at - t0:.1f}s"


def _check(
    scenario: Scenario,
    figures: Figures | None,
    fresh: list[tuple[float, bool]],
    successors: dict[str, float | None],
    truth: Truth,
    fleet: Fleet,
) -> None:
    """Every check, all failures reported together: one scenario run is minutes long."""
    assert figures is not None, "Prometheus' recorded series could not be read"
    grid, series = figures.grid, figures.series
    users, raw = float(len(truth.users)), float(truth.raw_count)
    checks: dict[str, list[Any]] = {
        "alerts fired": figures.firing,
        f"sum(ecomind_daily_active_users) above the truth {users:g}": [
            (t, v) for t, v in zip(grid, series["dau"], strict=True) if v is not None and v > users
        ],
        f"sum(ecomind_events_ingested_total) above the truth {raw:g}": [
            (t, v) for t, v in zip(grid, series["ingested"], strict=True) if v is not None and v > raw
        ],
        "two replicas' business series visible at once": [
            t for i, t in enumerate(grid) if figures.at("exporters", i) > 1
        ],
        # A fresh install's lease was never held: the holder's first scrape already carries the series.
        "the fresh start's first scrape of the holder without business series": (
            [] if fresh and fresh[0][1] else fresh or ["no scrape of the holder seen"]
        ),
        f"business series absent longer than {scenario.gap_bound_s:g}s": [
            g for g in figures.gaps() if g[1] > scenario.gap_bound_s
        ],
        # The replicas' own gauge says what their responses carry: it agrees with the series at every step.
        "sum(ecomind_streams_exporting) differs from the exporters seen": [
            t for i, t in enumerate(grid) if figures.at("exporting", i) != figures.at("exporters", i)
        ],
        "SIGTERM not honoured": fleet.problems,
        "not exact at the end": [] if figures.exact[-1] and figures.at("exporters", len(grid) - 1) == 1 else [grid[-1]],
    }
    if scenario.disruption == "rollout":
        # SIGTERM: the exporter releases once its series are stale, so the next one exports at once and is
        # seen at its next scrape, not after a wait.
        late = [(k, v) for k, v in successors.items() if v is None or v > scenario.scrape_s + 2]
        checks[f"successor's series later than {scenario.scrape_s + 2:g}s after the exporter's exit"] = late
        checks["the rollout never replaced the exporter"] = [] if successors else ["no hand-over"]
    failed = [f"{what}: {found[:5]}" for what, found in checks.items() if found]
    assert failed == [], "\n".join(failed)
