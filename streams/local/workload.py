"""A seeded workload with its truth, produced from a background thread while the test injects faults."""

from __future__ import annotations

import asyncio
import random
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from zoneinfo import ZoneInfo

import orjson
from aiokafka import AIOKafkaProducer

from streams.local.scrape import Samples, series, value
from streams.local.timestamps import EPOCH_MS, format_ts, previous_day_ms, ts_ms_of
from tables.delta import NANO

DAY_MS = 86_400_000
WINDOW_DAYS = 30  # the rolling windows' reach, restated here: the truth does not import the tables

PROVIDERS = (("openai", "gpt-4o"), ("anthropic", "claude"), ("google", "gemini"))


@dataclass
class Truth:
    ingested: Counter[tuple[str, str]] = field(default_factory=Counter)
    calls: Counter[tuple[str, str]] = field(default_factory=Counter)
    users: set[tuple[str, str]] = field(default_factory=set)
    kwh_nano: Counter[str] = field(default_factory=Counter)
    raw_count: int = 0
    enriched_count: int = 0
    # Day-aware truth for the second set of business metrics; `users` and `kwh_nano` above hold today's.
    zone: ZoneInfo = field(default_factory=lambda: ZoneInfo("UTC"))
    today: int = 0  # local date ordinal of the workload's "now"; 0: every event is today's
    days_by_user: dict[tuple[str, str], set[int]] = field(default_factory=dict)
    tokens: Counter[tuple[int, str, str]] = field(default_factory=Counter)  # (day, org, "in"/"out")
    model_kwh_nano: Counter[tuple[int, str, str]] = field(default_factory=Counter)  # (day, provider, model)
    model_co2_nano: Counter[tuple[int, str, str]] = field(default_factory=Counter)
    beyond_windows: int = 0  # raw events older than the windows reach

    def day(self, ev: dict[str, object]) -> int:
        # Any `ts` the workload writes (epoch ms, epoch-second floats, ISO-8601 text), read by the contract.
        return datetime.fromtimestamp(ts_ms_of(ev["ts"]) / 1000, self.zone).date().toordinal()

    def add_raw(self, ev: dict[str, object]) -> None:
        org, user = str(ev["org_id"]), str(ev["user_id"])
        day = self.day(ev)
        self.raw_count += 1
        self.ingested[(org, str(ev["provider"]))] += 1
        self.calls[(org, str(ev["model"]))] += 1
        if not self.today or day == self.today:
            self.users.add((org, user))
        if self.today and day <= self.today - WINDOW_DAYS:
            self.beyond_windows += 1
            return
        self.days_by_user.setdefault((org, user), set()).add(day)
        self.tokens[(day, org, "in")] += int(ev["tokens_in"])  # type: ignore[call-overload]
        self.tokens[(day, org, "out")] += int(ev["tokens_out"])  # type: ignore[call-overload]

    def add_enriched(self, ev: dict[str, object]) -> None:
        self.enriched_count += 1
        day = self.day(ev)
        kwh, co2 = round(float(ev["kwh"]) * NANO), round(float(ev["co2_kg"]) * NANO)  # type: ignore[arg-type]
        if not self.today or day == self.today:
            self.kwh_nano[str(ev["org_id"])] += kwh
        self.model_kwh_nano[(day, str(ev["provider"]), str(ev["model"]))] += kwh
        self.model_co2_nano[(day, str(ev["provider"]), str(ev["model"]))] += co2

    def business_mismatches(self, m: Samples, raw_topic: str) -> list[str]:
        """Every way the second set's scraped values (docs/business-metrics.md) differ from the truth."""
        today = self.today
        problems = []

        def active(days: int, orgs: bool) -> float:
            found = {
                (o if orgs else (o, u))
                for (o, u), ds in self.days_by_user.items()
                if any(today - days < d <= today for d in ds)
            }
            return float(len(found))

        checks = [
            ("weekly_active_users", value(m, "ecomind_weekly_active_users"), active(7, False)),
            ("monthly_active_users", value(m, "ecomind_monthly_active_users"), active(WINDOW_DAYS, False)),
            ("weekly_active_orgs", value(m, "ecomind_weekly_active_orgs"), active(7, True)),
            ("monthly_active_orgs", value(m, "ecomind_monthly_active_orgs"), active(WINDOW_DAYS, True)),
            (
                "dropped late for the windows",
                value(m, "ecomind_streams_events_dropped_late_windows_total", topic=raw_topic),
                float(self.beyond_windows),
            ),
        ]
        problems += [f"{name}: got {got} want {want}" for name, got, want in checks if got != want]
        per_org = Counter(o for (o, _), ds in self.days_by_user.items() if today in ds)
        got_per_org = {dict(k)["org_id"]: v for k, v in series(m, "ecomind_org_active_users_today").items()}
        want_per_org = {o: float(n) for o, n in per_org.items()} | {"__other__": 0.0}
        if got_per_org != want_per_org:
            problems.append(f"org_active_users_today differs: {_diff(got_per_org, want_per_org)}")
        if sum(got_per_org.values()) != value(m, "ecomind_daily_active_users"):
            problems.append("sum(org_active_users_today) differs from daily_active_users")
        got_tokens = {
            (dict(k)["org_id"], dict(k)["direction"]): v for k, v in series(m, "ecomind_tokens_today").items()
        }
        want_tokens = {(o, d): float(n) for (day, o, d), n in self.tokens.items() if day == today}
        want_tokens |= {("__other__", "in"): 0.0, ("__other__", "out"): 0.0}
        if got_tokens != want_tokens:
            problems.append(f"tokens_today differs: {_diff(got_tokens, want_tokens)}")
        for name, truth in (
            ("ecomind_model_kwh_today", self.model_kwh_nano),
            ("ecomind_model_co2_kg_today", self.model_co2_nano),
        ):
            got = {(dict(k)["provider"], dict(k)["model"]): round(v * NANO) for k, v in series(m, name).items()}
            want = {(p, md): n for (day, p, md), n in truth.items() if day == today} | {("__other__", "__other__"): 0}
            if {k: v for k, v in got.items() if v} != {k: v for k, v in want.items() if v}:
                problems.append(f"{name} differs: {_diff(got, want)}")
        return problems

    def mismatches(self, m: Samples, raw_topic: str, enriched_topic: str) -> list[str]:
        """Every way the scraped values differ from the truth; empty when they are exact."""
        problems = []
        got_ingested = {
            tuple(sorted(dict(k).items())): v for k, v in series(m, "ecomind_events_ingested_total").items()
        }
        want_ingested = {(("org_id", o), ("provider", p)): float(n) for (o, p), n in self.ingested.items()}
        if got_ingested != want_ingested:
            problems.append(f"ingested differs: {_diff(got_ingested, want_ingested)}")
        got_calls = {tuple(sorted(dict(k).items())): v for k, v in series(m, "ecomind_api_calls_total").items()}
        want_calls = {(("model", md), ("org_id", o)): float(n) for (o, md), n in self.calls.items()}
        if got_calls != want_calls:
            problems.append(f"calls differ: {_diff(got_calls, want_calls)}")
        checks = [
            ("daily_active_users", value(m, "ecomind_daily_active_users"), float(len(self.users))),
            ("daily_active_orgs", value(m, "ecomind_daily_active_orgs"), float(len({o for o, _ in self.users}))),
            (
                "processed raw",
                value(m, "ecomind_streams_events_processed_total", topic=raw_topic),
                float(self.raw_count),
            ),
            (
                "processed enriched",
                value(m, "ecomind_streams_events_processed_total", topic=enriched_topic),
                float(self.enriched_count),
            ),
        ]
        problems += [f"{name}: got {got} want {want}" for name, got, want in checks if got != want]
        for org, nano in self.kwh_nano.items():
            got = value(m, "ecomind_total_kwh_today", org_id=org)
            if got is None or round(got * NANO) != nano:
                problems.append(f"kwh {org}: got {got} want {nano / NANO}")
        return problems


