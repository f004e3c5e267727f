"""Topic identity: the rules for a log that changed under its stored offset, the ID's wire form, the write."""

from __future__ import annotations

import base64
import uuid
from io import BytesIO

import pytest

from agents.offsets import BEYOND_END, IN_RANGE, LOG_CUT, RECREATED, TRUNCATED, out_of_range_rule, recreated
from agents.topic_ids import MetadataResponse_v12, TopicMetadata, id_text, topic_ids_of
from tables.delta import Delta
from tables.store import OffsetMove, RedisStore


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
        (10, 40, 900, "A", "B", (RECREATED, 40, 0)),
        # Same topic, its log now ends below the stored offset: resume at the end, nothing counted twice.
        (500, 0, 420, "A", "A", (LOG_CUT, 420, 0)),
        (500, 100, 100, "A", "A", (LOG_CUT, 100, 0)),
        # Same topic, retention below the stored offset: the gap is counted as skipped.
        (150, 200, 300, "A", "A", (TRUNCATED, 200, 50)),
        # The log holds the offset after all (it moved between the fetch and the look): stay.
        (250, 200, 300, "A", "A", (IN_RANGE, 250, 0)),
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
