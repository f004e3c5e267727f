"""Read the tables for one scrape, in one atomic step, touching only the label values that get series.

Reading and decoding are apart: `read_tables` returns Redis's replies as named raw parts, and the pure
`decode` builds the Snapshot. Labelled orgs are read one by one; everything else is "__other__",
computed as a total minus the labelled part, so a scrape costs O(labelled values) whatever the number
of orgs, and sums stay exact.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from typing import Any

import redis.asyncio as aioredis

from tables.checked import readable
from tables.delta import DELAY_BUCKETS_SECONDS, NANO, unpair
from tables.keys import (
    CO2_FIELD,
    DAY_CO2,
    DAY_KWH,
    DAY_MODEL_ENERGY,
    DAY_ORG_USERS,
    DAY_ORGS,
    DAY_TOKENS,
    DAY_TOTALS,
    DAY_USERS,
    DELAY,
    DELAY_SUM,
    DROPPED_LATE,
    DROPPED_LATE_WINDOWS,
    INVALID,
    KWH_FIELD,
    LAST_TS,
    MODEL_FIELD,
    ORGS,
    PROCESSED,
    PROVIDER_FIELD,
    REMAINDER_SUFFIX,
    TOKENS_IN,
    TOKENS_OUT,
    TOTAL_CO2,
    TOTAL_KWH,
    TOTAL_TOKENS_IN,
    TOTAL_TOKENS_OUT,
    USERS,
    WINDOW_DAYS,
    Keys,
    delay_bucket_field,
    join_amount,
)
from tables.labels import OTHER, cap_amounts, cap_pairs
from tables.reads import Reads

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
    # The second set (docs/business-metrics.md).
    weekly_active_users: int = 0
    monthly_active_users: int = 0
    weekly_active_orgs: int = 0
    monthly_active_orgs: int = 0
    org_active_users: dict[str, int] = field(default_factory=dict)  # org -> users today
    tokens: dict[tuple[str, str], int] = field(default_factory=dict)  # (org, "in"/"out") -> today's tokens
    model_kwh: dict[tuple[str, str], float] = field(default_factory=dict)  # (provider, model) -> kWh today
    model_co2_kg: dict[tuple[str, str], float] = field(default_factory=dict)
    dropped_late_windows: dict[str, int] = field(default_factory=dict)  # topic -> events beyond the windows
    # table (a RawTables field) -> stored values that are not numbers, left out of this scrape
    unreadable: dict[str, int] = field(default_factory=dict)


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
    today_index: int = 0  # today's local date ordinal
    # subject -> day a -> {day b: subjects whose consecutive active days are (a, b)}, for the 30 days to today
    window_pairs: dict[str, dict[int, dict[str, str]]] = field(default_factory=dict)
    dropped_late_windows: dict[str, str] = field(default_factory=dict)
    org_users: dict[str, str | None] = field(default_factory=dict)  # labelled org -> users today
    tokens: dict[str, tuple[str | None, str | None]] = field(default_factory=dict)  # prefix + org -> amount
    provider_energy: dict[str, tuple[dict[str, str], dict[str, str]]] = field(default_factory=dict)
    model_energy: dict[str, tuple[str | None, str | None]] = field(default_factory=dict)  # prefix + model
    # The label sets grew between reading them and reading the tables: a value admitted meanwhile has
    # parts in the totals but none read, so it would show under "__other__" until the next scrape.
    members_stale: bool = False


async def label_members(client: aioredis.Redis, keys: Keys) -> dict[str, set[str]]:
    pipe = client.pipeline(transaction=False)
    for label in LABELS:
        pipe.smembers(keys.labels(label))
    return {label: set(found) for label, found in zip(LABELS, await pipe.execute(), strict=True)}


async def consistent_tables(
    client: aioredis.Redis, keys: Keys, today: str, members: dict[str, set[str]] | None = None, tries: int = 3
) -> RawTables:
    """The tables with every admitted label value's parts, read again while a write admitted new values
    between the two reads (a scrape racing the first batch of new orgs); label caps bound how often."""
    for _ in range(tries):
        raw = await read_tables(client, keys, today, members or await label_members(client, keys))
        if not raw.members_stale:
            return raw
        members = None
    return raw


async def read_tables(client: aioredis.Redis, keys: Keys, today: str, members: dict[str, set[str]]) -> RawTables:
    k = keys
    orgs, providers, models = (sorted(members[label]) for label in LABELS)
    # One atomic script: totals and labelled parts must come from the same instant, or "__other__" could dip.
    reads = Reads()
    for name in (PROCESSED, INVALID, DROPPED_LATE, LAST_TS, DELAY):
        reads.hgetall(k.key(name))
    reads.hgetall(k.key(DELAY) + REMAINDER_SUFFIX)
    reads.scard(k.day(today, DAY_ORGS))
    reads.scard(k.day(today, DAY_USERS))
    for org in orgs:
        reads.hgetall(k.org(org))
    for name in (DAY_KWH, DAY_CO2):
        for key in (k.day(today, name), k.day(today, name) + REMAINDER_SUFFIX):
            reads.hmget(key, orgs)
    reads.hgetall(k.day(today, DAY_TOTALS))
    reads.hgetall(k.day(today, DAY_TOTALS) + REMAINDER_SUFFIX)
    reads.hmget(k.activity("provider"), providers)
    reads.hmget(k.activity("model"), models)
    for label in LABELS:
        reads.hlen(k.activity(label))
    today_index = date.fromisoformat(today).toordinal()
    days = range(today_index - WINDOW_DAYS + 1, today_index + 1)
    for subject in (USERS, ORGS):
        for day in days:
            reads.hgetall(k.window_pairs(subject, day))
    reads.hgetall(k.key(DROPPED_LATE_WINDOWS))
    reads.hmget(k.day(today, DAY_ORG_USERS), orgs)
    token_fields = [prefix + org for prefix in (TOKENS_IN, TOKENS_OUT) for org in orgs]
    for key in (k.day(today, DAY_TOKENS), k.day(today, DAY_TOKENS) + REMAINDER_SUFFIX):
        reads.hmget(key, token_fields)
    for provider in providers:
        reads.hgetall(k.provider_energy(today, provider))
        reads.hgetall(k.provider_energy(today, provider) + REMAINDER_SUFFIX)
    model_fields = [prefix + model for prefix in (KWH_FIELD, CO2_FIELD) for model in models]
    for key in (k.day(today, DAY_MODEL_ENERGY), k.day(today, DAY_MODEL_ENERGY) + REMAINDER_SUFFIX):
        reads.hmget(key, model_fields)
    for label in LABELS:  # admission only adds: the same sizes mean the same members
        reads.scard(k.labels(label))
    replies = iter(await reads.execute(client))

    def take(n: int) -> list[Any]:
        return [next(replies) for _ in range(n)]

    processed, invalid, late, last_ts, delay, delay_rem, active_orgs, active_users = take(8)
    org_fields = dict(zip(orgs, take(len(orgs)), strict=True))
    kwh, kwh_rem, co2, co2_rem, totals, totals_rem, by_provider, by_model = take(8)
    sizes = take(len(LABELS))
    window_pairs = {subject: dict(zip(days, take(len(days)), strict=True)) for subject in (USERS, ORGS)}
    late_windows, org_users, tokens, tokens_rem = take(4)
    energy = take(2 * len(providers))
    model_energy, model_energy_rem = take(2)
    label_sizes = take(len(LABELS))
    stale = any(int(n) != len(members[label]) for label, n in zip(LABELS, label_sizes, strict=True))
    return RawTables(
        members_stale=stale,
        members={"org_id": orgs, "provider": providers, "model": models},
        processed=processed,
        invalid=invalid,
        dropped_late=late,
        last_ts=last_ts,
        delay=delay,
        delay_remainder=delay_rem,
        active_orgs=int(active_orgs),
        active_users=int(active_users),
        org_fields=org_fields,
        kwh=dict(zip(orgs, zip(kwh, kwh_rem, strict=True), strict=True)),
        co2=dict(zip(orgs, zip(co2, co2_rem, strict=True), strict=True)),
        totals=totals,
        totals_remainder=totals_rem,
        by_provider=dict(zip(providers, by_provider, strict=True)),
        by_model=dict(zip(models, by_model, strict=True)),
        activity_sizes={label: int(n) for label, n in zip(LABELS, sizes, strict=True)},
        today_index=today_index,
        window_pairs=window_pairs,
        dropped_late_windows=late_windows,
        org_users=dict(zip(orgs, org_users, strict=True)),
        tokens=dict(zip(token_fields, zip(tokens, tokens_rem, strict=True), strict=True)),
        provider_energy={p: (energy[2 * i], energy[2 * i + 1]) for i, p in enumerate(providers)},
        model_energy=dict(zip(model_fields, zip(model_energy, model_energy_rem, strict=True), strict=True)),
    )


def decode(raw: RawTables, raw_topic: str) -> Snapshot:
    """The Snapshot a scrape exports, from Redis's raw replies: pure, so it is tested on plain data.

    A stored value that is not a number (something else wrote it) costs its own series only: it is left
    out, counted in `unreadable` and logged, and the rest of the scrape is exported.
    """
    raw, unreadable = readable(raw)
    snap = _decode(raw, raw_topic)
    snap.unreadable = unreadable
    return snap


def _decode(raw: RawTables, raw_topic: str) -> Snapshot:
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
        weekly_active_users=active_in_window(raw.window_pairs.get(USERS, {}), raw.today_index, 7),
        monthly_active_users=active_in_window(raw.window_pairs.get(USERS, {}), raw.today_index, WINDOW_DAYS),
        weekly_active_orgs=active_in_window(raw.window_pairs.get(ORGS, {}), raw.today_index, 7),
        monthly_active_orgs=active_in_window(raw.window_pairs.get(ORGS, {}), raw.today_index, WINDOW_DAYS),
        org_active_users=cap_amounts(_present(raw.org_users), raw.active_users),
        tokens=_tokens(raw),
        model_kwh=_by_model(raw, KWH_FIELD, TOTAL_KWH),
        model_co2_kg=_by_model(raw, CO2_FIELD, TOTAL_CO2),
        dropped_late_windows=_ints(raw.dropped_late_windows),
    )


def active_in_window(pairs: dict[int, dict[str, str]], today: int, days: int) -> int:
    """Subjects active in the `days` local days ending `today`: those whose last active day up to today
    is in the window, i.e. whose pair (a, b) of consecutive active days has a in it and b after today."""
    return sum(
        int(n) for day in range(today - days + 1, today + 1) for b, n in pairs.get(day, {}).items() if int(b) > today
    )


def _tokens(raw: RawTables) -> dict[tuple[str, str], int]:
    out: dict[tuple[str, str], int] = {}
    for prefix, direction, total_field in ((TOKENS_IN, "in", TOTAL_TOKENS_IN), (TOKENS_OUT, "out", TOTAL_TOKENS_OUT)):
        labelled = {
            org: join_amount(*parts)
            for f, parts in raw.tokens.items()
            if f.startswith(prefix) and parts != (None, None)
            for org in [f[len(prefix) :]]
        }
        total = join_amount(raw.totals.get(total_field), raw.totals_remainder.get(total_field))
        out.update({(org, direction): n for org, n in cap_amounts(labelled, total).items()})
    return out


def _by_model(raw: RawTables, prefix: str, total_field: str) -> dict[tuple[str, str], float]:
    """Today's energy by (provider, model), capped on both labels; `sum()` equals the org-labelled total."""
    per_provider = {
        provider: {
            f[len(prefix) :]: join_amount(fields.get(f), remainders.get(f))
            for f in fields.keys() | remainders.keys()  # a small amount has only its remainder
            if f.startswith(prefix)
        }
        for provider, (fields, remainders) in raw.provider_energy.items()
    }
    per_model = {
        f[len(prefix) :]: join_amount(*parts)
        for f, parts in raw.model_energy.items()
        if f.startswith(prefix) and parts != (None, None)
    }
    total = join_amount(raw.totals.get(total_field), raw.totals_remainder.get(total_field))
    capped = cap_pairs(per_provider, per_model, total, set(raw.members["model"]))
    capped.setdefault((OTHER, OTHER), 0)  # right after midnight `sum()` reads 0, not "no data"
    return {key: n / NANO for key, n in capped.items()}


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
