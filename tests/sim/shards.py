"""The simulator over sharded state (docs/design.md, "Sharded state"): the world of tests/sim/world.py with
every replica running the sharded tap and store over S hash tags of the one simulated keyspace.

What changes against the one-shard world:
- faults: besides Redis restarting whole, **one shard** restarts (empty or from the last snapshot), its
  tag's keys alone going back; kill -9 lands between two shards' writes as between any two points (each
  shard's script call is a point of its own); foreign values (a profile) refuse one shard's write;
- the write check: a partition shard's write must be exactly the sums of the records its offsets claim
  (the one-shard payload of their fold, without members), and its claims go into a ledger kept under that
  shard's tag, so that a shard going back takes its part of the ledger back too; a member write claims no
  offsets and is checked at the end, through the export;
- the end: every partition's stored offset at its log's end and **every member shard's watermark** at
  least there (the tap re-reads what a member shard lost); the merged export equals the oracle's own fold
  of the counted records (tests/sim/oracle.py), and every series of it equals the one-shard export of the
  same records written in one batch.
"""

from __future__ import annotations

import copy
import random
from typing import Any

from aiokafka import TopicPartition

from agents.sharded_tap import ShardedTapAgent
from agents.tap import TapAgent
from core.status import Status
from tables.delta import Delta
from tables.shard_reads import merged_tables
from tables.shard_split import counter_part, partition_edit
from tables.sharded_store import ShardedStore
from tables.shards import GLOBAL_SHARD, ShardKeys, partition_shard, shard_tag
from tables.snapshot import Snapshot, decode_readable
from tables.store import RedisStore
from tables.table_reads import LABELS, label_members, read_layout, table_reads
from tables.writes import OffsetMove
from tests.sim.calendar_oracle import fold_instants
from tests.sim.kafka import Entry, SimConsumer
from tests.sim.loop import run_virtually
from tests.sim.scrape import ReadClient, _now
from tests.sim.shard_end import check_export
from tests.sim.store_redis import SimRedis
from tests.sim.world import APP, Faults, Violation, World, normalize

RANGES, FOLD_TIMES = ":__sim_ranges__", ":__sim_fold_times__"  # after a shard's tag: its part of the ledger
# The profiles the sharded search rotates through: the one-shard search's first and third, then foreign
# values refusing one shard's write; and apart, its second (truncation and log cuts, without restarts).
SHARDED_PROFILES = (
    Faults(),
    Faults(transactions=False, kills=False),
    Faults(foreign_values=True),
)
LOG_CHANGES = Faults(truncation=True, redis_restarts=False, log_cuts=True)
TRUNCATION = Faults(truncation=True, redis_restarts=False)


class ShardedSimRedis(SimRedis):
    """Restarts go back whole or one shard at a time: the keys of one tag from the last snapshot."""

    def __init__(self, world: ShardedWorld) -> None:
        super().__init__(world)
        self.shards = world.shards
        self.shard_rng = random.Random(world.seed ^ 0x5A4D)  # apart from the schedule's draws
        self.scale_rng = random.Random(world.seed ^ 0xF5CA)  # and from the restarts'

    def _foreign_value(self, payload: dict[str, Any]) -> Any:
        # A sharded batch makes up to 2 S script calls where one shard's batch makes one: the same chance
        # per call would refuse most batches, and their back-off would outgrow the heal's wait.
        if self.scale_rng.random() >= 1 / self.shards:
            return None
        return super()._foreign_value(payload)

    def restart(self, from_snapshot: bool) -> None:
        if self.shard_rng.random() < 0.3:
            super().restart(from_snapshot)
            return
        shard = self.shard_rng.randrange(self.shards)
        tag = shard_tag(APP, shard)
        saved, saved_expiry = copy.deepcopy(self.snapshots[-1]) if from_snapshot and self.snapshots else ({}, {})
        data, expires = self.keyspace.data, self.keyspace.expires_ms
        for key in [k for k in data if k.startswith(tag)]:
            del data[key]
            expires.pop(key, None)
        for key, value in saved.items():
            if key.startswith(tag):
                data[key] = value
                if key in saved_expiry:
                    expires[key] = saved_expiry[key]
        self.world.trace.append(f"  only shard {shard} went back")


