"""Topic identity: the rules for a log that changed under its stored offset, the ID's wire form, the write."""

from __future__ import annotations

import asyncio
import base64
import uuid
from io import BytesIO
from typing import Any

import pytest
from aiokafka import TopicPartition

from agents.offsets import BEYOND_END, IN_RANGE, LOG_CUT, RECREATED, TRUNCATED, out_of_range_rule, recreated
from agents.tap import TapAgent
from agents.topic_ids import MetadataResponse_v12, TopicMetadata, id_text, topic_ids_of
from core.status import Status
from streams.settings import Settings
from tables.delta import Delta
from tables.store import RedisStore
from tables.writes import OffsetMove
from tests.unit.agents.fakes import PositionsConsumer, raw_record


@pytest.mark.parametrize(
    ("stored", "start", "end", "stored_id", "current_id", "want"),
    [
        # No IDs (an older broker, or offsets stored before IDs were): the offsets-only rule.
        (150, 200, 300, None, None, (TRUNCATED, 200, 50)),
        (500, 0, 30, None, None, (BEYOND_END, 0, 0)),
        (500, 0, 30, None, "B", (BEYOND_END, 0, 0)),
        (500, 0, 30, "A", None, (BEYOND_END, 0, 0)),
        # Another topic of the same name: read from its start, whatever the offsets say.
        (500, 0, 30, "A", "B", (RECREATED, 0, 0)),
        (50, 0, 900, "A", "B", (RECREATED, 0, 0)),
        (10, 40, 900, "A", "B", (RECREATED, 40, 40)),  # retention took the new topic's first 40 unread
        # Same topic, its log now ends below the stored offset: resume at the end, nothing counted twice.
        (500, 0, 420, "A", "A", (LOG_CUT, 420, 0)),
        (500, 100, 100, "A", "A", (LOG_CUT, 100, 0)),
        # Same topic, retention below the stored offset: the gap is counted as skipped.
        (150, 200, 300, "A", "A", (TRUNCATED, 200, 50)),
        # The log holds the offset after all (it moved between the fetch and the look): stay.
        (250, 200, 300, "A", "A", (IN_RANGE, 250, 0)),
        # Both bounds are in range: at the log start nothing is gone, at its end (caught up) nothing was cut.
        (200, 200, 300, "A", "A", (IN_RANGE, 200, 0)),
        (300, 200, 300, "A", "A", (IN_RANGE, 300, 0)),
        (200, 200, 300, None, None, (BEYOND_END, 200, 0)),
    ],
)
def test_out_of_range_rule(
    stored: int, start: int, end: int, stored_id: str | None, current_id: str | None, want: tuple[str, int, int]
) -> None:
    assert out_of_range_rule(stored, start, end, stored_id, current_id) == want


@pytest.mark.parametrize(
    ("stored_id", "current_id", "want"),
    [("A", "B", True), ("A", "A", False), (None, "B", False), ("A", None, False), (None, None, False)],
)
def test_recreated_needs_both_ids(stored_id: str | None, current_id: str | None, want: bool) -> None:
    assert recreated(stored_id, current_id) is want


def test_id_text_is_kafkas_base64_form_and_zero_means_none() -> None:
    raw = uuid.UUID("28c43868-a608-461f-b033-9d36680000c6").bytes
    text = id_text(raw)
    assert text == "KMQ4aKYIRh-wM502aAAAxg"
    assert text is not None and base64.urlsafe_b64decode(text + "==") == raw
    assert id_text(bytes(16)) is None


def test_metadata_v12_round_trip() -> None:
    """The request names topics without creating them; the answer's IDs are read per topic, errors left out."""
    request = TopicMetadata(["events.raw"]).build(TopicMetadata._CLASSES[0])
    assert request.API_VERSION == 12 and request.allow_auto_topic_creation is False
    raw_id = uuid.uuid4().bytes
    partition: tuple[object, ...] = (0, 0, 1, 5, [1], [1], [], {})
    response = MetadataResponse_v12(
        0,
        [(1, "127.0.0.1", 9092, None, {})],
        "cluster",
        1,
        [
            (0, "events.raw", raw_id, False, [partition], 0, {}),
            (3, "events.gone", bytes(16), False, [], 0, {}),  # UNKNOWN_TOPIC_OR_PARTITION
            (0, "events.old", bytes(16), False, [partition], 0, {}),
        ],
        {},
    )
    decoded = MetadataResponse_v12.decode(BytesIO(response.encode()))
    assert topic_ids_of(decoded) == {"events.raw": id_text(raw_id), "events.old": None}


