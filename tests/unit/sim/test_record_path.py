"""The simulated broker serves real record batches, read through the tap's real record path.

The broker's answers are v2 batches as Kafka stores them (transactions with their markers, compressed
batches, a batch nobody can decode), whole from the batch holding the position on; the consumer wraps
them as aiokafka 0.14 does and reads them through agents/bulk_fetch.py. The path is inside the search:
each of its rules, removed, is found within the schedules CI runs.
"""

from __future__ import annotations

import inspect
import struct

import pytest
from aiokafka import TopicPartition
from aiokafka.errors import CorruptRecordException, UnsupportedCodecError
from aiokafka.record.memory_records import MemoryRecords

from agents import bulk_fetch
from agents.stalls import CORRUPT_BATCH, UNSUPPORTED_CODEC, PartitionUnreadable
from tests.sim import batches
from tests.sim.kafka import PartitionLog, SimConsumer
from tests.sim.world import PROFILES, World, first_violation, simulate

TP = TopicPartition("raw", 0)
SEARCH_BUDGET = 300  # schedules each removed rule must be found within (each is within the first 60)


def _log(seed: int = 1) -> PartitionLog:
    """plain x3 | txn 0 x2, aborted | plain x2 | txn 1 x1, committed; markers at 5 and 9."""
    log = PartitionLog(TP, rng=batches.log_rng(seed, TP))
    for i in range(3):
        log.append(b"p%d" % i, 1_000 + i)
    log.append(b"a0", 2_000, txn=0)
    log.append(b"a1", 2_001, txn=0)
    log.end_txn(0, commit=False, timestamp=2_002)
    log.append(b"q0", 3_000)
    log.append(b"q1", 3_001)
    log.append(b"c0", 4_000, txn=1)
    log.end_txn(1, commit=True, timestamp=4_001)
    return log


def _consumer(log: PartitionLog, position: int) -> SimConsumer:
    world = World(0)
    world.logs[TP] = log
    consumer = SimConsumer(world, 0)
    consumer.assigned, consumer.positions = {TP}, {TP: position}
    return consumer


def _read(consumer: SimConsumer, limit: int, max_records: int | None = None) -> list[tuple[int, bytes, int]]:
    position = consumer.positions[TP]
    if TP not in consumer.fetched:
        consumer.fetched[TP] = batches.fetch(consumer, TP, position, limit)
    out = batches.drain(consumer.fetched, max_records)
    return [(r.offset, r.value, r.timestamp) for r in out.get(TP, [])]


def test_a_fetch_inside_a_batch_gets_the_whole_batch_and_the_record_path_drops_what_precedes() -> None:
    log = _log()
    for seed in range(50):  # a log whose first three records went into one batch
        log = _log(seed)
        if log.entries[0].batch is log.entries[2].batch:
            break
    data, aborted = batches.response(log, 1, 2)
    assert struct.unpack_from(">q", data, 0)[0] == 0  # the answer starts at the batch's base, before 1
    assert aborted == []
    consumer = _consumer(log, 1)
    assert _read(consumer, 2) == [(1, b"p1", 1_001), (2, b"p2", 1_002)]
    assert consumer.positions[TP] == 3


def test_aborted_records_and_markers_are_skipped_and_the_position_passes_them() -> None:
    log = _log()
    data, aborted = batches.response(log, 3, log.end)
    assert aborted == [(batches.PRODUCER_BASE + 0, 3)]  # the aborted transaction, for read_committed
    kinds = []
    memory = MemoryRecords(data)
    while memory.has_next():
        batch = memory.next_batch()
        kinds.append((batch.base_offset, batch.is_transactional, batch.is_control_batch))
    assert kinds == [(3, True, False), (5, True, True), (6, False, False), (8, True, False), (9, True, True)]
    consumer = _consumer(log, 3)
    assert [r[1] for r in _read(consumer, log.end)] == [b"q0", b"q1", b"c0"]
    assert consumer.positions[TP] == log.end  # past the commit marker


