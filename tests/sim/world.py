"""The deterministic simulation: replicas of the real TapAgent over simulated Kafka and Redis, one seed.

Every call the tap makes to Kafka or Redis waits at a point; one seeded scheduler decides, step by step,
which waiting call proceeds and how (a fetch with how many records, a write that succeeds, fails, or runs
and loses its reply), or injects an event instead: records appended (in transactions too), a
rebalance, kill -9, SIGTERM, a replica restarted, Redis restarted empty or from an older snapshot, a
log truncated by retention. Time is virtual. The same seed replays the same run.

Checked at every write Redis accepts: the batch's offset moves claim exactly the records its changes
fold (a batch never claims offsets it does not contain); checked at the end, when everything has been
read: the tables equal the fold of every committed record, each counted once.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import itertools
import random
from bisect import bisect_right
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, NoReturn

import orjson
from aiokafka import TopicPartition
from redis.exceptions import ResponseError

from agents.fold import FoldContext, fold_enriched, fold_raw
from agents.tap import TapAgent
from core.calendar import DayCalendar
from core.status import Status
from streams.settings import Settings
from tables.delta import Delta, unpair
from tables.store import RedisStore
from tables.writes import OffsetMove
from tests.sim.batches import log_rng
from tests.sim.calendar_oracle import check_days, clock_for, event_ts, fold_instants
from tests.sim.cuts import Cuts, Reading
from tests.sim.kafka import Entry, PartitionLog, SimConsumer, SimRecord
from tests.sim.loop import VirtualTimeLoop, run_virtually
from tests.sim.oracle import check_oracle
from tests.sim.store_redis import FAIL_BEFORE, LOST_REPLY, OK, SimRedis

RAW, ENRICHED = "raw", "enriched"
REPLICA: contextvars.ContextVar[int | None] = contextvars.ContextVar("replica", default=None)


class Violation(AssertionError):
    pass


@dataclass
class Outcome:
    deliver_rebalance: bool = True
    max_records: int = 5
    redis: str = OK
    # aiokafka's getmany moves each partition's position as it collects its records and drops them all when
    # a later partition raises (a corrupt or unreadable batch, an error result).
    fetch_error: bool = False
    # A Kafka request other than a fetch fails (a commit refused mid-rebalance, offsets unavailable): in the
    # rebalance callbacks as anywhere else.
    kafka_error: bool = False


@dataclass
class Point:
    kind: str
    replica: int | None
    future: asyncio.Future[Outcome]
    write: tuple[str, list[str], list[Any]] | None = None  # (script, keys, args) of a batch write


@dataclass
class Replica:
    index: int
    agent: TapAgent
    consumer: SimConsumer
    tasks: list[asyncio.Task[Any]] = field(default_factory=list)
    stopping: bool = False


APP = "sim"  # the simulated app: every world keeps its state under its tag
END_WAIT_S = 600.0  # the longest the end waits for stall reports to clear (virtual seconds)


@dataclass
class Faults:
    """Which kinds of events a run may inject, so that scenarios can be aimed."""

    redis_errors: bool = True
    lost_replies: bool = True
    rebalances: bool = True
    kills: bool = True
    sigterms: bool = True
    redis_restarts: bool = True
    transactions: bool = True
    truncation: bool = False
    log_cuts: bool = False  # with truncation: unclean leader elections (tests/sim/cuts.py)
    invalid_records: bool = True
    fetch_errors: bool = True
    unreadable_batches: bool = True
    kafka_errors: bool = True
    # A foreign value (another type, or not a number) in a key the write uses, put back after it: off in
    # the search's profiles, on in the batch script's mutation run (tests/sim/mutants.py).
    foreign_values: bool = False


# The fault mixes random schedules rotate through. Truncation runs without Redis restarts: with both, what
# a restarted empty Redis forgets of a truncated log is lost for good, and the checker's ledger would need
# to follow it (the real-broker truncation test covers the tap's rule).
PROFILES = (
    Faults(),
    Faults(truncation=True, redis_restarts=False, log_cuts=True),
    Faults(transactions=False, kills=False),
)


class World:
    def __init__(self, seed: int, steps: int = 60, faults: Faults | None = None, replicas: int = 2) -> None:
        self.seed = seed
        self.rng = random.Random(seed)
        # Event days come from their own stream, so the schedules (and the regression seeds) stay as they were.
        self.day_rng = random.Random(seed + 1_000_003)
        self.codec_rng = random.Random(seed ^ 0xC0DEC)  # unreadable batches, apart from the schedule's draws
        self.memory_rng = random.Random(seed ^ 0x00A11C)  # Redis over maxmemory, apart from them too
        self.kafka_rng = random.Random(seed ^ 0xCAFE)  # Kafka requests other than fetches failing, too
        # Where virtual time starts, in which zone (a noon, or seconds before a midnight or DST change), and
        # the late events around a boundary: their own streams too (tests/sim/calendar_oracle.py).
        self.clock = clock_for(seed)
        self.late_rng = random.Random(seed ^ 0x1A7E)
        self.steps = steps
        self.faults = faults or Faults()
        self.start_replicas = replicas
        self.trace: list[str] = []
        self.points: list[Point] = []
        self.partitions = [TopicPartition(RAW, 0), TopicPartition(RAW, 1), TopicPartition(ENRICHED, 0)]
        self.logs = {tp: PartitionLog(tp, rng=log_rng(seed, tp)) for tp in self.partitions}
        self.truncated: set[TopicPartition] = set()
        self.topic_ids = {RAW: "raw-id", ENRICHED: "enriched-id"}  # cuts keep them (tests/sim/cuts.py)
        self.cuts = Cuts(seed)
        self.settings = Settings(
            raw_topic=RAW,
            enriched_topic=ENRICHED,
            # Some runs take few records per fetch: a batch is then read in parts, and positions (and stored
            # offsets) fall inside batches, so fetches start inside one (tests/sim/batches.py).
            batch_max_records=random.Random(seed ^ 0xBA7C).choice((8, 50, 50)),
            lag_interval_seconds=2.0,
            shutdown_timeout_seconds=5.0,
            timezone=self.clock.zone,
        )
        self.redis = SimRedis(self)
        # The checker's calendar: one per run, so that its days' bounds are computed once, not per fold.
        self.calendar = DayCalendar(self.settings.zone)
        # The checker's store: builds the full payloads a write is compared with (it never writes).
        self.store = RedisStore(self.redis, APP, self.settings.days_kept)  # type: ignore[arg-type]
        # Drawn apart from self.rng, so that the fixed regression seeds still replay their schedules.
        self.seen_cache_entries = random.Random(seed ^ 0x5EE7).choice((0, 4, 10_000))
        self.replicas: dict[int, Replica] = {}
        self.next_replica = 0
        self.next_txn = 0
        self.open_txns: dict[int, TopicPartition] = {}
        self.events_made = 0
        from tests.sim.kafka import Group

        self.group = Group(self.partitions)
        self.loop: VirtualTimeLoop | None = None
        self.violation: Violation | None = None

    # Hooks the fakes call ----------------------------------------------------------------------------
    def order(self) -> list[int]:
        return [self.rng.randrange(1000) for _ in self.partitions]

    async def point(
        self, kind: str, replica: int | None, write: tuple[str, list[str], list[Any]] | None = None
    ) -> Outcome:
        owner = REPLICA.get() if replica is None else replica
        future: asyncio.Future[Outcome] = asyncio.get_running_loop().create_future()
        self.points.append(Point(kind, owner, future, write))
        return await future

    async def pause(self, replica: int) -> None:
        await self.point("tap.fold", replica)

    def now_s(self) -> float:
        assert self.loop is not None
        return self.clock.start_s + self.loop.time()

    # The write check ---------------------------------------------------------------------------------
    def check_write(self, payload: dict[str, Any]) -> None:
        """Redis is about to apply this batch: its changes must be the fold of exactly what it claims.

        After a log cut one offset can name two records: the write must be the fold of what one of the
        partition's histories held there (tests/sim/cuts.py), and the ledger notes which.
        """
        claims = []
        for field_name, expected, nxt in payload["off"]:
            if field_name.endswith(":id"):
                continue  # a topic ID, moved with its offset
            topic, _, part = field_name.rpartition(":")
            tp = TopicPartition(topic, int(part))
            start = int(expected) if expected else self.logs[tp].start
            claims.append((field_name, tp, int(expected) if expected else None, start, int(nxt)))
        # A write stores the ID of the topic it read: a history of another topic cannot be what it read (an
        # offset-only move over a marker of the old topic would else match an open transaction's records of
        # the new one, which count once committed).
        ids = {
            field_name.removesuffix(":id"): nxt for field_name, _, nxt in payload["off"] if field_name.endswith(":id")
        }
        first: Violation | None = None
        # The batch was folded before this write, maybe on the day before: each local date since the start.
        for now_ms in fold_instants(self.clock, int(self.now_s() * 1000)):
            for gens in self.cuts.candidates([(c[1], c[3], c[4]) for c in claims]):
                if not self._possible(gens, ids):
                    continue
                try:
                    kinds = self._matches(payload, claims, gens, now_ms)
                except Violation as exc:  # this history does not hold what the write left out; another may
                    first, self.violation = first or exc, None
                    continue
                if kinds is not None:
                    ranges = self.redis.data.setdefault("__sim_ranges__", {})
                    # Beside the ranges (in Redis's data, so snapshots keep them): the checker folds the
                    # truth on the day each record was folded.
                    folded = self.redis.data.setdefault("__sim_fold_times__", {})
                    for (field_name, tp, *_), kind in zip(claims, kinds, strict=True):
                        for start, end, gen in gens[tp]:
                            ranges.setdefault(field_name, []).append((start, end, kind, gen))
                            folded.setdefault(field_name, []).append((start, end, gen, now_ms))
                    return
        # Raised inside the replica's task, which may swallow it: the driver re-raises it after the step.
        self.violation = first or Violation(
            f"a write claims {payload['off']} but its changes are not the fold of those records"
        )
        raise self.violation

    def _possible(self, gens: dict[TopicPartition, Reading], ids: dict[str, Any]) -> bool:
        """A reading the tap could have made: of the topic whose ID the write stores, and in the partition's
        present history never past its last stable offset (read_committed stops there; an offset-only move
        over an old history's marker would else match an open transaction's records, which count later)."""
        for tp, reading in gens.items():
            newest = self.cuts.generation(tp)
            for _, end, gen in reading:
                if ids.get(f"{tp.topic}:{tp.partition}") not in (None, self.cuts.topic_id(self, tp, gen)):
                    return False
                # At its log start at least: retention may remove an open transaction's first records here.
                if gen == newest and end > max(self.logs[tp].stable_end, self.logs[tp].start):
                    return False
        return True

    def _matches(
        self, payload: dict[str, Any], claims: list[Any], gens: dict[TopicPartition, Reading], now_ms: int
    ) -> list[str] | None:
        delta, moves, kinds = Delta(), [], []
        for _, tp, expected, _, end in claims:
            log = self.logs[tp]
            moves.append(OffsetMove(tp.topic, tp.partition, expected, end))
            records = [r for s, e, g in gens[tp] for r in log.records(s, e, self.cuts.entries(self, tp, g))]
            skipping = bool(records) and end <= log.start and not payload["hincr"] and not payload["sadd"]
            if not skipping:
                self._fold(delta, tp, records, now_ms)
            kinds.append("skipped" if skipping else "counted")
        built = self.store.build_payload(delta, moves)
        return kinds if normalize(built) == normalize(self._restore_left_out(payload, built)) else None

    def _restore_left_out(self, payload: dict[str, Any], expected: dict[str, Any]) -> dict[str, Any]:
        """A replica leaves out members it knows it wrote already (tables/seen.py). Each one it left out must
        be in Redis now, with the day already in its window list; then the write is the expected one."""
        data = self.redis.data

        def left_out(got: list[list[Any]], want: list[list[Any]], index: int) -> dict[str, set[str]]:
            sent = {entry[0]: set(entry[index]) for entry in got}
            out = {}
            for entry in want:
                members = set(entry[index])
                if not sent.get(entry[0], set()) <= members:
                    self._violate(f"a write sends members of {entry[0]} the fold does not have")
                out[entry[0]] = members - sent.pop(entry[0], set())
            if sent:
                self._violate(f"a write adds to keys the fold does not: {sorted(sent)}")
            return out

        sections = ((payload["sadd"], expected["sadd"], 1), (payload["usersadd"], expected["usersadd"], 2))
        for got, want, index in sections:
            for key, members in left_out(got, want, index).items():
                if not members <= data.get(key, set()):
                    self._violate(f"a write left out members that Redis does not hold: {key} {sorted(members)[:3]}")
        if expected["win"] is not None:
            sent_win = payload["win"] or {"subjects": []}  # a write that folded no raw record has none
            sent_days = {
                (prefix, member): set(days)
                for prefix, _, entries in sent_win["subjects"]
                for _, member, days in entries
            }
            for prefix, _, entries in expected["win"]["subjects"]:
                for bucket, member, days in entries:
                    sent = sent_days.pop((prefix, member), set())
                    if not sent <= set(days):
                        self._violate(f"a write sends window days the fold does not have: {member}")
                    for day in set(days) - sent:
                        if not window_insert_is_noop(data, expected["win"], prefix + str(bucket), member, day):
                            self._violate(f"a write left out window day {day} of {member}, not in Redis")
            if sent_days:
                self._violate("a write sends window subjects the fold does not have")
        restored = {**payload, "sadd": expected["sadd"], "usersadd": expected["usersadd"]}
        return restored if payload["win"] is None else {**restored, "win": expected["win"]}

    def _violate(self, message: str) -> NoReturn:
        self.violation = Violation(message)
        raise self.violation

    def _fold(self, delta: Delta, tp: TopicPartition, records: list[SimRecord], now_ms: int) -> None:
        ctx = FoldContext(
            calendar=self.calendar,
            now_ms=now_ms,
            days_kept=self.settings.days_kept,
            max_future_ms=self.settings.max_future_seconds * 1000,
            max_payload_bytes=self.settings.max_payload_bytes,
        )
        (fold_raw if tp.topic == RAW else fold_enriched)(delta, tp.topic, records, ctx)

    # Replicas ----------------------------------------------------------------------------------------
    def start_replica(self) -> None:
        index = self.next_replica
        self.next_replica += 1
        consumer = SimConsumer(self, index)
        replica = Replica(index, self.make_agent(index, consumer), consumer)
        self.replicas[index] = replica
        REPLICA.set(index)
        try:
            replica.tasks.append(asyncio.ensure_future(self._run(replica)))
        finally:
            REPLICA.set(None)
        self.trace.append(f"start r{index}")

    def make_agent(self, index: int, consumer: SimConsumer) -> TapAgent:
        # Each process has its own store, so its own cache of members written (tiny here, to hit the cap).
        store = RedisStore(self.redis, APP, self.settings.days_kept, seen_cache_entries=self.seen_cache_entries)  # type: ignore[arg-type]
        return TapAgent(
            self.settings,
            store,
            Status(replica_id=f"r{index}"),
            consumer,  # type: ignore[arg-type]
            clock=self.now_s,
            pause=lambda: self.pause(index),
        )

    async def _run(self, replica: Replica) -> None:
        await replica.agent.start()
        await replica.agent.run()

    def kill(self, replica: Replica) -> None:
        """kill -9: a write already sent may or may not have reached Redis; nothing else runs after."""
        for p in self.pending():
            if p.replica == replica.index and p.write and not self.redis.down and self.rng.random() < 0.5:
                self.trace.append(f"r{replica.index}'s write in flight reaches Redis")
                with contextlib.suppress(ResponseError):  # refused (over maxmemory): nobody reads the reply
                    self.redis.apply(*p.write)
        replica.consumer.dead = True
        for task in replica.tasks:
            task.cancel()
        self.points = [p for p in self.points if p.replica != replica.index]
        del self.replicas[replica.index]
        # The broker notices after its session timeout; the simulator lets that happen at once.
        self.group.leave(replica.consumer, self.order())

    def sigterm(self, replica: Replica) -> None:
        replica.stopping = True
        for task in replica.tasks:
            task.cancel()
        REPLICA.set(replica.index)
        try:
            replica.tasks = [asyncio.ensure_future(self._stop(replica))]
        finally:
            REPLICA.set(None)

    async def _stop(self, replica: Replica) -> None:
        await asyncio.sleep(0)
        try:
            await replica.agent.stop()
        finally:
            self.replicas.pop(replica.index, None)
            # A consumer that could not say goodbye leaves when its session times out.
            self.group.leave(replica.consumer, self.order())

    # Producers ---------------------------------------------------------------------------------------
    def produce(self) -> None:
        tp = self.rng.choice(self.partitions)
        log = self.logs[tp]
        ts_ms = int(self.now_s() * 1000)
        txn = None
        if self.faults.transactions and self.rng.random() < 0.3:
            if self.open_txns and self.rng.random() < 0.5:
                txn = self.rng.choice(sorted(self.open_txns))
                commit = self.rng.random() < 0.6
                self.logs[self.open_txns.pop(txn)].end_txn(txn, commit, ts_ms)
                self.trace.append(f"txn {txn} {'commit' if commit else 'abort'}")
                return
            txn = self.next_txn
            self.next_txn += 1
            self.open_txns[txn] = tp
        first = log.end
        for _ in range(self.rng.randint(1, 4)):
            log.append(self.event(tp.topic, ts_ms), ts_ms + self.rng.randint(0, 2000), txn)
        if self.faults.unreadable_batches and log.unreadable_at is None and self.codec_rng.random() < 0.03:
            log.unreadable_at = first
            self.trace.append(f"unreadable batch {tp.topic}/{tp.partition} at {first}")
        self.trace.append(f"produce {tp.topic}/{tp.partition} end={log.end} txn={txn}")

    def event(self, topic: str, ts_ms: int) -> bytes:
        self.events_made += 1
        if self.faults.invalid_records and self.rng.random() < 0.1:
            return b'{"org_id": 3, "broken'
        body: dict[str, Any] = {
            "org_id": f"org{self.rng.randint(1, 3)}",
            "user_id": f"u{self.rng.randint(1, 6)}",
            "provider": self.rng.choice(["openai", "anthropic"]),
            "model": self.rng.choice(["m1", "m2"]),
            "tokens_in": self.rng.randint(0, 500),
            "tokens_out": self.rng.randint(0, 500),
            "ts": ts_ms - self.rng.randint(0, 5000),
        }
        # Some events are days late (some beyond the rolling windows' 30 days) or dated tomorrow, so the
        # windows' per-subject day lists see every order of past, present and future days.
        shift = self.day_rng.random()
        if shift < 0.15:
            body["ts"] -= self.day_rng.randint(1, 35) * 86_400_000
        elif shift < 0.2:
            body["ts"] += self.day_rng.randint(0, 80_000_000)
        body["ts"] = event_ts(self.late_rng, self.clock, body["ts"])
        if topic == ENRICHED:
            body["kwh"] = self.rng.choice([0.0, 0.000123, 1.5, 1000.0])
            body["co2_kg"] = self.rng.choice([0.0, 0.5, 999.999999999])
        return orjson.dumps(body)

    # The schedule ------------------------------------------------------------------------------------
    async def settle(self) -> None:
        assert self.loop is not None
        for _ in range(10_000):
            await asyncio.sleep(0)
            if self.violation is not None:
                raise self.violation
            if self.loop.ready_count() == 0:
                return
        raise Violation("the simulated tasks never settle (a busy loop)")

    def pending(self) -> list[Point]:
        self.points = [p for p in self.points if not p.future.done()]
        return self.points

    def resolve(self, p: Point, healthy: bool = False) -> None:
        # Healing reads in big fetches: the interleavings worth searching are the faulty ones before it.
        outcome = Outcome(max_records=50 if healthy else self.rng.randint(1, 8))
        if not healthy:
            outcome.deliver_rebalance = self.rng.random() < 0.7
            roll = self.rng.random()
            if p.kind.startswith("redis") and self.faults.redis_errors and roll < 0.08:
                outcome.redis = FAIL_BEFORE
            elif p.kind == "redis.write" and self.faults.lost_replies and roll < 0.12:
                outcome.redis = LOST_REPLY
            elif p.kind == "kafka.fetch" and self.faults.fetch_errors and roll < 0.06:
                outcome.fetch_error = True
            if p.kind in ("kafka.commit", "kafka.offsets") and self.faults.kafka_errors:
                outcome.kafka_error = self.kafka_rng.random() < 0.4
        self.trace.append(
            f"{p.kind} r{p.replica} -> {outcome.redis} rb={outcome.deliver_rebalance} n={outcome.max_records}"
            + (" fetch-error" if outcome.fetch_error else "")
            + (" kafka-error" if outcome.kafka_error else "")
        )
        p.future.set_result(outcome)

    async def step(self) -> None:
        f, roll = self.faults, self.rng.random()
        live = [r for r in self.replicas.values() if not r.stopping]
        if roll < 0.45 and self.pending():
            self.resolve(self.rng.choice(self.pending()))
        elif roll < 0.62:
            self.produce()
        elif roll < 0.72:
            dt = self.rng.choice([0.05, 0.5, 1.5, 3.0])
            self.trace.append(f"tick {dt}")
            await asyncio.sleep(dt)
        elif roll < 0.76 and f.rebalances:
            self.trace.append("rebalance")
            self.group.rebalance(self.order())
        elif roll < 0.79 and f.kills and live:
            victim = self.rng.choice(live)
            self.trace.append(f"kill -9 r{victim.index}")
            self.kill(victim)
        elif roll < 0.81 and f.sigterms and len(live) > 1:
            victim = self.rng.choice(live)
            inflight = victim.agent._inflight is not None and not victim.agent._inflight.done()
            self.trace.append(f"SIGTERM r{victim.index}" + (" with a write in flight" if inflight else ""))
            self.sigterm(victim)
        elif roll < 0.85 and len(live) < 3:
            self.start_replica()
        elif roll < 0.88 and f.redis_restarts:
            choice = self.rng.random()
            if choice < 0.4:
                self.trace.append("redis snapshot")
                self.redis.take_snapshot()
            else:
                older = choice < 0.8
                self.trace.append(f"redis restart {'from snapshot' if older else 'empty'}")
                self.redis.restart(from_snapshot=older)
        elif roll < 0.9 and f.redis_errors:
            keyspace = self.redis.keyspace
            if self.redis.down or keyspace.over_maxmemory:
                self.redis.down = keyspace.over_maxmemory = False
                self.trace.append("redis up, with room")
            elif self.memory_rng.random() < 0.3:
                keyspace.over_maxmemory = True  # the batch script's shebang has Redis refuse it whole
                self.trace.append("redis over maxmemory")
            else:
                self.redis.down = True
                self.trace.append("redis down")
        elif roll < (0.98 if f.log_cuts else 0.92) and f.truncation:  # cuts need logs stored and not empty
            self.truncate()
            if f.log_cuts:
                self.cuts.maybe_cut(self)
                self.cuts.maybe_recreate(self)

    def truncate(self) -> None:
        tp = self.rng.choice(self.partitions)
        log = self.logs[tp]
        # Only where something was stored: a first write claims "from the log start", which must not move
        # under it (the simulator's checker reads the log start when the write lands).
        stored = self.stored_offsets()
        if log.end > log.start and f"{tp.topic}:{tp.partition}" in stored:
            log.start = self.rng.randint(log.start, log.end)
            self.truncated.add(tp)
            self.trace.append(f"truncate {tp.topic}/{tp.partition} start={log.start}")

    async def heal(self) -> None:
        """No more faults: finish open transactions, keep one replica, let everything be read."""
        boundary = self.clock.boundary_s
        if boundary is not None and self.now_s() <= boundary:
            # Across the boundary before healing: what is read from here on is folded on the new day,
            # among it a few events of the new day and late ones of the day before.
            await asyncio.sleep(boundary - self.now_s() + 0.5)
            self.trace.append(f"past the boundary at {boundary}")
            for _ in range(3):
                self.produce()
        self.redis.down = self.redis.keyspace.over_maxmemory = False
        for txn, tp in sorted(self.open_txns.items()):
            self.logs[tp].end_txn(txn, True, int(self.now_s() * 1000))
        self.open_txns.clear()
        if not [r for r in self.replicas.values() if not r.stopping]:
            self.start_replica()
        self.trace.append("heal")
        broken = {tp for tp, log in self.logs.items() if log.unreadable_at is not None}
        if broken:
            # Still unreadable: every other partition must be read to its end meanwhile.
            await self._until_caught_up(broken, "while a partition could not be read, the others stood still")
            for tp in broken:
                self.logs[tp].unreadable_at = None
            self.trace.append("unreadable batches readable again")
        await self._until_caught_up(set(), "no progress after healing: the stream was never fully read")
        # A batch of nothing visible (an aborted transaction) clears its stall only once it has gone the
        # tap's confirmation time without failing: every report must be gone within that bound, counted
        # from the end of the back-off a paused partition waits out. Foreign values stay after the heal
        # (tests/sim/store_redis.py), so a partition whose batch holds only a marker, caught up already,
        # may be refused again and wait longer: the bound moves with its back-off, up to END_WAIT_S.
        loop = asyncio.get_running_loop()
        confirm_s = max((r.agent.stalls.confirm_s for r in self.replicas.values()), default=0.0)
        give_up_s, deadline_s = loop.time() + END_WAIT_S, loop.time() + confirm_s + 5.0
        while loop.time() < min(give_up_s, deadline_s := max(deadline_s, self._stalls_due_s() + confirm_s + 5.0)):
            if not any(r.agent.status.stalled for r in self.replicas.values()):
                return
            await self.settle()
            for p in list(self.pending()):
                self.resolve(p, healthy=True)
            await asyncio.sleep(0.2)
        for r in self.replicas.values():
            if r.agent.status.stalled:
                raise Violation(f"r{r.index} still reports stalled partitions: {r.agent.status.stalled}")

    def _stalls_due_s(self) -> float:
        """When the last paused partition's back-off ends (0 when none is paused)."""
        return max([0.0, *(s.retry_at_s for r in self.replicas.values() for s in r.agent.stalls.paused.values())])

    async def _until_caught_up(self, left_out: set[TopicPartition], failure: str) -> None:
        for _ in range(3000):
            await self.settle()
            if self.caught_up(left_out):
                return
            for p in list(self.pending()):
                self.resolve(p, healthy=True)
            await asyncio.sleep(0.2)  # lets backoff timers fire
        raise Violation(failure)

    def stored_offsets(self) -> dict[str, str]:
        """The offsets hash as Redis holds it now (sharded state: every shard's, tests/sim/shards.py)."""
        return self.redis.data.get(self.store.keys.offsets, {})  # type: ignore[no-any-return]

    def caught_up(self, left_out: set[TopicPartition] | frozenset[TopicPartition] = frozenset()) -> bool:
        stored = self.stored_offsets()
        for tp, log in self.logs.items():
            if tp in left_out:
                continue
            last = max((e.offset for e in log.entries[log.start :] if log.visible(e)), default=None)
            if last is None:
                continue
            at = int(stored.get(f"{tp.topic}:{tp.partition}", -1))
            if at <= last or (tp in self.cuts.points and at > log.end):
                return False  # a cut log is read once the tap has found the cut and resumed in it
            if tp in self.cuts.recreations and stored.get(f"{tp.topic}:{tp.partition}:id") != self.topic_ids[tp.topic]:
                return False  # a new topic whose log ends where the old one was read: found by the ID check
        return not any(p.kind == "redis.write" for p in self.pending())

    def counted_entries(self, tp: TopicPartition, claimed: list[Any]) -> list[Entry] | None:
        """The entries a partition's ledger of writes counted: once each, from the log's first offset, with
        no gap and no overlap (a cut log by its own rules, tests/sim/cuts.py). None: never written, which
        only a partition without a record may be."""
        if not claimed:
            if self.logs[tp].records(self.logs[tp].start, self.logs[tp].end):
                raise Violation(f"{tp.topic}:{tp.partition} holds records and none was ever counted")
            return None
        if tp in self.cuts.points:
            return self.cuts.check(self, tp, claimed)
        name, log = f"{tp.topic}:{tp.partition}", self.logs[tp]
        if claimed[0][0] != 0 and tp not in self.truncated:
            raise Violation(f"{name}: counting started at {claimed[0][0]}, not at the log's first offset")
        for (_, prev_end, _, _), (start, _, _, _) in itertools.pairwise(claimed):
            if start != prev_end:
                raise Violation(f"{name}: ranges {claimed} leave a gap or overlap")
        return [
            e for start, end, kind, _ in claimed if kind == "counted" for e in log.entries[start:end] if log.visible(e)
        ]

    def check_truth(self) -> None:
        """Every committed record is counted exactly once, except records retention removed unread.

        The ranges Redis accepted must tile each partition from its first offset (from the log start only
        where retention truncated it) with nothing skipped but ranges that were already gone from the log;
        the tables must equal the fold of the counted ranges.
        """
        delta, moves = Delta(), []
        self.redis.keyspace.expire_all()
        counted: dict[TopicPartition, list[Entry]] = {}
        ranges = self.redis.data.get("__sim_ranges__", {})
        for tp, log in self.logs.items():
            entries = self.counted_entries(tp, ranges.get(f"{tp.topic}:{tp.partition}", []))
            if entries is None:
                continue
            counted[tp] = entries
            moves.append(OffsetMove(tp.topic, tp.partition, None, log.end))
        # Each record folded on the day it was (a write before midnight kept what one after it drops), the
        # days in order, so that the windows' today is the last one's.
        folded_at, end_ms = self._fold_times(), int(self.now_s() * 1000)
        groups: dict[tuple[int, int], list[Entry]] = {}
        for i, entries in enumerate(counted.values()):
            for e in entries:
                groups.setdefault((folded_at.get(id(e), end_ms), i), []).append(e)
        tps = list(counted)
        for (now_ms, i), entries in sorted(groups.items()):
            self._fold(delta, tps[i], self.logs[tps[i]].records(0, len(entries), entries), now_ms)
        payload = self.store.build_payload(delta, moves)
        want = normalize(payload)
        have = tables_as_effects(self.redis.data, self.store.keys.prefix, payload["win"])  # type: ignore[arg-type]
        if want != have:
            missing = {k: v for k, v in want.items() if have.get(k) != v}
            extra = {k: v for k, v in have.items() if k not in want}
            raise Violation(
                f"tables differ from the truth, e.g. {list(missing.items())[:3]}, beyond it {list(extra.items())[:3]}"
            )
        check_days(self, [e for entries in counted.values() for e in entries])
        # Apart from the fold and build_payload used above: the export against the checker's own fold.
        check_oracle(self, counted, folded_at, end_ms)

    def _fold_times(self) -> dict[int, int]:
        """id(entry) -> the instant standing for the day its accepted write was folded on; the last write wins."""
        out: dict[int, int] = {}
        for field_name, folds in self.redis.data.get("__sim_fold_times__", {}).items():
            topic, _, part = field_name.rpartition(":")
            tp = TopicPartition(topic, int(part))
            for start, end, gen, now_ms in folds:
                for e in self.cuts.entries(self, tp, gen)[start:end]:
                    out[id(e)] = now_ms
        return out

    async def run(self) -> None:
        self.loop = asyncio.get_running_loop()  # type: ignore[assignment]
        for _ in range(self.start_replicas):
            self.start_replica()
        for _ in range(self.steps):
            await self.settle()
            await self.step()
        await self.heal()
        self.check_truth()
        for r in list(self.replicas.values()):
            for task in r.tasks:
                task.cancel()
        await asyncio.sleep(0)