class _NoClient:
    """build_payload touches no client; the constructor only registers the script."""

    def register_script(self, script: str) -> object:
        return object()


def test_the_id_moves_with_the_offset_only_when_it_changes() -> None:
    store = RedisStore(_NoClient(), "t", 2)  # type: ignore[arg-type]
    moves = [
        OffsetMove("events.raw", 0, 10, 20, "B", "A"),  # re-created: the ID moves, checked against the old
        OffsetMove("events.raw", 1, None, 5, "B", None),  # first write: the ID is stored, none may be there
        OffsetMove("events.raw", 2, 7, 9, "B", "B"),  # unchanged: no extra field
        OffsetMove("events.raw", 3, 7, 9),  # no ID known (a broker without IDs)
    ]
    off = store.build_payload(Delta(), moves)["off"]
    assert off == [
        ["events.raw:0", "10", "20"],
        ["events.raw:1", "", "5"],
        ["events.raw:2", "7", "9"],
        ["events.raw:3", "7", "9"],
        ["events.raw:0:id", "A", "B"],
        ["events.raw:1:id", "", "B"],
    ]


# The tap's guards, on the real TapAgent with a fake consumer and store ------------------------------------

TP = TopicPartition("events.raw", 0)


class _Consumer(PositionsConsumer):
    """Its topic IDs are the test's to set: an answer, or the error the broker gives."""

    def __init__(self, ids: dict[str, str | None] | Exception) -> None:
        super().__init__({TP})
        self.ids = ids
        self.asked = 0

    async def topic_ids(self, topics: Any) -> dict[str, str | None]:
        self.asked += 1
        if isinstance(self.ids, Exception):
            raise self.ids
        return {t: self.ids[t] for t in topics if t in self.ids}  # a deleted topic is not named

    async def beginning_offsets(self, partitions: list[TopicPartition]) -> dict[TopicPartition, int]:
        return dict.fromkeys(partitions, 7)

    async def end_offsets(self, partitions: list[TopicPartition]) -> dict[TopicPartition, int]:
        return dict.fromkeys(partitions, 30)


class _Store:
    def __init__(self, offset: int | None, topic_id: str | None) -> None:
        self.stored = (offset, topic_id)
        self.applied: list[list[OffsetMove]] = []

    async def load_stored(self, partitions: Any) -> dict[tuple[str, int], tuple[int | None, str | None]]:
        return {p: self.stored for p in partitions}

    async def apply(self, delta: Delta, moves: list[OffsetMove]) -> None:
        self.applied.append(moves)
        for m in moves:
            self.stored = (m.next_offset, m.topic_id if m.topic_id is not None else self.stored[1])


def _tap(consumer: _Consumer, store: _Store) -> TapAgent:
    return TapAgent(Settings(), store, Status(replica_id="r"), consumer)  # type: ignore[arg-type]


async def test_a_recreated_topic_is_read_from_its_start_and_its_deleted_start_counted_as_skipped() -> None:
    consumer, store = _Consumer({"events.raw": "B"}), _Store(120, "A")
    tap = _tap(consumer, store)
    await tap.on_assigned({TP})
    assert store.applied == [[OffsetMove("events.raw", 0, 120, 7, "B", "A")]]
    assert consumer.positions[TP] == 7 and tap.expected[TP] == 7 and tap.stored_ids[TP] == "B"
    assert tap.status.topics_recreated["events.raw"] == 1 and tap.status.records_skipped["events.raw"] == 7


async def test_no_batch_is_written_while_the_topic_id_cannot_be_asked_then_it_is_settled() -> None:
    consumer, store = _Consumer(ConnectionError("broker restarting")), _Store(100, "A")
    tap = _tap(consumer, store)
    await tap.on_assigned({TP})
    assert store.applied == [] and TP in tap.ids_due
    await tap.process({TP: [raw_record(TP, 100), raw_record(TP, 101)]}, tap.epoch)
    await tap._drain()
    assert store.applied == [], "a batch was written with no ID to compare the stored one with"
    assert consumer.positions[TP] == 100  # read again from the stored offset
    consumer.ids = {"events.raw": "B"}  # the broker answers: the topic was re-created meanwhile
    await tap.check_identity_due()
    assert store.applied == [[OffsetMove("events.raw", 0, 100, 7, "B", "A")]]
    assert not tap.ids_due and consumer.positions[TP] == 7


