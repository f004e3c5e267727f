"""The sidecar's long-running parts: tap agent, exporter lease and lag probe, tied to one lifecycle."""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import socket
import time
from collections.abc import Awaitable, Callable
from dataclasses import replace

from redis.exceptions import RedisError

from agents.tap import TapAgent
from streams.calendar import DayCalendar
from streams.labels import activity_of, admit, fold_pairs, fold_single, outside
from streams.lag import LagProbe
from streams.settings import Settings
from streams.status import Status
from tables.store import RedisStore, Snapshot

log = logging.getLogger(__name__)


def new_replica_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}"


class Sidecar:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.status = Status(replica_id=new_replica_id())
        self.calendar = DayCalendar(settings.zone)
        self.store = RedisStore.from_url(settings.redis_url, settings.app_id, settings.days_kept)
        self.agent = TapAgent(settings, self.store, self.status)
        self.probe = LagProbe(
            settings.bootstrap_servers, settings.raw_topic, settings.watch_group, settings.kafka.client_kwargs()
        )
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
            ("tap", self.agent.stop()),
            ("lag probe", self.probe.stop()),
            ("lease", self.store.release_lease(self.status.replica_id)),
        ):
            try:
                await closing
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
        await self.agent.start()
        await self.agent.run()

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
        await self.probe.start()
        while True:
            if self.status.leader:
                try:
                    self.status.lag = await self.probe.measure()
                except Exception as exc:
                    log.warning("lag probe failed: %s", exc)
            await asyncio.sleep(self.settings.lag_interval_seconds)

    async def exporting_snapshot(self) -> Snapshot | None:
        """The tables' values when this replica holds the exporter lease, else None."""
        holder = await self.store.lease_holder()
        if holder != self.status.replica_id:
            self.status.leader = False
            return None
        snap = await self.store.snapshot(self.calendar.today(int(time.time() * 1000)))
        return await self._cap_labels(snap)

    async def _cap_labels(self, snap: Snapshot) -> Snapshot:
        """Fold label values beyond the caps into "__other__", admitting the most active while there is room."""
        s = self.settings
        members = await self.store.label_members(("org_id", "provider", "model"))
        orgs_active = activity_of(snap.ingested, 0)
        for org in (*snap.kwh, *snap.co2_kg):
            orgs_active.setdefault(org, 0)
        seen = {"org_id": orgs_active, "provider": activity_of(snap.ingested, 1), "model": activity_of(snap.calls, 1)}
        for label, active in seen.items():
            cap = s.max_org_series if label == "org_id" else s.max_label_values
            new = admit(members[label], active, cap)
            await self.store.add_label_members(label, new)
            members[label].update(new)
        orgs = members["org_id"]
        return replace(
            snap,
            ingested=fold_pairs(snap.ingested, orgs, members["provider"]),
            calls=fold_pairs(snap.calls, orgs, members["model"]),
            kwh=fold_single(snap.kwh, orgs),
            co2_kg=fold_single(snap.co2_kg, orgs),
            folded={label: outside(active, members[label]) for label, active in seen.items()},
        )
