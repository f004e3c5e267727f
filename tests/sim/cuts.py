"""Cut logs in the simulator: an unclean leader election ends a partition's log below offsets already read.

The cut keeps the topic's ID; the entries past the cut point are gone and new ones take their offsets,
so one offset can name two different records. Each cut starts a new history of the partition: the
ledger notes which history a write's records came from, and the checker works on the entries themselves
(by identity), not on offsets:
- no entry, of any history, is counted twice (the rule without topic IDs reads the cut log from its start
  again, which counts what it held twice);
- every entry of the final log is counted once, except those written after a cut and below where the tap
  went on: it finds a cut on its next fetch and resumes at the log's end then, so records written in
  between are not counted, nor are those below the stored offset when the log grew back past it before
  a fetch found it short (docs/guarantees.md says so; leader epochs would close both);
- lost entries are counted at most once (those read before the cut).
"""

from __future__ import annotations

import contextlib
import itertools
import random
from collections import Counter
from collections.abc import Iterator
from typing import TYPE_CHECKING

from aiokafka import TopicPartition

from tests.sim.kafka import Entry

if TYPE_CHECKING:
    from tests.sim.world import World


Reading = list[tuple[int, int, int]]  # (start, end, history) segments of one claim, in order


class Cuts:
    def __init__(self, seed: int) -> None:
        # Its own stream, so that schedules without cuts (and the fixed regression seeds) draw as before.
        self.rng = random.Random(seed ^ 0xC07)
        self.histories: dict[TopicPartition, list[list[Entry]]] = {}  # the entry lists cuts replaced
        self.points: dict[TopicPartition, list[int]] = {}  # each cut's offset, in order
        self.recreations: dict[TopicPartition, set[int]] = {}  # which of a partition's cuts were new topics
        self.recreate_rng = random.Random(seed ^ 0xDE1)  # apart again: cut schedules draw as before
        self.history_ids: dict[TopicPartition, list[str]] = {}  # the topic ID of each history replaced

    def maybe_cut(self, world: World) -> None:
        stored = world.stored_offsets()
        # A cut below an open transaction would need the coordinator's view of it; elections are rare
        # enough that leaving those out loses nothing the checker needs. Chosen among the partitions it can
        # cut: drawn among all, most draws found nothing to cut (an empty or truncated log, nothing stored).
        eligible = [
            tp
            for tp, log in world.logs.items()
            if not log.open_txns and log.end > log.start and f"{tp.topic}:{tp.partition}" in stored
        ]
        if not eligible:
            return
        tp = self.rng.choice(eligible)
        log = world.logs[tp]
        drawn = self.rng.randint(log.start, log.end - 1)
        at = keeping_markers(log.entries, drawn)
        if at < log.start:
            return
        self.histories.setdefault(tp, []).append(log.entries)
        self.history_ids.setdefault(tp, []).append(world.topic_ids[tp.topic])
        self.points.setdefault(tp, []).append(at)
        log.entries = log.entries[:at]
        lowered = f", lowered from {drawn} to keep a transaction whole" if at < drawn else ""
        world.trace.append(f"log cut {tp.topic}/{tp.partition} at {at} (was {len(self.histories[tp][-1])}){lowered}")
        if log.unreadable_at is not None and log.unreadable_at >= at:
            log.unreadable_at = None
            world.trace.append("the unreadable batch was cut away")

    def maybe_recreate(self, world: World) -> None:
        """The topic deleted and created again under its name (a new ID), every partition empty.

        Kafka drops the group's committed offsets of a deleted topic; the tap keeps its position until a
        fetch or an ID check tells it. The new topic is a new history of each partition, read from its
        start: no record of it may go uncounted (no window, unlike a cut)."""
        if self.recreate_rng.random() >= 0.5:
            return
        topic = self.recreate_rng.choice(sorted({tp.topic for tp in world.partitions}))
        tps = [tp for tp in world.partitions if tp.topic == topic]
        stored = world.stored_offsets()
        if not any(f"{tp.topic}:{tp.partition}" in stored for tp in tps):
            return
        # Open transactions on it end with it: their producers are fenced, nothing of them is ever read.
        for txn in [txn for txn, tp in world.open_txns.items() if tp.topic == topic]:
            del world.open_txns[txn]
        replaced = world.topic_ids[topic]
        world.topic_ids[topic] = f"{topic}-id-{self.recreate_rng.randrange(10**6)}"
        for tp in tps:
            log = world.logs[tp]
            self.histories.setdefault(tp, []).append(log.entries)
            self.history_ids.setdefault(tp, []).append(replaced)
            self.points.setdefault(tp, []).append(0)
            self.recreations.setdefault(tp, set()).add(len(self.points[tp]) - 1)
            old = log.end
            log.entries, log.start, log.unreadable_at, log.spans, log.open_txns = [], 0, None, {}, {}
            world.group.committed.pop(tp, None)
            # Producers write on before the tap's next fetch, often past its position in the old topic: the
            # case where a fetch returns the new topic's records with no error at all.
            ts_ms = int(world.now_s() * 1000)
            with _drawing_from(world, self.recreate_rng):
                for _ in range(self.recreate_rng.randint(0, old + 3)):
                    log.append(world.event(topic, ts_ms), ts_ms, None)
        world.trace.append(f"topic {topic} deleted and created again as {world.topic_ids[topic]}")

    def topic_id(self, world: World, tp: TopicPartition, gen: int) -> str:
        """The ID of the topic that history `gen` of the partition belonged to (cuts keep it, a re-creation
        makes a new one)."""
        past = self.history_ids.get(tp, [])
        return past[gen] if gen < len(past) else world.topic_ids[tp.topic]

    def generation(self, tp: TopicPartition) -> int:
        return len(self.histories.get(tp, []))

    def entries(self, world: World, tp: TopicPartition, gen: int) -> list[Entry]:
        past = self.histories.get(tp, [])
        return past[gen] if gen < len(past) else world.logs[tp].entries

    def candidates(self, claims: list[tuple[TopicPartition, int, int]]) -> Iterator[dict[TopicPartition, Reading]]:
        """Which history each partition of a write read, newest first: a write fetched before a cut may land
        after it, and one batch can hold the old history's records up to where a fetch before the cut
        stopped and the new one's after it (the tap had read on at its position, the log grown past it)."""
        choices = []
        for tp, start, end in claims:
            newest = self.generation(tp)
            options: list[Reading] = [[(start, end, g)] for g in range(newest, -1, -1)]
            for old, new in itertools.combinations(range(newest + 1), 2):
                options += [[(start, k, old), (k, end, new)] for k in range(start + 1, end)]
            choices.append([(tp, reading) for reading in options])
        for combo in itertools.product(*choices):
            yield dict(combo)

    def check(self, world: World, tp: TopicPartition, claimed: list[tuple[int, int, str, int]]) -> list[Entry]:
        """The entries a cut partition's writes counted, each at most once, covering its final log."""
        from tests.sim.world import Violation

        log = world.logs[tp]
        counted: list[Entry] = []
        times: Counter[int] = Counter()
        for start, end, kind, gen in claimed:
            if kind != "counted":
                continue
            for e in self.entries(world, tp, gen)[start:end]:
                if log.visible(e):
                    counted.append(e)
                    times[id(e)] += 1
        twice = [e.offset for e in counted if times[id(e)] > 1]
        if twice:
            raise Violation(f"{tp.topic}:{tp.partition}: records counted twice after a log cut, offsets {twice[:5]}")
        windows = []
        # The final log is the topic made at the last re-creation: windows of cuts before it were other topics'.
        newest = max(self.recreations.get(tp, ()), default=-1)
        for k, at in enumerate(self.points[tp]):
            if k < newest:
                continue
            # Where the tap went on in the new history: its first claim there, or (none yet, as when the
            # log grew back to the stored offset before a fetch saw it short) where the old one stopped.
            reached = max((end for _, end, _, gen in claimed if gen <= k), default=at)
            later = [start for start, _, _, gen in claimed if gen > k]
            # A new topic is read from its start: nothing of it is excused.
            windows.append((at, at if k in self.recreations.get(tp, ()) else min(later, default=reached)))
        for e in log.entries[log.start :]:
            if not log.visible(e) or times[id(e)] == 1:
                continue
            if not any(at <= e.offset < resumed for at, resumed in windows):
                raise Violation(f"{tp.topic}:{tp.partition}: offset {e.offset} of the cut log was never counted")
        return counted


@contextlib.contextmanager
def _drawing_from(world: World, rng: random.Random) -> Iterator[None]:
    """World.event draws from the schedule's streams; events made here draw from `rng` instead, so that
    every other event of the schedule stays as it was."""
    saved = world.rng, world.day_rng, world.late_rng
    world.rng = world.day_rng = world.late_rng = rng
    try:
        yield
    finally:
        world.rng, world.day_rng, world.late_rng = saved


def keeping_markers(entries: list[Entry], at: int) -> int:
    """The cut point lowered until no transaction keeps records below it and loses its marker above it.

    Such a cut leaves a hanging transaction: the new leader rebuilds its producer state from its own
    log, finds the transaction open, and holds the last stable offset below it until an operator aborts
    it, a broker fault no reader can work around (and no longer in the aborted-transaction index, so a
    read_committed reader could not tell its records from a later transaction's).
    """
    while True:
        kept = {e.txn for e in entries[:at] if e.txn is not None and not e.marker}
        lost = {e.txn for e in entries[at:] if e.marker} & kept
        if not lost:
            return at
        at = min(e.offset for e in entries[:at] if e.txn in lost and not e.marker)
