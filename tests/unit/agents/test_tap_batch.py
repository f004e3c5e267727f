"""One batch through the tap, step by step: which records of a fetch are folded (`_fresh`), what the fold
refuses and how it says so (`_fold`), and what an acknowledged, conflicting or retried write records
(`_apply`, `_write`): the offsets, topic IDs, stalls and re-reads it settles, the dead letters it sends."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest
from aiokafka import ConsumerRecord, TopicPartition
from redis.exceptions import ConnectionError

from agents import tap
from agents.stalls import STATE_REFUSED
from agents.tap import TapAgent
from core.status import Status
from streams.local.workload import raw_event
from streams.settings import Settings
from tables.delta import Delta, Rejection
from tables.writes import OffsetMove
from tests.unit.agents.fakes import OffsetsStore, PositionsConsumer, raw_record

TP = TopicPartition("events.raw", 3)
OTHER = TopicPartition("events.raw", 4)
NOW_S = 1_760_000_000.0
NOW_MS = int(NOW_S * 1000)


def _record(offset: int, value: bytes) -> ConsumerRecord:
    return ConsumerRecord(TP.topic, TP.partition, offset, 0, 0, None, value, None, 0, len(value), ())


def _agent(store: Any = None, dead_letters: Any = None) -> TapAgent:
    consumer = PositionsConsumer({TP, OTHER})
    return TapAgent(Settings(), store, Status(replica_id="r"), consumer, dead_letters, clock=lambda: NOW_S)  # type: ignore[arg-type]


def test_only_owned_partitions_with_records_are_folded_whatever_comes_first() -> None:
    agent = _agent()
    agent.expected = {TP: 7, OTHER: None}
    unowned = TopicPartition("events.raw", 9)
    records = [raw_record(TP, 7), raw_record(TP, 8)]
    fresh, starts = agent._fresh({unowned: [raw_record(unowned, 0)], OTHER: [], TP: records})
    assert (fresh, starts) == ({TP: records}, {TP: 7})


def test_a_partition_whose_topic_id_is_unsettled_is_put_back_not_folded() -> None:
    agent = _agent()
    agent.expected = {TP: 7, OTHER: None}
    agent.ids_due = {TP, OTHER}
    # TP's offset 7 holds a transaction's marker: a read_committed fetch returns records from 8.
    fresh, _ = agent._fresh({TP: [raw_record(TP, 8)], OTHER: [raw_record(OTHER, 2), raw_record(OTHER, 3)]})
    assert fresh == {}
    # From the stored offset, or (never written) from the batch's first record, read since the log start.
    assert agent.consumer.positions == {TP: 7, OTHER: 2}  # type: ignore[attr-defined]
    assert agent.ids_due == {TP, OTHER}


async def test_refused_events_are_logged_with_where_they_lie_once_per_reason_within_the_interval(
    caplog: pytest.LogCaptureFixture,
) -> None:
    records = [
        _record(0, raw_event("o", "u", NOW_MS)),
        _record(1, b"{"),
        _record(2, raw_event("o", "u", NOW_MS, tokens_in=-3)),
        _record(3, b"["),  # the same reason as offset 1: held back
    ]
    with caplog.at_level(logging.WARNING, logger="agents.tap"):
        delta = await _agent()._fold({TP: records})
    assert delta.processed["events.raw"] == 1
    assert [(r.reason, r.partition, r.record.offset) for r in delta.rejections] == [
        ("not_json", 3, 1),
        ("negative_value", 3, 2),
        ("not_json", 3, 3),
    ]
    assert [r.getMessage() for r in caplog.records] == [
        "invalid event skipped: topic=events.raw partition=3 offset=1 reason=not_json",
        "invalid event skipped: topic=events.raw partition=3 offset=2 reason=negative_value",
    ]


async def test_events_are_dated_against_the_clock_and_the_configured_future_bound() -> None:
    future_ms = Settings().max_future_seconds * 1000
    records = [
        _record(0, raw_event("o", "u", NOW_MS - 60_000)),
        _record(1, raw_event("o", "u", NOW_MS + 60_000)),
        _record(2, raw_event("o", "u", NOW_MS + future_ms - 1_000)),
        _record(3, raw_event("o", "u", NOW_MS + future_ms + 30_000)),  # beyond the bound by half a minute
    ]
    delta = await _agent()._fold({TP: records})
    assert delta.processed["events.raw"] == 3
    assert [(r.reason, r.record.offset) for r in delta.rejections] == [("bad_timestamp", 3)]


async def test_a_long_batch_is_folded_in_chunks_with_a_pause_between(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tap, "FOLD_CHUNK_RECORDS", 2)
    pauses = 0

    async def pause() -> None:
        nonlocal pauses
        pauses += 1

    agent = TapAgent(Settings(), None, Status(replica_id="r"), None, clock=lambda: NOW_S, pause=pause)  # type: ignore[arg-type]
    delta = await agent._fold({TP: [_record(i, raw_event("o", f"u{i}", NOW_MS)) for i in range(5)]})
    assert (delta.processed["events.raw"], pauses) == (5, 3)


class _Sink:
    def __init__(self) -> None:
        self.sent: list[list[Rejection]] = []

    async def send(self, rejections: list[Rejection]) -> None:
        self.sent.append(list(rejections))


async def test_refused_events_go_to_the_dead_letters_and_nothing_else_does() -> None:
    rejection = Rejection("events.raw", "not_json", _record(1, b"{"), 3)
    refused, clean = Delta(), Delta()
    refused.rejections.append(rejection)
    sink = _Sink()
    agent = _agent(OffsetsStore({TP: 0}), sink)
    agent.expected = {TP: 2}
    await agent._apply(clean, [OffsetMove(TP.topic, TP.partition, 0, 1)])
    await agent._apply(refused, [OffsetMove(TP.topic, TP.partition, 1, 2)])
    assert sink.sent == [[rejection]]
    assert agent.status.batches == 2
    bare = _agent(OffsetsStore({TP: 0}))  # no dead-letter topic configured
    bare.expected = {TP: 1}
    await bare._apply(refused, [OffsetMove(TP.topic, TP.partition, 0, 1)])
    assert bare.applied == {TP: 1}


async def test_an_acknowledged_write_records_its_offsets_and_topic_ids_for_owned_partitions_only() -> None:
    store = OffsetsStore({TP: 0, OTHER: 4, TopicPartition("events.raw", 9): 0})
    agent = _agent(store)
    agent.expected = {TP: 5, OTHER: 6}
    agent.stored_ids = {TP: None, OTHER: "id-old"}
    moves = [
        OffsetMove(TP.topic, TP.partition, 0, 5, topic_id="id-1"),
        OffsetMove(OTHER.topic, OTHER.partition, 4, 6),  # no ID moved: the stored one stays
        OffsetMove("events.raw", 9, 0, 3),  # revoked while in flight
    ]
    await agent._apply(Delta(), moves)
    assert agent.applied == {TP: 5, OTHER: 6}
    assert agent.stored_ids == {TP: "id-1", OTHER: "id-old"}
    assert (agent.status.batches, agent.status.last_batch_at_s) == (1, NOW_S)


async def test_a_partition_re_reading_what_redis_lost_is_caught_up_once_written_to_where_it_was() -> None:
    agent = _agent(OffsetsStore({TP: 0}))
    agent.expected = {TP: 10}
    agent.catching_up = {TP: 10}
    agent.status.rewound_partitions = 1
    await agent._apply(Delta(), [OffsetMove(TP.topic, TP.partition, 0, 9)])
    assert (agent.catching_up, agent.status.rewound_partitions) == ({TP: 10}, 1)
    await agent._apply(Delta(), [OffsetMove(TP.topic, TP.partition, 9, 10)])
    assert (agent.catching_up, agent.status.rewound_partitions) == ({}, 0)


async def test_a_write_past_a_stall_ends_it_and_its_report() -> None:
    agent = _agent(OffsetsStore({TP: 0}))
    agent.expected = {TP: 6}
    agent.stalls.hold(TP, 5, STATE_REFUSED, "invalid_value: {s}:v3:last_ts", asyncio.get_running_loop().time())
    agent._count_stalled()
    assert set(agent.status.stalled) == {(TP.topic, TP.partition)}
    await agent._apply(Delta(), [OffsetMove(TP.topic, TP.partition, 0, 5)])  # up to the stall: not past it
    assert set(agent.stalls.stalled()) == {TP} and set(agent.status.stalled) == {(TP.topic, TP.partition)}
    await agent._apply(Delta(), [OffsetMove(TP.topic, TP.partition, 5, 6)])
    assert agent.stalls.stalled() == {} and agent.status.stalled == {}


async def test_a_conflicting_write_is_counted_logged_with_its_field_and_reloaded(
    caplog: pytest.LogCaptureFixture,
) -> None:
    store = OffsetsStore({TP: 8})  # another replica wrote past the batch's start
    agent = _agent(store)
    agent.expected = {TP: 5}
    epoch = agent.epoch
    with caplog.at_level(logging.WARNING, logger="agents.tap"):
        await agent._apply(Delta(), [OffsetMove(TP.topic, TP.partition, 5, 7)])
    assert [r.getMessage() for r in caplog.records] == [
        "batch refused, events.raw:3 moved elsewhere; reloading offsets"
    ]
    assert agent.status.batch_conflicts == 1 and agent.status.batches == 0
    assert (agent.expected, agent.applied, agent.consumer.positions) == ({TP: 8}, {TP: 8}, {TP: 8})  # type: ignore[attr-defined]
    assert agent.epoch > epoch
    store.stored[TP] = 9  # and once more
    await agent._apply(Delta(), [OffsetMove(TP.topic, TP.partition, 8, 10)])
    assert agent.status.batch_conflicts == 2 and agent.applied == {TP: 9}


class _FlakyStore(OffsetsStore):
    def __init__(self) -> None:
        super().__init__({TP: 0})
        self.failures = 1

    async def apply(self, delta: Delta, moves: list[OffsetMove]) -> None:
        if self.failures:
            self.failures -= 1
            raise ConnectionError("Error 111 connecting to 127.0.0.1:6379.")
        await super().apply(delta, moves)


async def test_a_write_that_redis_did_not_answer_is_counted_logged_and_sent_again(
    caplog: pytest.LogCaptureFixture,
) -> None:
    store = _FlakyStore()
    agent = _agent(store)
    with caplog.at_level(logging.WARNING, logger="agents.tap"):
        await agent._write(Delta(), [OffsetMove(TP.topic, TP.partition, 0, 4)])
    assert store.writes == [(0, 4)] and agent.status.redis_errors == 1
    assert [r.getMessage() for r in caplog.records] == [
        "state write failed, retrying in 0.2s: Error 111 connecting to 127.0.0.1:6379."
    ]
