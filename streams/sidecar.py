"""The sidecar's long-running parts: tap agent, exporter lease and lag probe, tied to one lifecycle."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from collections.abc import Awaitable, Callable
from functools import partial

from redis.exceptions import RedisError

from agents.tap import TapAgent
from streams.broker_health import check_brokers
from streams.calendar import DayCalendar
from streams.labels import admit
from streams.lag_metrics import prerendered
from streams.lag_probe import LagProbe, probe_from_settings
from streams.settings import Settings
from streams.status import Status
from tables.snapshot import Snapshot, add_label_members, label_activity, label_members, read_snapshot
from tables.store import RedisStore

log = logging.getLogger(__name__)


def replica_id(web_port: int) -> str:
    """Unique among live replicas (two on one host need two ports) and stable across a restart, so a
    replica restarted after a crash takes its own exporter lease back at once instead of waiting it out."""
    return os.environ.get("STREAMS_REPLICA_ID") or f"{socket.gethostname()}:{web_port}"


class Sidecar:
    def __init__(self, settings: Settings, web_port: int) -> None:
        self.settings = settings
        self.status = Status(replica_id=replica_id(web_port))
        self.calendar = DayCalendar(settings.zone)
        self.store = RedisStore.from_url(settings.redis_url, settings.app_id, settings.days_kept)
        # Built per attempt by _run_tap and _run_probe: a Kafka client that failed is never started twice.
        self.agent: TapAgent | None = None
        self.probe: LagProbe | None = None
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        self._tasks = [
            asyncio.create_task(self._retrying("tap", self._run_tap)),
            asyncio.create_task(self._retrying("lease", self._run_lease)),
            asyncio.create_task(self._retrying("lag probe", self._run_probe)),
        ]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for name, closing in (
            ("tap", self.agent.stop if self.agent else None),
            ("lag probe", self.probe.stop if self.probe else None),
            ("lease", partial(self.store.release_lease, self.status.replica_id)),
        ):
            if closing is None:
                continue
            try:
                await closing()
            except Exception as exc:
                log.warning("closing %s failed: %s", name, exc)
        await self.store.close()

    async def _retrying(self, name: str, body: Callable[[], Awaitable[None]]) -> None:
        backoff = 1.0
        while True:
            try:
                await body()
                return
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("%s failed, retrying in %.0fs: %s", name, backoff, exc)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 30.0)

    async def _run_tap(self) -> None:
        await self.store.ping()
        self.status.redis_ok = True
        self.agent = TapAgent(self.settings, self.store, self.status)
        try:
            await self.agent.start()
            await self.agent.run()
        except asyncio.CancelledError:
            raise
        except Exception:
            self.status.recovering = True
            await self.agent.stop()
            raise

    async def _run_lease(self) -> None:
        ttl_ms = int(self.settings.leader_lease_seconds * 1000)
        while True:
            try:
                self.status.leader = await self.store.hold_lease(self.status.replica_id, ttl_ms)
                self.status.redis_ok = True
            except (RedisError, OSError) as exc:
                self.status.leader = False
                self.status.redis_ok = False
                log.warning("exporter lease check failed: %s", exc)
            await asyncio.sleep(self.settings.leader_lease_seconds / 3)

    async def _run_probe(self) -> None:
        s = self.settings
        probe = self.probe = probe_from_settings(s)
        try:
            await probe.start()
        except Exception:
            await probe.stop()
            raise
        while True:
            await self._check_brokers(probe)
            if self.status.leader and self.status.broker_ok:
                try:
                    self.status.lag = await prerendered(await probe.measure(), s)
                except Exception as exc:
                    log.warning("lag probe failed: %s", exc)
            await asyncio.sleep(s.lag_interval_seconds)

    async def _check_brokers(self, probe: LagProbe) -> None:
        health = await check_brokers(probe.client)
        if self.status.broker_ok and not health.ok:
            log.warning(
                "Kafka unreachable: metadata %s, %d of %d brokers refuse connections",
                "answered" if health.metadata_ok else "failed",
                health.brokers_unreachable,
                health.brokers_known,
            )
        elif health.ok and not self.status.broker_ok:
            log.info("Kafka reachable: %d brokers answer", health.brokers_known)
        self.status.broker_ok = health.ok
        self.status.brokers_unreachable = health.brokers_unreachable

    async def exporting_snapshot(self) -> Snapshot | None:
        """The tables' values when this replica holds the exporter lease, else None."""
        holder = await self.store.lease_holder()
        if holder != self.status.replica_id:
            self.status.leader = False
            return None
        members = await label_members(self.store)
        for label, found in members.items():
            cap = self.settings.max_org_series if label == "org_id" else self.settings.max_label_values
            if len(found) < cap:
                new = admit(found, await label_activity(self.store, label), cap)
                await add_label_members(self.store, label, new)
                found.update(new)
        today = self.calendar.today(int(time.time() * 1000))
        return await read_snapshot(self.store, today, self.settings.raw_topic, members)
