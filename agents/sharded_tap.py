"""The tap over sharded state (STREAMS_REDIS_SHARDS > 1): the one-shard tap, with a batch folded into one
Delta per partition shard and a write that may land on some shards and not others; the member-only re-read
of a member shard that went back is agents/member_reread.py's. docs/design.md, "Sharded state", says why
each step is exact.

The one-shard tap (agents/tap.py) is left as it is: with one shard the sidecar runs it, not this.
"""

from __future__ import annotations

import logging

from aiokafka import TopicPartition

from agents.fold import FoldContext
from agents.member_reread import MemberRereadTap
from agents.ports import Batch
from agents.rebalance import REDIS_ERRORS
from agents.tap import TapAgent
from core.retry import retry
from tables.delta import Delta
from tables.shard_split import ShardedDelta
from tables.sharded_store import ShardWritesFailed
from tables.shards import partition_shard
from tables.writes import Conflict, MembersBehind, OffsetMove, WriteRefused

log = logging.getLogger("agents.tap")  # the tap's lines under one logger, whichever module of it logs


class ShardedTapAgent(MemberRereadTap):
    # The fold and the write ---------------------------------------------------------------------------
    async def _fold(self, batch: Batch, ctx: FoldContext | None = None) -> Delta:
        ctx = ctx or self._fold_context()  # one day for every shard's part
        by_shard: dict[int, Batch] = {}
        for tp, records in batch.items():
            by_shard.setdefault(partition_shard(tp.partition, self.sharded.shards), {})[tp] = records
        return ShardedDelta({k: await TapAgent._fold(self, part, ctx) for k, part in sorted(by_shard.items())})

    async def _write(self, delta: Delta, moves: list[OffsetMove]) -> None:
        if isinstance(delta, ShardedDelta):
            parts = delta.parts
        else:
            # Offsets moved over records with nothing to count (agents/invisible.py, agents/log_changes.py):
            # an empty part for each shard whose partitions move.
            assert delta == Delta(), "a batch with changes must be folded per shard"
            parts = {partition_shard(m.partition, self.sharded.shards): Delta() for m in moves}

        def count(exc: BaseException) -> None:
            self.status.redis_errors += 1

        # Phase 1's errors are retried whole (its writes are idempotent); phase 2's come as ShardWritesFailed.
        await retry(lambda: self.sharded.apply(parts, moves), REDIS_ERRORS, what="state write", log=log, on_error=count)

    async def _apply(self, delta: Delta, moves: list[OffsetMove]) -> None:
        try:
            await super()._apply(delta, moves)
        except ShardWritesFailed as exc:
            by_shard = self.sharded.split(moves).moves
            written = [m for k in exc.written for m in by_shard.get(k, [])]
            if written:
                self._settle(written)
            for k, failure in sorted(exc.failed.items()):
                await self._shard_failed(failure, by_shard.get(k, []))
        except MembersBehind as exc:
            # Nothing moved: the batch is read again from the stored offsets, and what a member shard lacks
            # below them is read for its members first.
            log.warning("a member shard lacks members of %s below %s; re-reading them", exc.field, exc.watermark)
            partitions = [TopicPartition(m.topic, m.partition) for m in moves]
            await self._reload(partitions)
            await self._members_check(partitions)

    async def _write_moves(self, moves: list[OffsetMove]) -> None:
        """Offsets moved over records with nothing to count (agents/log_changes.py), whose callers reload
        the partitions afterwards: what failed on some shards is left to that reload, as a conflict is."""
        try:
            await super()._write_moves(moves)
        except ShardWritesFailed as exc:
            by_shard = self.sharded.split(moves).moves
            for k, failure in sorted(exc.failed.items()):
                if isinstance(failure, WriteRefused):
                    await self._refused(failure, by_shard.get(k, []))
                elif isinstance(failure, Conflict):
                    self.status.batch_conflicts += 1
                elif isinstance(failure, REDIS_ERRORS):
                    self.status.redis_errors += 1
                else:
                    raise failure from exc
        except MembersBehind:
            await self._members_check([TopicPartition(m.topic, m.partition) for m in moves])

    async def _shard_failed(self, failure: BaseException, moves: list[OffsetMove]) -> None:
        """One partition shard's write failed while others landed: its partitions only, as the one-shard tap
        handles a whole batch (a refusal pauses them; otherwise they are read again from what is stored)."""
        if isinstance(failure, WriteRefused):
            await self._refused(failure, moves)
            return
        if isinstance(failure, Conflict):
            self.status.batch_conflicts += 1
        elif isinstance(failure, REDIS_ERRORS):
            self.status.redis_errors += 1  # it may have landed: what is stored says
        else:
            raise failure
        log.warning("a shard's write failed (%s: %s); reloading its offsets", type(failure).__name__, failure)
        await self._reload([TopicPartition(m.topic, m.partition) for m in moves])
