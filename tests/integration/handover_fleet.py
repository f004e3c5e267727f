"""Harness of test_exporter_handover: a fixed backlog with its truth, the rules Prometheus loads, a fleet of
real workers behind file_sd targets (as service discovery adds and drops pods), and the figures read back
from what Prometheus recorded at every rule evaluation."""

from __future__ import annotations

import json
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import orjson
import yaml

from streams.local.prometheus_server import LocalPrometheus
from streams.local.sidecar_proc import SidecarProc, wait_until
from streams.local.workload import Truth, build
from tests.integration.conftest import Names
from tests.integration.kafka_io import Out, commit_group, produce

OPS = Path(__file__).resolve().parents[2] / "ops" / "prometheus" / "rules"
PARTITIONS = 4
STEP_S = 1.0  # rule evaluation interval, and the step the recorded series are read back at

# What alerts and dashboards see, sampled at every evaluation: the fleet's sums (which must never exceed
# the truth) and how many replicas' business series are visible (never more than one; none is the gap).
# `exporting` is the replicas' own claim, which must agree with what the series show.
PROBES = {
    "dau": ("handover:daily_active_users:sum", "sum(ecomind_daily_active_users)"),
    "ingested": ("handover:events_ingested:sum", "sum(ecomind_events_ingested_total)"),
    "exporters": ("handover:exporters:count", "count(ecomind_daily_active_orgs)"),
    "exporting": ("handover:exporting:sum", "sum(ecomind_streams_exporting)"),
}


def produce_backlog(bootstrap: str, names: Names, seed: int, raw_events: int) -> Truth:
    """The whole workload before any worker starts, so the truth stays constant through the scenario.

    The watched group is committed at the end and enriched records carry their event's time, so the lag
    and enrichment-delay alerts have no reason to fire: any alert that fires is the hand-over's doing.
    """
    raws, enriched, truth = build(seed=seed, raw_events=raw_events, enriched_every=4)
    produce(bootstrap, names.raw, [Out(v, partition=i % PARTITIONS) for i, v in enumerate(raws)])
    produce(bootstrap, names.enriched, [Out(v, timestamp_ms=int(orjson.loads(v)["ts"])) for v in enriched])
    ends = Counter(i % PARTITIONS for i in range(len(raws)))
    commit_group(bootstrap, names.watch_group, names.raw, dict(ends))
    return truth


def _seconds(duration: str) -> float:
    return float(duration[:-1]) * {"s": 1, "m": 60, "h": 3600}[duration[-1]]


def rule_files(workdir: Path, scrape_s: float) -> list[Path]:
    """The shipped recording rules and alerts (all of them), plus the probes.

    At long scrape intervals EcoMindStreamsNoExporter's `for:` is raised to two intervals: Prometheus'
    first scrape of a target lands anywhere in its first interval, so a fresh install at 60 s can show no
    business series for up to a minute through no fault of the hand-over. At 15 s it stays as shipped.
    """
    alerts = yaml.safe_load((OPS / "alerts.yml").read_text())
    for group in alerts["groups"]:
        for rule in group["rules"]:
            if rule.get("alert") == "EcoMindStreamsNoExporter" and _seconds(rule["for"]) < 2 * scrape_s:
                rule["for"] = f"{2 * scrape_s:g}s"
    probes = {
        "groups": [
            {
                "name": "handover_probes",
                "interval": f"{STEP_S:g}s",
                "rules": [{"record": record, "expr": expr} for record, expr in PROBES.values()],
            }
        ]
    }
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "alerts.yml").write_text(yaml.safe_dump(alerts))
    (workdir / "probes.yml").write_text(yaml.safe_dump(probes))
    return [OPS / "recording.yml", workdir / "alerts.yml", workdir / "probes.yml"]


