"""Lag of several Kafka clusters: one `LagProbe` per cluster, each on its own clients, thread, event loop
and deadline.

The tapped cluster's probe stays the sidecar's own (its loop, streams/lag/loops.py, also checks the
brokers for readiness); each cluster of STREAMS_LAG_CLUSTERS gets a loop here, on a thread and event
loop of its own (streams/lag/own_loop.py): aiokafka decoding one answer for thousands of partitions holds
its loop for up to a second, and on a shared loop that would hold every other cluster's cycle too.
Every cycle's families are rendered by the usual collector (streams/lag/metrics.py), given a
`kafka_cluster` label (streams/lag/cluster_label.py), and merged with the other clusters' last ones into
the one text the scrape serves. A cluster that is down, slow or busy decoding costs its own loop at most
STREAMS_LAG_CLUSTER_TIMEOUT_SECONDS (a blocking decode, its own duration) and never delays another
cluster's cycle.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, replace

from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from streams.cluster_settings import LagCluster
from streams.exposition import render
from streams.lag.cluster_label import LABEL, Families, labelled, merged
from streams.lag.metrics import lag_exposition
from streams.lag.model import LagSnapshot
from streams.lag.own_loop import LoopThread, wait_for
from streams.lag.probe import LagProbe, probe_from_settings
from streams.lag.scope import StaleMemory
from streams.lag.stale_store import StaleStore
from streams.settings import Settings

log = logging.getLogger(__name__)
# No consumer group is named so (a NUL byte): the extra clusters' probes have no watched group.
NO_WATCHED_GROUP = "\x00no-watched-group"
# A cluster that keeps failing is tried again after a pause that doubles up to this: each attempt builds
# clients anew, and aiokafka logs every refused connection at ERROR.
BACKOFF_MAX_S = 30.0
Build = Callable[[Settings, LagCluster, StaleMemory], LagProbe]


@dataclass
class ClusterHealth:
    name: str
    up: bool = False
    last_success_s: float | None = None
    families: Families = field(default_factory=dict)  # the last successful cycle's, kept while down
    error: str | None = None
    failures: int = 0  # in a row

    def pause_s(self, interval_s: float) -> float:
        return min(interval_s * (1 << min(self.failures, 16)), max(interval_s, BACKOFF_MAX_S))


class HealthCollector(Collector):
    def __init__(self, clusters: Iterable[ClusterHealth]) -> None:
        self.clusters = list(clusters)

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily(
            "ecomind_streams_lag_cluster_up",
            "1 when the cluster's last lag probe cycle completed in time, 0 when it failed, timed out or "
            "has not run (STREAMS_LAG_CLUSTERS).",
            labels=[LABEL],
        )
        success = GaugeMetricFamily(
            "ecomind_streams_lag_cluster_last_success_timestamp_seconds",
            "When the cluster's last completed lag probe cycle ended; absent until one has.",
            labels=[LABEL],
        )
        for c in self.clusters:
            up.add_metric([c.name], 1 if c.up else 0)
            if c.last_success_s is not None:
                success.add_metric([c.name], c.last_success_s)
        yield up
        yield success


class ClusterProbe(LagProbe):
    """A probe of a cluster probed for lag only: the groups its patterns select, and no watched group."""

    async def _group_names(self) -> list[str]:
        return [name for name in await super()._group_names() if name != self.watched_group]


def cluster_probe(settings: Settings, cluster: LagCluster, stale_memory: StaleMemory) -> LagProbe:
    """Built as the tapped cluster's probe is (so every lag setting applies), on this cluster's clients."""
    own = replace(
        settings,
        bootstrap_servers=cluster.bootstrap_servers,
        kafka=cluster.kafka,
        watch_group=NO_WATCHED_GROUP,
        lag_groups=cluster.groups,
        lag_groups_ignore=cluster.groups_ignore,
    )
    return probe_from_settings(own, ClusterProbe, stale_memory)


class LagClusters:
    """Every cluster's health, stale judgements and last families; `publish` receives the merged text
    after each change, on a worker thread of whichever cluster's loop made it."""

    def __init__(
        self,
        settings: Settings,
        publish: Callable[[bytes], None],
        exporting: Callable[[], bool],
        build: Build = cluster_probe,
        stale_store: StaleStore | None = None,
    ) -> None:
        self.settings = settings
        self.config = settings.lag_clusters
        self.timeout_s = self.config.timeout_seconds
        self.health = {name: ClusterHealth(name) for name in self.config.names}
        # One per cluster, handed to every probe built for it (the tapped one's too): see scope.py.
        self.stale: dict[str, StaleMemory] = {name: {} for name in self.config.names}
        self.stale_store = stale_store  # and in Redis, for the next exporter (stale_store.py)
        self._publish = publish
        self._exporting = exporting
        self._build = build
        self.probes: dict[str, LagProbe] = {}  # each key written by its own cluster's thread only
        self.threads = {c.name: LoopThread(f"lag-probe-{c.name}") for c in self.config.extra}
        # Merges come from several threads: one at a time, and one that finds its change already
        # merged by a later one skips (see _merge_now).
        self._merging = threading.Lock()
        self._counting = threading.Lock()
        self._changes = 0
        self._merged = 0

    @property
    def tapped(self) -> str:
        return self.config.tapped_name

    def start(self) -> None:
        """Each extra cluster's loop on a thread and event loop of its own."""
        for cluster in self.config.extra:
            self.threads[cluster.name].start(functools.partial(self._loop, cluster))

    async def stop(self, timeout_s: float) -> bool:
        """Cancels every extra cluster's loop and waits for all of them at once, `timeout_s` at most;
        False when one was left behind (a daemon thread)."""
        return all(await asyncio.gather(*(t.stop(timeout_s) for t in self.threads.values())))

    async def measure(self, name: str, probe: LagProbe) -> LagSnapshot:
        """One bounded cycle of `name`'s probe; its families replace the cluster's last ones. Raises
        (TimeoutError included) after recording the cluster as down."""
        if self.stale_store is not None:
            await self.stale_store.before(name, self.stale[name])
        try:
            snapshot = await wait_for(probe.measure(), self.timeout_s)
        except Exception as exc:
            await self.down(name, exc)
            raise
        if self.stale_store is not None:
            await self.stale_store.after(name, self.stale[name])
        text = await asyncio.to_thread(lag_exposition, snapshot, self.settings)
        families = await asyncio.to_thread(labelled, text.decode(), name)
        h = self.health[name]
        if not h.up:
            log.info("lag probe of cluster %s: measured %d groups", name, len(snapshot.groups))
        h.up, h.error, h.failures, h.last_success_s, h.families = True, None, 0, time.time(), families
        await self._merge()
        return snapshot

    async def down(self, name: str, why: BaseException | str) -> None:
        h = self.health[name]
        reason = why if isinstance(why, str) else (repr(why) if not str(why) else f"{type(why).__name__}: {why}")
        if h.up or h.error is None:
            log.warning("lag probe of cluster %s failed: %s", name, reason)
        h.up, h.error, h.failures = False, reason, h.failures + 1
        await self._merge()

    async def _merge(self) -> None:
        """Merged and published on a worker thread: the publisher may compress ~7 MB there."""
        await asyncio.to_thread(self._merge_now)

    def _merge_now(self) -> None:
        """Each merge reads every cluster's families when it starts, so the last one published holds the
        newest of each. A change counted before a merge started is in it: a caller whose change a merge
        already covered returns at once rather than merge the same figures again."""
        with self._counting:
            self._changes += 1
            mine = self._changes
        with self._merging:
            if self._merged >= mine:
                return
            with self._counting:
                upto = self._changes
            parts = [h.families for h in self.health.values()]
            health = render([HealthCollector(self.health.values())]).decode()
            self._publish(merged([*parts, labelled(health, None)]))
            self._merged = upto

    async def _loop(self, cluster: LagCluster) -> None:
        """One extra cluster's cycles, on its own thread's loop, until cancelled; its failures stay its own."""
        try:
            while True:
                if self._exporting():
                    await self._cycle(cluster)
                await asyncio.sleep(self.health[cluster.name].pause_s(self.settings.lag_interval_seconds))
        finally:
            # Also the probe of a cycle cancelled half-way (the sidecar stopping), on the loop it was built on.
            probe = self.probes.pop(cluster.name, None)
            if probe is not None:
                await self._close(probe)

    async def _cycle(self, cluster: LagCluster) -> None:
        """A failed probe is closed and its clients built anew next cycle: a cycle cancelled by its
        deadline half-way leaves no state behind but the cluster's stale judgements (self.stale)."""
        name = cluster.name
        probe = self.probes.get(name)
        try:
            if probe is None:
                try:
                    probe = self.probes[name] = self._build(self.settings, cluster, self.stale[name])
                    await wait_for(probe.start(), self.timeout_s)
                except Exception as exc:
                    await self.down(name, exc)
                    raise
            await self.measure(name, probe)  # records its own failure
        except asyncio.CancelledError:
            raise
        except Exception:
            failed = self.probes.pop(name, None)
            if failed is not None:
                await self._close(failed)

    async def _close(self, probe: LagProbe) -> None:
        try:
            await asyncio.wait_for(probe.stop(), self.timeout_s)
        except Exception as exc:
            log.debug("closing a lag probe failed: %r", exc)
