"""The probe on in-memory clients: what it reports when the broker does not answer fetches in time."""

from __future__ import annotations

from tests.unit.streams.lag.fakes import FakeConsumer, FakeLog, lag_of, probe


async def test_a_fetch_that_times_out_gives_unknown_seconds_never_zero() -> None:
    snap = await probe(FakeLog(slow=True), {"w": 4, "caught-up": 10}).measure()
    # The end came from ListOffsets; the first unconsumed record could not be read.
    assert lag_of(snap, "w") == (6, None)
    assert snap.groups["w"].partitions[0].seconds_unknown
    assert lag_of(snap, "caught-up") == (0, 0.0)  # nothing waits: 0 s is a fact, not a guess


async def test_a_known_age_survives_a_slow_cycle_while_the_group_has_not_moved() -> None:
    log = FakeLog()
    p = probe(log, {"w": 4, "other": 7})
    first = await p.measure()
    assert lag_of(first, "w")[0] == 6 and lag_of(first, "other")[0] == 3
    age_w = lag_of(first, "w")[1]
    assert age_w is not None and 59 <= age_w <= 90  # the record at offset 4, stamped a minute ago
    log.slow = True
    second = await p.measure()
    assert lag_of(second, "w")[0] == 6
    assert lag_of(second, "w")[1] is not None and lag_of(second, "w")[1] >= age_w  # type: ignore[operator]
    assert lag_of(second, "other")[1] is not None


async def test_groups_at_different_offsets_of_one_partition_cost_one_round_each() -> None:
    log = FakeLog()
    p = probe(log, {f"g{i}": i for i in range(10)})
    snap = await p.measure()
    assert [lag_of(snap, f"g{i}")[0] for i in range(10)] == [10 - i for i in range(10)]
    consumer = p._consumer
    assert isinstance(consumer, FakeConsumer) and consumer.fetches <= 2 * 10


async def test_a_partition_whose_end_cannot_be_read_keeps_its_last_figures_never_a_gap() -> None:
    log = FakeLog()
    p = probe(log, {"w": 4})
    first = await p.measure()
    log.slow = log.no_end = True
    second = await p.measure()
    assert second.errors == ["no end for orders/0"]
    assert second.groups["w"].partitions == first.groups["w"].partitions
    fresh = probe(log, {"w": 4})  # never measured: nothing to keep, so no row rather than a guess
    assert (await fresh.measure()).groups["w"].partitions == ()