class Fleet:
    """Worker processes of one STREAMS_APP_ID, each with its own replica id, and what happened when."""

    def __init__(self, home: Path, env: dict[str, str], prom: LocalPrometheus, shutdown_s: float) -> None:
        self.home, self.env, self.prom = home, env, prom
        self.shutdown_s = shutdown_s
        self.live: list[SidecarProc] = []
        self.started: list[SidecarProc] = []
        self.launched_at: dict[str, float] = {}
        # (name, instance, SIGTERM time, exit time) of exporters SIGTERM'd
        self.handed: list[tuple[str, str, float, float]] = []
        self.problems: list[str] = []
        self.t0 = time.time()
        self.events: list[tuple[float, str]] = []

    def note(self, what: str) -> None:
        self.events.append((time.time(), what))

    def launch(self, port: int | None = None) -> SidecarProc:
        name = f"r{len(self.started) + 1}"
        proc = SidecarProc(self.home / name, {**self.env, "STREAMS_REPLICA_ID": name}, name=name, port=port)
        self.launched_at[name] = time.time()
        proc.start()
        self.live.append(proc)
        self.started.append(proc)
        self.note(f"{name} launched on port {proc.port}")
        return proc

    def wait_ready(self, proc: SidecarProc) -> None:
        proc.wait_ready(180)
        self.note(f"{proc.name} ready")

    def publish(self) -> None:
        """The live workers become the scrape targets, as service discovery lists running pods."""
        self.prom.set_targets([f"127.0.0.1:{p.port}" for p in self.live])

    def exporter(self) -> SidecarProc:
        """The lease holder, by /ready (not /metrics: the test's own requests must not look like scrapes)."""

        def holder() -> SidecarProc | None:
            leaders = [p for p in self.live if json.loads(p.get("/ready")[1]).get("exporter_leader")]
            return leaders[0] if len(leaders) == 1 else None

        return wait_until(holder, 30, what="exactly one lease holder")

    def exporting_process(self) -> SidecarProc | None:
        """The live worker whose business series Prometheus shows now, if any. Told apart by process start
        time, since a worker restarted on the same port is the same target: until Prometheus scrapes it,
        the series it shows are the dead process's."""
        shown = self.prom.query("process_start_time_seconds and on (instance) ecomind_daily_active_orgs")
        for sample in shown:
            instance, started = sample["metric"]["instance"], float(sample["value"][1])  # type: ignore[index]
            for proc in self.live:
                if f"127.0.0.1:{proc.port}" == instance and abs(started - self.launched_at[proc.name]) < 5:
                    return proc
        return None

    def sigterm(self, proc: SidecarProc) -> float:
        """SIGTERM and wait for the exit, as the kubelet would: SIGKILL after the chart's grace period (the
        shutdown budget and 10 s). A SIGKILL is recorded, not raised: what follows is measured too."""
        assert proc.server is not None and proc.server.proc is not None
        holder = self.exporter()
        self.note(f"SIGTERM {proc.name} (lease holder: {holder.name})")
        began, sent = time.monotonic(), time.time()
        proc.server.stop(timeout_s=self.shutdown_s + 10)
        took = time.monotonic() - began
        self.note(f"{proc.name} exited after {took:.1f}s (rc {proc.server.proc.returncode})")
        if proc.server.proc.returncode == -9:
            self.problems.append(f"{proc.name} ignored SIGTERM for {took:.0f}s and was killed")
        self.live.remove(proc)
        if holder is proc:
            self.handed.append((proc.name, f"127.0.0.1:{proc.port}", sent, time.time()))
        return took

    def kill(self, proc: SidecarProc) -> None:
        proc.kill()
        self.live.remove(proc)
        self.note(f"kill -9 {proc.name}")

    def stop_all(self) -> None:
        for proc in self.live:
            proc.stop()

    def lease_log(self) -> list[str]:
        """Every worker's log lines about the lease, the hand-over and SIGTERM, for the report."""
        words = ("lease", "exporting", "hand-over", "drain", "scrape", "signal received")
        return [
            f"{p.name}: {line.strip()}"
            for p in self.started
            if p.server is not None and p.server.log_path.exists()
            for line in p.server.log_path.read_text(errors="replace").splitlines()
            if line.startswith("[") and any(w in line.split("] ", 3)[-1].lower() for w in words)
        ]