class ShardedWorld(World):
    def __init__(self, seed: int, steps: int = 60, faults: Faults | None = None, replicas: int = 2, shards: int = 2):
        self.shards = shards
        super().__init__(seed, steps, faults, replicas)
        # With restarts, one shard may go back alone: its part of the ledger must go back with it, so the
        # ledger is kept per shard. Truncation and cuts run without restarts (as in the one-shard search),
        # with the one-shard world's ledger and its rules for skipped ranges and cut logs.
        self.ledger_per_shard = self.faults.redis_restarts
        assert not (self.ledger_per_shard and self.faults.truncation), "no rule for both (tests/sim/world.py)"
        self.redis = ShardedSimRedis(self)
        self.store = RedisStore(self.redis, APP, self.settings.days_kept)  # type: ignore[arg-type]
        # The checker's stores (they never write): each shard's payload builder.
        self.sharded = ShardedStore(self.redis, APP, shards, self.settings.days_kept)  # type: ignore[arg-type]
        self.members_over = False  # the end found the one inexact case's members (check by _outside)

    def make_agent(self, index: int, consumer: SimConsumer) -> TapAgent:
        store = ShardedStore(
            self.redis,  # type: ignore[arg-type]
            APP,
            self.shards,
            self.settings.days_kept,
            seen_cache_entries=self.seen_cache_entries,
        )
        return ShardedTapAgent(
            self.settings,
            store,
            Status(replica_id=f"r{index}"),
            consumer,
            clock=self.now_s,
            pause=lambda: self.pause(index),
        )

    # The write check ---------------------------------------------------------------------------------
    def stored_offsets(self) -> dict[str, str]:
        stored: dict[str, str] = {}
        for shard in range(self.shards):
            stored.update(self.redis.data.get(ShardKeys(APP, shard).offsets, {}))
        return stored

    def check_write(self, payload: dict[str, Any]) -> None:
        if "wm" in payload:
            return  # a member write: no offsets move; its members are checked at the end, in the export
        if not self.ledger_per_shard:
            super().check_write(payload)  # through _matches below
            return
        claims = []
        for field_name, expected, nxt in payload["off"]:
            if field_name.endswith(":id"):
                continue
            topic, _, part = field_name.rpartition(":")
            tp = TopicPartition(topic, int(part))
            claims.append((field_name, tp, int(expected) if expected else None, int(nxt)))
        shards = {partition_shard(tp.partition, self.shards) for _, tp, _, _ in claims}
        if len(shards) != 1:
            self._violate(f"a partition write claims partitions of shards {sorted(shards)}: {payload['off']}")
        (shard,) = shards
        for now_ms in fold_instants(self.clock, int(self.now_s() * 1000)):
            delta, moves = Delta(), []
            for _, tp, expected, end in claims:
                log = self.logs[tp]
                moves.append(OffsetMove(tp.topic, tp.partition, expected, end))
                start = expected if expected is not None else log.start
                self._fold(delta, tp, log.records(start, end), now_ms)
            built = self.sharded.stores[shard].build_payload(counter_part(delta), moves)
            partition_edit(built)
            if normalize(built) == normalize(payload):
                tag = shard_tag(APP, shard)
                ranges = self.redis.data.setdefault(tag + RANGES, {})
                folded = self.redis.data.setdefault(tag + FOLD_TIMES, {})
                for field_name, tp, expected, end in claims:
                    start = expected if expected is not None else self.logs[tp].start
                    ranges.setdefault(field_name, []).append((start, end, "counted", 0))
                    folded.setdefault(field_name, []).append((start, end, 0, now_ms))
                return
        self._violate(f"a partition write claims {payload['off']} but its sums are not the fold of those records")

    def _matches(
        self, payload: dict[str, Any], claims: list[Any], gens: dict[TopicPartition, Any], now_ms: int
    ) -> list[str] | None:
        """The one-shard world's rule (tests/sim/world.py), for a partition shard's write: the sums of the
        claimed records, without members."""
        delta, moves, kinds = Delta(), [], []
        for _, tp, expected, _, end in claims:
            log = self.logs[tp]
            moves.append(OffsetMove(tp.topic, tp.partition, expected, end))
            records = [r for s, e, g in gens[tp] for r in log.records(s, e, self.cuts.entries(self, tp, g))]
            skipping = bool(records) and end <= log.start and not payload["hincr"]
            if not skipping:
                self._fold(delta, tp, records, now_ms)
            kinds.append("skipped" if skipping else "counted")
        shards = {partition_shard(c[1].partition, self.shards) for c in claims}
        if len(shards) != 1:
            self._violate(f"a partition write claims partitions of shards {sorted(shards)}: {payload['off']}")
        built = self.sharded.stores[shards.pop()].build_payload(counter_part(delta), moves)
        partition_edit(built)
        return kinds if normalize(built) == normalize(payload) else None

    # The end -----------------------------------------------------------------------------------------
    def caught_up(self, left_out: Any = frozenset()) -> bool:
        """The one-shard rule over every shard's offsets, and every member shard's watermarks there too."""
        if not super().caught_up(left_out):
            return False
        stored = self.stored_offsets()
        marks = [self.redis.data.get(ShardKeys(APP, shard).watermarks, {}) for shard in range(self.shards)]
        for tp, log in self.logs.items():
            name = f"{tp.topic}:{tp.partition}"
            if tp in left_out or name not in stored or not log.records(log.start, log.end):
                continue
            if any(int(found.get(name, -1)) < int(stored[name]) for found in marks):
                return False
        return True

    def check_truth(self) -> None:
        self.redis.keyspace.expire_all()
        ranges: dict[str, list[Any]] = dict(self.redis.data.get("__sim_ranges__", {}))
        fold_times: dict[str, list[Any]] = dict(self.redis.data.get("__sim_fold_times__", {}))
        for shard in range(self.shards):
            tag = shard_tag(APP, shard)
            ranges.update(self.redis.data.get(tag + RANGES, {}))
            fold_times.update(self.redis.data.get(tag + FOLD_TIMES, {}))
        counted: dict[TopicPartition, list[Entry]] = {}
        folded_at: dict[int, int] = {}
        for tp in self.logs:
            name = f"{tp.topic}:{tp.partition}"
            entries = self.counted_entries(tp, ranges.get(name, []))
            if entries is None:
                continue
            for start, end, gen, now_ms in fold_times.get(name, []):
                for e in self.cuts.entries(self, tp, gen)[start:end]:
                    folded_at[id(e)] = now_ms
            counted[tp] = entries
        end_ms = int(self.now_s() * 1000)
        self._check_export(counted, folded_at, end_ms)

    def _check_export(self, counted: dict[TopicPartition, list[Entry]], folded_at: dict[int, int], end_ms: int) -> None:
        check_export(self, counted, folded_at, end_ms)

    def scrape(self, today: str) -> Snapshot:
        """tables/shard_reads.py's sharded_tables, its reads one after another (the checker cannot wait)."""
        client = ReadClient(self.redis.keyspace)
        keys = [ShardKeys(APP, shard) for shard in range(self.shards)]
        members = _now(label_members(client, keys[GLOBAL_SHARD]))  # type: ignore[arg-type]
        layout = read_layout(today, members)
        reads = [table_reads(k, layout) for k in keys]
        replies = [_now(r.replies(client)) for r in reads]  # type: ignore[arg-type]
        seen = {label: len(self.redis.data.get(keys[GLOBAL_SHARD].label_values(label), set())) for label in LABELS}
        raw, unreadable = merged_tables(reads, replies, layout, seen, stale=False)
        snap = decode_readable(raw, self.settings.raw_topic)
        snap.unreadable = unreadable
        return snap


def simulate_sharded(seed: int, steps: int = 40, faults: Faults | None = None, shards: int = 2) -> ShardedWorld:
    world = ShardedWorld(seed, steps, faults or SHARDED_PROFILES[seed % len(SHARDED_PROFILES)], shards=shards)
    try:
        run_virtually(world.run())
    except Violation as exc:
        raise Violation(
            f"seed {seed}: {exc}\ntrace (last 40 of {len(world.trace)}):\n  " + "\n  ".join(world.trace[-40:])
        ) from exc
    return world
