"""The sidecar's long-running parts: tap agent, exporter lease and lag probe, tied to one lifecycle.

Clients are built here (streams/clients.py) and passed in. Each status field has one writer: the tap
owns the batch figures and recovery, the lease loop owns Redis's health and the exporter role, the probe
loop owns the broker's health and the lag. The scrape only reads.

Every lag probe (the tapped cluster's and STREAMS_LAG_CLUSTERS') runs on a thread of its own with its
own event loop (streams/lag/loops.py), so that decoding thousands of partitions never stalls the
loop serving /metrics.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from collections.abc import Awaitable, Callable

import redis.asyncio as aioredis
from redis.exceptions import RedisError, ResponseError

from agents.dead_letters import DeadLetters
from agents.sharded_tap import ShardedTapAgent
from agents.tap import TapAgent
from core.calendar import DayCalendar
from core.deadline import LOCAL_CLOSE_S, Deadline
from core.retry import SERVICES, retry
from core.status import Status
from streams import clients
from streams.deflated import Deflated
from streams.exporter import LEASE_ERRORS, Exporter
from streams.lag.loops import LagProbes
from streams.lag.model import LagSnapshot
from streams.settings import Settings
from streams.web.history import History
from tables.eviction import SAFE as SAFE_EVICTION_POLICY
from tables.eviction import is_safe
from tables.layout import TOOK_OVER, LayoutStore
from tables.lease import Lease, LeaseStore
from tables.shard_reads import sharded_snapshot
from tables.sharded_store import ShardedStore
from tables.snapshot import Snapshot, decode
from tables.store import RedisStore
from tables.table_reads import consistent_tables

log = logging.getLogger(__name__)
# Any other policy lets Redis drop day sets (actives undercounted) or the offsets (everything re-read).
POLICY_CHECK_TIMEOUT_S = 10.0  # the primaries are asked at once, each within tables.eviction.NODE_TIMEOUT_S
LAYOUT_RECHECK_S = 5.0  # a refused replica starts this long after the operator resolved it
LAYOUT_REDIS_RETRY_S = 1.0


def replica_id(web_port: int) -> str:
    """Unique among live replicas (two on one host need two ports) and stable across a restart, so a
    replica restarted after a crash takes its own exporter lease back at once instead of waiting it out."""
    return os.environ.get("STREAMS_REPLICA_ID") or f"{socket.gethostname()}:{web_port}"


class Sidecar:
    def __init__(self, settings: Settings, web_port: int, redis: aioredis.Redis | None = None) -> None:
        self.settings = settings
        self.status = Status(replica_id=replica_id(web_port))
        self.calendar = DayCalendar(settings.zone)
        self.redis = redis if redis is not None else clients.redis_client(settings)
        caps = {
            "org_id": settings.max_org_series,
            "provider": settings.max_label_values,
            "model": settings.max_label_values,
        }
        self.store: RedisStore | ShardedStore = (
            RedisStore(self.redis, settings.app_id, settings.days_kept, caps, settings.seen_cache_entries)
            if settings.redis_shards == 1
            else ShardedStore(
                self.redis,
                settings.app_id,
                settings.redis_shards,
                settings.days_kept,
                caps,
                settings.seen_cache_entries,
            )
        )
        self.leases = LeaseStore(self.redis, settings.app_id)
        self.layouts = LayoutStore(self.redis, settings.app_id, shards=settings.redis_shards)
        self._layout_ready = asyncio.Event()
        self._layout_recorded_s = -float("inf")
        # Renewed every third of a lease, or each check while refused: a replica that died counts as
        # running for two of those at most.
        self._layout_live_s = 2 * max(settings.leader_lease_seconds, LAYOUT_RECHECK_S)
        self.exporter = Exporter(
            self.leases, self.status.replica_id, settings.leader_lease_seconds, settings.scrape_interval_seconds
        )
        # Built per attempt by _run_tap: a Kafka client that failed is never started twice.
        self.agent: TapAgent | None = None
        self.probes = LagProbes(settings, self.status)  # each Kafka cluster's on a thread of its own
        self._tasks: list[asyncio.Task[None]] = []
        self._policy_check: asyncio.Task[None] | None = None
        self.history = History(self.status)  # landing page: uptime, last batch, records/s

    async def start(self) -> None:
        self._tasks = [
            asyncio.create_task(self._retrying("tap", self._run_tap)),
            asyncio.create_task(self._retrying("lease", self._run_lease)),
            asyncio.create_task(self.history.run()),  # landing page: samples the status every second
        ]
        self.probes.start()

    @property
    def lag(self) -> LagSnapshot | None:
        return self.probes.lag

    @property
    def lag_deflated(self) -> Deflated | None:
        return self.probes.deflated

    @property
    def lag_exposition(self) -> bytes | None:
        published = self.probes.deflated
        return published.text if published is not None else None

    async def stop(self, deadline: Deadline | None = None) -> None:
        """Within STREAMS_SHUTDOWN_TIMEOUT_SECONDS, counted once from the stop for every step, so that a
        frozen Redis and a hung broker together still cannot hold a SIGTERM longer (docs/operations.md,
        "Stopping", lists the steps and their bounds).

        The exporter goes quiet first and keeps its lease (the web server keeps answering) while the tap
        drains, until its scrapers have seen it without business series; the lease is released last,
        saying how long this replica's series may still be seen (streams/exporter.py).
        """
        if deadline is None:
            deadline = Deadline(self.settings.shutdown_timeout_seconds, asyncio.get_running_loop().time)
        # Quiet at once, before anything that could hang: a task that swallows its cancel (asyncio.wait_for
        # in Python 3.11 can) must not keep this replica exporting beside the next one.
        self.exporter.draining = True
        rounds = self._tasks[1] if len(self._tasks) > 1 else None
        others = [t for t in self._tasks if t is not rounds]
        for task in others:
            task.cancel()
        if self._policy_check is not None:
            self._policy_check.cancel()
        # On its own thread, beside every other step; a thread still stuck at the deadline is a daemon.
        probes_stopped = asyncio.create_task(self.probes.stop(deadline.left()))
        try:
            await self.exporter.hand_over(deadline, self._stop_tap(others, deadline), rounds)
        except Exception as exc:
            log.warning("handing the exporter lease over failed: %s", exc)
        self.status.leader = False
        # A purge right after a clean stop need not wait for this replica's record to run out.
        await deadline.within(self._record_layout(stopped=True), "clearing this replica's key layout record", log)
        await probes_stopped  # bounded by the deadline; it ran meanwhile
        # Only closes sockets: run even when nothing is left, bounded by core.deadline.LOCAL_CLOSE_S.
        await deadline.within(self.store.close(), "closing redis", log, floor_s=LOCAL_CLOSE_S)
        log.info("stopped %.1fs after the stop began (budget %.0fs)", deadline.elapsed(), deadline.budget_s)

    async def _stop_tap(self, cancelled: list[asyncio.Task[None]], deadline: Deadline) -> None:
        if cancelled:
            # They end at their cancel (the tap's write in flight is shielded and waited for below): a
            # quarter of the budget at most for one that swallowed it, not the whole of it.
            wait_s = min(deadline.left(), deadline.budget_s / 4)
            _, stuck = await asyncio.wait(cancelled, timeout=wait_s) if wait_s > 0 else (set(), set(cancelled))
            if stuck:
                log.warning(
                    "%d task(s) did not end %.0fs after their cancel; stopping without them", len(stuck), wait_s
                )
        if self.agent is not None:
            await self.agent.stop(deadline)

    async def _retrying(self, name: str, body: Callable[[], Awaitable[None]]) -> None:
        # A service that ran healthy for a minute starts its back-off over: one failure a day never waits minutes.
        await retry(body, (Exception,), what=name, log=log, policy=SERVICES, healthy_after_s=60.0)

    async def _layout_in_use(self) -> None:
        """Returns once Redis's state is in this release's key layout (tables/layout.py). Until then the
        lease loop runs no round (two layouts' figures would take turns) and the tap waits (it would
        re-read its topics into new keys); a refusal is checked again every few seconds, and a Redis
        that fails is polled here rather than by the services' back-off (a start would wait up to 30 s)."""
        st, unreachable = self.status, False
        while True:
            try:
                await self._record_layout()
                check = await self.layouts.check(self.settings.layout_upgrade == "reread")
            except LEASE_ERRORS as exc:
                if not unreachable:
                    log.warning("key layout check failed, trying again: %s", exc)
                st.redis_ok, unreachable = False, True
                await asyncio.sleep(LAYOUT_REDIS_RETRY_S)
                continue
            st.redis_ok, unreachable = True, False
            if check.runs:
                break
            if check.refusal != st.layout_refusal:
                log.error("not reading the topics nor exporting: Redis holds %s", check.refusal)
            st.layout_refusal = check.refusal
            await asyncio.sleep(LAYOUT_RECHECK_S)
        if check.outcome == TOOK_OVER:
            log.warning(
                "key layout %d is now the one in use, over layout %d (STREAMS_LAYOUT_UPGRADE=reread): the "
                "tables are rebuilt from the topics; layout %d's keys stay until "
                "`python -m streams.tools.layout purge-layout --layout %d`",
                *(check.layout, check.found, check.found, check.found),
            )
        elif st.layout_refusal is not None:
            log.info("key layout %d is in use: starting the tap and the exporter lease", check.layout)
        st.layout_refusal = None
        self._layout_ready.set()

    async def _record_layout(self, stopped: bool = False) -> None:
        """Tells a purge (tables/layout.py) that this replica runs its layout; renewed by the lease rounds."""
        now = time.monotonic()
        if stopped or now - self._layout_recorded_s >= self.settings.leader_lease_seconds / 3:
            await self.layouts.seen(self.status.replica_id, 0 if stopped else int(self._layout_live_s * 1000))
            self._layout_recorded_s = now

    async def _before_round(self) -> None:
        await self._record_layout()
        # Beside the round, not in it: in a Redis Cluster the check asks every primary, and one that is
        # slow or down must not delay the lease's renewal nor drop the exporter role.
        if self._policy_check is None or self._policy_check.done():
            self._policy_check = asyncio.create_task(self._check_eviction_policy())

    async def _run_tap(self) -> None:
        s = self.settings
        await self.store.ping()
        await self._layout_ready.wait()  # set by the lease loop's check
        dead_letters = None
        if s.dead_letter_topic:
            dead_letters = DeadLetters(s.dead_letter_topic, clients.dead_letter_producer(s), self.status)
        consumer = clients.tap_consumer(s, self.status.replica_id)
        # Sharded state's tap folds per shard (docs/design.md, Sharded state); one shard's is the tap itself.
        tap = TapAgent if isinstance(self.store, RedisStore) else ShardedTapAgent
        self.agent = tap(s, self.store, self.status, consumer, dead_letters)  # type: ignore[arg-type]
        try:
            await self.agent.start()
            await self.agent.run()
        except asyncio.CancelledError:
            raise
        except Exception:
            await self.agent.stop()
            self.agent.abandon()  # _retrying builds the next tap on the same store
            raise

    async def _run_lease(self) -> None:
        await self._layout_in_use()
        await self.exporter.run(self._lease_round_done, self._before_round)

    def _lease_round_done(self, lease: Lease | None, error: BaseException | None) -> None:
        st, held = self.status, self.exporter.held
        if error is not None:
            st.redis_ok = False
            log.warning("exporter lease check failed: %s", error)
        else:
            st.redis_ok = True
        if held and not st.leader:
            wait = self.exporter.starts_in_s(self.exporter.clock()) or 0.0
            log.info("holding the exporter lease (%s); exporting in %.1fs", lease.name.lower() if lease else "", wait)
        elif st.leader and lease == Lease.LOST:
            log.warning("another replica took the exporter lease")
        st.leader = held

    async def _check_eviction_policy(self) -> None:
        if not self.settings.redis_policy_check:
            return
        try:
            policy = await asyncio.wait_for(self.store.eviction_policy(), POLICY_CHECK_TIMEOUT_S)
        except (RedisError, OSError, TimeoutError) as exc:
            if not isinstance(exc, ResponseError):
                # Unanswered: the lease rounds report Redis itself; the policy is kept as last read.
                log.debug("maxmemory-policy check did not complete: %r", exc)
                return
            # CONFIG refused (a managed Redis, an ACL without +config): unknown is not safe, but it must
            # not stop the lease either; say which setting turns the check off.
            if self.status.redis_policy_ok or self.status.redis_policy != "unknown":
                log.error(
                    "Redis refused CONFIG GET maxmemory-policy (%s): not ready until the policy is known; "
                    "set STREAMS_REDIS_POLICY_CHECK=false where eviction is known to be off",
                    exc,
                )
            self.status.redis_policy, self.status.redis_policy_ok = "unknown", False
            return
        ok = is_safe(policy)
        if not ok and (self.status.redis_policy_ok or policy != self.status.redis_policy):
            log.error(
                "Redis maxmemory-policy is %r: it may evict the tables or their offsets; set it to %s "
                "(or STREAMS_REDIS_POLICY_CHECK=false where CONFIG is hidden and eviction is known to be off)",
                policy,
                SAFE_EVICTION_POLICY,
            )
        self.status.redis_policy, self.status.redis_policy_ok = policy, ok

    async def exporting_snapshot(self, scraper: str | None = None) -> Snapshot | None:
        """The tables' values when this replica is the exporter, else None. Reads only.

        `scraper` names a Prometheus scrape (its remote address): the hand-over counts what it was shown.
        """
        if not await self.exporter.serves(scraper):
            return None
        today = self.calendar.today(int(time.time() * 1000))
        if isinstance(self.store, ShardedStore):
            return await sharded_snapshot(self.redis, self.store.shard_keys, today, self.settings.raw_topic)
        raw = await consistent_tables(self.redis, self.store.keys, today)
        return decode(raw, self.settings.raw_topic)
