"""Collectors that build metric families at scrape time from state handed to them.

Business families come from the shared tables and are exported by the one replica that holds the
exporter lease, so `sum()` over replicas is the fleet total (the lag families: streams/lag/metrics.py).
Replica families describe the process that answers the scrape.
"""

from __future__ import annotations

import platform
from collections.abc import Iterable, Iterator, Mapping
from functools import cache
from importlib.metadata import PackageNotFoundError, version

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from core.compiled import hot_path
from core.status import Status
from streams.exposition import RowsFamily
from tables.delta import DELAY_BUCKETS_SECONDS
from tables.snapshot import Snapshot


@cache  # read from the installed metadata on disk: a tenth of a 10,000-org scrape's CPU when read per scrape
def _version(package: str) -> str:
    try:
        return version(package)
    except PackageNotFoundError:
        return "unknown"


class BusinessCollector(Collector):
    def __init__(self, snap: Snapshot, topics: Iterable[str]) -> None:
        self.snap = snap
        self.topics = list(topics)

    def collect(self) -> Iterator[Metric]:
        s = self.snap
        yield _labelled_counter(
            "ecomind_events_ingested", "Valid raw events ingested.", ("org_id", "provider"), s.ingested
        )
        yield _labelled_counter(
            "ecomind_api_calls", "LLM API calls seen in valid raw events.", ("org_id", "model"), s.calls
        )
        yield GaugeMetricFamily(
            "ecomind_daily_active_orgs", "Distinct orgs with a raw event today.", value=s.active_orgs
        )
        yield GaugeMetricFamily(
            "ecomind_daily_active_users",
            "Distinct (org_id, user_id) pairs with a raw event today.",
            value=s.active_users,
        )
        yield _labelled_gauge("ecomind_total_kwh_today", "Energy of today's enriched events, kWh.", s.kwh)
        yield _labelled_gauge("ecomind_total_co2_kg_today", "CO2 of today's enriched events, kg.", s.co2_kg)
        yield from self._second_set()
        folded = CounterMetricFamily(
            "ecomind_streams_label_values_folded",
            'Distinct label values seen beyond the series cap, exported as "__other__".',
            labels=["label"],
        )
        for label, n in sorted(s.folded.items()):
            folded.add_metric([label], n)
        yield folded
        unreadable = GaugeMetricFamily(
            "ecomind_streams_state_values_unreadable",
            "Stored values this scrape left out because they are not numbers (something else wrote them), "
            "by table: their series are missing until the value is repaired.",
            labels=["table"],
        )
        for table, n in sorted(s.unreadable.items()):
            unreadable.add_metric([table], n)
        yield unreadable
        yield from self._pipeline()

    def _second_set(self) -> Iterator[Metric]:
        """Rolling windows, users per org, tokens and energy by model (docs/business-metrics.md)."""
        s = self.snap
        for name, doc, n in (
            (
                "ecomind_weekly_active_users",
                "Distinct (org_id, user_id) with a raw event in the 7 local days to today.",
                s.weekly_active_users,
            ),
            (
                "ecomind_monthly_active_users",
                "Distinct (org_id, user_id) with a raw event in the 30 local days to today.",
                s.monthly_active_users,
            ),
            (
                "ecomind_weekly_active_orgs",
                "Distinct orgs with a raw event in the 7 local days to today.",
                s.weekly_active_orgs,
            ),
            (
                "ecomind_monthly_active_orgs",
                "Distinct orgs with a raw event in the 30 local days to today.",
                s.monthly_active_orgs,
            ),
        ):
            yield GaugeMetricFamily(name, doc, value=n)
        yield _labelled_gauge(
            "ecomind_org_active_users_today", "Distinct users of the org with a raw event today.", s.org_active_users
        )
        yield RowsFamily(
            "ecomind_tokens_today",
            "Tokens of today's valid raw events.",
            "gauge",
            ("org_id", "direction"),
            sorted(s.tokens.items()),
        )
        for name, doc, values in (
            ("ecomind_model_kwh_today", "Energy of today's enriched events by model, kWh.", s.model_kwh),
            ("ecomind_model_co2_kg_today", "CO2 of today's enriched events by model, kg.", s.model_co2_kg),
        ):
            yield RowsFamily(name, doc, "gauge", ("provider", "model"), sorted(values.items()))

    def _pipeline(self) -> Iterator[Metric]:
        s = self.snap
        processed = CounterMetricFamily(
            "ecomind_streams_events_processed", "Valid events folded into the tables.", labels=["topic"]
        )
        late = CounterMetricFamily(
            "ecomind_streams_events_dropped_late",
            "Valid events older than the days kept: counted, but in no daily window.",
            labels=["topic"],
        )
        last = GaugeMetricFamily(
            "ecomind_streams_last_event_timestamp_seconds",
            "Broker timestamp of the newest record folded, per topic.",
            labels=["topic"],
        )
        late_windows = CounterMetricFamily(
            "ecomind_streams_events_dropped_late_windows",
            "Valid raw events older than the 30 local days the rolling windows reach: in no window.",
            labels=["topic"],
        )
        for topic in self.topics:
            processed.add_metric([topic], s.processed.get(topic, 0))
            late.add_metric([topic], s.dropped_late.get(topic, 0))
            late_windows.add_metric([topic], s.dropped_late_windows.get(topic, 0))
            if topic in s.last_ts_ms:
                last.add_metric([topic], s.last_ts_ms[topic] / 1000)
        yield processed
        yield late
        yield late_windows
        yield last
        invalid = CounterMetricFamily(
            "ecomind_streams_events_invalid", "Records rejected, by reason.", labels=["topic", "reason"]
        )
        for (topic, reason), n in sorted(s.invalid.items()):
            invalid.add_metric([topic, reason], n)
        yield invalid
        yield _delay_histogram(s.delay_buckets, s.delay_sum_ms)


