"""In-memory Kafka for the simulator: partition logs with transactions, and a lazy group coordinator.

A log keeps every entry it ever had (truncated ones are only marked), so the checker can always tell
what a range of offsets held. Consumers read committed records only, as the tap's real consumer does.
Rebalances reach a consumer only when the simulator delivers them: until then it keeps fetching the
partitions it had (a zombie), as a real consumer does between a rebalance and its next poll. A delivered
rebalance runs as aiokafka's coordinator runs it, in a task of its own beside the tap's loop: the old
assignment stops serving records, the revocation callback runs, the new assignment starts at the group's
committed offsets (elsewhere without a position: auto_offset_reset="none", a fetch then raises
NoOffsetForPartitionError), and the assignment callback positions it, while the tap's loop goes on
fetching, folding and writing. A commit of an older generation (a zombie's) is refused. Fetches answer
with real record batches, read through the tap's real record path (tests/sim/batches.py).
"""

from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from aiokafka import TopicPartition
from aiokafka.errors import (
    CommitFailedError,
    IllegalStateError,
    KafkaConnectionError,
    KafkaError,
    NoOffsetForPartitionError,
    OffsetOutOfRangeError,
)

from tests.sim.batches import Assignment, Batch, drain, fetch, joins_last

if TYPE_CHECKING:
    from tests.sim.world import World


@dataclass
class Entry:
    offset: int
    value: bytes | None  # None for a transaction marker
    timestamp: int
    txn: int | None = None  # producer transaction id, if written in one
    marker: bool = False
    batch: Batch | None = field(default=None, repr=False, compare=False)  # the record batch holding it


@dataclass
class SimRecord:
    topic: str
    partition: int
    offset: int
    value: bytes | None
    timestamp: int
    key: bytes | None = None


@dataclass
class PartitionLog:
    tp: TopicPartition
    entries: list[Entry] = field(default_factory=list)
    start: int = 0  # log start offset: entries below it were removed by retention
    open_txns: dict[int, int] = field(default_factory=dict)  # txn id -> first offset
    aborted: set[int] = field(default_factory=set)
    unreadable_at: int | None = None  # the batch holding it cannot be read until the fix is deployed
    spans: dict[int, tuple[int, int]] = field(default_factory=dict)  # ended txn id -> (first, marker offset)
    rng: random.Random = field(default_factory=lambda: random.Random(0))  # batching (tests/sim/batches.py)

    @property
    def end(self) -> int:
        return len(self.entries)

    @property
    def stable_end(self) -> int:
        """Last stable offset: nothing at or past the first record of an open transaction is readable."""
        return min([self.end, *self.open_txns.values()])

    def append(self, value: bytes, timestamp: int, txn: int | None = None) -> None:
        if txn is not None and txn not in self.open_txns:
            self.open_txns[txn] = self.end
        self._add(Entry(self.end, value, timestamp, txn), joins_last(self, txn))

    def _add(self, entry: Entry, join: bool) -> None:
        last = self.entries[-1].batch if join else None
        if last is not None:
            last.entries.append(entry)
        entry.batch = last or Batch([entry])
        self.entries.append(entry)

    def end_txn(self, txn: int, commit: bool, timestamp: int) -> None:
        if txn not in self.open_txns:
            return
        self.spans[txn] = (self.open_txns.pop(txn), self.end)
        if not commit:
            self.aborted.add(txn)
        self._add(Entry(self.end, None, timestamp, txn, marker=True), join=False)

    def visible(self, entry: Entry) -> bool:
        return not entry.marker and (entry.txn is None or entry.txn not in self.aborted)

    def records(self, start: int, end: int, entries: list[Entry] | None = None) -> list[SimRecord]:
        """Committed records with offsets in [start, end), from the full history (or another one: a cut's)."""
        return [
            SimRecord(self.tp.topic, self.tp.partition, e.offset, e.value, e.timestamp)
            for e in (self.entries if entries is None else entries)[start:end]
            if self.visible(e)
        ]


