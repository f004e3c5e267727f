"""The sharded tap's member re-read when a topic-ID lookup fails under it (agents/member_reread.py): the
partition is read again from where the re-read stands once its ID is settled, never taken past its range
by the pass over invisible records (which would move the watermarks over members never written back)."""

from __future__ import annotations

from typing import Any

import pytest
from aiokafka.errors import KafkaTimeoutError

from agents.member_reread import MemberRereadTap
from agents.sharded_tap import ShardedTapAgent
from tables.writes import OffsetMove, WrongKeyType
from tests.unit.agents.test_sharded_tap import _expected, _logs, _rounds, _tap, _to_the_end
from tests.unit.tables.sharded_world import Redis, scrape_sharded


async def _shard_back() -> tuple[Any, Redis, ShardedTapAgent]:
    """Two shards; shard 1 back from a snapshot 10 rounds old, found by the rewind check."""
    logs = _logs(4, 400)
    redis = Redis()
    agent = _tap(redis, 2, logs, 4)
    assert isinstance(agent, MemberRereadTap)
    await agent.on_assigned(set(logs))
    await _rounds(agent, 6)
    saved = redis.snapshot("{app:s1}")
    await _rounds(agent, 10)
    redis.restore("{app:s1}", saved)
    await agent._check_rewind(force=True)
    return logs, redis, agent


@pytest.mark.parametrize("lookup_fails", [True, False])
async def test_a_member_re_read_survives_a_failed_topic_id_lookup(lookup_fails: bool) -> None:
    logs, redis, agent = await _shard_back()
    ranges = {tp: (agent.members_from[tp], until) for tp, until in agent.members_until.items()}
    assert ranges, "shard 1 went back: a member re-read starts"
    real = agent.consumer.topic_ids
    failed: list[Any] = []

    async def flaky(topics: Any) -> Any:
        if lookup_fails and not failed:
            failed.append(topics)
            raise KafkaTimeoutError("metadata timed out")
        return await real(topics)

    agent.consumer.topic_ids = flaky  # type: ignore[method-assign]
    agent._last_id_check = -1e9
    await agent.check_identity_due()
    assert bool(agent.ids_due) == lookup_fails
    skipped: list[OffsetMove] = []
    write_moves = agent._write_member_moves

    async def spy(moves: list[OffsetMove]) -> None:
        skipped.extend(moves)
        await write_moves(moves)

    agent._write_member_moves = spy  # type: ignore[method-assign]
    await _rounds(agent, 1)
    # Any watermark move with no member written may only cover a range the re-read has read.
    for m in skipped:
        start, _ = ranges[next(tp for tp in ranges if (tp.topic, tp.partition) == (m.topic, m.partition))]
        assert m.expected is None or start is None or m.expected >= start
    agent._last_id_check = -1e9
    await agent.check_identity_due()
    await _to_the_end(agent)
    assert await scrape_sharded(redis, 2) == await _expected(logs)


async def test_a_refused_watermark_move_pauses_its_partitions_with_the_back_off() -> None:
    """A member re-read out of range (retention) whose watermark move a shard refuses: paused and written
    again after the back-off, not tried on every fetch of a position below the log start."""
    _, _, agent = await _shard_back()
    behind = sorted(agent.members_until)
    assert behind

    async def refuse(parts: Any, moves: Any) -> None:
        raise WrongKeyType("{app:s1}:v3:watermarks")

    agent.sharded.apply_members = refuse  # type: ignore[method-assign,assignment]
    moves = [OffsetMove(tp.topic, tp.partition, agent.members_from[tp], agent.members_until[tp]) for tp in behind]
    async with agent.lock:
        await agent._write_member_moves(moves)
    assert set(behind) <= agent.consumer.paused  # type: ignore[attr-defined]
    assert set(behind) <= set(agent.stalls.paused)
    assert agent.status.writes_refused["wrong_type"] == 1
    assert sorted(agent.members_until) == behind, "the re-reads stay due"


async def test_a_refused_skip_out_of_range_stays_held_for_its_retry() -> None:
    """Retention past both a member re-read and the stored offset, the watermark skip refused: the partition
    stays paused and recorded as held (its back-off resumes it), not paused with nothing to resume it."""
    _, _, agent = await _shard_back()
    assert isinstance(agent, MemberRereadTap)
    tp = sorted(agent.members_until)[0]
    stored = agent.expected[tp]
    assert stored is not None
    agent.consumer.starts[tp] = stored + 5  # type: ignore[attr-defined]
    skip_from = agent.members_from[tp]
    real = agent.sharded.apply_members

    async def refuse_the_skip(parts: Any, moves: list[OffsetMove]) -> None:
        # The member skip refused (a shard's watermarks marker), the offsets' own move after it accepted.
        if any(m.expected == skip_from and m.next_offset <= stored for m in moves):
            raise WrongKeyType("{app:s1}:v3:watermarks")
        await real(parts, moves)

    agent.sharded.apply_members = refuse_the_skip  # type: ignore[method-assign,assignment]
    await agent.out_of_range({tp: skip_from or 0})
    assert tp in agent.consumer.paused  # type: ignore[attr-defined]
    assert tp in agent.stalls.paused, "held, so that the back-off resumes it"
