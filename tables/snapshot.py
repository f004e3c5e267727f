"""Read the tables for one scrape, in one atomic step, touching only the label values that get series.

Reading and decoding are apart: `read_tables` returns Redis's replies as named raw parts, and the pure
`decode` builds the Snapshot. Labelled orgs are read one by one; everything else is "__other__",
computed as a total minus the labelled part, so a scrape costs O(labelled values) whatever the number
of orgs, and sums stay exact.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import redis.asyncio as aioredis

from tables.delta import DELAY_BUCKETS_SECONDS, NANO, unpair
from tables.keys import (
    DAY_CO2,
    DAY_KWH,
    DAY_ORGS,
    DAY_TOTALS,
    DAY_USERS,
    DELAY,
    DELAY_SUM,
    DROPPED_LATE,
    INVALID,
    LAST_TS,
    MODEL_FIELD,
    PROCESSED,
    PROVIDER_FIELD,
    REMAINDER_SUFFIX,
    TOTAL_CO2,
    TOTAL_KWH,
    Keys,
    delay_bucket_field,
    join_amount,
)
from tables.labels import cap_amounts, cap_pairs

LABELS = ("org_id", "provider", "model")


@dataclass
class Snapshot:
    ingested: dict[tuple[str, str], int]
    calls: dict[tuple[str, str], int]
    processed: dict[str, int]
    invalid: dict[tuple[str, str], int]
    dropped_late: dict[str, int]
    last_ts_ms: dict[str, int]
    delay_buckets: list[int]
    delay_sum_ms: int
    active_orgs: int
    active_users: int
    kwh: dict[str, float]
    co2_kg: dict[str, float]
    folded: dict[str, int] = field(default_factory=dict)  # label -> values folded into "__other__"


@dataclass
class RawTables:
    """Redis's replies for one scrape, by name; hashes as dicts of strings, absent values as None."""

    members: dict[str, list[str]]  # label -> labelled values, sorted
    processed: dict[str, str]
    invalid: dict[str, str]
    dropped_late: dict[str, str]
    last_ts: dict[str, str]
    delay: dict[str, str]
    delay_remainder: dict[str, str]
    active_orgs: int
    active_users: int
    org_fields: dict[str, dict[str, str]]  # labelled org -> its hash
    kwh: dict[str, tuple[str | None, str | None]]  # labelled org -> (whole, remainder)
    co2: dict[str, tuple[str | None, str | None]]
    totals: dict[str, str]
    totals_remainder: dict[str, str]
    by_provider: dict[str, str | None]
    by_model: dict[str, str | None]
    activity_sizes: dict[str, int]  # label -> values with any activity


async def label_members(client: aioredis.Redis, keys: Keys) -> dict[str, set[str]]:
    pipe = client.pipeline(transaction=False)
    for label in LABELS:
        pipe.smembers(keys.labels(label))
    return {label: set(found) for label, found in zip(LABELS, await pipe.execute(), strict=True)}


