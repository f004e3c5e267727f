"""The first unconsumed record and the end of many partitions, with one read_committed consumer.

Cost is bounded by rounds, not by groups: a round seeks every partition to one position and the
consumer fetches them all at once (one Fetch request per broker). Round k holds each partition's k-th
distinct position still unresolved, so 200 groups over 400 partitions cost as many rounds as the most
groups at distinct offsets on one partition, usually a handful. Everything stops at one deadline; what
was not read by then is `Reached.UNKNOWN`, never "caught up".
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Protocol

from aiokafka import TopicPartition
from aiokafka.errors import KafkaError

from streams.lag.drain import Drained, buffered_drain
from streams.lag.model import First, FirstRecord, Reached, partition_end

# How long one getmany waits for data before the partitions without any are checked against their end.
_POLL_MS = 20


class ProbeConsumer(Protocol):
    """The slice of AIOKafkaConsumer the probe uses (a fake implements it in tests)."""

    async def start(self) -> None: ...
    async def stop(self) -> None: ...
    def assign(self, partitions: list[TopicPartition]) -> None: ...
    def pause(self, *partitions: TopicPartition) -> None: ...
    def resume(self, *partitions: TopicPartition) -> None: ...
    def seek(self, partition: TopicPartition, offset: int) -> None: ...
    async def position(self, partition: TopicPartition) -> int: ...
    def highwater(self, partition: TopicPartition) -> int | None: ...
    def last_stable_offset(self, partition: TopicPartition) -> int | None: ...
    async def getmany(
        self, *partitions: TopicPartition, timeout_ms: int = 0, max_records: int | None = None
    ) -> dict[TopicPartition, list[Any]]: ...
    async def beginning_offsets(self, partitions: list[TopicPartition]) -> dict[TopicPartition, int]: ...
    async def end_offsets(self, partitions: list[TopicPartition]) -> dict[TopicPartition, int]: ...


@dataclass
class Fetched:
    first: dict[tuple[TopicPartition, int], First]  # (partition, position) -> what a fetch from there found
    ends: dict[TopicPartition, int]  # LSO (or HW) per partition
    rounds: int


def plan_rounds(
    positions: dict[TopicPartition, set[int]], known: set[tuple[TopicPartition, int]]
) -> list[dict[TopicPartition, int]]:
    """Round k: each partition's k-th smallest position not already known. Every partition is in round 0
    (at its smallest position) even when all its positions are known, because that fetch gives its end."""
    rounds: list[dict[TopicPartition, int]] = []
    for tp, offsets in positions.items():
        todo = sorted(p for p in offsets if (tp, p) not in known)
        if not todo:
            todo = [min(offsets)]
        for k, position in enumerate(todo):
            if k == len(rounds):
                rounds.append({})
            rounds[k][tp] = position
    return rounds


class FirstRecordReader:
    def __init__(self, consumer: ProbeConsumer) -> None:
        self.consumer = consumer

    async def read(
        self,
        positions: dict[TopicPartition, set[int]],
        known: dict[tuple[TopicPartition, int], FirstRecord],
        deadline_s: float,
    ) -> Fetched:
        c = self.consumer
        tps = list(positions)  # assigned to the consumer by the caller
        first: dict[tuple[TopicPartition, int], First] = dict(known)
        ends: dict[TopicPartition, int] = {}
        done = 0
        for k, planned in enumerate(plan_rounds(positions, set(known))):
            # Round 0 fetches even known positions (their partition's end comes with the answer).
            current = {
                tp: pos
                for tp, pos in planned.items()
                if (k == 0 or (tp, pos) not in first) and not (tp in ends and pos >= ends[tp])
            }
            if not current or time.monotonic() >= deadline_s:
                break
            await self._round(tps, current, first, ends, deadline_s)
            done += 1
            resolve_covered(positions, first, ends)
        # Between measurements the consumer must not fetch: a resumed partition would be polled every
        # fetch_max_wait_ms (50 ms) until the next measure, the sidecar's main idle cost (docs/performance.md).
        c.pause(*tps)
        for tp, offsets in positions.items():
            for pos in offsets:
                first.setdefault((tp, pos), Reached.UNKNOWN)
        missing = [tp for tp in tps if tp not in ends]
        if missing:
            # No fetch answered for these: ListOffsets(latest), which read_committed turns into the LSO.
            with contextlib.suppress(KafkaError):
                ends.update(await c.end_offsets(missing))
        return Fetched(first, ends, done)

    async def _round(
        self,
        tps: list[TopicPartition],
        current: dict[TopicPartition, int],
        first: dict[tuple[TopicPartition, int], First],
        ends: dict[TopicPartition, int],
        deadline_s: float,
    ) -> None:
        c = self.consumer
        c.pause(*tps)
        c.resume(*current)
        for tp, pos in current.items():
            c.seek(tp, pos)
        pending = dict(current)
        drain = buffered_drain(c)
        while pending and time.monotonic() < deadline_s:
            wait_ms = max(1, min(_POLL_MS, int((deadline_s - time.monotonic()) * 1000)))
            got = await (self._poll_buffer(drain, pending, wait_ms) if drain else self._poll(pending, wait_ms))
            resolved = []
            for tp in list(pending):
                if tp in got and got[tp] is None:
                    first[(tp, pending.pop(tp))] = Reached.UNKNOWN  # its fetch failed
                    continue
                record = got.get(tp)
                hw = c.highwater(tp)
                if hw is not None:
                    ends[tp] = partition_end(hw, c.last_stable_offset(tp))
                if record is not None:
                    pos = pending.pop(tp)
                    # Below the position only after an out-of-range reset: the commit is beyond the log.
                    ok = record.offset >= pos
                    first[(tp, pos)] = FirstRecord(record.offset, record.timestamp) if ok else Reached.END
                    resolved.append(tp)
                elif tp in ends and await c.position(tp) >= ends[tp]:
                    first[(tp, pending.pop(tp))] = Reached.END
                    resolved.append(tp)
            if drain is not None and resolved:
                # Answered: fetched no more, and their leftover records are not handed out by the next poll.
                c.pause(*resolved)

    async def _poll(self, pending: dict[TopicPartition, int], wait_ms: int) -> dict[TopicPartition, Any]:
        """Each pending partition's first fetched record (None: its fetch failed; absent: nothing yet), with
        getmany alone: one call per partition, each walking the whole buffer (see drain.py)."""
        c = self.consumer
        try:
            got = await c.getmany(*pending, timeout_ms=wait_ms, max_records=1)
        except KafkaError:
            got = {}
        out: dict[TopicPartition, Any] = {tp: records[0] for tp, records in got.items() if records}
        for tp in pending:
            if tp in out:
                continue
            try:
                records = (await c.getmany(tp, timeout_ms=0, max_records=1)).get(tp)
            except KafkaError:
                out[tp] = None
                continue
            if records:
                out[tp] = records[0]
        return out

    async def _poll_buffer(
        self, drain: Callable[[Iterable[TopicPartition]], Drained], pending: dict[TopicPartition, int], wait_ms: int
    ) -> dict[TopicPartition, Any]:
        """The same from aiokafka's buffer, one lookup per partition; getmany only to wait for the next fetch
        answer, naming no partition (which costs no per-partition test)."""
        got = drain(pending)
        if got:
            return got
        try:
            waited = await self.consumer.getmany(timeout_ms=wait_ms, max_records=1)
        except KafkaError:
            waited = {}
        got = {tp: records[0] for tp, records in waited.items() if tp in pending and records}
        got.update(drain(tp for tp in pending if tp not in got))
        return got


def resolve_covered(
    positions: dict[TopicPartition, set[int]],
    first: dict[tuple[TopicPartition, int], First],
    ends: dict[TopicPartition, int],
) -> None:
    """Answers that need no fetch: a position at or past the end has nothing waiting; a position q
    between p and the first record F found from p has F as its first record too (nothing readable lies
    between), and one after a p whose fetch reached the end without a record has nothing either."""
    answers: dict[TopicPartition, list[tuple[int, First]]] = {}
    for (tp, pos), f in first.items():
        if f is not Reached.UNKNOWN:
            answers.setdefault(tp, []).append((pos, f))
    for tp, offsets in positions.items():
        for pos in offsets:
            if (tp, pos) in first and first[(tp, pos)] is not Reached.UNKNOWN:
                continue
            if tp in ends and pos >= ends[tp]:
                first[(tp, pos)] = Reached.END
                continue
            for start, f in answers.get(tp, ()):
                if start <= pos and (f is Reached.END or (isinstance(f, FirstRecord) and pos <= f.offset)):
                    first[(tp, pos)] = f
                    break
