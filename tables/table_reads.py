"""The scrape's reads: the tables of one state (one shard's, or the whole of one-shard state) in one atomic,
read-only script call, touching only the label values that get series.

`read_tables` returns Redis's replies as named raw parts (RawTables); tables/snapshot.py decodes them.
Labelled orgs are read one by one; everything else is "__other__", computed as a total minus the labelled
part, so a scrape costs O(labelled values) whatever the number of orgs, and sums stay exact. The reads
and the naming of their replies are apart (`table_reads`, `tables_from`): sharded state reads every shard
with the same `ReadLayout` and merges the replies before naming them (tables/reply_merge.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from typing import Any

import redis.asyncio as aioredis

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
    DROPPED_LATE,
    DROPPED_LATE_WINDOWS,
    INVALID,
    KWH_FIELD,
    LAST_TS,
    ORGS,
    PROCESSED,
    REMAINDER_SUFFIX,
    TOKENS_IN,
    TOKENS_OUT,
    USERS,
    WINDOW_DAYS,
    Keys,
)
from tables.reads import Reads

LABELS = ("org_id", "provider", "model")


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


@dataclass(frozen=True)
class ReadLayout:
    """What one scrape reads, in which order: the same for every shard, so their replies line up."""

    today: str
    members: dict[str, set[str]]
    orgs: list[str]
    providers: list[str]
    models: list[str]
    days: range
    token_fields: list[str]
    model_fields: list[str]


def read_layout(today: str, members: dict[str, set[str]]) -> ReadLayout:
    orgs, providers, models = (sorted(members[label]) for label in LABELS)
    today_index = date.fromisoformat(today).toordinal()
    return ReadLayout(
        today=today,
        members=members,
        orgs=orgs,
        providers=providers,
        models=models,
        days=range(today_index - WINDOW_DAYS + 1, today_index + 1),
        token_fields=[prefix + org for prefix in (TOKENS_IN, TOKENS_OUT) for org in orgs],
        model_fields=[prefix + model for prefix in (KWH_FIELD, CO2_FIELD) for model in models],
    )


async def read_tables(client: aioredis.Redis, keys: Keys, today: str, members: dict[str, set[str]]) -> RawTables:
    layout = read_layout(today, members)
    return tables_from(await table_reads(keys, layout).execute(client), layout)


def table_reads(keys: Keys, layout: ReadLayout) -> Reads:
    """The reads of one scrape of `keys`' tables, in the order `tables_from` takes their replies."""
    k, today, orgs = keys, layout.today, layout.orgs
    # One atomic script: totals and labelled parts must come from the same instant, or "__other__" could dip.
    reads = Reads()
    for name in (PROCESSED, INVALID, DROPPED_LATE, LAST_TS, DELAY):
        reads.hgetall(k.key(name), largest=name == LAST_TS)
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
    reads.hmget(k.activity("provider"), layout.providers)
    reads.hmget(k.activity("model"), layout.models)
    for label in LABELS:
        reads.hlen(k.activity(label))
    for subject in (USERS, ORGS):
        for day in layout.days:
            reads.hgetall(k.window_pairs(subject, day))
    reads.hgetall(k.key(DROPPED_LATE_WINDOWS))
    reads.hmget(k.day(today, DAY_ORG_USERS), orgs)
    for key in (k.day(today, DAY_TOKENS), k.day(today, DAY_TOKENS) + REMAINDER_SUFFIX):
        reads.hmget(key, layout.token_fields)
    for provider in layout.providers:
        reads.hgetall(k.provider_energy(today, provider))
        reads.hgetall(k.provider_energy(today, provider) + REMAINDER_SUFFIX)
    for key in (k.day(today, DAY_MODEL_ENERGY), k.day(today, DAY_MODEL_ENERGY) + REMAINDER_SUFFIX):
        reads.hmget(key, layout.model_fields)
    for label in LABELS:  # admission only adds: the same sizes mean the same members
        reads.scard(k.labels(label))
    return reads


def labels_grew(replies: list[Any], members: dict[str, set[str]]) -> bool:
    """The label sets' sizes, read last by `table_reads` (`replies` are its replies), differ from the
    members read."""
    sizes = replies[-len(LABELS) :]
    return any(int(n) != len(members[label]) for label, n in zip(LABELS, sizes, strict=True))


def tables_from(replies: list[Any], layout: ReadLayout) -> RawTables:
    """The named raw parts of `table_reads`' replies (HGETALL's as dicts)."""
    orgs, providers, models, days = layout.orgs, layout.providers, layout.models, layout.days
    token_fields, model_fields = layout.token_fields, layout.model_fields
    replies_in_order = iter(replies)

    def take(n: int) -> list[Any]:
        return [next(replies_in_order) for _ in range(n)]

    processed, invalid, late, last_ts, delay, delay_rem, active_orgs, active_users = take(8)
    org_fields = dict(zip(orgs, take(len(orgs)), strict=True))
    kwh, kwh_rem, co2, co2_rem, totals, totals_rem, by_provider, by_model = take(8)
    sizes = take(len(LABELS))
    window_pairs = {subject: dict(zip(days, take(len(days)), strict=True)) for subject in (USERS, ORGS)}
    late_windows, org_users, tokens, tokens_rem = take(4)
    energy = take(2 * len(providers))
    model_energy, model_energy_rem = take(2)
    return RawTables(
        members_stale=labels_grew(replies, layout.members),
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
        today_index=days[-1],
        window_pairs=window_pairs,
        dropped_late_windows=late_windows,
        org_users=dict(zip(orgs, org_users, strict=True)),
        tokens=dict(zip(token_fields, zip(tokens, tokens_rem, strict=True), strict=True)),
        provider_energy={p: (energy[2 * i], energy[2 * i + 1]) for i, p in enumerate(providers)},
        model_energy=dict(zip(model_fields, zip(model_energy, model_energy_rem, strict=True), strict=True)),
    )