class ReplicaCollector(Collector):
    def __init__(self, status: Status) -> None:
        self.status = status

    def collect(self) -> Iterator[Metric]:
        st = self.status
        info = GaugeMetricFamily(
            "ecomind_streams_build_info",
            "Build of this replica (hot_path: compiled by mypyc, or the Python sources); always 1.",
            labels=["version", "python_version", "faust_version", "aiokafka_version", "hot_path"],
        )
        versions = [_version("ecomind-streams"), platform.python_version(), _version("faust-streaming")]
        info.add_metric([*versions, _version("aiokafka"), hot_path()], 1)
        yield info
        for name, doc, value in (
            (
                "ecomind_streams_ready",
                "1 when every readiness check passes (key layout in use, tables recovered and caught up, "
                "broker and Redis reachable, eviction policy safe); /ready names them.",
                st.ready,
            ),
            (
                "ecomind_streams_layout_refused",
                "1 while this replica waits beside another key layout's state (reads and exports nothing).",
                st.layout_refusal is not None,
            ),
            ("ecomind_streams_tables_recovering", "1 while the replica positions its partitions.", st.recovering),
            (
                "ecomind_streams_broker_up",
                "1 when Kafka metadata answers and every broker listed accepts a connection.",
                st.broker_ok,
            ),
            ("ecomind_streams_redis_up", "1 when the last Redis request succeeded.", st.redis_ok),
            ("ecomind_streams_exporter_leader", "1 on the replica holding the exporter lease.", st.leader),
            (
                "ecomind_streams_exporting",
                "1 when this response carries the business series (the lease held and the hand-over over).",
                st.exporting,
            ),
            (
                "ecomind_streams_redis_eviction_policy_ok",
                "1 when Redis's maxmemory-policy is noeviction (or the check is off); else not ready.",
                st.redis_policy_ok,
            ),
        ):
            yield GaugeMetricFamily(name, doc, value=1 if value else 0)
        assigned = GaugeMetricFamily(
            "ecomind_streams_assigned_partitions", "Input partitions held by this replica.", labels=["topic"]
        )
        for topic, n in sorted(st.assigned.items()):
            assigned.add_metric([topic], n)
        yield assigned
        yield GaugeMetricFamily(
            "ecomind_streams_rewound_partitions",
            "Partitions re-reading records after Redis came back empty or from an older snapshot.",
            value=st.rewound_partitions,
        )
        stalled = GaugeMetricFamily(
            "ecomind_streams_partition_stalled",
            "1 for an input partition paused: its records cannot be read, or Redis refused its batch (reason).",
            labels=["topic", "partition", "reason"],
        )
        for (topic, partition), stall in sorted(st.stalled.items()):
            stalled.add_metric([topic, str(partition), stall.reason], 1)
        yield stalled
        yield _counter_by(
            "ecomind_streams_offset_resets",
            "Partitions whose stored offset the log no longer held, and the rule applied.",
            ["topic", "reason"],
            {(t, r): n for (t, r), n in st.offset_resets.items()},
        )
        yield _counter_by(
            "ecomind_streams_offsets_skipped",
            "Offsets removed from a log (retention) before they were read: records never counted.",
            ["topic"],
            {(t,): n for t, n in st.records_skipped.items()},
        )
        yield _counter_by(
            "ecomind_streams_topics_recreated",
            "Input topics found deleted and created again (a new topic ID under the stored offsets): read anew.",
            ["topic"],
            {(t,): n for t, n in st.topics_recreated.items()},
        )
        yield _counter_by(
            "ecomind_streams_state_writes_refused",
            "Batch writes Redis refused, by reason (a key of another type, a stored value that is not a number, "
            "a script error): the batch's partitions are paused and written again after a back-off.",
            ["reason"],
            {(r,): n for r, n in st.writes_refused.items()},
        )
        yield _counter_by(
            "ecomind_streams_dead_letters_dropped",
            "Invalid records not forwarded to the dead-letter topic after bounded attempts (still in their topic).",
            ["reason"],
            {(r,): n for r, n in st.dead_letters_dropped.items()},
        )
        yield GaugeMetricFamily(
            "ecomind_streams_brokers_unreachable",
            "Brokers in the cluster metadata that refused a connection at the last check.",
            value=st.brokers_unreachable,
        )
        for name, doc, count in (
            ("ecomind_streams_batches", "Batches written to the tables.", st.batches),
            (
                "ecomind_streams_records_folded",
                "Records this process folded, valid or not; a record folded again after a crash counts again.",
                st.records_folded,
            ),
            (
                "ecomind_streams_batch_conflicts",
                "Batches refused because their partition's stored offset had moved.",
                st.batch_conflicts,
            ),
            ("ecomind_streams_redis_errors", "Failed Redis writes (retried).", st.redis_errors),
            (
                "ecomind_streams_fetch_errors",
                "Kafka fetches that failed (an unreadable batch, a broker error); the partitions are read again.",
                st.fetch_errors,
            ),
            (
                "ecomind_streams_assignment_failures",
                "Times the assigned partitions could not be positioned at their stored offsets (tried again).",
                st.assignment_failures,
            ),
            (
                "ecomind_streams_state_rewinds",
                "Times the stored offsets moved under this replica (Redis restarted empty or older).",
                st.state_rewinds,
            ),
            ("ecomind_streams_dead_letters", "Invalid records forwarded to the dead-letter topic.", st.dead_letters),
            (
                "ecomind_streams_dead_letter_errors",
                "Failed dead-letter writes (retried before the batch is applied).",
                st.dead_letter_errors,
            ),
        ):
            yield CounterMetricFamily(name, doc, value=count)


