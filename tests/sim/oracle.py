"""The checker's own fold: what a scrape must export, from the counted records and the metric definitions.

The rest of the checker folds the truth with the product's `fold_raw`/`fold_enriched` and `build_payload`,
so a bug the fold shares with the check cannot show there. This module computes the exported values again
from the definitions alone (README's metrics table, docs/business-metrics.md, the event contract in
docs/design.md, the pipeline metrics in docs/operations.md), slowly and plainly: each record is read by
the contract as written (tests/sim/oracle_contract.py), dated by zoneinfo, and counted in plain dicts and
sets. Nothing of the fold, the store, the calendar or the decoder is imported (tests/unit/sim/test_oracle.py
holds both modules' imports to that). What it is compared with is what the exporter would serve: the
simulated Redis read through the product's read path (tests/sim/scrape.py).

Left out: the enrichment-delay histogram (its buckets and the cap on the sum are the product's choice,
documented nowhere) and the count of label values folded into "__other__" (the simulated labels are fewer
than the caps).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import TYPE_CHECKING, Any, NamedTuple
from zoneinfo import ZoneInfo

from tests.sim.oracle_contract import Event, Refused, local_day, read_event

if TYPE_CHECKING:
    from aiokafka import TopicPartition

    from tests.sim.kafka import Entry
    from tests.sim.world import World

OTHER = "__other__"  # the label value every capped family exports, at 0 when nothing is folded into it
WEEK, MONTH = 7, 30  # local days of the rolling windows, today included
NANO = 1_000_000_000  # energy is summed in units of 1e-9, each event's amount rounded on its own


class Folded(NamedTuple):
    """A counted record: its topic, broker time and value, and the instant its write was folded at."""

    topic: str
    timestamp: int
    value: bytes | None
    folded_ms: int


@dataclass
class Truth:
    """Everything the export shows, counted plainly."""

    processed: Counter[str] = field(default_factory=Counter)
    invalid: Counter[tuple[str, str]] = field(default_factory=Counter)
    dropped_late: Counter[str] = field(default_factory=Counter)
    dropped_late_windows: Counter[str] = field(default_factory=Counter)
    last_ts_ms: dict[str, int] = field(default_factory=dict)
    ingested: Counter[tuple[str, str]] = field(default_factory=Counter)
    calls: Counter[tuple[str, str]] = field(default_factory=Counter)
    # Per local day kept: the day's events, as the daily tables hold them.
    days: dict[date, list[Event]] = field(default_factory=dict)
    enriched_days: dict[date, list[Event]] = field(default_factory=dict)
    # Per subject, every local day it had a valid raw event on, within the windows' reach when folded.
    user_days: dict[tuple[str, str], set[date]] = field(default_factory=dict)
    org_days: dict[str, set[date]] = field(default_factory=dict)


def fold(records: Iterable[Folded], raw_topic: str, zone: ZoneInfo, days_kept: int, rules: tuple[int, int]) -> Truth:
    """`rules`: (max future ms, max payload bytes)."""
    truth = Truth()
    for r in records:
        enriched = r.topic != raw_topic
        truth.last_ts_ms[r.topic] = max(r.timestamp, truth.last_ts_ms.get(r.topic, r.timestamp))
        try:
            e = read_event(r.value, enriched, r.folded_ms, *rules)
        except Refused as refused:
            truth.invalid[(r.topic, refused.reason)] += 1
            continue
        truth.processed[r.topic] += 1
        day, fold_day = local_day(e.ts_ms, zone), local_day(r.folded_ms, zone)
        # The daily tables keep the fold's today and the days_kept - 1 days before it.
        kept = day >= fold_day - timedelta(days=days_kept - 1)
        if not kept:
            truth.dropped_late[r.topic] += 1
        if enriched:
            if kept:
                truth.enriched_days.setdefault(day, []).append(e)
            continue
        truth.ingested[(e.org, e.provider)] += 1
        truth.calls[(e.org, e.model)] += 1
        if kept:
            truth.days.setdefault(day, []).append(e)
        if day <= fold_day - timedelta(days=MONTH):
            truth.dropped_late_windows[r.topic] += 1
            continue
        truth.user_days.setdefault((e.org, e.user), set()).add(day)
        truth.org_days.setdefault(e.org, set()).add(day)
    return truth


def exported_totals(truth: Truth, today: date) -> dict[str, Any]:
    """What a scrape on `today` exports that is not a figure of one day."""

    def active(days_by_subject: dict[Any, set[date]], n: int) -> int:
        first = today - timedelta(days=n - 1)
        return sum(1 for days in days_by_subject.values() if any(first <= d <= today for d in days))

    return {
        "processed": dict(truth.processed),
        "invalid": dict(truth.invalid),
        "dropped_late": dict(truth.dropped_late),
        "dropped_late_windows": dict(truth.dropped_late_windows),
        "last_ts_ms": truth.last_ts_ms,
        "ingested": dict(truth.ingested),
        "calls": dict(truth.calls),
        "weekly_active_users": active(truth.user_days, WEEK),
        "monthly_active_users": active(truth.user_days, MONTH),
        "weekly_active_orgs": active(truth.org_days, WEEK),
        "monthly_active_orgs": active(truth.org_days, MONTH),
        "unreadable": {},
    }


def exported_day(truth: Truth, day: date) -> dict[str, Any]:
    """The figures a scrape on local day `day` exports for that day; every capped family has its
    "__other__" series, at 0 here (the simulated labels are fewer than the caps)."""
    raw, enriched = truth.days.get(day, []), truth.enriched_days.get(day, [])
    users = {(e.org, e.user) for e in raw}
    tokens: Counter[tuple[str, str]] = Counter({(OTHER, "in"): 0, (OTHER, "out"): 0})
    for e in raw:
        tokens[(e.org, "in")] += e.tokens_in
        tokens[(e.org, "out")] += e.tokens_out
    kwh, co2, model_kwh, model_co2 = Counter[Any](), Counter[Any](), Counter[Any](), Counter[Any]()
    for e in enriched:
        kwh[e.org] += round(e.kwh * NANO)
        co2[e.org] += round(e.co2_kg * NANO)
        model_kwh[(e.provider, e.model)] += round(e.kwh * NANO)
        model_co2[(e.provider, e.model)] += round(e.co2_kg * NANO)
    return {
        "active_orgs": len({e.org for e in raw}),
        "active_users": len(users),
        "org_active_users": {OTHER: 0, **Counter(org for org, _ in users)},
        "tokens": dict(tokens),
        "kwh": {OTHER: 0.0, **{org: n / NANO for org, n in kwh.items()}},
        "co2_kg": {OTHER: 0.0, **{org: n / NANO for org, n in co2.items()}},
        "model_kwh": {(OTHER, OTHER): 0.0, **{k: n / NANO for k, n in model_kwh.items()}},
        "model_co2_kg": {(OTHER, OTHER): 0.0, **{k: n / NANO for k, n in model_co2.items()}},
    }


def differences(want: dict[str, Any], snapshot: object) -> list[str]:
    """Each exported value that is not the oracle's, with the keys that differ. A series at 0 and no series
    read alike (a sum of zero amounts may or may not leave a field), except "__other__", always exported."""

    def shown(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: v for k, v in value.items() if v or OTHER in (k if isinstance(k, tuple) else (k,))}
        return value

    out = []
    for name, expected in want.items():
        w, h = shown(expected), shown(getattr(snapshot, name))
        if w != h:
            if isinstance(w, dict) and isinstance(h, dict):
                keys = sorted((k for k in w.keys() | h.keys() if w.get(k) != h.get(k)), key=repr)
                w, h = ({k: d.get(k, "absent") for k in keys[:4]} for d in (w, h))
            out.append(f"{name}: want {w}, exported {h}")
    return out


def check_oracle(
    world: World, counted: dict[TopicPartition, list[Entry]], folded_at: dict[int, int], end_ms: int
) -> None:
    """What a scrape at the end exports equals the oracle's fold of every counted record: today's figures
    and the totals; where the run crossed a midnight, also yesterday's figures as a scrape on that day reads
    them (a scrape costs a few milliseconds; calendar_oracle checks yesterday's keys in every schedule)."""
    from tests.sim.scrape import scrape
    from tests.sim.world import Violation

    s = world.settings
    zone = ZoneInfo(s.timezone)
    records = [
        Folded(tp.topic, e.timestamp, e.value, folded_at.get(id(e), end_ms))
        for tp, entries in counted.items()
        for e in entries
    ]
    truth = fold(records, s.raw_topic, zone, s.days_kept, (s.max_future_seconds * 1000, s.max_payload_bytes))
    today = local_day(end_ms, zone)
    crossed = local_day(int(world.clock.start_s * 1000), zone) < today
    found = []
    for back in range(2 if crossed and s.days_kept > 1 else 1):
        day = today - timedelta(days=back)
        want = exported_day(truth, day) if back else {**exported_totals(truth, today), **exported_day(truth, day)}
        snapshot = scrape(world.redis.keyspace, world.store.keys, day.isoformat(), s.raw_topic)
        found += [f"{day} {d}" for d in differences(want, snapshot)]
    if found:
        raise Violation("the export differs from the oracle's own fold of the counted records: " + "; ".join(found[:3]))
