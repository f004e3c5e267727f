"""Read the tables for one scrape, in one atomic step, touching only the label values that get series.

Labelled orgs are read one by one; everything else is "__other__", computed as a total minus the
labelled part, so a scrape costs O(labelled values) whatever the number of orgs, and sums stay exact.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from streams.fold import DELAY_BUCKETS_SECONDS, NANO, unpair
from streams.labels import cap_amounts, cap_pairs
from tables.store import RedisStore

LABELS = ("org_id", "provider", "model")
_ACTIVITY_KEYS = {"org_id": "org_activity", "provider": "by_provider", "model": "by_model"}


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


async def label_members(store: RedisStore) -> dict[str, set[str]]:
    pipe = store.client.pipeline(transaction=False)
    for label in LABELS:
        pipe.smembers(store.keys.key(f"labels:{label}"))
    return {label: set(found) for label, found in zip(LABELS, await pipe.execute(), strict=True)}


async def label_activity(store: RedisStore, label: str) -> dict[str, int]:
    """Activity of every value of a label: read only while its capped set still has room."""
    found = await store.client.hgetall(store.keys.key(_ACTIVITY_KEYS[label]))
    return {str(value): int(n) for value, n in found.items()}


async def add_label_members(store: RedisStore, label: str, values: list[str]) -> None:
    if values:
        await store.client.sadd(store.keys.key(f"labels:{label}"), *values)


async def read_snapshot(store: RedisStore, today: str, raw_topic: str, members: dict[str, set[str]]) -> Snapshot:
    k = store.keys
    orgs = sorted(members["org_id"])
    providers, models = sorted(members["provider"]), sorted(members["model"])
    # MULTI/EXEC: totals and labelled parts must come from the same instant, or "__other__" could dip.
    pipe = store.client.pipeline(transaction=True)
    for name in ("processed", "invalid", "dropped_late", "last_ts", "delay"):
        pipe.hgetall(k.key(name))
    pipe.scard(k.day(today, "orgs"))
    pipe.scard(k.day(today, "users"))
    for org in orgs:
        pipe.hgetall(k.org(org))
    for name in ("kwh", "co2"):
        pipe.hmget(k.day(today, name), orgs) if orgs else pipe.echo("")
        pipe.get(k.day(today, f"{name}_total"))
    pipe.hmget(k.key("by_provider"), providers) if providers else pipe.echo("")
    pipe.hmget(k.key("by_model"), models) if models else pipe.echo("")
    for label in LABELS:
        pipe.hlen(k.key(_ACTIVITY_KEYS[label]))
    results = list(await pipe.execute())
    processed, invalid, late, last_ts, delay, active_orgs, active_users = results[:7]
    rest = results[7:]
    per_org_ingested: dict[str, dict[str, int]] = {}
    per_org_calls: dict[str, dict[str, int]] = {}
    for org, fields in zip(orgs, rest[: len(orgs)], strict=True):
        per_org_ingested[org] = {f[2:]: int(v) for f, v in fields.items() if f.startswith("p:")}
        per_org_calls[org] = {f[2:]: int(v) for f, v in fields.items() if f.startswith("m:")}
    kwh_vals, kwh_total, co2_vals, co2_total, by_provider, by_model, *sizes = rest[len(orgs) :]
    raw_total = int(processed.get(raw_topic, 0))
    return Snapshot(
        ingested=cap_pairs(per_org_ingested, _zip(providers, by_provider), raw_total, set(providers)),
        calls=cap_pairs(per_org_calls, _zip(models, by_model), raw_total, set(models)),
        processed=_ints(processed),
        invalid={unpair(f): int(v) for f, v in invalid.items()},
        dropped_late=_ints(late),
        last_ts_ms={t: int(float(v)) for t, v in last_ts.items()},
        delay_buckets=[int(delay.get(f"b{i}", 0)) for i in range(len(DELAY_BUCKETS_SECONDS) + 1)],
        delay_sum_ms=int(delay.get("sum_ms", 0)),
        active_orgs=int(active_orgs),
        active_users=int(active_users),
        kwh=_amounts(cap_amounts(_zip(orgs, kwh_vals), int(kwh_total or 0))),
        co2_kg=_amounts(cap_amounts(_zip(orgs, co2_vals), int(co2_total or 0))),
        folded={label: max(0, int(n) - len(members[label])) for label, n in zip(LABELS, sizes, strict=True)},
    )


def _ints(found: dict[str, str]) -> dict[str, int]:
    return {key: int(v) for key, v in found.items()}


def _zip(names: list[str], values: object) -> dict[str, int]:
    if not names:
        return {}
    assert isinstance(values, list)
    return {name: int(v) for name, v in zip(names, values, strict=True) if v is not None}


def _amounts(nano: dict[str, int]) -> dict[str, float]:
    return {org: n / NANO for org, n in nano.items()}
