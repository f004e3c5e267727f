"""The sidecar's lag probes: the tapped cluster's loop on a thread of its own, and each cluster of
STREAMS_LAG_CLUSTERS' on one of its own (streams/lag/clusters.py).

Each thread runs its own event loop (streams/lag/own_loop.py), so that aiokafka decoding thousands of
partitions never stalls the loop serving /metrics, nor another cluster's cycle. Across threads they read
only `status.leader` and write only by swapping references: the tapped cluster's snapshot (`lag`), every
cluster's families with their gzip blocks (`deflated`, one reference, so a scrape never pairs one
cycle's text with another's compression; merges take turns, see LagClusters._merge_now), and the broker
flags, which the tapped cluster's loop alone writes.
"""

from __future__ import annotations

import asyncio
import functools
import logging

from core.retry import SERVICES, retry
from core.status import Status
from streams.broker_health import check_brokers
from streams.clients import redis_client
from streams.deflated import Deflated, deflated
from streams.lag.clusters import LagClusters
from streams.lag.model import LagSnapshot
from streams.lag.own_loop import LoopThread
from streams.lag.probe import LagProbe, probe_from_settings
from streams.lag.stale_store import StaleStore
from streams.settings import Settings

log = logging.getLogger(__name__)


class LagProbes:
    def __init__(self, settings: Settings, status: Status) -> None:
        self.settings = settings
        self.status = status
        self.lag: LagSnapshot | None = None  # the tapped cluster's last snapshot (the landing page's)
        self.deflated: Deflated | None = None
        # Built per attempt by _run_probe: a Kafka client that failed is never started twice.
        self.probe: LagProbe | None = None
        # Every cluster's lag; only the exporter probes. A probe that has not measured for two intervals
        # and a deadline may have missed another exporter's stale judgements: it reads them first.
        gap_s = 2 * settings.lag_interval_seconds + settings.lag_clusters.timeout_seconds
        store = StaleStore(functools.partial(redis_client, settings), settings.app_id, gap_s)
        self.clusters = LagClusters(settings, self._publish, lambda: status.leader, stale_store=store)
        self.thread = LoopThread("lag-probe")

    def start(self) -> None:
        self.thread.start(self._run)
        self.clusters.start()  # the extra clusters' threads; none without STREAMS_LAG_CLUSTERS

    async def stop(self, timeout_s: float) -> bool:
        """Cancels every probe loop and waits for their clients to close: all threads at once, so
        `timeout_s` at most in all. False when one was left behind (a daemon thread)."""
        return all(await asyncio.gather(self.thread.stop(timeout_s), self.clusters.stop(timeout_s)))

    def _publish(self, text: bytes) -> None:
        """Called on a worker thread of a probe loop (one merge at a time): compressed there once per
        cycle, not per scrape."""
        self.deflated = deflated(text)

    async def _run(self) -> None:
        """On the probe thread's loop until cancelled; the tapped cluster's clients are closed here, on
        the loop they were built on."""
        try:
            await retry(self._run_probe, (Exception,), what="lag probe", log=log, policy=SERVICES, healthy_after_s=60.0)
        finally:
            if self.probe is not None:
                try:
                    await asyncio.wait_for(self.probe.stop(), max(1.0, self.settings.shutdown_timeout_seconds / 4))
                except Exception as exc:
                    log.warning("closing lag probe failed: %s", exc)

    async def _run_probe(self) -> None:
        s = self.settings
        # The cluster's stale judgements outlive this attempt's clients (streams/lag/scope.py).
        probe = self.probe = probe_from_settings(s, stale_memory=self.clusters.stale[self.clusters.tapped])
        try:
            await probe.start()
        except Exception:
            await probe.stop()
            raise
        try:
            while True:
                await self._check_brokers(probe)
                if self.status.leader and self.status.broker_ok:
                    try:
                        self.lag = await self.clusters.measure(self.clusters.tapped, probe)
                    except Exception as exc:
                        log.warning("lag probe failed: %s", exc)
                elif self.status.leader:
                    await self.clusters.down(self.clusters.tapped, "Kafka unreachable")
                await asyncio.sleep(s.lag_interval_seconds)
        except Exception:
            # The next attempt builds new clients: these are closed first, not left to leak.
            self.probe = None
            await probe.stop()
            raise

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
