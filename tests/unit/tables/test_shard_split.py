"""The split of a batch for sharded state (tables/shard_split.py), on the real fold's Deltas: what each
shard's payload holds, held to the one-shard payload builder's own sections."""

from __future__ import annotations

from typing import Any

import pytest

from tables.delta import Delta
from tables.keys import Keys
from tables.shard_split import (
    activity_values,
    batch_label_values,
    counter_part,
    member_edit,
    member_parts,
    partition_edit,
    watermarks,
)
from tables.shards import ShardKeys, member_shard
from tables.store import RedisStore
from tables.writes import OffsetMove
from tests.unit.tables.sharded_world import APP, CAPS, Redis, batches, fold

SEEDS = [1, 2, 3, 4]


def _store(keys: Keys | None = None) -> RedisStore:
    return RedisStore(Redis(), APP, 2, dict(CAPS), keys=keys)  # type: ignore[arg-type]


def _payload(store: RedisStore, delta: Delta, moves: list[OffsetMove]) -> dict[str, Any]:
    return store.build_payload(delta, moves)


@pytest.mark.parametrize("seed", SEEDS)
def test_the_label_values_are_those_the_one_shard_payload_admits(seed: int) -> None:
    store = _store()
    for batch in batches(seed, 200):
        delta = fold(batch.records)
        admitted = {entry[0].rsplit(":", 1)[1]: set(entry[2]) for entry in _payload(store, delta, [])["admit"]}
        assert {label: values for label, values in batch_label_values(delta).items() if values} == admitted


@pytest.mark.parametrize("seed", SEEDS)
def test_the_activity_values_are_the_fields_the_one_shard_payload_counts(seed: int) -> None:
    store, k = _store(), Keys(APP)
    labels = {k.activity(label): label for label in ("org_id", "provider", "model")}
    for batch in batches(seed, 200):
        delta = fold(batch.records)
        counted: dict[str, set[str]] = {label: set() for label in labels.values()}
        for key, field, _ in _payload(store, delta, [])["hincr"]:
            if key in labels:
                counted[labels[key]].add(field)
        assert activity_values(delta) == counted


@pytest.mark.parametrize("seed", SEEDS)
def test_a_partition_shards_payload_is_the_one_shard_payload_without_members(seed: int) -> None:
    keys = ShardKeys(APP, 1)
    whole, shard = _store(keys), _store(keys)
    for batch in batches(seed, 200):
        delta = fold(batch.records)
        full = _payload(whole, delta, batch.moves)
        sums = _payload(shard, counter_part(delta), batch.moves)
        partition_edit(sums)
        assert sums["usersadd"] == [] and sums["sadd"] == [] and sums["win"] is None and sums["admit"] == []
        for section in ("off", "hincr", "amount", "hmax"):
            assert sums[section] == full[section], section
        member_keys = {e[0] for e in full["expire"] if e[2] == "set"} | {
            e[0] for e in full["expire"] if ":org_users" in e[0]
        }
        assert [e for e in full["expire"] if e[0] not in member_keys] == sums["expire"]


@pytest.mark.parametrize("shards", [2, 3, 7])
@pytest.mark.parametrize("seed", SEEDS)
def test_each_member_is_in_its_own_shards_part_only(seed: int, shards: int) -> None:
    for batch in batches(seed, 200):
        delta = fold(batch.records)
        parts = member_parts([delta], shards)
        for name in ("orgs", "users", "window_only_users", "window_only_orgs"):
            for day, members in getattr(delta, name).items():
                for shard, part in enumerate(parts):
                    found = getattr(part, name).get(day, set())
                    assert found == {m for m in members if member_shard(m, shards) == shard}
        assert all(p.today_index == delta.today_index for p in parts)
        assert all(not (p.ingested or p.processed or p.kwh_nano or p.last_ts_ms) for p in parts)


def test_the_parts_of_several_partition_shards_deltas_are_merged() -> None:
    (batch, *_) = [b for b in batches(5, 300) if len({tp[1] % 2 for tp in b.records}) == 2]
    by_shard = [fold({tp: r for tp, r in batch.records.items() if tp[1] % 2 == k}) for k in (0, 1)]
    whole = member_parts([fold(batch.records)], 3)
    assert member_parts(by_shard, 3) == whole


def test_the_watermarks_name_every_move_of_the_batch() -> None:
    moves = [
        OffsetMove("raw", 0, None, 5),
        OffsetMove("enriched", 3, 7, 9, topic_id="X", expected_topic_id="X"),
        OffsetMove("raw", 1, 40, 0, topic_id="Y", expected_topic_id="X"),  # to a re-created topic
        OffsetMove("raw", 2, 4, 6, topic_id="Y"),  # the first ID learnt
    ]
    assert watermarks(moves) == [
        ["raw:0", "", "5", "", ""],
        ["enriched:3", "7", "9", "X", ""],
        ["raw:1", "40", "0", "Y", "1"],
        ["raw:2", "4", "6", "Y", ""],
    ]


@pytest.mark.parametrize("seed", SEEDS)
def test_only_the_global_shard_admits_and_records_the_values_seen(seed: int) -> None:
    batch = batches(seed, 200)[0]
    delta = fold(batch.records)
    for shard in (0, 1):
        keys = ShardKeys(APP, shard)
        payload = _payload(_store(keys), member_parts([delta], 2)[shard], [])
        sadd_before = len(payload["sadd"])
        member_edit(keys, batch.moves, [delta], dict(CAPS) if shard == 0 else None)(payload)
        assert payload["wm"] == watermarks(batch.moves)
        if shard == 0:
            offered = batch_label_values(delta)
            assert payload["admit"] == [
                [keys.labels(label), str(CAPS[label]), sorted(values)] for label, values in offered.items() if values
            ]
            added = payload["sadd"][sadd_before:]
            assert added == [
                [keys.label_values(label), sorted(values)] for label, values in activity_values(delta).items() if values
            ]
        else:
            assert payload["admit"] == [] and len(payload["sadd"]) == sadd_before