async def test_a_batch_never_replaces_a_stored_id() -> None:
    """The tap believes ID B, the tables hold A (e.g. a conflicting write reloaded them): no batch may
    move A to B; the check does, from the stored offset to the new topic's start."""
    consumer, store = _Consumer({"events.raw": "A"}), _Store(100, "A")
    tap = _tap(consumer, store)
    await tap.on_assigned({TP})
    tap.topic_ids[TP] = "B"
    await tap.process({TP: [raw_record(TP, 100)]}, tap.epoch)
    await tap._drain()
    assert store.applied == [] and TP in tap.ids_due and consumer.positions[TP] == 100
    await tap.process({TP: [raw_record(TP, 100)]}, tap.epoch)  # still unsettled: still not written
    await tap._drain()
    assert store.applied == []
    await tap.check_identity_due()  # the broker says A after all: settled, nothing moved
    assert store.applied == [] and not tap.ids_due
    await tap.process({TP: [raw_record(TP, 100)]}, tap.epoch)
    await tap._drain()
    assert store.applied == [[OffsetMove("events.raw", 0, 100, 101, "A", "A")]]


async def test_an_out_of_range_fetch_without_an_id_to_compare_moves_nothing() -> None:
    """A cut log found while the broker cannot give IDs (an election in progress) is not taken for a
    re-created topic: nothing moves, the partition is read again from its stored offset."""
    consumer, store = _Consumer({"events.raw": "A"}), _Store(500, "A")
    tap = _tap(consumer, store)
    await tap.on_assigned({TP})
    consumer.ids = ConnectionError("leader moving")
    await tap.out_of_range({TP: 500})
    assert store.applied == [] and consumer.positions[TP] == 500
    consumer.ids = {"events.raw": "A"}
    await tap.check_identity_due()
    await tap.out_of_range({TP: 500})
    assert store.applied == [[OffsetMove("events.raw", 0, 500, 30, "A", "A")]]
    assert tap.status.offset_resets[("events.raw", "log_cut")] == 1


# Each batch's topic IDs asked after its fetch: a topic re-created while the tap reads it -----------------


async def test_a_topic_re_created_after_a_fetch_has_that_batch_read_again_from_the_new_start() -> None:
    """The fetch read offsets 100-101 and the broker now names another ID: the records may be the new
    topic's (a fetch gets no error when the new topic has grown past the old position), so the batch is
    not written; the stored offset moves to the new topic's start."""
    consumer, store = _Consumer({"events.raw": "A"}), _Store(100, "A")
    tap = _tap(consumer, store)
    await tap.on_assigned({TP})
    consumer.ids = {"events.raw": "B"}
    await tap.process({TP: [raw_record(TP, 100), raw_record(TP, 101)]}, tap.epoch)
    await tap._drain()
    assert store.applied == [[OffsetMove("events.raw", 0, 100, 7, "B", "A")]]
    assert consumer.positions[TP] == 7 and tap.expected[TP] == 7 and tap.topic_ids[TP] == "B"
    assert tap.status.topics_recreated["events.raw"] == 1
    await tap.process({TP: [raw_record(TP, 7)]}, tap.epoch)
    await tap._drain()
    assert store.applied[1:] == [[OffsetMove("events.raw", 0, 7, 8, "B", "B")]]


async def test_a_topic_re_created_before_its_first_write_is_read_from_its_start_under_the_new_id() -> None:
    """Nothing stored yet: no offset to move, but the batch fetched may be the old topic's; it is read
    again, and the first write stores the new topic's ID."""
    consumer, store = _Consumer({"events.raw": "A"}), _Store(None, None)
    tap = _tap(consumer, store)
    await tap.on_assigned({TP})
    consumer.ids = {"events.raw": "B"}
    consumer.positions[TP] = 3
    await tap.process({TP: [raw_record(TP, 0), raw_record(TP, 1), raw_record(TP, 2)]}, tap.epoch)
    await tap._drain()
    assert store.applied == [] and tap.topic_ids[TP] == "B" and consumer.positions[TP] == 0
    await tap.process({TP: [raw_record(TP, 0)]}, tap.epoch)
    await tap._drain()
    assert store.applied == [[OffsetMove("events.raw", 0, None, 1, "B", None)]]


async def test_a_topic_deleted_after_a_fetch_is_not_written_until_the_broker_names_an_id() -> None:
    consumer, store = _Consumer({"events.raw": "A"}), _Store(100, "A")
    tap = _tap(consumer, store)
    await tap.on_assigned({TP})
    consumer.ids = {}  # not in the broker's answer: deleted, not created again yet
    await tap.process({TP: [raw_record(TP, 100)]}, tap.epoch)
    await tap._drain()
    assert store.applied == [] and TP in tap.ids_due and consumer.positions[TP] == 100


