"""Lag families from a snapshot: exact series, unknown ages visible, no stale or negative series."""

import pytest

from streams.exposition import render
from streams.lag.metrics import LagCollector, LagExport
from streams.lag.model import GroupLag, LagSnapshot, PartitionLag
from streams.local.scrape import Samples, parse, series, value
from streams.settings import Settings, SettingsError, lag_slo_rules


def snap() -> LagSnapshot:
    worker = GroupLag(
        "worker",
        "Stable",
        2,
        (
            PartitionLag("raw", 0, True, 6, 120.5),
            PartitionLag("raw", 1, True, 4, None),  # its first record could not be read in time
            PartitionLag("raw", 2, False, 0, 0.0),
        ),
    )
    sink = GroupLag(
        "sink-s3",
        "Empty",
        0,
        (PartitionLag("raw", 0, True, 0, 0.0), PartitionLag("enriched", 0, True, 3, 7.0)),
    )
    silent = GroupLag("silent", "Stable", 1, (PartitionLag("raw", 0, False, 9, 30.0),))
    return LagSnapshot({"worker": worker, "sink-s3": sink, "silent": silent}, "worker", 1_800_000_000.0, 0.25)


def rows(m: Samples, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    return {tuple(sorted(labels)): v for labels, v in series(m, name).items()}


def scrape(export: LagExport | None = None, lag: LagSnapshot | None = None) -> Samples:
    return parse(render([LagCollector(lag if lag is not None else snap(), "worker", export)]).decode())


def test_watched_group_keeps_the_design_documents_series() -> None:
    m = scrape()
    assert rows(m, "ecomind_worker_kafka_lag") == {
        (("partition", "0"), ("topic", "raw")): 6.0,
        (("partition", "1"), ("topic", "raw")): 4.0,
        (("partition", "2"), ("topic", "raw")): 0.0,
    }
    # The unknown age is absent, never 0, and flagged; the alert reads the flag.
    assert value(m, "ecomind_worker_kafka_lag_seconds", topic="raw", partition="0") == 120.5
    assert value(m, "ecomind_worker_kafka_lag_seconds", topic="raw", partition="1") is None
    assert value(m, "ecomind_worker_kafka_lag_seconds", topic="raw", partition="2") == 0.0
    assert value(m, "ecomind_streams_lag_seconds_unknown", topic="raw", partition="1") == 1.0
    assert value(m, "ecomind_streams_lag_seconds_unknown", topic="raw", partition="0") == 0.0
    assert value(m, "ecomind_streams_watch_group_committed", topic="raw", partition="2") == 0.0
    assert value(m, "ecomind_streams_lag_probe_timestamp_seconds") == 1_800_000_000.0
    assert value(m, "ecomind_streams_lag_probe_duration_seconds") == 0.25
    assert value(m, "ecomind_streams_lag_probe_interval_seconds") == 5.0


def test_every_group_per_partition() -> None:
    m = scrape()
    assert value(m, "ecomind_consumergroup_lag", group="sink-s3", topic="enriched", partition="0") == 3.0
    assert value(m, "ecomind_consumergroup_lag_seconds", group="sink-s3", topic="enriched", partition="0") == 7.0
    assert value(m, "ecomind_consumergroup_lag_seconds", group="worker", topic="raw", partition="1") is None
    assert value(m, "ecomind_consumergroup_lag_seconds_unknown", group="worker", topic="raw", partition="1") == 1.0
    assert len(series(m, "ecomind_consumergroup_lag")) == 6
    assert value(m, "ecomind_consumergroup_members", group="worker") == 2.0
    assert value(m, "ecomind_consumergroup_committed_partitions", group="silent") == 0.0
    assert value(m, "ecomind_consumergroup_committed_partitions", group="worker") == 2.0
    assert value(m, "ecomind_consumergroup_partitions", group="worker") == 3.0
    states = {k: v for k, v in series(m, "ecomind_consumergroup_state").items() if ("group", "sink-s3") in k}
    assert len(states) == 8 and sum(states.values()) == 1.0  # every state of both group protocols
    assert value(m, "ecomind_consumergroup_state", group="sink-s3", state="Empty") == 1.0
    for v in series(m, "ecomind_consumergroup_lag").values():
        assert v >= 0


def test_topic_granularity_sums_messages_and_keeps_the_oldest_age() -> None:
    m = scrape(LagExport("topic"))
    assert rows(m, "ecomind_consumergroup_lag") == {
        (("group", "silent"), ("topic", "raw")): 9.0,
        (("group", "sink-s3"), ("topic", "enriched")): 3.0,
        (("group", "sink-s3"), ("topic", "raw")): 0.0,
        (("group", "worker"), ("topic", "raw")): 10.0,
    }
    assert value(m, "ecomind_consumergroup_lag_seconds", group="worker", topic="raw") is None  # one unknown
    assert value(m, "ecomind_consumergroup_lag_seconds_unknown", group="worker", topic="raw") == 1.0
    assert value(m, "ecomind_consumergroup_lag_seconds", group="silent", topic="raw") == 30.0
    # The design document's series stay per partition.
    assert len(series(m, "ecomind_worker_kafka_lag")) == 3


def test_slo_per_group_from_the_settings() -> None:
    export = LagExport.from_settings(
        Settings.from_env(
            {"STREAMS_LAG_SLO_SECONDS": "worker=10, sink-.*=300", "STREAMS_LAG_SLO_DEFAULT_SECONDS": "90"}
        )
    )
    m = scrape(export)
    assert rows(m, "ecomind_consumergroup_lag_slo_seconds") == {
        (("group", "silent"),): 90.0,
        (("group", "sink-s3"),): 300.0,
        (("group", "worker"),): 10.0,
    }


def test_a_group_gone_from_the_snapshot_has_no_series() -> None:
    lag = snap()
    del lag.groups["sink-s3"]
    m = scrape(lag=lag)
    assert not [k for k in series(m, "ecomind_consumergroup_lag") if ("group", "sink-s3") in k]
    assert not [k for k in series(m, "ecomind_consumergroup_state") if ("group", "sink-s3") in k]


def test_no_snapshot_yet_no_values() -> None:
    m = parse(render([LagCollector(None, "worker")]).decode())
    assert rows(m, "ecomind_worker_kafka_lag") == {}
    assert value(m, "ecomind_streams_lag_probe_timestamp_seconds") is None


def test_lag_settings_defaults() -> None:
    s = Settings.from_env({})
    assert (s.lag_groups, s.lag_groups_ignore, s.lag_granularity) == (None, None, "partition")
    assert (s.lag_fetch_timeout_ms, s.lag_slo_seconds, s.lag_slo_default_seconds) == (2000, "", 60.0)
    s = Settings.from_env({"STREAMS_LAG_GROUPS": "sink-.*", "STREAMS_LAG_GRANULARITY": "topic"})
    assert (s.lag_groups, s.lag_granularity) == ("sink-.*", "topic")
    assert [(p.pattern, v) for p, v in lag_slo_rules("a=1, b.*=2.5")] == [("a", 1.0), ("b.*", 2.5)]
    assert lag_slo_rules("") == ()


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"STREAMS_LAG_GROUPS": "sink-("}, "STREAMS_LAG_GROUPS='sink-(': expected a regular expression"),
        ({"STREAMS_LAG_GROUPS_IGNORE": "*"}, "STREAMS_LAG_GROUPS_IGNORE='*': expected a regular expression"),
        ({"STREAMS_LAG_GRANULARITY": "group"}, "STREAMS_LAG_GRANULARITY='group': expected one of PARTITION, TOPIC"),
        ({"STREAMS_LAG_FETCH_TIMEOUT_MS": "5"}, "STREAMS_LAG_FETCH_TIMEOUT_MS='5': expected an integer from 100"),
        ({"STREAMS_LAG_SLO_SECONDS": "worker"}, "STREAMS_LAG_SLO_SECONDS='worker': expected comma-separated"),
        ({"STREAMS_LAG_SLO_SECONDS": "worker=-1"}, "STREAMS_LAG_SLO_SECONDS='worker=-1': expected comma-separated"),
        ({"STREAMS_LAG_SLO_SECONDS": "(=5"}, "STREAMS_LAG_SLO_SECONDS='(=5': expected comma-separated"),
        ({"STREAMS_LAG_SLO_DEFAULT_SECONDS": "0"}, "STREAMS_LAG_SLO_DEFAULT_SECONDS='0': expected a number"),
    ],
)
def test_bad_lag_settings_name_the_variable(env: dict[str, str], message: str) -> None:
    with pytest.raises(SettingsError) as caught:
        Settings.from_env(env)
    assert message in str(caught.value)


@pytest.mark.parametrize(
    ("broker_state", "exported"),
    [
        ("Reconciling", "Reconciling"),
        ("Assigning", "Assigning"),
        ("CompletingRebalance", "CompletingRebalance"),
        ("Shuffling", "Unknown"),
    ],
)
def test_consumer_protocol_states_are_exported_as_the_broker_spells_them(broker_state: str, exported: str) -> None:
    modern = GroupLag("modern", broker_state, 2, (PartitionLag("raw", 0, True, 4, 3.0),))
    m = scrape(lag=LagSnapshot({"modern": modern}, "worker", 1_800_000_000.0, 0.25))
    states = {dict(k)["state"]: v for k, v in series(m, "ecomind_consumergroup_state").items()}
    assert {s for s, v in states.items() if v == 1.0} == {exported}
    assert value(m, "ecomind_consumergroup_members", group="modern") == 2.0