def test_max_records_leaves_the_rest_fetched_and_a_seek_drops_it() -> None:
    consumer = _consumer(_log(), 0)
    assert [r[0] for r in _read(consumer, 3, max_records=2)] == [0, 1]
    assert consumer.positions[TP] == 2 and TP in consumer.fetched  # the rest stays, as in aiokafka's fetcher
    consumer.seek(TP, 0)
    assert _read(consumer, 3) == []  # aiokafka drops a result its position no longer matches
    assert TP not in consumer.fetched and consumer.positions[TP] == 0


def test_batches_are_encoded_once_and_some_compressed() -> None:
    log = _log()
    batch = log.entries[0].batch
    assert batch is not None
    first = batches.encoded(log, batch)
    assert batches.encoded(log, batch) is first
    log.append(b"later", 5_000)
    assert log.entries[-1].batch is not batch  # a batch once served takes no more records
    codecs = set()
    for seed in range(40):
        world = simulate(seed, steps=40, faults=PROFILES[seed % len(PROFILES)])
        for log in world.logs.values():
            for e in log.entries:
                if e.batch is not None and e.batch.data is not None and not e.marker:
                    codecs.add(struct.unpack_from(">h", e.batch.data, 21)[0] & 0x07)
    assert codecs == {0, batches.GZIP, batches.SNAPPY, batches.LZ4, batches.ZSTD}


def test_an_unreadable_batch_raises_from_the_real_record_path() -> None:
    """Its codec is unknown, or its CRC fails: either way the error comes from the record path's own checks."""
    reasons = set()
    for seed in range(20):
        log = _log(seed)
        log.unreadable_at = 6
        consumer = _consumer(log, 0)
        # What precedes the bad batch is read (past the aborted batch and its marker); the position stops at it.
        assert [r[1] for r in _read(consumer, log.end)] == [b"p0", b"p1", b"p2"]
        assert consumer.positions[TP] == 6
        with pytest.raises(PartitionUnreadable) as raised:
            _read(consumer, log.end)
        assert (raised.value.partition, raised.value.offset) == (TP, 6)
        expected = {UNSUPPORTED_CODEC: UnsupportedCodecError, CORRUPT_BATCH: CorruptRecordException}
        assert isinstance(raised.value.cause, expected[raised.value.reason])
        reasons.add(raised.value.reason)
        assert consumer.positions[TP] == 6
        log.unreadable_at = None  # the fix deployed: the same batch reads
        consumer.fetched.clear()
        assert [r[1] for r in _read(consumer, log.end)] == [b"q0", b"q1", b"c0"]
    assert reasons == {UNSUPPORTED_CODEC, CORRUPT_BATCH}


# Each rule of agents/bulk_fetch.py's parse, removed from its source: the mutant runs in the search.
PARSE_RULES = {
    "records-before-the-fetch-offset": (
        "        if records and records[0].offset < offset:  # the broker answers from the start of the batch\n"
        "            records = [r for r in records if r.offset >= offset]\n"
    ),
    "aborted-transactions": (
        "            if batch.is_transactional and batch.producer_id in pr._aborted_producers:\n"
        "                yield [], batch.next_offset\n"
        "                continue\n"
    ),
    "control-batches": (
        "        if batch.is_control_batch:\n            yield [], batch.next_offset\n            continue\n"
    ),
    "crc-check": (
        "        if pr._check_crcs and not batch.validate_crc():\n"
        '            raise CorruptRecordException(f"Invalid CRC - {pr._tp}")\n'
    ),
}


@pytest.mark.parametrize("rule", sorted(PARSE_RULES))
def test_the_search_finds_a_record_path_without_one_of_its_rules(rule: str, monkeypatch: pytest.MonkeyPatch) -> None:
    source = inspect.getsource(bulk_fetch.parse)
    assert source.count(PARSE_RULES[rule]) == 1, rule
    namespace = dict(vars(bulk_fetch))
    exec(source.replace(PARSE_RULES[rule], ""), namespace)  # the module's own code, one rule less
    monkeypatch.setattr(bulk_fetch, "parse", namespace["parse"])
    found = first_violation(range(SEARCH_BUDGET))
    assert found is not None, f"a record path without its {rule} rule went unnoticed in {SEARCH_BUDGET} schedules"
