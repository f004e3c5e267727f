"""The exporter hand-over, searched: replicas of the real Exporter scraped by a simulated Prometheus.

Each replica runs the real lease loop, scrape decision, drain and release (streams/exporter.py) over the
real lease scripts (tables/lease.py, in Lua through lupa, tests/sim/lua_redis.py) on virtual time. One or
two Prometheus servers scrape every target on a fixed schedule with its own phase. A seeded schedule
injects kill -9 (the target stays and its scrapes fail, as a restarting container's), SIGTERM with a
replacement under a new id (a rollout; the old target dropped from discovery at once or once it exits),
restarts under the same id, cuts of one replica from Redis, Redis down, slow and lost replies.

Checked at every scrape whose answer carries business series: no other target's business series are
visible to that Prometheus at that moment, as its rule evaluations see them (a sample stays until the
target's next scrape, failed or empty; a target dropped from discovery keeps it until its staleness
markers are written, just over two intervals after its last scrape). So `sum()` never adds two exporters.
At the end, faults healed: exactly one target's series visible. In the rollout profile (SIGTERMs and
replacements only): no gap in business series longer than one interval plus the lease poll and latency.

In the releases profile the fleet starts on the build before the shared lease, its own code from git,
and each rollout replaces it with another release (tests/sim/releases.py): this one (an upgrade), back to
that build (a rollback), or this one built with a key layout one apart; the same checks hold across them.
A rollout goes pod by pod, or (Recreate, maxSurge 0) stops every old pod before a new one starts; pods
are killed too; and the old build's takes after a term of another release lose their reply half the time
(it then exports without its own wait). Schedules start with the app's state in Redis (always in the
releases profile, half the time in the others: no state is a fresh install, where a lease without a record
is taken at once).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from dataclasses import dataclass, field
from typing import Any

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from streams.exporter import LEASE_ERRORS, POLL_S
from tables.lease import legacy_lease_key, legacy_offsets_key
from tests.sim import releases
from tests.sim.lease_keyspace import LeaseKeyspace, LeaseScripts
from tests.sim.loop import VirtualTimeLoop, run_virtually

START_S = 1_790_000_000.0
TTL_S = 10.0
MAX_LATENCY_S = 0.05
# Prometheus's endOfRunStaleness: markers for a dropped target after two more ticks and a tenth.
DROPPED_MARKERS_AFTER = 2.1


class Violation(AssertionError):
    pass


@dataclass
class Profile:
    kills: bool = True
    cuts: bool = True
    redis_faults: bool = True
    rollout_gap: bool = False  # check the gap bound (only meaningful without the other faults)
    # The fleet starts on the build before the shared lease; each rollout moves it to another release
    # (tests/sim/releases.py): an upgrade, a rollback, a layout apart.
    releases: bool = False
    # How often the app's state is in Redis from the start (else a fresh install: no record is then never
    # held). The build before the shared lease always ran with state: a fresh install of it is upgraded
    # before any record or state exists only in the seconds before its first batch.
    state: float = 1.0


PROFILES = (
    Profile(state=0.5),
    Profile(kills=False, cuts=False, redis_faults=False, rollout_gap=True, state=0.5),
    Profile(cuts=False, redis_faults=False, releases=True),
)


@dataclass
class Replica:
    rid: str
    exporter: releases.Exporting
    client: Client
    release: str = releases.THIS
    tasks: list[asyncio.Task[Any]] = field(default_factory=list)
    alive: bool = True
    cut: bool = False
    in_discovery: bool = True
    terminating: bool = False
    unscraped_since_kill: bool = False  # killed, and no scrape has reached its target since


@dataclass
class Seen:
    """What one Prometheus holds of one target's business series."""

    exported_at: float | None = None  # timestamp of the newest sample, when that scrape carried them
    stale_at: float | None = None  # live view: when staleness markers land for that sample
    dropped: bool = False  # the target left discovery with that sample shown: its markers came late