def _diff(got: dict, want: dict) -> str:  # type: ignore[type-arg]
    keys = set(got) | set(want)
    bad = sorted(((k, got.get(k), want.get(k)) for k in keys if got.get(k) != want.get(k)), key=str)
    return f"{len(bad)} series, e.g. {bad[:3]}"


def raw_event(org: str, user: str, ts_ms: int, **extra: object) -> bytes:
    """One valid raw event (openai, gpt-4o, one token each way), with fields added or overridden:
    `raw_event("org_a", "u1", ts, tokens_in=-3)` is invalid, `raw_event(..., kwh=0.1, co2_kg=0.05)` is
    a valid enriched event. To leave a field out, see `without`."""
    body = {
        "org_id": org,
        "user_id": user,
        "provider": "openai",
        "model": "gpt-4o",
        "tokens_in": 1,
        "tokens_out": 1,
        "ts": ts_ms,
        **extra,
    }
    return orjson.dumps(body)


def without(event: bytes, *fields: str) -> bytes:
    """The encoded event with these fields left out, e.g. `without(raw_event(...), "org_id")`."""
    body = orjson.loads(event)
    for name in fields:
        del body[name]
    return orjson.dumps(body)


def build(
    seed: int,
    raw_events: int,
    enriched_every: int,
    orgs: int = 40,
    users: int = 3000,
    spread: float = 0.0,
    home_org: bool = False,
    *,
    ts_format: str = EPOCH_MS,
    late_fraction: float = 0.0,
    now_ms: int | None = None,
) -> tuple[list[bytes], list[bytes], Truth]:
    """`spread`: the share of events dated on other days, 1 to 35 days back (beyond the windows too) or
    up to six hours ahead, in any order: the rolling windows' workload. `home_org`: each user calls from
    one org, as in real traffic (the benchmark's workload); otherwise org and user are drawn apart, so that
    nearly every event is a distinct (org, user) pair, the hardest case for the tables.
    `ts_format`: how `ts` is written (streams/local/timestamps.py: epoch ms, epoch-second floats, or the
    gateway's ISO-8601 text). `late_fraction`: the share of events dated on the local day before now's,
    interleaved with today's (late, but kept by the daily tables). `now_ms`: the workload's "now" (the
    clock by default); a fixed one makes the same seed give the same bytes on any day. The defaults give
    the events this function always gave: the options draw from the generator only when set."""
    rng = random.Random(seed)
    now_ms = int(time.time() * 1000) if now_ms is None else now_ms
    truth = Truth()
    if spread or late_fraction:
        truth.today = truth.day({"ts": now_ms})
    raws, enriched = [], []
    for i in range(raw_events):
        provider, model = PROVIDERS[rng.randrange(len(PROVIDERS))]
        org, user = rng.randrange(orgs), rng.randrange(users)
        # Drawn in the order they always were, so that a seed gives the events it always gave.
        tokens_in, tokens_out, ts_ms = rng.randrange(1, 500), rng.randrange(1, 500), now_ms - rng.randrange(60_000)
        if spread and rng.random() < spread:
            ts_ms = (
                now_ms - rng.randint(1, 35) * DAY_MS if rng.random() < 0.9 else now_ms + rng.randrange(6 * 3_600_000)
            )
        elif late_fraction and rng.random() < late_fraction:
            ts_ms = previous_day_ms(rng, now_ms, truth.zone)
        ev: dict[str, object] = {
            "org_id": f"org_{user % orgs if home_org else org}",
            "user_id": f"u{user}",
            "provider": provider,
            "model": model,
            "tokens_in": tokens_in,
            "tokens_out": tokens_out,
            "ts": format_ts(ts_ms, ts_format),
        }
        raws.append(orjson.dumps(ev))
        truth.add_raw(ev)
        if i % enriched_every == 0:
            kwh = rng.randrange(1, 10_000) / 1e6
            enriched_ev = {**ev, "kwh": kwh, "co2_kg": kwh / 2}
            enriched.append(orjson.dumps(enriched_ev))
            truth.add_enriched(enriched_ev)
    return raws, enriched, truth


