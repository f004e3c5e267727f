"""Lag of several Kafka clusters: one `LagProbe` per cluster, each on its own clients, task and deadline.

The tapped cluster's probe stays the sidecar's own (its loop also checks the brokers for readiness);
each cluster of STREAMS_LAG_CLUSTERS gets a loop here. Every cycle's families are rendered by the usual
collector (streams/lag/metrics.py), given a `kafka_cluster` label, and merged with the other clusters'
last ones into the one text the scrape serves. A cluster that is down or slow costs its own loop at most
STREAMS_LAG_CLUSTER_TIMEOUT_SECONDS and never delays another cluster's figures.

The label is `kafka_cluster`, not `cluster`: the rules group by a Kubernetes target label `cluster`,
and Prometheus would rename a scraped `cluster` to `exported_cluster` (honor_labels off).
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, replace

from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from streams.cluster_settings import LagCluster
from streams.exposition import render
from streams.lag.metrics import lag_exposition
from streams.lag.model import LagSnapshot
from streams.lag.probe import LagProbe, probe_from_settings
from streams.settings import Settings

log = logging.getLogger(__name__)
LABEL = "kafka_cluster"
# The design document's series of the watched group: the tapped cluster's only, with the labels the
# design document, the recording rules and the worker alerts name exactly.
UNLABELLED = frozenset(
    {
        "ecomind_worker_kafka_lag",
        "ecomind_worker_kafka_lag_seconds",
        "ecomind_streams_lag_seconds_unknown",
        "ecomind_streams_watch_group_committed",
    }
)
# No consumer group is named so (a NUL byte): the extra clusters' probes have no watched group.
NO_WATCHED_GROUP = "\x00no-watched-group"
# A cluster that keeps failing is tried again after a pause that doubles up to this: each attempt builds
# clients anew, and aiokafka logs every refused connection at ERROR.
BACKOFF_MAX_S = 30.0


@dataclass
class Family:
    header: str  # its HELP and TYPE lines
    samples: list[str]  # blocks of sample lines, one per cluster, each ending with a newline


Families = dict[str, Family]
_METRIC_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
# The names a family's samples can have (prometheus_client's types): labelled with str.replace on
# "\n<sample name>{" and "\n<sample name> ", a few C passes over the block instead of a Python loop
# over 100,000 lines.
_SAMPLE_SUFFIXES = ("", "_total", "_created", "_bucket", "_sum", "_count", "_info", "_gsum", "_gcount")


def _label_pair(cluster: str) -> str:
    escaped = cluster.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'{LABEL}="{escaped}"'


def with_label(line: str, pair: str) -> str:
    """A sample line with `pair` as its first label; the others stay as written (already escaped)."""
    match = _METRIC_NAME.match(line)
    if match is None:
        return line
    end = match.end()
    if line[end : end + 1] == "{":
        rest = line[end + 1 :]
        return f"{line[: end + 1]}{pair}{'' if rest.startswith('}') else ','}{rest}"
    return f"{line[:end]}{{{pair}}}{line[end:]}"


def _family_with_label(name: str, lines: str, pair: str) -> str:
    """A family's sample lines (each ending with a newline), every one with `pair` as its first label."""
    out, wanted = "\n" + lines, lines.count("\n")
    for suffix in _SAMPLE_SUFFIXES:
        sample = f"\n{name}{suffix}"
        out = out.replace(sample + "{", f"{sample}{{{pair},").replace(sample + " ", f"{sample}{{{pair}}} ")
        if out.count(pair) == wanted:  # a gauge's lines are all done after the first suffix
            return out[1:].replace(f"{{{pair},}}", f"{{{pair}}}")
    # A sample name of no known type, or the pair's text inside a label value: line by line.
    return "".join(with_label(line, pair) + "\n" for line in lines.splitlines())


