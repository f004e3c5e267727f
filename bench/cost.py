"""Idle and low-rate cost: sidecar CPU (% of one core) and RSS at a few offered rates, Prometheus scraping.

python -m bench.cost                     # 0, 100 and 1,000 events/s, 60 s each, Apache Kafka
python -m bench.cost --seconds 10        # shorter windows
python -m bench.cost --env STREAMS_BATCH_TIMEOUT_MS=100   # compare a setting (repeatable)

The same-run baseline is a bare aiokafka consumer (bench/ceiling.py) reading the same topics at the same
time: what any Kafka consumer costs at that rate. CPU comes from /proc (utime + stime of the process
tree) over the window only; the first seconds of each rate are not measured, so that start-up and the
switch between rates do not count.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import redis as redis_sync

from bench.procstat import cpu_seconds, peak_rss_mb, rss_mb
from bench.runners import sidecar_env
from streams.local.brokers import LocalKafka, LocalTansu
from streams.local.prometheus_server import LocalPrometheus
from streams.local.redis_server import LocalRedis
from streams.local.sidecar_proc import SidecarProc, wait_until
from streams.local.topics import make_topics
from streams.local.workload import BackgroundProducer, build
from tables.keys import Keys

SCRAPE_INTERVAL_S = 15.0
WARMUP_S = 5.0
# Targets of the cost section (docs/performance.md).
IDLE_CPU_PCT, LOW_RATE_CPU_PCT, RSS_TARGET_MB = 1.0, 2.0, 120.0


@dataclass
class CostRow:
    rate: int
    seconds: float
    sidecar_cpu_s: float
    baseline_cpu_s: float
    redis_cpu_s: float
    rss_mb: float
    peak_rss_mb: float
    baseline_rss_mb: float
    scrapes: int
    sent: int
    folded: int

    @property
    def sidecar_pct(self) -> float:
        return percent_of_core(self.sidecar_cpu_s, self.seconds)

    @property
    def baseline_pct(self) -> float:
        return percent_of_core(self.baseline_cpu_s, self.seconds)

    @property
    def redis_pct(self) -> float:
        return percent_of_core(self.redis_cpu_s, self.seconds)

    @property
    def cpu_target_pct(self) -> float | None:
        """The CPU goal at this rate, if the cost section sets one."""
        return IDLE_CPU_PCT if self.rate == 0 else LOW_RATE_CPU_PCT if self.rate <= 100 else None

    def verdict(self) -> str:
        target = self.cpu_target_pct
        problems = []
        if self.folded != self.sent:
            problems.append(f"WRONG: folded {self.folded:,} of {self.sent:,}")
        if target is not None and self.sidecar_pct > target:
            problems.append(f"CPU above {target:g} %")
        if self.peak_rss_mb > RSS_TARGET_MB:
            problems.append(f"RSS above {RSS_TARGET_MB:.0f} MB")
        return "met" if not problems else "MISSED: " + ", ".join(problems)


def percent_of_core(cpu_s: float, wall_s: float) -> float:
    return 100.0 * cpu_s / wall_s if wall_s > 0 else 0.0


def table(rows: list[CostRow]) -> str:
    lines = [
        f"| offered events/s | window s | sidecar CPU % of a core | bare consumer CPU % | Redis CPU % "
        f"| sidecar RSS MB (peak) | bare consumer RSS MB | Prometheus scrapes | folded / sent "
        f"| goal (CPU, RSS ≤ {RSS_TARGET_MB:.0f} MB) |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        goal = f"≤ {r.cpu_target_pct:g} %" if r.cpu_target_pct is not None else "RSS only"
        lines.append(
            f"| {r.rate:,} | {r.seconds:.0f} | {r.sidecar_pct:.2f} | {r.baseline_pct:.2f} | {r.redis_pct:.2f} "
            f"| {r.rss_mb:.0f} ({r.peak_rss_mb:.0f}) | {r.baseline_rss_mb:.0f} | {r.scrapes} "
            f"| {r.folded:,} / {r.sent:,} | {goal}: {r.verdict()} |"
        )
    return "\n".join(lines)


def measure(
    workdir: Path,
    bootstrap: str,
    redis: LocalRedis,
    rates: list[int],
    seconds: float,
    extra_env: dict[str, str] | None = None,
) -> list[CostRow]:
    """One sidecar and one bare consumer on fresh topics; each rate offered for WARMUP_S + `seconds`."""
    assert redis.server is not None and redis.server.proc is not None
    redis_pid = redis.server.proc.pid
    uid = uuid.uuid4().hex[:6]
    raw, enriched, app_id = f"cost.raw.{uid}", f"cost.enriched.{uid}", f"cost-{uid}"
    make_topics(bootstrap, [raw, enriched], partitions=8)
    env = sidecar_env(bootstrap, redis, app_id, raw, enriched, **(extra_env or {}))
    sidecar = SidecarProc(workdir / app_id, env).start()
    never = str(10**15)  # the bare consumer runs until stopped
    baseline = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "bench.ceiling",
            "--bootstrap",
            bootstrap,
            "--topics",
            f"{raw},{enriched}",
            "--expect",
            never,
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    prometheus = LocalPrometheus(
        workdir / f"prometheus-{uid}", [f"127.0.0.1:{sidecar.port}"], [], interval_s=SCRAPE_INTERVAL_S
    )
    tables = redis_sync.Redis.from_url(redis.url, decode_responses=True)
    processed_key = Keys(app_id).key("processed")
    rows: list[CostRow] = []
    try:
        sidecar.wait_ready(120)
        prometheus.start()
        assert sidecar.server is not None and sidecar.server.proc is not None
        pid = sidecar.server.proc.pid
        sent_before = 0
        for seed, rate in enumerate(rates):
            events = int(rate * (WARMUP_S + seconds))
            producer = None
            if events:
                raws, _, _ = build(seed=seed, raw_events=events, enriched_every=10**9, orgs=200, users=5_000)
                producer = BackgroundProducer(bootstrap, [(raw, raws)], rate)
                producer.start()
            time.sleep(WARMUP_S)
            scrapes_before = _scrapes(prometheus)
            cpu0, base0, redis0 = cpu_seconds(pid), cpu_seconds(baseline.pid), cpu_seconds(redis_pid)
            started = time.monotonic()
            time.sleep(seconds)
            wall = time.monotonic() - started
            cpu1, base1, redis1 = cpu_seconds(pid), cpu_seconds(baseline.pid), cpu_seconds(redis_pid)
            scrapes = _scrapes(prometheus) - scrapes_before
            if producer is not None:
                producer.join(60)
                assert producer.error is None, producer.error
            sent = sent_before + events

            def folded(target: int = sent) -> int | None:
                n = sum(int(v) for v in tables.hgetall(processed_key).values())
                return n if n >= target else None

            try:
                total = wait_until(folded, 30, 0.2, what="the offered events folded")
            except AssertionError:
                total = sum(int(v) for v in tables.hgetall(processed_key).values())
            rows.append(
                CostRow(
                    rate=rate,
                    seconds=wall,
                    sidecar_cpu_s=cpu1 - cpu0,
                    baseline_cpu_s=base1 - base0,
                    redis_cpu_s=redis1 - redis0,
                    rss_mb=rss_mb(pid),
                    peak_rss_mb=peak_rss_mb(pid),
                    baseline_rss_mb=rss_mb(baseline.pid),
                    scrapes=scrapes,
                    sent=events,
                    folded=total - sent_before,
                )
            )
            sent_before = total
    finally:
        tables.close()
        baseline.terminate()
        baseline.wait(10)
        prometheus.stop()
        sidecar.stop()
    return rows


def _scrapes(prometheus: LocalPrometheus) -> int:
    """Scrapes of the sidecar Prometheus has made so far (its own counter of scrape samples)."""
    found = prometheus.query('count_over_time(up{job="ecomind-streams"}[1h])')
    return int(float(found[0]["value"][1])) if found else 0  # type: ignore[index]


def section(workdir: Path, bootstrap: str, redis: LocalRedis, smoke: bool) -> str:
    """The cost table as bench/run.py prints it."""
    seconds = 3.0 if smoke else 60.0
    rows = measure(workdir, bootstrap, redis, [0, 100, 1_000], seconds)
    head = (
        f"Idle and low-rate cost: one sidecar with default settings, Prometheus scraping every "
        f"{SCRAPE_INTERVAL_S:.0f} s, each rate offered for {seconds:.0f} s after {WARMUP_S:.0f} s of warm-up; "
        "the bare consumer reads the same topics at the same time."
    )
    return "\n".join([head, "", table(rows)])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--broker", choices=("kafka", "tansu"), default="kafka")
    p.add_argument("--seconds", type=float, default=60.0, help="measured window per rate")
    p.add_argument("--rates", default="0,100,1000", help="offered events/s, comma-separated")
    p.add_argument("--env", action="append", default=[], help="NAME=VALUE for the sidecar (repeatable)")
    args = p.parse_args()
    extra = dict(item.split("=", 1) for item in args.env)
    workdir = Path(tempfile.mkdtemp(prefix="ecomind-cost-"))
    broker = (LocalKafka(workdir / "kafka") if args.broker == "kafka" else LocalTansu(workdir / "tansu")).start()
    redis = LocalRedis(workdir / "redis").start(keep_data=False)
    try:
        rows = measure(workdir, broker.bootstrap, redis, [int(r) for r in args.rates.split(",")], args.seconds, extra)
    finally:
        redis.stop()
        broker.stop()
    print(f"sidecar settings: {extra or 'defaults'}")
    print(table(rows))


if __name__ == "__main__":
    main()
