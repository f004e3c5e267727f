from __future__ import annotations

from tables.writes import OffsetMove
from tests.unit.agents.fakes import raw_record
from tests.unit.agents.test_topic_identity import TP, _Consumer, _Store, _tap


async def test_a_topic_id_check_in_the_deletion_gap_leaves_the_next_recreation_unnoticed() -> None:
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
