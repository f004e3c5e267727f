"""The tap mirrors its applied offsets into Kafka at most once a second, and only when they moved; a fetch
that fails sends it back to the offsets its tables hold."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest
from aiokafka import TopicPartition
from aiokafka.errors import KafkaError, NoOffsetForPartitionError

from agents import tap, unreadable
from agents.tap import TapAgent
from core.status import Status
from streams.settings import Settings
from tests.unit.agents.fakes import run_until_cancelled


class _Consumer:
    def __init__(self) -> None:
        self.commits: list[dict[TopicPartition, int]] = []

    async def commit(self, offsets: dict[TopicPartition, int]) -> None:
        self.commits.append(dict(offsets))


def test_the_mirror_commit_is_sent_only_when_the_offsets_moved() -> None:
    consumer = _Consumer()
    agent = TapAgent(Settings(), None, Status(replica_id="r"), consumer)  # type: ignore[arg-type]
    tp = TopicPartition("events.raw", 0)

    async def scenario() -> list[Any]:
        agent.applied[tp] = 5
        await agent._commit(force=True)
        await agent._commit(force=True)  # nothing moved: an idle replica sends nothing
        agent.applied[tp] = 9
        await agent._commit(force=True)
        await agent._commit()  # moved nothing and within the interval
        return consumer.commits

    assert asyncio.run(scenario()) == [{tp: 5}, {tp: 9}]


def test_the_mirror_commit_waits_a_full_interval_unless_forced(monkeypatch: pytest.MonkeyPatch) -> None:
    consumer = _Consumer()
    agent = TapAgent(Settings(), None, Status(replica_id="r"), consumer)  # type: ignore[arg-type]
    tp = TopicPartition("events.raw", 0)
    clock = [100.0]
    steps = [(5, 100.0, True), (6, 100.5, False), (7, 100.5, True), (8, 101.2, False), (8, 101.5, False)]

    async def scenario() -> None:
        monkeypatch.setattr(asyncio.get_running_loop(), "time", lambda: clock[0])
        for offset, at, force in steps:
            agent.applied[tp], clock[0] = offset, at
            await (agent._commit(force=True) if force else agent._commit())

    asyncio.run(scenario())
    # 6 is not sent half an interval after 5; 7 is, forced (a revocation, the stop); 8 waits a full
    # interval after that.
    assert consumer.commits == [{tp: 5}, {tp: 7}, {tp: 8}]


class _RefusingConsumer(_Consumer):
    """Refuses the first commit (the group is rebalancing), then takes them."""

    def __init__(self) -> None:
        super().__init__()
        self.refusals = 1

    async def commit(self, offsets: dict[TopicPartition, int]) -> None:
        if self.refusals:
            self.refusals -= 1
            raise KafkaError("the group is rebalancing")
        await super().commit(offsets)


def test_a_mirror_commit_that_fails_is_logged_and_sent_again(caplog: pytest.LogCaptureFixture) -> None:
    consumer = _RefusingConsumer()
    agent = TapAgent(Settings(), None, Status(replica_id="r"), consumer)  # type: ignore[arg-type]
    tp = TopicPartition("events.raw", 0)
    agent.applied[tp] = 5

    async def scenario() -> None:
        with caplog.at_level(logging.DEBUG, logger="agents.tap"):
            await agent._commit(force=True)
        await agent._commit(force=True)  # the same offsets: not sent before, so not skipped as sent

    asyncio.run(scenario())
    assert [r.getMessage() for r in caplog.records] == [
        "offset mirror commit skipped: KafkaError: the group is rebalancing"
    ]
    assert consumer.commits == [{tp: 5}]


class _FetchingConsumer:
    """Raises the given errors from getmany, one per call, then cancels the run."""

    def __init__(self, errors: list[Exception]) -> None:
        self.errors = errors
        self.seeks: list[tuple[TopicPartition, int]] = []

    async def getmany(self, *partitions: TopicPartition, timeout_ms: int = 0, max_records: int | None = None) -> Any:
        if not self.errors:
            raise asyncio.CancelledError
        raise self.errors.pop(0)

    def seek(self, tp: TopicPartition, offset: int) -> None:
        self.seeks.append((tp, offset))

    def assignment(self) -> set[TopicPartition]:
        return {TopicPartition("events.raw", 0), TopicPartition("events.raw", 1)}

    async def commit(self, offsets: dict[TopicPartition, int]) -> None:
        pass


def _run_until_cancelled(
    errors: list[Exception], monkeypatch: pytest.MonkeyPatch
) -> tuple[TapAgent, _FetchingConsumer, list[float]]:
    consumer = _FetchingConsumer(errors)
    agent = TapAgent(Settings(), None, Status(replica_id="r"), consumer)  # type: ignore[arg-type]
    agent.expected = {TopicPartition("events.raw", 0): 7, TopicPartition("events.raw", 1): 3}
    slept = run_until_cancelled(agent, monkeypatch)
    return agent, consumer, slept


def test_a_failed_fetch_is_counted_and_every_owned_partition_read_again_from_the_tables(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    agent, consumer, slept = _run_until_cancelled([KafkaError("an unreadable batch")], monkeypatch)
    assert agent.status.fetch_errors == 1
    assert sorted(consumer.seeks) == [(TopicPartition("events.raw", 0), 7), (TopicPartition("events.raw", 1), 3)]
    assert slept == [unreadable.FETCH_RETRY_S]


def test_partitions_not_yet_positioned_after_an_assignment_are_no_failure_and_cost_no_second(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    agent, consumer, slept = _run_until_cancelled([NoOffsetForPartitionError("events.raw-0")], monkeypatch)
    assert agent.status.fetch_errors == 0
    assert len(consumer.seeks) == 2
    assert slept == [tap.ASSIGNMENT_RETRY_S]
    assert tap.ASSIGNMENT_RETRY_S <= 0.1