class Client(LeaseScripts):
    """One replica's Redis connection: the shared keyspace, unless cut, down, slow or losing replies."""

    def __init__(self, world: ExporterWorld, replica: Replica | None, keyspace: LeaseKeyspace) -> None:
        super().__init__(keyspace)
        self.world, self.replica = world, replica

    async def _gate(self) -> bool:
        await asyncio.sleep(self.world.rng.uniform(0, MAX_LATENCY_S))
        if self.world.redis_down or (self.replica is not None and self.replica.cut):
            raise RedisConnectionError("simulated: Redis unreachable")
        return self.world.profile.redis_faults and not self.world.healed and self.world.rng.random() < 0.03

    def register_script(self, source: str) -> Any:
        old_take = self.world.profile.releases and source == releases.old_lease_lua()

        async def gated(keys: list[str], args: list[Any]) -> Any:
            lose_reply = await self._gate()
            lose_reply = self.world.lose_old_take() if old_take else lose_reply
            self.world.note_legacy_holder()
            reply = self.run(source, keys, args)  # what Scripts.register_script's coroutine does, at once
            if lose_reply:
                raise RedisTimeoutError("simulated: the script ran, its reply was lost")
            await asyncio.sleep(self.world.rng.uniform(0, MAX_LATENCY_S))
            return reply

        return gated

    async def hmget(self, key: str, fields: list[str]) -> list[str | None]:
        await self._gate()
        return self.keyspace.hmget(key, fields)

    async def get(self, key: str) -> str | None:
        await self._gate()
        return self.leases.get(key)