class BackgroundProducer(threading.Thread):
    """Produces the workload at a steady rate, so faults land mid-stream."""

    def __init__(
        self,
        bootstrap: str,
        plan: list[tuple[str, list[bytes]]],
        rate_per_s: float,
        idempotent: bool = False,
        hold_back: int = 0,
        linger_ms: int = 10,
        compression: str | None = None,
    ) -> None:
        super().__init__(daemon=True)
        # The last `hold_back` events wait for release(): a test's faults then land mid-stream however
        # slowly the machine restarts things.
        self.hold_back = hold_back
        self.released = threading.Event()
        self.idempotent = idempotent  # no duplicates when the broker fails mid-send (Kafka, not Tansu)
        self.bootstrap = bootstrap
        self.plan = plan
        self.rate_per_s = rate_per_s
        self.linger_ms = linger_ms  # how long the producer gathers a batch: 5 gives the gateway's small ones
        self.compression = compression  # the producer's codec: "gzip", "snappy", "lz4", "zstd" or None
        self.sent = 0
        self.error: BaseException | None = None

    def release(self) -> None:
        self.released.set()

    def run(self) -> None:
        try:
            asyncio.run(self._run())
        except BaseException as exc:
            self.error = exc

    async def _run(self) -> None:
        producer = AIOKafkaProducer(
            bootstrap_servers=self.bootstrap,
            linger_ms=self.linger_ms,
            acks="all",
            enable_idempotence=self.idempotent,
            request_timeout_ms=120_000,
            compression_type=self.compression,
        )
        await producer.start()
        started = time.monotonic()
        delivered: list[asyncio.Future[object]] = []
        try:
            total = sum(len(values) for _, values in self.plan)
            for topic, values in self.plan:
                for value_bytes in values:
                    if self.sent == total - self.hold_back:
                        while not self.released.is_set():
                            await asyncio.sleep(0.05)
                        started = time.monotonic() - self.sent / self.rate_per_s
                    delivered.append(await producer.send(topic, value_bytes))
                    self.sent += 1
                    ahead = self.sent / self.rate_per_s - (time.monotonic() - started)
                    if ahead > 0.02:
                        await asyncio.sleep(ahead)
            await producer.flush()
            # A record the broker never acknowledged must fail the run, not vanish from the truth.
            await asyncio.gather(*delivered)
        finally:
            await producer.stop()
