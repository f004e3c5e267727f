"""The tap over sharded state (agents/sharded_tap.py) on the real stores and script (Lua over the simulated
keyspace), fed by a consumer that reads fixed logs from its positions: the merged scrape at the end equals
the one-shard scrape of the same events, also when a partition shard's write fails while another lands,
and when a shard comes back from an older snapshot (found by the rewind check, or by the next write)."""

from __future__ import annotations

import random
from typing import Any

import pytest
from aiokafka import TopicPartition
from aiokafka.errors import OffsetOutOfRangeError
from redis.exceptions import ConnectionError as RedisConnectionError

from agents.sharded_tap import ShardedTapAgent
from core.status import Status
from streams.settings import Settings
from tables.sharded_store import ShardedStore
from tables.store import RedisStore
from tests.unit.agents.fakes import PositionsConsumer
from tests.unit.tables.sharded_world import APP, NOW, Rec, Redis, events, fold, scrape_one, scrape_sharded

SETTINGS = Settings(raw_topic="raw", enriched_topic="enriched")
# Room for every label value: the oracle writes all events in one batch, the tap in many, and with full
# caps the values admitted would depend on which batch met them first.
CAPS = {"org_id": 100, "provider": 100, "model": 100}


class LogConsumer(PositionsConsumer):
    """Fixed logs, read from each partition's position, a random number of records at a time."""

    def __init__(self, logs: dict[TopicPartition, list[Rec]], seed: int) -> None:
        super().__init__(set(logs))
        self.logs = logs
        self.rng = random.Random(seed)
        self.starts: dict[TopicPartition, int] = {}  # log starts moved by retention
        self.ends: dict[TopicPartition, int] = {}  # log ends past the last record: invisible ones there

    async def getmany(self, *partitions: TopicPartition, timeout_ms: int = 0, max_records: int | None = None) -> Any:
        out = {}
        below = {tp: at for tp, at in self.positions.items() if tp not in self.paused and at < self.starts.get(tp, 0)}
        if below:
            raise OffsetOutOfRangeError(below)
        for tp in sorted(self.assigned):
            if tp in self.paused:
                continue
            at = self.positions.get(tp, 0)
            left = [r for r in self.logs[tp] if r.offset >= at]
            found = left[: self.rng.randrange(0, 12)]
            if found:
                out[tp] = found
                self.positions[tp] = found[-1].offset + 1
            if len(found) == len(left) and tp in self.ends:
                self.positions[tp] = max(at, self.ends[tp])  # read_committed: past an aborted tail, no record
        return out

    async def seek_to_beginning(self, *partitions: TopicPartition) -> None:
        for tp in partitions:
            self.positions[tp] = self.starts.get(tp, 0)

    async def beginning_offsets(self, partitions: list[TopicPartition]) -> dict[TopicPartition, int]:
        return {tp: self.starts.get(tp, 0) for tp in partitions}

    async def end_offsets(self, partitions: list[TopicPartition]) -> dict[TopicPartition, int]:
        return {tp: self.ends.get(tp, len(self.logs[tp])) for tp in partitions}

    def done(self) -> bool:
        return all(self.positions.get(tp, 0) >= len(log) for tp, log in self.logs.items())


def _logs(seed: int, count: int) -> dict[TopicPartition, list[Rec]]:
    logs: dict[TopicPartition, list[Rec]] = {}
    for topic, partition, rec in events(seed, count):
        logs.setdefault(TopicPartition(topic, partition), []).append(rec)
    return logs


async def _expected(logs: dict[TopicPartition, list[Rec]]) -> object:
    redis = Redis()
    store = RedisStore(redis, APP, 2, dict(CAPS))  # type: ignore[arg-type]
    records = {(tp.topic, tp.partition): recs for tp, recs in logs.items()}
    await store.apply(fold(records), [])
    return await scrape_one(redis)


def _tap(redis: Redis, shards: int, logs: dict[TopicPartition, list[Rec]], seed: int) -> ShardedTapAgent:
    store = ShardedStore(redis, APP, shards, 2, dict(CAPS), 1000)  # type: ignore[arg-type]
    consumer = LogConsumer(logs, seed)
    return ShardedTapAgent(SETTINGS, store, Status(replica_id="r"), consumer, clock=lambda: NOW.timestamp())  # type: ignore[arg-type]


async def _rounds(agent: ShardedTapAgent, rounds: int, check: bool = True) -> None:
    consumer = agent.consumer
    assert isinstance(consumer, LogConsumer)
    for _ in range(rounds):
        epoch = agent.epoch
        try:
            batch = await consumer.getmany()
        except OffsetOutOfRangeError as exc:  # as the tap's loop answers it
            await agent.out_of_range(exc.args[0])
            continue
        if batch:
            await agent.process(batch, epoch)
        agent._last_pass = -1e9  # the pass over invisible records every round, not once a second
        await agent.pass_invisible()
        async with agent.lock:
            await agent._drain()
        if check:
            await agent._check_rewind(force=True)


async def _to_the_end(agent: ShardedTapAgent) -> None:
    consumer = agent.consumer
    assert isinstance(consumer, LogConsumer)
    for _ in range(500):
        await _rounds(agent, 1)
        if consumer.done() and not agent.members_until and not agent.catching_up:
            await _rounds(agent, 2)  # a last check finds nothing more to re-read
            if consumer.done() and not agent.members_until:
                return
    raise AssertionError("the tap never caught up")