def labelled(text: str, cluster: str | None) -> Families:
    """An exposition split by family, every sample given the cluster's label (None: none) but UNLABELLED's."""
    pair = _label_pair(cluster) if cluster is not None else None
    families: Families = {}
    for rest in ("\n" + text).split("\n# HELP ")[1:]:  # [0]: what comes before the first family
        block = "# HELP " + rest + "\n"
        name = block.split(" ", 3)[2]
        cut = 0
        while block.startswith("#", cut):
            cut = block.find("\n", cut) + 1 or len(block)
        header, samples = block[:cut], block[cut:].rstrip("\n")
        samples = samples + "\n" if samples else ""
        if pair is not None and name not in UNLABELLED:
            samples = _family_with_label(name, samples, pair)
        family = families.setdefault(name, Family(header, []))
        if samples:
            family.samples.append(samples)
    return families


def merged(parts: Iterable[Families]) -> bytes:
    """Every cluster's families as one exposition: each family once (its first header), with the
    samples of all clusters, as the text format requires."""
    out: Families = {}
    for families in parts:
        for name, family in families.items():
            if name in out:
                out[name].samples.extend(family.samples)
            else:
                out[name] = Family(family.header, list(family.samples))
    return "".join(chunk for f in out.values() for chunk in (f.header, *f.samples)).encode()


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


def cluster_probe(settings: Settings, cluster: LagCluster) -> LagProbe:
    """Built as the tapped cluster's probe is (so every lag setting applies), on this cluster's clients."""
    own = replace(
        settings,
        bootstrap_servers=cluster.bootstrap_servers,
        kafka=cluster.kafka,
        watch_group=NO_WATCHED_GROUP,
        lag_groups=cluster.groups,
        lag_groups_ignore=cluster.groups_ignore,
    )
    return probe_from_settings(own, ClusterProbe)


class LagClusters:
    """Every cluster's health and last families; `publish` receives the merged text after each change."""

    def __init__(
        self,
        settings: Settings,
        publish: Callable[[bytes], None],
        exporting: Callable[[], bool],
        build: Callable[[Settings, LagCluster], LagProbe] = cluster_probe,
    ) -> None:
        self.settings = settings
        self.config = settings.lag_clusters
        self.timeout_s = self.config.timeout_seconds
        self.health = {name: ClusterHealth(name) for name in self.config.names}
        self._publish = publish
        self._exporting = exporting
        self._build = build
        self.probes: dict[str, LagProbe] = {}
        self._merging = asyncio.Lock()  # bound to the loop that first waits on it: the probes' own

    @property
    def tapped(self) -> str:
        return self.config.tapped_name

    async def measure(self, name: str, probe: LagProbe) -> LagSnapshot:
        """One bounded cycle of `name`'s probe; its families replace the cluster's last ones. Raises
        (TimeoutError included) after recording the cluster as down."""
        try:
            snapshot = await asyncio.wait_for(probe.measure(), self.timeout_s)
        except Exception as exc:
            await self.down(name, exc)
            raise
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
        """Merged and published on a worker thread (the publisher may compress ~7 MB there); one merge at
        a time, each over the clusters' families when it starts, so the newest is always published last."""
        async with self._merging:
            parts = [h.families for h in self.health.values()]
            health = render([HealthCollector(self.health.values())]).decode()
            await asyncio.to_thread(lambda: self._publish(merged([*parts, labelled(health, None)])))

    async def run(self) -> None:
        """The extra clusters' loops, until cancelled; each one's failures stay its own."""
        await asyncio.gather(*(self._loop(c) for c in self.config.extra))

    async def _loop(self, cluster: LagCluster) -> None:
        try:
            while True:
                if self._exporting():
                    await self._cycle(cluster)
                await asyncio.sleep(self.health[cluster.name].pause_s(self.settings.lag_interval_seconds))
        finally:
            # Also the probe of a cycle cancelled half-way (the sidecar stopping).
            probe = self.probes.pop(cluster.name, None)
            if probe is not None:
                await self._close(probe)

    async def _cycle(self, cluster: LagCluster) -> None:
        """A failed probe is closed and its clients built anew next cycle: a cycle cancelled by its
        deadline half-way leaves no state behind."""
        name = cluster.name
        probe = self.probes.get(name)
        try:
            if probe is None:
                try:
                    probe = self.probes[name] = self._build(self.settings, cluster)
                    await asyncio.wait_for(probe.start(), self.timeout_s)
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