class Group:
    """The tap's consumer group: the assignment moves whenever membership changes or the simulator asks."""

    def __init__(self, partitions: list[TopicPartition]) -> None:
        self.partitions = partitions
        self.members: list[SimConsumer] = []
        self.generation = 0
        self.assignment: dict[int, set[TopicPartition]] = {}  # id(consumer) -> partitions
        self.committed: dict[TopicPartition, int] = {}  # where aiokafka positions a new assignment

    def rebalance(self, order: list[int]) -> None:
        self.generation += 1
        self.assignment = {id(m): set() for m in self.members}
        if not self.members:
            return
        for i, tp in enumerate(self.partitions):
            member = self.members[order[i % len(order)] % len(self.members)]
            self.assignment[id(member)].add(tp)

    def join(self, consumer: SimConsumer, order: list[int]) -> None:
        self.members.append(consumer)
        self.rebalance(order)

    def leave(self, consumer: SimConsumer, order: list[int]) -> None:
        if consumer in self.members:
            self.members.remove(consumer)
            self.rebalance(order)


class SimConsumer:
    """The TapConsumer protocol over the simulated logs; every fetch is a point the simulator schedules."""

    def __init__(self, world: World, replica: int) -> None:
        self.world = world
        self.replica = replica
        self.listener: Any = None
        self.assigned: set[TopicPartition] = set()
        self.generation = 0
        self.positions: dict[TopicPartition, int] = {}
        self.paused: set[TopicPartition] = set()
        self.dead = False
        self.active = True  # False from a rebalance's start until its new assignment: nothing is served
        self.coordinator: asyncio.Task[None] | None = None
        # aiokafka's fetcher: a result per partition, kept until read (tests/sim/batches.py)
        self.assignment_state = Assignment(self)
        self.fetched: dict[TopicPartition, Any] = {}

    # Lifecycle ---------------------------------------------------------------------------------------
    def subscribe(self, topics: list[str], listener: Any) -> None:
        self.listener = listener

    async def start(self) -> None:
        self.world.group.join(self, self.world.order())

    async def stop(self) -> None:
        await self.world.point("kafka.leave", self.replica)
        self.world.group.leave(self, self.world.order())

    # Fetching ----------------------------------------------------------------------------------------
    async def getmany(self, *partitions: TopicPartition, timeout_ms: int = 0, max_records: int | None = None) -> Any:
        outcome = await self.world.point("kafka.fetch", self.replica)
        rebalancing = self.coordinator is not None and not self.coordinator.done()
        if self.generation != self.world.group.generation and outcome.deliver_rebalance and not rebalancing:
            self.active = False  # aiokafka's begin_reassignment: what was fetched for the old one is dropped
            self.coordinator = asyncio.ensure_future(self._rebalance())
            self.world.replicas[self.replica].tasks.append(self.coordinator)
            return {}
        if not self.active:
            return {}
        out_of_range = {}
        unpositioned = False
        for tp in sorted(self.assigned):
            if tp in self.paused or tp in self.fetched:
                continue  # aiokafka fetches a partition again once what it holds of it was read
            if tp not in self.positions:
                unpositioned = True
                continue
            log = self.world.logs[tp]
            pos = self.positions[tp]
            if pos < log.start or pos > log.end:
                out_of_range[tp] = pos
                continue
            limit = min(log.stable_end, pos + outcome.max_records)
            if limit > pos:
                self.fetched[tp] = fetch(self, tp, pos, limit)
        # The real record path: an unreadable batch raises PartitionUnreadable from it, dropping what was
        # collected from the other partitions, their positions already moved past it (as aiokafka does).
        out = drain(self.fetched, max_records)
        if out_of_range and not out:
            raise OffsetOutOfRangeError(out_of_range)
        if unpositioned and not out:
            raise NoOffsetForPartitionError("simulated: an assigned partition has no position yet")
        if outcome.fetch_error and out:
            raise KafkaError("simulated: a later partition failed; the records collected were dropped")
        return out

    async def _rebalance(self) -> None:
        """aiokafka's coordinator: a callback that raises is logged and the rebalance goes on."""
        new = set(self.world.group.assignment.get(id(self), set()))
        old, self.generation = self.assigned, self.world.group.generation
        try:
            await self.listener.on_partitions_revoked(set(old))
        except Exception as exc:
            self.world.trace.append(f"r{self.replica} on_revoked raised {type(exc).__name__}")
        # A new assignment has fresh partition states, nothing paused; aiokafka's fetcher positions them at
        # the group's committed offsets while the assignment callback runs (the tap then seeks its own).
        committed = self.world.group.committed
        positions = {tp: committed[tp] for tp in new if tp in committed}
        self.assigned, self.positions, self.paused, self.active = new, positions, set(), True
        self.assignment_state, self.fetched = Assignment(self), {}  # what was fetched for the old one is gone
        try:
            await self.listener.on_partitions_assigned(set(new))
        except Exception as exc:
            self.world.trace.append(f"r{self.replica} on_assigned raised {type(exc).__name__}")

    # Each refuses a partition the consumer is not assigned, as aiokafka's do (its subscription state
    # raises IllegalStateError): a tap that keeps revoked partitions and seeks them fails here as in production.
    def _assigned(self, partitions: tuple[TopicPartition, ...]) -> None:
        not_assigned = set(partitions) - self.assigned
        if not_assigned:
            from tests.sim.world import Violation

            # The tap handles no IllegalStateError: in production it would end the tap's run, so the
            # driver fails the schedule even when a task swallows the error.
            self.world.violation = Violation(
                f"r{self.replica} asks the consumer about partitions it is not assigned: {sorted(not_assigned)}"
            )
            raise IllegalStateError(f"Partitions {not_assigned} are not assigned")

    def seek(self, partition: TopicPartition, offset: int) -> None:
        if not isinstance(offset, int) or offset < 0:
            raise ValueError("Offset must be a positive integer")
        self._assigned((partition,))
        self.positions[partition] = offset

    def pause(self, *partitions: TopicPartition) -> None:
        self._assigned(partitions)
        self.paused.update(partitions)

    def resume(self, *partitions: TopicPartition) -> None:
        self._assigned(partitions)
        self.paused.difference_update(partitions)

    async def seek_to_beginning(self, *partitions: TopicPartition) -> None:
        self._assigned(partitions)
        # At once, though aiokafka awaits the broker's answer: a scheduling point here slowed every schedule
        # enough that few reached truncation or cuts. The race in that wait is tests/unit/agents/
        # test_tap_reload_epoch.py's.
        for tp in partitions:
            self.positions[tp] = self.world.logs[tp].start

    async def position(self, partition: TopicPartition) -> int:
        self._assigned((partition,))
        return self.positions[partition]

    def assignment(self) -> set[TopicPartition]:
        return set(self.assigned)

    async def commit(self, offsets: dict[TopicPartition, int]) -> None:
        if (await self.world.point("kafka.commit", self.replica)).kafka_error:
            raise CommitFailedError("simulated: the group is rebalancing")
        if self.generation != self.world.group.generation:
            raise CommitFailedError("simulated: a commit of an older generation")
        self.world.group.committed.update(offsets)

    async def beginning_offsets(self, partitions: list[TopicPartition]) -> dict[TopicPartition, int]:
        if (await self.world.point("kafka.offsets", self.replica)).kafka_error:
            raise KafkaConnectionError("simulated: the partition leader is unreachable")
        return {tp: self.world.logs[tp].start for tp in partitions}

    async def end_offsets(self, partitions: list[TopicPartition]) -> dict[TopicPartition, int]:
        """The last stable offset, as aiokafka's end_offsets gives a read_committed consumer."""
        return {tp: self.world.logs[tp].stable_end for tp in partitions}

    async def topic_ids(self, topics: Any) -> dict[str, str | None]:
        # No scheduling point: one here would move every fixed regression seed's schedule.
        return {topic: self.world.topic_ids.get(topic) for topic in topics}