def normalize(payload: dict[str, Any]) -> dict[tuple[str, ...], Any]:
    """A batch's effect on the tables as plain data: increments summed, set members joined, a day's users
    counted per org, the newest times, the label values admitted, and each subject's active days with the
    pair counts they imply (tables/script.py)."""
    out: dict[tuple[str, ...], Any] = {}
    # Plain dicts, not Counters: a Counter's missing key costs a Python call, and every write is checked.
    counts: dict[tuple[str, ...], int] = {}
    for key, f, n in payload["hincr"]:
        k = ("n", key, f)
        counts[k] = counts.get(k, 0) + int(n)
    base = payload["base"]
    for key, f, whole, rest in payload["amount"]:
        k = ("a", key, f)
        counts[k] = counts.get(k, 0) + int(whole) * base + int(rest)
    for _key, org_key, members, *_ in payload["usersadd"]:
        for member in set(members):
            k = ("n", org_key, unpair(member)[0])
            counts[k] = counts.get(k, 0) + 1
    out.update({k: v for k, v in counts.items() if v})
    for key, f, ts in payload["hmax"]:
        out[("n", key, f)] = max(int(ts), out.get(("n", key, f), 0))
    # Label values admitted: all of them, the simulated labels being fewer than the caps.
    admitted = [[key, [v for v in values if v != payload["other"]]] for key, _, values in payload["admit"]]
    for key, members in payload["sadd"] + [[u[0], u[2]] for u in payload["usersadd"]] + admitted:
        current = out.setdefault(("s", key), set())
        current.update(members)
    w = payload["win"]
    if w is not None:
        days: dict[tuple[str, ...], set[int]] = {}
        for bucket_prefix, pair_prefix, entries in w["subjects"]:
            for bucket, member, found in entries:
                day_key = ("w", bucket_prefix + str(bucket), member, pair_prefix)
                have = days.get(day_key)
                if have is None:
                    days[day_key] = set(found)
                else:
                    have.update(found)
        today, horizon, none = w["today"], w["horizon"], w["none"]
        pairs: dict[tuple[str, ...], int] = {}
        for (kind, key, member, pair_prefix), found in days.items():
            ordered = sorted(found)
            compacted = ordered[max(bisect_right(ordered, today) - 1, 0) :]  # _compact's, the days sorted
            out[(kind, key, member)] = tuple(compacted)
            for a, b in zip(compacted, [*compacted[1:], none], strict=True):
                if a >= horizon and b > today:
                    pair = ("p", pair_prefix + str(a), str(b))
                    pairs[pair] = pairs.get(pair, 0) + 1
        out.update({k: v for k, v in pairs.items() if v})
    return out