class ExporterWorld:
    def __init__(self, seed: int, steps: int, profile: Profile) -> None:
        self.rng = random.Random(seed)
        self.steps, self.profile = steps, profile
        self.interval_s = self.rng.choice([1.0, 5.0, 15.0, 30.0, 60.0])
        self.fallback_s = self.rng.choice([self.interval_s, 60.0])  # the setting: right, or the default
        self.scrapers = [f"prom{i}" for i in range(self.rng.choice([1, 1, 2]))]
        self.state = self.rng.random() < profile.state
        self.keyspace = LeaseKeyspace(self.now_s)
        self.replicas: dict[str, Replica] = {}
        self.seen: dict[tuple[str, str], Seen] = {}
        self.redis_down = False
        self.healed = False
        self.next_id = 0
        self.release = releases.OLD if profile.releases else releases.THIS  # what new pods run
        self.trace: list[str] = []
        # (seconds without business series, after a dropped target, exporters stopped meanwhile)
        self.gaps_s: list[tuple[float, bool, int]] = []
        self.hand_overs: list[float] = []  # when an exporter was told to stop
        self.legacy_last: str | None = None  # the release of the last holder of layout 3's key
        self.dropped_at_sigterm: set[str] = set()
        self.loop: VirtualTimeLoop | None = None
        self.violation: Violation | None = None  # raised in a scrape's task; the driver raises it again

    def now_s(self) -> float:
        assert self.loop is not None
        return START_S + self.loop.time()

    def violate(self, message: str) -> None:
        self.violation = self.violation or Violation(f"{message} at t={self.now_s() - START_S:.3f}")
        raise self.violation

    def note_legacy_holder(self) -> None:
        """Who held layout 3's key last, read before each script: every change of it is a script's."""
        holder = self.keyspace.get(legacy_lease_key(releases.APP))
        if holder is not None and holder in self.replicas:
            self.legacy_last = self.replicas[holder].release

    def lose_old_take(self) -> bool:
        """The old build's take loses its reply half the time after a term of another release: it then sees
        the key as kept next round and exports without its wait (after a term of its own, it double-counts
        by its own rules, which no later release can change)."""
        return not self.healed and self.legacy_last not in (None, releases.OLD) and self.rng.random() < 0.5

    # Replicas ---------------------------------------------------------------------------------------
    def build(self, release: str, rid: str, client: Client) -> releases.Exporting:
        return releases.build(release, rid, client, TTL_S, self.fallback_s, self.interval_s, self.now_s)

    def start(self, rid: str | None = None) -> Replica:
        if rid is None:
            rid, self.next_id = f"r{self.next_id}", self.next_id + 1
        client = Client(self, None, self.keyspace)
        replica = Replica(rid, self.build(self.release, rid, client), client, self.release)
        client.replica = replica
        self.replicas[rid] = replica
        replica.tasks.append(asyncio.create_task(replica.exporter.run()))
        for scraper in self.scrapers:
            replica.tasks.append(asyncio.create_task(self.scrape_loop(scraper, replica)))
        self.trace.append(f"t={self.now_s() - START_S:.2f} start {rid} ({self.release})")
        return replica

    def kill(self, replica: Replica) -> None:
        replica.alive, replica.unscraped_since_kill = False, True
        for task in replica.tasks[:1]:
            task.cancel()  # the scrape loops go on: a dead target's scrapes fail
        self.trace.append(f"kill -9 {replica.rid}")

    async def sigterm(self, replica: Replica, drop_from_discovery: bool) -> None:
        """The sidecar's stop: the exporter's hand-over beside a tap drain of random length."""
        # What the hand-over assumes (docs/design.md, "What it assumes"): a target that discovery drops at
        # SIGTERM could tell Redis so (the longer grace goes on record as the drain starts), and a crashed
        # target is scraped, and fails, once before discovery drops it.
        unreachable = replica.cut or self.redis_down
        drop_from_discovery = drop_from_discovery and not unreachable and not replica.unscraped_since_kill
        self.trace.append(f"t={self.now_s() - START_S:.2f} SIGTERM {replica.rid} dropped={drop_from_discovery}")
        replica.terminating = True
        replica.in_discovery = not drop_from_discovery
        if drop_from_discovery:
            self.dropped_at_sigterm.add(replica.rid)
        tap_drain = asyncio.sleep(self.rng.choice([0.0, 0.3, 3.0]))
        if replica.exporter.held:
            self.hand_overs.append(self.now_s())
        # The budget a deployment derives from the interval it configures (the chart: from its monitor).
        with contextlib.suppress(*LEASE_ERRORS):
            await replica.exporter.hand_over(max(20.0, 1.1 * self.fallback_s + 5.0), tap_drain, replica.tasks[0])
        replica.alive = False
        if replica.unscraped_since_kill:
            await asyncio.sleep(1.01 * self.interval_s)
        replica.in_discovery = False
        self.trace.append(f"t={self.now_s() - START_S:.2f} exited {replica.rid}")

    # Prometheus -------------------------------------------------------------------------------------
    async def scrape_loop(self, scraper: str, replica: Replica) -> None:
        await asyncio.sleep(self.rng.uniform(0, self.interval_s))
        last_tick = None
        while replica.in_discovery:
            tick = self.now_s()
            exported = False
            if replica.alive:
                await asyncio.sleep(self.rng.uniform(0, MAX_LATENCY_S))  # the request on its way
                try:
                    exported = await replica.exporter.serves(scraper)
                except LEASE_ERRORS:
                    exported = False  # the sidecar answers without business series when Redis fails
            self.sample(scraper, replica.rid, tick, exported)
            replica.unscraped_since_kill = False
            last_tick = tick
            await asyncio.sleep(self.interval_s)
        if last_tick is not None:
            seen = self.seen[(scraper, replica.rid)]
            if seen.exported_at is not None and seen.stale_at is None:
                seen.stale_at = last_tick + DROPPED_MARKERS_AFTER * self.interval_s
                seen.dropped = True

    def visible(self, scraper: str, rid: str, at_s: float) -> bool:
        seen = self.seen.get((scraper, rid))
        if seen is None or seen.exported_at is None:
            return False
        return seen.stale_at is None or seen.stale_at > at_s

    def sample(self, scraper: str, rid: str, tick: float, exported: bool) -> None:
        seen = self.seen.setdefault((scraper, rid), Seen())
        if exported:
            others = [o for (s, o) in self.seen if s == scraper and o != rid and self.visible(s, o, tick)]
            if others:
                self.violate(f"{scraper} sees business series of {rid} and {others} at once")
            if not self.visible(scraper, rid, tick):
                ends = [(x.stale_at, x.dropped) for (s, _), x in self.seen.items() if s == scraper and x.stale_at]
                if ends:
                    stale_at, _ = max(ends)
                    last = max((x.stale_at, o) for (s, o), x in self.seen.items() if s == scraper and x.stale_at)[1]
                    # Dropped from discovery in any Prometheus's view: the release waited for the late markers.
                    # (Dropped at SIGTERM counts even where a quiet scrape came first: the exporter cannot
                    # tell that scrape from a second job's behind the same address until 0.9 intervals on.)
                    dropped = last in self.dropped_at_sigterm or any(
                        x.dropped for (_, o), x in self.seen.items() if o == last
                    )
                    since = stale_at - (2.2 if dropped else 1.0) * self.interval_s
                    stopped = sum(1 for t in self.hand_overs if since <= t <= tick)
                    self.gaps_s.append((tick - stale_at, dropped, stopped))
                self.trace.append(f"t={tick - START_S:.2f} {scraper} shows {rid}")
            seen.exported_at, seen.stale_at, seen.dropped = tick, None, False
        elif seen.exported_at is not None and seen.stale_at is None:
            seen.stale_at = tick
            self.trace.append(f"t={tick - START_S:.2f} {scraper} stale {rid}")

    # The schedule -----------------------------------------------------------------------------------
    def live(self) -> list[Replica]:
        return [r for r in self.replicas.values() if r.alive and r.in_discovery and not r.terminating]

    async def step(self, background: list[asyncio.Task[Any]]) -> None:
        p, roll, live = self.profile, self.rng.random(), self.live()
        if roll < 0.3 and live:
            await self.rollout(live, background)
        elif roll < 0.42 and p.kills and live:
            victim = self.rng.choice(live)
            self.kill(victim)
            await asyncio.sleep(self.rng.choice([0.5, 5.0, 30.0]))
            if self.rng.random() < 0.5:
                self.restart_in_place(victim)  # the container restarts: same pod, same id, same target
            else:
                # Replaced: the dead pod leaves discovery, at the earliest after a scrape of it failed (a
                # crashed container restarts in place, a lost node's pods stay for minutes); a target
                # dropped unscraped would keep its series two intervals longer than the lease's grace.
                background.append(asyncio.create_task(self.drop_later(victim, 1.01 * self.interval_s)))
                self.start()
        elif roll < 0.52 and p.cuts and live:
            victim = self.rng.choice(live)
            victim.cut = not victim.cut
            self.trace.append(f"{'cut' if victim.cut else 'reconnect'} {victim.rid}")
        elif roll < 0.58 and p.redis_faults:
            self.redis_down = not self.redis_down
            self.trace.append(f"redis {'down' if self.redis_down else 'up'}")
        elif len(live) < 2:
            self.start()
        await asyncio.sleep(self.rng.choice([0.2, 2.0, self.interval_s, 3 * self.interval_s]))

    async def rollout(self, olds: list[Replica], background: list[asyncio.Task[Any]]) -> None:
        """A Deployment's rolling update with surge: a new pod, once ready the oldest old one is stopped."""
        if self.profile.releases:
            self.release = self.rng.choice([r for r in releases.releases() if r != self.release])
        recreate = self.profile.releases and self.rng.random() < 0.3
        self.trace.append(f"rollout of {[r.rid for r in olds]} to {self.release}{' (recreate)' if recreate else ''}")
        if recreate:
            # Recreate (or no surge): every old pod has stopped before a new one starts.
            await asyncio.gather(*(self.sigterm(old, self.rng.random() < 0.5) for old in olds))
            for _ in olds:
                self.start()
        for old in [] if recreate else olds:
            self.start()
            await asyncio.sleep(self.rng.choice([0.0, 1.0, 5.0, 20.0]))  # until the new pod is ready
            background.append(asyncio.create_task(self.sigterm(old, self.rng.random() < 0.5)))
        # The next rollout comes later: a term the last one handed to a new pod is scraped before it ends.
        await asyncio.sleep(2 * self.interval_s)

    async def drop_later(self, replica: Replica, after_s: float) -> None:
        await asyncio.sleep(after_s)
        replica.in_discovery = False

    def restart_in_place(self, replica: Replica) -> None:
        self.trace.append(f"restart {replica.rid}")
        exporter = self.build(replica.release, replica.rid, replica.client)
        replica.exporter, replica.alive = exporter, True
        replica.tasks[0] = asyncio.create_task(exporter.run())

    async def run(self) -> None:
        self.loop = asyncio.get_running_loop()  # type: ignore[assignment]
        background: list[asyncio.Task[Any]] = []
        if self.state:
            # The fleet has state: a lease without a record, or whose layout 3 key is gone, is no fresh install.
            LeaseScripts(self.keyspace).run(
                "return redis.call('HSET', KEYS[1], 'events', '0')", [legacy_offsets_key(releases.APP)], []
            )
        for _ in range(2):
            self.start()
        for _ in range(self.steps):
            await self.step(background)
            if self.violation is not None:
                raise self.violation
        self.redis_down, self.healed = False, True
        for r in self.replicas.values():
            r.cut = False
        await asyncio.gather(*background)
        if not self.live():
            self.start()
        # Quiet: every term that can end has ended, every wait is over, every target scraped again.
        await asyncio.sleep(TTL_S + 2.2 * max(self.interval_s, self.fallback_s) + 3 * self.interval_s + 5)
        if self.violation is not None:
            raise self.violation
        now = self.now_s()
        for scraper in self.scrapers:
            shown = [rid for (s, rid) in self.seen if s == scraper and self.visible(s, rid, now)]
            if len(shown) != 1:
                self.violate(f"after healing {scraper} sees business series of {shown}, not of exactly one")
        if self.profile.rollout_gap:
            for gap_s, dropped, stopped in self.gaps_s:
                # One interval, the lease poll and latencies. A target dropped from discovery at SIGTERM
                # keeps its series just over two intervals (late markers), and the drain cannot see when;
                # with two Prometheus the release waits for the later one, so the earlier one sees up to
                # one interval more. Until some holder has measured the interval, the setting stands for it.
                # An exporter stopped before the Prometheus saw it (rollouts in quick succession) adds its own.
                # A setting above the real interval is the floor of the waits: a quiet scrape clears only
                # 0.9 of the setting after the last export, up to one real interval later.
                factor = (2.2 if dropped else 1.0) + (1.0 if len(self.scrapers) > 1 else 0.0)
                slower = self.interval_s if self.fallback_s > self.interval_s else 0.0
                bound_s = max(1, stopped) * (factor * self.fallback_s + slower + 1.0 + POLL_S + 1.0)
                if gap_s > bound_s:
                    self.violate(f"a rollout left no business series for {gap_s:.2f}s (> {bound_s:.2f}s)")


def simulate_exporters(seed: int, steps: int = 30, profile: Profile | None = None) -> ExporterWorld:
    world = ExporterWorld(seed, steps, profile or PROFILES[seed % len(PROFILES)])
    try:
        run_virtually(world.run())
    except Violation as exc:
        raise Violation(
            f"exporter seed {seed} (interval {world.interval_s:g}s, setting {world.fallback_s:g}s, "
            f"{len(world.scrapers)} Prometheus): {exc}\ntrace (last 60):\n  " + "\n  ".join(world.trace[-60:])
        ) from exc
    return world