def _counter_by(name: str, doc: str, labels: list[str], values: dict[tuple[str, ...], int]) -> RowsFamily:
    return RowsFamily(name, doc, "counter", labels, sorted(values.items()))


def _labelled_counter(name: str, doc: str, labels: tuple[str, str], values: dict[tuple[str, str], int]) -> RowsFamily:
    # The snapshot's keys are already the label values, in the labels' order: rows without copies.
    return RowsFamily(name, doc, "counter", labels, sorted(values.items()))


def _labelled_gauge(name: str, doc: str, values: Mapping[str, float]) -> RowsFamily:
    return RowsFamily(name, doc, "gauge", ("org_id",), [((org,), amount) for org, amount in sorted(values.items())])


def _delay_histogram(buckets: list[int], sum_ms: int) -> HistogramMetricFamily:
    cumulative = []
    running = 0
    for bound, n in zip([*DELAY_BUCKETS_SECONDS, float("inf")], buckets, strict=True):
        running += n
        cumulative.append(("+Inf" if bound == float("inf") else repr(bound), running))
    return HistogramMetricFamily(
        "ecomind_streams_enrichment_delay_seconds",
        "Enriched record's broker time minus the raw event's ts: the worker-lag SLO's indicator.",
        buckets=cumulative,
        sum_value=sum_ms / 1000,
    )