@dataclass
class Figures:
    """The recorded probes over one scenario, one value per evaluation step (None: the series was absent)."""

    grid: list[float]
    series: dict[str, list[float | None]]
    exact: list[bool]  # the sums equal the truth at that step
    firing: list[str] = field(default_factory=list)
    pending: set[str] = field(default_factory=set)

    def at(self, probe: str, i: int) -> float:
        return self.series[probe][i] or 0.0

    def first(self, check: str) -> float | None:
        """Time of the first step where a replica's business series are seen ("seen"), or where the sums
        equal the truth ("exact")."""
        for i, t in enumerate(self.grid):
            if (check == "seen" and self.at("exporters", i) > 0) or (check == "exact" and self.exact[i]):
                return t
        return None

    def gaps(self, probe: str = "exporters") -> list[tuple[float, float]]:
        """(start, seconds) of every run of steps without business series after they first appeared: as
        the rules saw them live ("exporters"), or as a query shows them afterwards ("hindsight")."""
        seen = self.first("seen")
        runs: list[tuple[float, float]] = []
        start: float | None = None
        for i, t in enumerate(self.grid):
            if seen is None or t < seen:
                continue
            if self.at(probe, i) == 0 and start is None:
                start = t
            elif self.at(probe, i) > 0 and start is not None:
                runs.append((start, t - start))
                start = None
        if start is not None:
            runs.append((start, self.grid[-1] + STEP_S - start))
        return runs


def read_figures(prom: LocalPrometheus, start_s: float, end_s: float, truth: Truth) -> Figures:
    start_s = float(int(start_s))
    grid = [start_s + i * STEP_S for i in range(int((end_s - start_s) / STEP_S) + 1)]
    series: dict[str, list[float | None]] = {}
    # "hindsight": the raw series queried afterwards. A target dropped from discovery gets its staleness
    # markers two intervals late but stamped one interval after its last scrape, so this view can show a
    # longer gap than the rules (and alerts) saw live: it is how long no fresh value was scraped.
    queries = {probe: record for probe, (record, _) in PROBES.items()} | {"hindsight": PROBES["exporters"][1]}
    for probe, query in queries.items():
        result = prom.query_range(query, start_s, grid[-1], STEP_S)
        got = {float(t): float(v) for t, v in result[0]["values"]} if result else {}  # type: ignore[index, attr-defined]
        series[probe] = [got.get(t) for t in grid]
    want = (float(len(truth.users)), float(truth.raw_count))
    figures = Figures(grid, series, [(series["dau"][i], series["ingested"][i]) == want for i in range(len(grid))])
    for state, out in (("firing", figures.firing), ("pending", None)):
        for alert in prom.query_range(f'ALERTS{{alertstate="{state}"}}', start_s, grid[-1], STEP_S):
            labels = alert["metric"]  # type: ignore[index]
            if out is not None:
                out.append(f"{labels} at {alert['values'][0][0]:.0f}")  # type: ignore[index]
            else:
                figures.pending.add(labels["alertname"])  # type: ignore[index]
    return figures


def scraped_business(prom: LocalPrometheus, instance: str, since_s: float) -> list[tuple[float, bool]]:
    """(time, carried business series) of each successful scrape of `instance` since `since_s`."""
    window = f"{int(time.time() - since_s) + 1}s"
    ups = prom.query(f'up{{instance="{instance}"}}[{window}]')
    orgs = prom.query(f'ecomind_daily_active_orgs{{instance="{instance}"}}[{window}]')
    business = {float(t) for t, _ in orgs[0]["values"]} if orgs else set()  # type: ignore[index, attr-defined]
    values = ups[0]["values"] if ups else []  # type: ignore[index]
    return [(float(t), float(t) in business) for t, v in values if v == "1" and float(t) >= since_s]  # type: ignore[union-attr, attr-defined]


def first_business_after(prom: LocalPrometheus, since_s: float, other_than: str) -> float | None:
    """Time of the first scrape after `since_s` that carried business series from another instance."""
    window = f"{int(time.time() - since_s) + 1}s"
    times = [
        float(t)
        for series in prom.query(f'ecomind_daily_active_orgs{{instance!="{other_than}"}}[{window}]')
        for t, _ in series["values"]  # type: ignore[attr-defined]
        if float(t) >= since_s
    ]
    return min(times, default=None)
