"""One function per contender: each runs on the same broker and data and returns a Row."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import orjson
import redis as redis_sync

from bench.procstat import cpu_seconds, peak_rss_mb
from streams.local.proc import Server
from streams.local.redis_server import LocalRedis
from streams.local.redis_topologies import LocalCluster
from streams.local.scrape import Samples, value
from streams.local.sidecar_proc import SidecarProc, wait_until
from streams.local.workload import Truth
from tables.keys import Keys


@dataclass
class Row:
    name: str
    events: int
    seconds: float
    cpu_s: float
    rss_mb: float
    note: str = ""

    @property
    def events_per_s(self) -> float:
        return self.events / self.seconds if self.seconds > 0 else 0.0

    @property
    def cpu_s_per_million(self) -> float:
        return self.cpu_s / self.events * 1e6 if self.events else 0.0


@dataclass
class Topics:
    bootstrap: str
    raw: str
    enriched: str
    total: int


CEILING_NAMES = {
    "orjson": "ceiling: bare aiokafka + orjson",
    "schema": "bare aiokafka + EcoMind's msgspec schemas (not the ceiling)",
}


def ceiling(t: Topics, decoder: str = "orjson") -> Row:
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench.ceiling",
            "--bootstrap",
            t.bootstrap,
            "--topics",
            f"{t.raw},{t.enriched}",
            "--expect",
            str(t.total),
            "--decoder",
            decoder,
        ],
        check=True,
        capture_output=True,
        text=True,
        timeout=1800,
    )
    r = orjson.loads(out.stdout.strip().splitlines()[-1])
    return Row(CEILING_NAMES[decoder], int(r["events"]), r["seconds"], r["cpu_s"], r["rss_mb"])


def naive_faust(t: Topics, workdir: Path, events: int) -> Row:
    uid = uuid.uuid4().hex[:6]
    progress = workdir / f"naive-{uid}"
    env = {
        "NAIVE_RAW_TOPIC": t.raw,
        "NAIVE_ENRICHED_TOPIC": t.enriched,
        "NAIVE_APP_ID": f"naive-{uid}",
        "NAIVE_PROGRESS_FILE": str(progress),
    }
    faust = str(Path(sys.executable).parent / "faust")
    argv = [
        faust,
        "-A",
        "bench.naive_faust",
        "--datadir",
        str(workdir / f"{progress.name}.data"),
        "worker",
        "-l",
        "warn",
    ]
    return _progress_run("naive Faust app (tables per event)", argv, env, t, progress, events)


def quix(t: Topics, workdir: Path, events: int) -> Row:
    uid = uuid.uuid4().hex[:6]
    progress = workdir / f"quix-{uid}"
    env = {
        "QUIX_RAW_TOPIC": t.raw,
        "QUIX_ENRICHED_TOPIC": t.enriched,
        "QUIX_GROUP": f"quix-{uid}",
        "QUIX_STATE_DIR": str(workdir / f"{progress.name}.state"),
        "QUIX_PROGRESS_FILE": str(progress),
    }
    argv = [sys.executable, "-m", "bench.quix_app"]
    return _progress_run("Quix Streams (group_by + daily windows)", argv, env, t, progress, events)


def _progress_run(name: str, argv: list[str], extra_env: dict[str, str], t: Topics, progress: Path, events: int) -> Row:
    """Runs a contender that reports (events, seconds from first to last) in a file, up to `events`."""
    env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": t.bootstrap, **extra_env}
    server = Server(name, argv, progress.with_suffix(".log"), env=env).start()
    assert server.proc is not None
    pid = server.proc.pid
    try:

        def done() -> tuple[int, float] | None:
            if not server.running():
                raise RuntimeError(f"{name} exited; see {server.log_path}")
            if not progress.exists():
                return None
            parts = progress.read_text().split()
            if len(parts) != 2:  # read while the contender rewrites it
                return None
            n, secs = int(parts[0]), float(parts[1])
            return (n, secs) if n >= events else None

        n, secs = wait_until(done, 1800, 0.5, what=f"{name} progress")
        return Row(name, n, secs, cpu_seconds(pid), peak_rss_mb(pid), note=f"first {n:,} events")
    finally:
        server.stop()


# The checkout this benchmark runs from. The venv's `faust` may be an editable install of another checkout
# (a git worktree shares its venv): PYTHONPATH puts this one's packages ahead of that install's finder.
ROOT = Path(__file__).resolve().parent.parent


def sidecar_env(
    bootstrap: str, redis: LocalRedis | LocalCluster, app_id: str, raw: str, enriched: str, **extra: str
) -> dict[str, str]:
    """The sidecar's settings in every benchmark: defaults, but for where its inputs and state are."""
    return {
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
        "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
        "REDIS_URL": redis.url,
        "STREAMS_APP_ID": app_id,
        "STREAMS_RAW_TOPIC": raw,
        "STREAMS_ENRICHED_TOPIC": enriched,
        **extra,
    }


def ecomind(t: Topics, workdir: Path, redis: LocalRedis, truth: Truth | None, redis_pid: int) -> tuple[Row, str]:
    """The sidecar with its real configuration; checks its final /metrics against the truth."""
    app_id = f"bench-{uuid.uuid4().hex[:6]}"
    proc = SidecarProc(workdir / app_id, sidecar_env(t.bootstrap, redis, app_id, t.raw, t.enriched)).start()
    redis_cpu_before = cpu_seconds(redis_pid)
    try:
        # Timed from readiness (partitions assigned and positioned), as the ceiling is from its start.
        proc.wait_ready(120, interval_s=0.02)
        first = time.monotonic()
        assert proc.server is not None and proc.server.proc is not None
        pid = proc.server.proc.pid
        # Progress is read from the tables themselves, so that polling does not load the sidecar with
        # scrapes; the values are then checked on /metrics.
        tables = redis_sync.Redis.from_url(redis.url, decode_responses=True)
        processed_key = Keys(app_id).key("processed")
        deadline = time.monotonic() + 1800
        while time.monotonic() < deadline:
            if sum(int(v) for v in tables.hgetall(processed_key).values()) >= t.total:
                break
            time.sleep(0.02)
        seconds = time.monotonic() - first
        final = wait_until(partial(scrape_at, proc, t, t.total), 60)
        verdict = "values equal the truth"
        if truth is not None:
            problems = truth.mismatches(final, t.raw, t.enriched)
            verdict = "values equal the truth" if not problems else "WRONG: " + "; ".join(problems[:3])
        cpu = cpu_seconds(pid) + cpu_seconds(redis_pid) - redis_cpu_before
        row = Row(
            "EcoMind Streams (sidecar + Redis CPU)",
            int(processed(final, t)),
            seconds,
            cpu,
            peak_rss_mb(pid),
            note=verdict,
        )
        return row, app_id
    finally:
        proc.stop()


def scrape_at(proc: SidecarProc, t: Topics, floor: int) -> Samples | None:
    """The scrape, once it shows at least `floor` events processed."""
    m = proc.scrape()
    return m if processed(m, t) >= floor else None


def processed(m: Samples, t: Topics) -> float:
    return (value(m, "ecomind_streams_events_processed_total", topic=t.raw) or 0.0) + (
        value(m, "ecomind_streams_events_processed_total", topic=t.enriched) or 0.0
    )