async def read_tables(client: aioredis.Redis, keys: Keys, today: str, members: dict[str, set[str]]) -> RawTables:
    k = keys
    orgs, providers, models = (sorted(members[label]) for label in LABELS)
    # MULTI/EXEC: totals and labelled parts must come from the same instant, or "__other__" could dip.
    pipe = client.pipeline(transaction=True)
    for name in (PROCESSED, INVALID, DROPPED_LATE, LAST_TS, DELAY):
        pipe.hgetall(k.key(name))
    pipe.hgetall(k.key(DELAY) + REMAINDER_SUFFIX)
    pipe.scard(k.day(today, DAY_ORGS))
    pipe.scard(k.day(today, DAY_USERS))
    for org in orgs:
        pipe.hgetall(k.org(org))
    for name in (DAY_KWH, DAY_CO2):
        for key in (k.day(today, name), k.day(today, name) + REMAINDER_SUFFIX):
            pipe.hmget(key, ["", *orgs])  # a leading placeholder field: HMGET needs at least one
    pipe.hgetall(k.day(today, DAY_TOTALS))
    pipe.hgetall(k.day(today, DAY_TOTALS) + REMAINDER_SUFFIX)
    pipe.hmget(k.activity("provider"), ["", *providers])
    pipe.hmget(k.activity("model"), ["", *models])
    for label in LABELS:
        pipe.hlen(k.activity(label))
    replies = iter(await pipe.execute())

    def take(n: int) -> list[object]:
        return [next(replies) for _ in range(n)]

    processed, invalid, late, last_ts, delay, delay_rem, active_orgs, active_users = take(8)
    org_fields = dict(zip(orgs, take(len(orgs)), strict=True))
    kwh, kwh_rem, co2, co2_rem, totals, totals_rem, by_provider, by_model = take(8)
    sizes = take(len(LABELS))
    return RawTables(
        members={"org_id": orgs, "provider": providers, "model": models},
        processed=processed,  # type: ignore[arg-type]
        invalid=invalid,  # type: ignore[arg-type]
        dropped_late=late,  # type: ignore[arg-type]
        last_ts=last_ts,  # type: ignore[arg-type]
        delay=delay,  # type: ignore[arg-type]
        delay_remainder=delay_rem,  # type: ignore[arg-type]
        active_orgs=int(active_orgs),  # type: ignore[call-overload]
        active_users=int(active_users),  # type: ignore[call-overload]
        org_fields=org_fields,  # type: ignore[arg-type]
        kwh=dict(zip(orgs, zip(kwh[1:], kwh_rem[1:], strict=True), strict=True)),  # type: ignore[index]
        co2=dict(zip(orgs, zip(co2[1:], co2_rem[1:], strict=True), strict=True)),  # type: ignore[index]
        totals=totals,  # type: ignore[arg-type]
        totals_remainder=totals_rem,  # type: ignore[arg-type]
        by_provider=dict(zip(providers, by_provider[1:], strict=True)),  # type: ignore[index]
        by_model=dict(zip(models, by_model[1:], strict=True)),  # type: ignore[index]
        activity_sizes={label: int(n) for label, n in zip(LABELS, sizes, strict=True)},  # type: ignore[call-overload]
    )


def decode(raw: RawTables, raw_topic: str) -> Snapshot:
    """The Snapshot a scrape exports, from Redis's raw replies: pure, so it is tested on plain data."""
    providers, models = set(raw.members["provider"]), set(raw.members["model"])
    per_org_ingested = {org: _prefixed(f, PROVIDER_FIELD) for org, f in raw.org_fields.items()}
    per_org_calls = {org: _prefixed(f, MODEL_FIELD) for org, f in raw.org_fields.items()}
    raw_total = int(raw.processed.get(raw_topic, 0))
    return Snapshot(
        ingested=cap_pairs(per_org_ingested, _present(raw.by_provider), raw_total, providers),
        calls=cap_pairs(per_org_calls, _present(raw.by_model), raw_total, models),
        processed=_ints(raw.processed),
        invalid={unpair(f): int(v) for f, v in raw.invalid.items()},
        dropped_late=_ints(raw.dropped_late),
        last_ts_ms={t: int(float(v)) for t, v in raw.last_ts.items()},
        delay_buckets=[int(raw.delay.get(delay_bucket_field(i), 0)) for i in range(len(DELAY_BUCKETS_SECONDS) + 1)],
        delay_sum_ms=join_amount(raw.delay.get(DELAY_SUM), raw.delay_remainder.get(DELAY_SUM)),
        active_orgs=raw.active_orgs,
        active_users=raw.active_users,
        kwh=_today(raw.kwh, raw.totals, raw.totals_remainder, TOTAL_KWH),
        co2_kg=_today(raw.co2, raw.totals, raw.totals_remainder, TOTAL_CO2),
        folded={label: max(0, raw.activity_sizes[label] - len(raw.members[label])) for label in LABELS},
    )


def _prefixed(fields: dict[str, str], prefix: str) -> dict[str, int]:
    return {f[len(prefix) :]: int(v) for f, v in fields.items() if f.startswith(prefix)}


def _present(values: dict[str, str | None]) -> dict[str, int]:
    return {name: int(v) for name, v in values.items() if v is not None}


def _ints(found: dict[str, str]) -> dict[str, int]:
    return {key: int(v) for key, v in found.items()}


def _today(
    labelled: dict[str, tuple[str | None, str | None]], totals: dict[str, str], remainders: dict[str, str], name: str
) -> dict[str, float]:
    amounts = {org: join_amount(*parts) for org, parts in labelled.items() if parts != (None, None)}
    total = join_amount(totals.get(name), remainders.get(name))
    return {org: n / NANO for org, n in cap_amounts(amounts, total).items()}
