"""The member-only re-read of sharded state (docs/design.md, "Sharded state"): a member shard that went back
(a failover, an older snapshot) lacks members of records whose sums and offsets are stored in other
shards. Its watermarks say from where; the records from there up to the stored offset are read again and
written for their members only, so no sum counts twice. The write path is agents/sharded_tap.py.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from aiokafka import TopicPartition

from agents.invisible import PASS_INTERVAL_S, POSITION_TIMEOUT_S
from agents.log_changes import TOPIC_ID_ERRORS
from agents.ports import Batch
from agents.rebalance import REDIS_ERRORS
from agents.tap import TapAgent
from core.retry import retry
from tables.shard_split import ShardedDelta
from tables.sharded_store import ShardedStore
from tables.writes import InvalidStoredValue, MembersBehind, OffsetMove, WriteRefused

log = logging.getLogger("agents.tap")  # the tap's lines under one logger, whichever module of it logs


class MemberRereadTap(TapAgent):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        assert isinstance(self.store, ShardedStore)
        self.sharded: ShardedStore = self.store
        # A member-only re-read per partition: the offset below which its sums are stored but some member
        # shard lacks members (its stored offset when the gap was found), and where the re-read stands
        # (None: from the log start).
        self.members_until: dict[TopicPartition, int] = {}
        self.members_from: dict[TopicPartition, int | None] = {}

    # Member-only re-reads ------------------------------------------------------------------------------
    async def process(self, batch: Batch, epoch: int) -> None:
        if self.members_until:
            async with self.lock:
                if epoch != self.epoch:
                    await self._resync()
                    return
                rest = await self._catch_up(batch, epoch)
            if rest is None:
                return
            batch = rest
        await super().process(batch, epoch)

    async def _catch_up(self, batch: Batch, epoch: int) -> Batch | None:
        """Write the members of the records below each partition's `members_until` (callers hold the lock);
        the records from there on are returned for the usual write. None: the batch is dropped (re-read)."""
        members: Batch = {}
        rest: Batch = {}
        ends: dict[TopicPartition, int] = {}  # where each re-read stands after this batch
        for tp, records in batch.items():
            until = self.members_until.get(tp)
            if until is None:
                rest[tp] = records
                continue
            if self.identity_unsettled(tp):
                # Read again once its ID is settled, from where the re-read stands: the one-shard path
                # would seek to the stored offset, and the pass over invisible records would then take the
                # position past the re-read's range for a range with nothing visible in it.
                self.ids_due.add(tp)
                start = self.members_from[tp]
                # Synchronous, as the one-shard path's: nothing visible lies before this batch's first record
                # since the re-read's seek, so that is where a re-read from the log start stands.
                if start is not None or records:
                    self.consumer.seek(tp, start if start is not None else records[0].offset)
                continue
            below = [r for r in records if r.offset < until]
            if below:
                members[tp], ends[tp] = below, below[-1].offset + 1
            if len(below) < len(records):
                # The fetch went past it: nothing visible lay between (records come in order), so the
                # re-read is done even where invisible records (an aborted transaction) end the range.
                rest[tp], ends[tp] = records[len(below) :], until
        if not ends:
            return rest
        self.status.records_folded += sum(len(records) for records in members.values())
        delta = await self._fold(members)
        assert isinstance(delta, ShardedDelta)
        await self._drain()
        if epoch != self.epoch:
            await self._resync()
            return None
        moves = [
            OffsetMove(tp.topic, tp.partition, self.members_from[tp], end, *self._ids(tp)) for tp, end in ends.items()
        ]
        try:
            await retry(
                lambda: self.sharded.apply_members(delta.parts, moves), REDIS_ERRORS, what="member re-read", log=log
            )
        except MembersBehind:
            await self._members_check(list(members))  # further behind than it was: from there
            await self._resync()  # the whole batch is read again: every partition back where it stands
            return None
        except WriteRefused as exc:
            await self._refused(exc, moves)
            await self._resync()
            return None
        self._members_moved(moves)
        return rest

    async def _members_check(self, partitions: list[TopicPartition], patient: bool = True) -> None:
        """Start a member-only re-read of each owned partition some member shard lacks members of below its
        stored offset (runs under the lock, or inside the write in flight, which lock holders drain).
        `patient`: Redis's errors are waited out; else they skip the check (the periodic one)."""
        owned = [tp for tp in partitions if tp in self.expected]
        keys = [(tp.topic, tp.partition) for tp in owned]
        if patient:
            stored = await retry(lambda: self.sharded.load_stored(keys), REDIS_ERRORS, what="offsets", log=log)
        else:
            stored = await self.sharded.load_stored(keys)
        ids = {key: stored[key][1] for key in keys}  # a watermark of another topic ID holds nothing of this one
        if patient:
            marks = await retry(lambda: self.sharded.load_watermarks(keys, ids), REDIS_ERRORS, what="marks", log=log)
        else:
            marks = await self.sharded.load_watermarks(keys, ids)
        behind = []
        for tp, key in zip(owned, keys, strict=True):
            at = stored[key][0]
            if at is None:
                continue  # never written: its first read writes everything
            found = marks[key]
            lowest = None if None in found else min(m for m in found if m is not None)
            if lowest is not None and lowest >= at:
                continue
            started = self.members_from.get(tp) if tp in self.members_until else -1
            if tp in self.members_until and (started is None or (lowest is not None and lowest >= started)):
                continue  # the re-read under way covers it: the gap is the part not yet re-read
            was = self.members_from.get(tp, lowest) if tp in self.members_until else lowest
            self.members_from[tp] = None if was is None or lowest is None else min(was, lowest)
            self.members_until[tp] = max(at, self.members_until.get(tp, at))
            self.catching_up[tp] = max(self.catching_up.get(tp, at), self.members_until[tp])
            behind.append(tp)
        if not behind:
            return
        log.warning("member shards went back under %s; re-reading their members", ", ".join(map(str, behind)))
        self.status.state_rewinds += 1
        self.status.rewound_partitions = len(self.catching_up)
        self.epoch += 1
        held = self.consumer.assignment()
        for tp in behind:
            if tp in held:
                await self._seek_expected(tp)
        self.epoch += 1

    async def _seek_expected(self, tp: TopicPartition) -> None:
        if tp not in self.members_until:
            await super()._seek_expected(tp)
        elif (start := self.members_from[tp]) is None:
            await self.consumer.seek_to_beginning(tp)
        else:
            self.consumer.seek(tp, start)

    async def _reload(self, partitions: Any) -> None:
        await super()._reload(partitions)
        again = []
        for tp in partitions:
            if tp not in self.members_until:
                continue
            expected = self.expected.get(tp)
            start = self.members_from[tp]
            # A partition shard that went back too: its full re-read from there writes the members as well.
            until = min(self.members_until[tp], expected) if expected is not None else None
            if until is None or (start is not None and start >= until):
                del self.members_until[tp], self.members_from[tp]
            else:
                self.members_until[tp] = until
                again.append(tp)
        if again:
            self.epoch += 1
            for tp in again:
                if tp in self.consumer.assignment():
                    await self._seek_expected(tp)
            self.epoch += 1

    async def _check_rewind(self, force: bool = False) -> None:
        now = asyncio.get_running_loop().time()
        due = force or now - self._last_rewind_check >= self.settings.lag_interval_seconds
        await super()._check_rewind(force)
        if not due:
            return
        async with self.lock:
            await self._drain()
            try:
                await self._members_check(list(self.applied), patient=False)
            except REDIS_ERRORS as exc:
                log.debug("member check skipped: %s", exc)
            except InvalidStoredValue as exc:
                log.warning("member check skipped: a stored value is not a number: %s %s", exc, exc.detail)

    async def out_of_range(self, positions: dict[TopicPartition, int]) -> None:
        """Besides the one-shard rule for the stored offsets: a member re-read whose records retention has
        removed meanwhile. Their sums are stored, their members are gone from the shard that went back and
        from the log: the watermarks are moved over them (as offsets move over records retention removed
        unread) and the re-read goes on from the log start, else it would be sought below it for good."""
        gone = [tp for tp in positions if tp in self.members_until]
        if gone:
            async with self.lock:
                await self._drain()
                try:
                    starts = await self.consumer.beginning_offsets(gone)
                except TOPIC_ID_ERRORS as exc:
                    log.warning("a member re-read is out of range, but the log start is unavailable: %s", exc)
                else:
                    await self._skip_members({tp: starts[tp] for tp in gone if tp in starts})
            # A skip refused has paused its partition with the back-off: the one-shard rule would clear that
            # pause's record and leave the partition paused with nothing to resume it. It comes back here.
            positions = {tp: at for tp, at in positions.items() if tp not in self.stalls.paused}
        await super().out_of_range(positions)

    async def pass_invisible(self) -> None:
        """Besides the one-shard pass over the stored offsets: a member re-read whose position has gone past
        its cursor without a record (an aborted transaction, a marker) moves its watermarks there, else a
        range ending in invisible records would never be done. Under the one-shard pass's rules."""
        now = asyncio.get_running_loop().time()
        inflight = self._inflight is not None and not self._inflight.done()
        if self.members_until and now - self._last_pass >= PASS_INTERVAL_S and not self.lock.locked() and not inflight:
            async with self.lock:
                await self._drain()
                held = self.consumer.assignment()
                moves = []
                for tp in [tp for tp in self.members_until if tp in held and not self._pass_skips(tp)]:
                    try:
                        position = await asyncio.wait_for(self.consumer.position(tp), POSITION_TIMEOUT_S)
                    except Exception as exc:  # a timeout, or revoked meanwhile: tried again next time
                        log.debug("%s: position unavailable: %s", tp, exc)
                        continue
                    first = self.members_from[tp]
                    if first is None or position > first:
                        end = min(position, self.members_until[tp])
                        moves.append(OffsetMove(tp.topic, tp.partition, first, end, *self._ids(tp)))
                await self._write_member_moves(moves)
        await super().pass_invisible()

    async def _write_member_moves(self, moves: list[OffsetMove]) -> None:
        """Watermark moves over records with no member to write (callers hold the lock)."""
        if not moves:
            return
        try:
            await retry(lambda: self.sharded.apply_members({}, moves), REDIS_ERRORS, what="member skip", log=log)
        except MembersBehind:
            await self._members_check([TopicPartition(m.topic, m.partition) for m in moves])
            return
        except WriteRefused as exc:
            # Paused with the back-off as any refused write: a move out of range would else be tried again
            # on every fetch of a position below the log start.
            await self._refused(exc, moves)
            return
        self._members_moved(moves)

    async def _skip_members(self, starts: dict[TopicPartition, int]) -> None:
        moves = []
        for tp, start in starts.items():
            first, until = self.members_from[tp], self.members_until[tp]
            if first is not None and first >= start:
                continue  # the re-read is in the log: the stored offset's rule applies, not this
            end = min(start, until)
            log.error(
                "%s: records %s to %d left the log (retention) before a member shard that went back had their "
                "members again: its distinct counts lack them; the member re-read goes on from %d",
                tp,
                "its first" if first is None else first,
                end,
                end,
            )
            moves.append(OffsetMove(tp.topic, tp.partition, first, end, *self._ids(tp)))
        await self._write_member_moves(moves)

    def _ids(self, tp: TopicPartition) -> tuple[str | None, str | None]:
        """A member re-read's topic ID, twice (no re-creation move): its watermarks are kept with it."""
        topic_id = self.topic_ids.get(tp)
        return topic_id, topic_id

    def _members_moved(self, moves: list[OffsetMove]) -> None:
        """Member writes (or skips) acknowledged: each re-read goes on from their end, or is done."""
        for m in moves:
            tp = TopicPartition(m.topic, m.partition)
            self.members_from[tp] = m.next_offset
            if m.next_offset >= self.members_until[tp]:
                if self.catching_up.get(tp, 0) <= self.members_until[tp]:
                    self.catching_up.pop(tp, None)  # else a full re-read beyond it is still due
                del self.members_until[tp], self.members_from[tp]
                log.info("member re-read of %s done", tp)
        self.status.rewound_partitions = len(self.catching_up)

    async def on_revoked(self, revoked: set[TopicPartition]) -> None:
        try:
            await super().on_revoked(revoked)
        finally:
            for tp in revoked:
                self.members_until.pop(tp, None)
                self.members_from.pop(tp, None)
