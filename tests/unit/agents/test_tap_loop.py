"""The tap's loop and set-up: what a fetch asks for, where each fetch failure goes and how long the loop waits
after it, the start, the counters a new tap brings (to a status an earlier tap may have counted in), and
the epoch and write-in-flight bookkeeping that the batch tests only see through their outcome."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from typing import Any

import pytest
from aiokafka import TopicPartition
from aiokafka.errors import NoOffsetForPartitionError, OffsetOutOfRangeError

from agents.offsets import RESET_REASONS
from agents.rebalance import Listener
from agents.tap import TapAgent
from agents.unreadable import FETCH_RETRY_S, WRITE_REFUSALS
from core.status import Status
from streams.settings import Settings
from tests.unit.agents.fakes import PositionsConsumer, run_until_cancelled

TP = TopicPartition("events.raw", 0)
SETTINGS = dataclasses.replace(Settings(), batch_max_records=123, batch_timeout_ms=456)


class _Consumer(PositionsConsumer):
    """Answers each getmany with the next of `answers` (an exception is raised), then cancels the run."""

    def __init__(self, answers: list[Any]) -> None:
        super().__init__({TP})
        self.answers = answers
        self.fetches: list[dict[str, Any]] = []

    async def getmany(self, *partitions: TopicPartition, timeout_ms: int = 0, max_records: int | None = None) -> Any:
        self.fetches.append({"timeout_ms": timeout_ms, "max_records": max_records})
        if not self.answers:
            raise asyncio.CancelledError
        answer = self.answers.pop(0)
        if isinstance(answer, BaseException):
            raise answer
        return answer


def _run(agent: TapAgent, monkeypatch: pytest.MonkeyPatch) -> list[float]:
    return run_until_cancelled(agent, monkeypatch)


def _agent(consumer: _Consumer, status: Status | None = None) -> TapAgent:
    agent = TapAgent(SETTINGS, None, status or Status(replica_id="r"), consumer)  # type: ignore[arg-type]
    agent._last_rewind_check = agent._last_id_check = 1e18  # neither periodic check is what this is about
    return agent


def test_every_fetch_asks_for_the_configured_batch_size_and_wait(monkeypatch: pytest.MonkeyPatch) -> None:
    consumer = _Consumer([{}, RuntimeError("broker gone")])
    _run(_agent(consumer), monkeypatch)
    assert consumer.fetches == [{"timeout_ms": 456, "max_records": 123}] * 3


def test_fetch_failures_are_counted_and_logged_once_per_kind_within_the_interval(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    consumer = _Consumer([RuntimeError("broker gone"), RuntimeError("still gone"), OSError("connection reset")])
    agent = _agent(consumer)
    with caplog.at_level(logging.WARNING, logger="agents.tap"):
        slept = _run(agent, monkeypatch)
    assert agent.status.fetch_errors == 3
    assert [r.getMessage() for r in caplog.records] == [
        "fetch failed: RuntimeError: broker gone",
        "fetch failed: OSError: connection reset",  # another kind: not held back by the first one's line
    ]
    assert slept == [FETCH_RETRY_S] * 3


def test_an_out_of_range_fetch_hands_its_positions_on(monkeypatch: pytest.MonkeyPatch) -> None:
    consumer = _Consumer([OffsetOutOfRangeError({TP: 42}), OffsetOutOfRangeError()])
    agent = _agent(consumer)
    handed: list[dict[TopicPartition, int]] = []

    async def out_of_range(positions: dict[TopicPartition, int]) -> None:
        handed.append(positions)

    monkeypatch.setattr(agent, "out_of_range", out_of_range)
    _run(agent, monkeypatch)
    assert handed == [{TP: 42}, {}]  # an error that names no partition: nothing to decide


def test_a_fetch_refused_for_unpositioned_partitions_waits_out_their_back_off(monkeypatch: pytest.MonkeyPatch) -> None:
    consumer = _Consumer([NoOffsetForPartitionError("events.raw-0")])
    agent = _agent(consumer)
    agent.unpositioned = [TP]
    agent._position_at = 1e18  # the positioning's back-off is far from over
    slept = _run(agent, monkeypatch)
    # Every fetch fails until they are positioned: the loop sleeps instead of spinning on the broker.
    assert len(slept) == 1 and slept[0] > 1e17


def test_a_fetch_that_succeeds_in_part_does_not_wait_for_the_unpositioned_rest(monkeypatch: pytest.MonkeyPatch) -> None:
    consumer = _Consumer([{}, {}])
    agent = _agent(consumer)
    agent.unpositioned = [TP]
    agent._position_at = 1e18
    assert _run(agent, monkeypatch) == []
    assert len(consumer.fetches) == 3


class _StartConsumer(_Consumer):
    def __init__(self) -> None:
        super().__init__([])
        self.subscribed: list[tuple[list[str], Any]] = []
        self.started = False

    def subscribe(self, topics: list[str], listener: Any) -> None:
        self.subscribed.append((topics, listener))

    async def start(self) -> None:
        self.started = True


class _Sink:
    def __init__(self) -> None:
        self.started = False

    async def start(self) -> None:
        self.started = True


@pytest.mark.parametrize("with_sink", [True, False])
def test_start_subscribes_both_topics_with_the_tap_as_listener(with_sink: bool) -> None:
    consumer, sink = _StartConsumer(), _Sink()
    agent = TapAgent(SETTINGS, None, Status(replica_id="r"), consumer, sink if with_sink else None)  # type: ignore[arg-type]
    asyncio.run(agent.start())
    ((topics, listener),) = consumer.subscribed
    assert topics == ["events.raw", "events.enriched"]
    assert isinstance(listener, Listener) and listener.agent is agent
    assert consumer.started and sink.started == with_sink


def test_a_new_tap_shows_every_log_change_series_at_zero_and_keeps_what_an_earlier_tap_counted() -> None:
    status = Status(replica_id="r")
    _agent(_Consumer([]), status)
    assert dict(status.writes_refused) == dict.fromkeys(WRITE_REFUSALS, 0)
    assert dict(status.topics_recreated) == dict(status.records_skipped) == {"events.raw": 0, "events.enriched": 0}
    topics = ("events.raw", "events.enriched")
    assert dict(status.offset_resets) == {(t, r): 0 for t in topics for r in RESET_REASONS}
    # The sidecar builds the next tap on the same status after a failure: its counters only grow.
    status.writes_refused[WRITE_REFUSALS[0]] = 2
    status.topics_recreated["events.raw"] = 1
    status.records_skipped["events.enriched"] = 7
    status.offset_resets[("events.raw", RESET_REASONS[0])] = 3
    _agent(_Consumer([]), status)
    assert status.writes_refused[WRITE_REFUSALS[0]] == 2 and status.topics_recreated["events.raw"] == 1
    assert status.records_skipped["events.enriched"] == 7
    assert status.offset_resets[("events.raw", RESET_REASONS[0])] == 3


def test_the_stalls_follow_the_settings() -> None:
    settings = dataclasses.replace(SETTINGS, stall_after_failures=7, stall_max_backoff_seconds=9.5)
    agent = TapAgent(settings, None, Status(replica_id="r"), _Consumer([]))  # type: ignore[arg-type]
    stalls = agent.stalls
    assert (stalls.failures_before_pause, stalls.first_backoff_s, stalls.max_backoff_s) == (7, FETCH_RETRY_S, 9.5)


async def test_each_resync_starts_a_new_epoch() -> None:
    consumer = _Consumer([])
    agent = _agent(consumer)
    agent.expected = {TP: 5}
    seen = {agent.epoch}
    for _ in range(3):
        await agent._resync()
        seen.add(agent.epoch)
    assert len(seen) == 4  # a repeated epoch would let a batch fetched before a seek through
    assert consumer.positions == {TP: 5}


async def test_a_drained_write_is_let_go() -> None:
    agent = _agent(_Consumer([]))

    async def write() -> None:
        await asyncio.sleep(0)

    agent._inflight = asyncio.create_task(write())
    async with agent.lock:
        await agent._drain()
    assert agent._inflight is None