def window_insert_is_noop(data: dict[str, Any], w: dict[str, Any], key: str, member: str, day: int) -> bool:
    """Whether inserting `day` into the member's stored list changes nothing (tables/script.py's rule: the
    day is there, or it is before a first day not after today)."""
    cur = data.get(key, {}).get(member)
    days = [int(x) for x in cur.split(",")] if cur else []
    if days and days[-1] < w["horizon"]:
        return False
    pos = next((i for i, x in enumerate(days) if x >= day), len(days))
    return (pos < len(days) and days[pos] == day) or (pos == 0 and bool(days) and days[0] <= w["today"])


def _compact(days: list[int], today: int) -> list[int]:
    keep = max((i for i, x in enumerate(days) if x <= today), default=0)
    return days[keep:]


def tables_as_effects(
    data: dict[str, Any], prefix: str, window: dict[str, Any] | None = None
) -> dict[tuple[str, ...], Any]:
    """The simulated Redis's tables in the same form as `normalize`, to compare with the truth; the
    window pair counts only where a scrape on `window`'s today or later can read them."""
    out: dict[tuple[str, ...], Any] = {}
    amounts = {key[: -len(":lo")] for key in data if key.endswith(":lo")}
    # An amount whose whole units are all zero has only its remainder hash (the script writes no zero).
    for key, value in [*data.items(), *((k, {}) for k in amounts if k not in data)]:
        if not key.startswith(prefix) or key.endswith(":offsets") or key.endswith(":lo"):
            continue
        if key.endswith(":win:state") or ":seen:" in key:
            continue
        if ":act:" in key:
            for member, found in value.items():
                days = [int(x) for x in found.split(",")]
                # A list is compacted when it is written; one a write left out may still hold a day that a
                # write would have dropped, which no scrape from today on reads. Nor does one read a day
                # the horizon passed since it was written (at midnight).
                if window:
                    days = [d for d in _compact(days, window["today"]) if d >= window["horizon"]]
                if days:
                    out[("w", key, member)] = tuple(days)
            continue
        if ":win:" in key:
            a = int(key.rpartition(":")[2])
            for b, n in value.items():
                if window and int(n) and a >= window["horizon"] and int(b) > window["today"]:
                    out[("p", key, b)] = int(n)
            continue
        if isinstance(value, set):
            if value:
                out[("s", key)] = set(value)
        else:
            # A hash may hold counters and amounts side by side (the delay histogram): an amount is a
            # field with a remainder beside it.
            lo = data.get(key + ":lo", {}) if key in amounts else {}
            for f in set(value) | set(lo):
                if f in lo:
                    n, kind = int(value.get(f, 0)) * 1_000_000_000 + int(lo[f]), "a"
                else:
                    n, kind = int(value[f]), "n"
                if n:
                    out[(kind, key, f)] = n
    return out


def simulate(seed: int, steps: int = 60, faults: Faults | None = None, replicas: int = 2) -> World:
    world = World(seed, steps, faults, replicas)
    try:
        run_virtually(world.run())
    except Violation as exc:
        raise Violation(
            f"seed {seed}: {exc}\ntrace (last 40 of {len(world.trace)}):\n  " + "\n  ".join(world.trace[-40:])
        ) from exc
    return world


def first_violation(seeds: Iterable[int]) -> tuple[int, str] | None:
    """The first of `seeds` whose schedule, run as the search runs it (40 steps, the profile by seed), the
    checker refuses, with its message: how the tests show the search finds a bug put in on purpose."""
    for seed in seeds:
        try:
            simulate(seed, steps=40, faults=PROFILES[seed % len(PROFILES)])
        except Violation as exc:
            return seed, str(exc)
    return None