@pytest.mark.parametrize(("known", "asked"), [("A", 1), (None, 0)])
async def test_a_batch_asks_for_its_topic_id_only_where_the_broker_gives_ids(known: str | None, asked: int) -> None:
    consumer, store = _Consumer({"events.raw": known}), _Store(100, known)
    tap = _tap(consumer, store)
    await tap.on_assigned({TP})
    before = consumer.asked
    await tap.process({TP: [raw_record(TP, 100)]}, tap.epoch)
    await tap._drain()
    assert consumer.asked - before == asked
    assert store.applied == [[OffsetMove("events.raw", 0, 100, 101, known, known)]]


class _SlowIds(_Consumer):
    """Its ID answer comes a little after the fold: still pending when the batch is checked."""

    def __init__(self, ids: dict[str, str | None]) -> None:
        super().__init__(ids)
        self.cancelled = 0

    async def topic_ids(self, topics: Any) -> dict[str, str | None]:
        try:
            await asyncio.sleep(0.05)
        except asyncio.CancelledError:
            self.cancelled += 1
            raise
        return await super().topic_ids(topics)


async def test_a_slow_id_answer_is_awaited_not_cancelled() -> None:
    consumer, store = _SlowIds({"events.raw": "A"}), _Store(100, "A")
    tap = _tap(consumer, store)
    await tap.on_assigned({TP})
    await tap.process({TP: [raw_record(TP, 100)]}, tap.epoch)
    await tap._drain()
    assert store.applied == [[OffsetMove("events.raw", 0, 100, 101, "A", "A")]] and consumer.cancelled == 0


@pytest.mark.parametrize("known", ["A", None])
async def test_a_batch_whose_epoch_moved_while_it_folded_drops_its_id_question(known: str | None) -> None:
    consumer, store = _SlowIds({"events.raw": known}), _Store(100, known)
    tap: TapAgent

    async def reloaded_meanwhile() -> None:
        await asyncio.sleep(0)  # the question is on its way
        tap.epoch += 1  # a refused write's reload sought the partition back while this batch folded

    tap = TapAgent(Settings(), store, Status(replica_id="r"), consumer, pause=reloaded_meanwhile)  # type: ignore[arg-type]
    await tap.on_assigned({TP})
    await tap.process({TP: [raw_record(TP, 100)]}, tap.epoch)
    await asyncio.sleep(0.1)
    assert store.applied == [] and consumer.positions[TP] == 100
    assert consumer.cancelled == (1 if known else 0)


async def test_a_check_in_the_deletion_gap_leaves_the_partition_due_and_the_re_creation_is_found() -> None:
    """Deleted, the topic is not named: the check that lands in that gap must not take "no ID" for a broker
    without IDs. Created again with records past offset 100, its records there are not the old topic's."""
    consumer, store = _Consumer({"events.raw": "A"}), _Store(100, "A")
    tap = _tap(consumer, store)
    await tap.on_assigned({TP})
    consumer.ids = {}  # deleted, not yet created again
    tap._last_id_check = 0.0
    await tap.check_identity_due()  # the periodic check (or the one a batch's ask made due) lands in the gap
    consumer.ids = {"events.raw": "B"}  # created again, its producers past offset 100
    await tap.process({TP: [raw_record(TP, 100), raw_record(TP, 101)]}, tap.epoch)
    await tap._drain()
    tap._last_id_check = 0.0
    await tap.check_identity_due()
    await tap._drain()
    assert [OffsetMove("events.raw", 0, 100, 102, None, "A")] not in store.applied, "new records under old offsets"
    assert store.applied == [[OffsetMove("events.raw", 0, 100, 7, "B", "A")]]


async def test_a_never_written_partition_past_an_invisible_tail_is_read_from_the_new_topics_start() -> None:
    """Nothing stored; the old log held only an aborted transaction and its marker, so aiokafka's position
    went to 5 without a record (and the pass of invisible offsets skips a partition never written). The
    topic is created again with 8 records; the periodic check learns the new ID before the next fetch."""
    consumer, store = _Consumer({"events.raw": "A"}), _Store(None, None)
    tap = _tap(consumer, store)
    await tap.on_assigned({TP})
    consumer.positions[TP] = 5  # past the aborted tail, nothing handed out
    consumer.ids = {"events.raw": "B"}
    tap._last_id_check = 0.0
    await tap.check_identity_due()
    # At HEAD the position stays at 5: the next fetch brings the new topic's 5-7, and its first write claims
    # them "from the log start" (OffsetMove(None -> 8, "B")), its records 0-4 never read.
    assert consumer.positions[TP] == 0
