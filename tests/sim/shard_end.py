"""The sharded simulator's end check (tests/sim/shards.py): the merged export against the oracle's fold of the
counted records and against the one-shard export of them; in the log-change profiles, the one inexact case
of docs/design.md ("Sharded state") held to its bound instead of equality."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from tables.delta import Delta
from tables.keys import Keys
from tables.snapshot import Snapshot, decode
from tables.store import RedisStore
from tables.table_reads import consistent_tables
from tests.sim.keyspace import Keyspace
from tests.sim.lua_redis import Scripts
from tests.sim.oracle import Folded, differences, exported_day, exported_totals, fold
from tests.sim.oracle_contract import local_day
from tests.sim.scrape import ReadClient, _now
from tests.sim.world import APP, Violation

if TYPE_CHECKING:
    from aiokafka import TopicPartition

    from tests.sim.kafka import Entry
    from tests.sim.shards import ShardedWorld


def check_export(
    world: ShardedWorld, counted: dict[TopicPartition, list[Entry]], folded_at: dict[int, int], end_ms: int
) -> None:
    today = local_day(end_ms, world.settings.zone)
    want = _want(world, counted, folded_at, end_ms, today)
    exported = world.scrape(today.isoformat())
    found = differences(want, exported)
    over = bool(found) and (world.faults.truncation or world.faults.log_cuts)
    world.members_over = over
    if over:
        # The one inexact case (docs/design.md, "Sharded state"): a batch's members written, its partition
        # write failed, then the log lost its records. Their members may stay counted; nothing else may.
        lost = _lost(world, counted)
        high = _want(
            world, {**counted, **{tp: counted.get(tp, []) + es for tp, es in lost.items()}}, folded_at, end_ms, today
        )
        found = _outside(want, high, exported, world.settings.batch_max_records * len(world.logs))
    if found:
        raise Violation(
            "the merged export differs from the oracle's fold of the counted records: " + "; ".join(found[:3])
        )
    one_shard = _one_shard_export(world, counted, folded_at, end_ms, today)
    left_out = MEMBER_SERIES if over else frozenset()
    if _without(one_shard, left_out) != _without(exported, left_out):
        raise Violation("the merged export differs from the one-shard export of the counted records")


def _want(
    world: ShardedWorld, counted: dict[TopicPartition, list[Entry]], folded_at: dict[int, int], end_ms: int, today: Any
) -> dict[str, Any]:
    s = world.settings
    records = [
        Folded(tp.topic, e.timestamp, e.value, folded_at.get(id(e), end_ms))
        for tp, entries in counted.items()
        for e in entries
    ]
    truth = fold(records, s.raw_topic, s.zone, s.days_kept, (s.max_future_seconds * 1000, s.max_payload_bytes))
    return {**exported_totals(truth, today), **exported_day(truth, today)}


def _lost(world: ShardedWorld, counted: dict[TopicPartition, list[Entry]]) -> dict[TopicPartition, list[Entry]]:
    """Every visible entry any history of a partition held that no write counted."""
    ids = {id(e) for entries in counted.values() for e in entries}
    lost: dict[TopicPartition, list[Entry]] = {}
    for tp, log in world.logs.items():
        for entries in [*world.cuts.histories.get(tp, []), log.entries]:
            lost.setdefault(tp, []).extend(e for e in entries if id(e) not in ids and log.visible(e))
    return lost


def _one_shard_export(
    world: ShardedWorld, counted: dict[TopicPartition, list[Entry]], folded_at: dict[int, int], end_ms: int, today: Any
) -> Snapshot:
    """Every series, the delay histogram and the folded counts too: the one-shard export of the same
    records, written in one batch per day folded on."""
    s = world.settings
    one = Scripts(Keyspace(world.now_s))
    store = RedisStore(one, APP, s.days_kept)  # type: ignore[arg-type]
    # As the one-shard checker folds the truth: one Delta, each record on the day it was folded, the
    # days in order (the windows' today is the last one's).
    groups: dict[tuple[int, int], list[Entry]] = {}
    tps = list(counted)
    for i, entries in enumerate(counted.values()):
        for e in entries:
            groups.setdefault((folded_at.get(id(e), end_ms), i), []).append(e)
    delta = Delta()
    for (now_ms, i), entries in sorted(groups.items()):
        world._fold(delta, tps[i], world.logs[tps[i]].records(0, len(entries), entries), now_ms)
    _now(store.apply(delta, []))
    raw = _now(consistent_tables(ReadClient(one.keyspace), Keys(APP), today.isoformat()))  # type: ignore[arg-type]
    return decode(raw, s.raw_topic)


MEMBER_SERIES = frozenset(
    {
        "active_orgs",
        "active_users",
        "org_active_users",
        "weekly_active_users",
        "monthly_active_users",
        "weekly_active_orgs",
        "monthly_active_orgs",
    }
)


def _outside(low: dict[str, Any], high: dict[str, Any], exported: object, most_extra: int) -> list[str]:
    """Sums and counters equal to the counted records' fold; distinct counts between it and the fold of the
    counted and lost records together, and over it by at most `most_extra` (one batch per partition)."""
    found = differences({k: v for k, v in low.items() if k not in MEMBER_SERIES}, exported)
    for name in sorted(MEMBER_SERIES):
        shown = getattr(exported, name)
        lo, hi = low[name], high[name]
        if isinstance(lo, dict):
            keys = lo.keys() | hi.keys() | shown.keys()
            pairs = [(k, lo.get(k, 0), hi.get(k, 0), shown.get(k, 0)) for k in keys]
        else:
            pairs = [(None, lo, hi, shown)]
        for key, a, b, x in pairs:
            if not a <= x <= b or x - a > most_extra:
                found.append(f"{name}{'' if key is None else f'[{key}]'}: {x} outside [{a}, {b}]")
    return found


def _without(snapshot: Snapshot, names: frozenset[str]) -> dict[str, Any]:
    return {k: v for k, v in vars(snapshot).items() if k not in names}