@pytest.mark.parametrize("shards", [2, 3])
@pytest.mark.parametrize("seed", [1, 2])
async def test_the_tap_over_shards_ends_with_the_one_shard_values(seed: int, shards: int) -> None:
    logs = _logs(seed, 400)
    redis = Redis()
    agent = _tap(redis, shards, logs, seed)
    await agent.on_assigned(set(logs))
    await _to_the_end(agent)
    assert await scrape_sharded(redis, shards) == await _expected(logs)
    assert agent.status.state_rewinds == 0


async def test_a_partition_shard_that_fails_while_another_lands_is_read_again_alone() -> None:
    logs = _logs(3, 400)
    redis = Redis()
    agent = _tap(redis, 2, logs, 3)
    store = agent.sharded.stores[1]
    real, failures = store.apply, [0]

    async def flaky(delta: Any, moves: Any, edit: Any = None, target: Any = None) -> None:
        if moves and failures[0] < 3:  # a partition write (member writes move no offset)
            failures[0] += 1
            raise RedisConnectionError("connection reset")
        await real(delta, moves, edit, target)

    store.apply = flaky  # type: ignore[method-assign]
    await agent.on_assigned(set(logs))
    await _to_the_end(agent)
    assert failures[0] == 3 and agent.status.redis_errors >= 3
    assert await scrape_sharded(redis, 2) == await _expected(logs)


@pytest.mark.parametrize("check", [True, False], ids=["rewind check", "next write"])
@pytest.mark.parametrize("seed", [4, 5, 6])
async def test_a_shard_back_from_an_older_snapshot_ends_exact(seed: int, check: bool) -> None:
    logs = _logs(seed, 400)
    redis = Redis()
    agent = _tap(redis, 2, logs, seed)
    await agent.on_assigned(set(logs))
    await _rounds(agent, 6, check)
    saved = redis.snapshot("{app:s1}")
    await _rounds(agent, 10, check)
    redis.restore("{app:s1}", saved)
    await _rounds(agent, 3, check)
    await _to_the_end(agent)
    assert await scrape_sharded(redis, 2) == await _expected(logs)
    assert agent.status.state_rewinds > 0


async def test_a_member_re_read_whose_records_retention_removed_moves_over_them() -> None:
    """Shard 1 back from an older snapshot, and retention then removes what shard 0's partitions stored
    below their offsets: the members shard 1 lacks of them are gone with the records. The re-read moves the
    watermarks over the gap instead of seeking below the log start for good; every sum stays exact."""
    logs = _logs(7, 400)
    redis = Redis()
    agent = _tap(redis, 2, logs, 7)
    consumer = agent.consumer
    assert isinstance(consumer, LogConsumer)
    await agent.on_assigned(set(logs))
    await _rounds(agent, 3, check=False)
    saved = redis.snapshot("{app:s1}")
    await _rounds(agent, 12, check=False)
    redis.restore("{app:s1}", saved)
    stored = await agent.sharded.load_offsets([(tp.topic, tp.partition) for tp in logs])
    for tp in logs:
        at = stored[(tp.topic, tp.partition)]
        if tp.partition % 2 == 0 and at:
            consumer.starts[tp] = at  # everything it stored is gone
    await _to_the_end(agent)
    found, expected = await scrape_sharded(redis, 2), await _expected(logs)
    assert isinstance(expected, type(found))
    assert (found.processed, found.ingested, found.kwh, found.tokens) == (
        expected.processed,
        expected.ingested,
        expected.kwh,
        expected.tokens,
    )
    assert found.active_users <= expected.active_users
    marks = await agent.sharded.load_watermarks([(tp.topic, tp.partition) for tp in logs])
    final = await agent.sharded.load_offsets([(tp.topic, tp.partition) for tp in logs])
    assert all(m is not None and m >= (final[key] or 0) for key, found_marks in marks.items() for m in found_marks)


async def test_a_member_re_read_of_a_range_ending_in_invisible_records_is_done() -> None:
    """Every log ends in two invisible offsets (an aborted transaction's record and its marker), which the
    stored offsets pass (agents/invisible.py): a member re-read up to such an offset has no record there
    to end on, and ends all the same."""
    logs = _logs(11, 400)
    redis = Redis()
    agent = _tap(redis, 2, logs, 11)
    consumer = agent.consumer
    assert isinstance(consumer, LogConsumer)
    consumer.ends = {tp: recs[-1].offset + 3 for tp, recs in logs.items()}
    await agent.on_assigned(set(logs))
    await _rounds(agent, 4, check=False)
    saved = redis.snapshot("{app:s1}")
    await _to_the_end(agent)
    stored = await agent.sharded.load_offsets([(tp.topic, tp.partition) for tp in logs])
    assert stored == {(tp.topic, tp.partition): consumer.ends[tp] for tp in logs}, "offsets past the tails"
    redis.restore("{app:s1}", saved)
    await _to_the_end(agent)
    assert not agent.members_until and agent.status.state_rewinds > 0
    assert await scrape_sharded(redis, 2) == await _expected(logs)
