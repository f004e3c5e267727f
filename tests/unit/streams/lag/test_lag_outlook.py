"""Retention margin and time to catch up as tables: configs, margins, rates over a window, the families."""

import math
from typing import Any

import pytest
from aiokafka import TopicPartition
from aiokafka.errors import KafkaConnectionError

from streams.exposition import render
from streams.lag.metrics import LagCollector, LagExport
from streams.lag.model import Figures, GroupLag, LagSnapshot, PartitionLag
from streams.lag.outlook import Outlook, OutlookSettings
from streams.lag.rates import RateWindow, Sample, advance, catch_up_seconds
from streams.lag.retention import (
    DescribeLogDirsResponse_v1,
    TopicRetention,
    partition_sizes,
    record_bytes,
    size_margin,
    time_margin,
    topic_retention,
)
from streams.settings import Settings, SettingsError

DAY = TopicRetention(86_400_000, None)
T0, T1 = TopicPartition("t", 0), TopicPartition("t", 1)


@pytest.mark.parametrize(
    ("entries", "expected"),
    [
        ({"cleanup.policy": "delete", "retention.ms": "604800000", "retention.bytes": "-1"}, (604_800_000, None, True)),
        ({"cleanup.policy": "delete", "retention.ms": "-1", "retention.bytes": "-1"}, (None, None, True)),
        (
            {"cleanup.policy": "compact", "retention.ms": "604800000", "retention.bytes": "-1"},
            (604_800_000, None, False),
        ),
        ({"cleanup.policy": "compact,delete", "retention.ms": "1000", "retention.bytes": "5000"}, (1000, 5000, True)),
        ({"cleanup.policy": "delete, compact", "retention.ms": "0"}, (0, None, True)),
        ({}, (None, None, True)),  # nothing answered: nothing expires as far as the probe knows
    ],
)
def test_topic_retention_from_describe_configs(entries: dict[str, str], expected: tuple[object, ...]) -> None:
    r = topic_retention(entries)
    assert (r.retention_ms, r.retention_bytes, r.deletes) == expected


@pytest.mark.parametrize(
    ("retention", "lag_messages", "lag_seconds", "margin"),
    [
        (DAY, 3, 7200.0, 79_200.0),  # ts + retention - now = retention - age
        (DAY, 3, 0.0, 86_400.0),
        (DAY, 3, 90_000.0, 0.0),  # past retention, segment not deleted yet: may go at any moment
        (DAY, 0, 0.0, None),  # nothing unread
        (DAY, 3, None, None),  # age unknown: so is the margin
        (TopicRetention(None, None), 3, 10.0, None),  # retention.ms=-1
        (TopicRetention(86_400_000, None, deletes=False), 3, 10.0, None),  # compacted only
        (TopicRetention(0, None), 3, 10.0, 0.0),
    ],
)
def test_time_margin(retention: TopicRetention, lag_messages: int, lag_seconds: float | None, margin: float) -> None:
    assert time_margin(retention, lag_messages, lag_seconds) == margin


SIZED = TopicRetention(None, 1_000_000)


@pytest.mark.parametrize(
    ("retention", "lag_messages", "bytes_per_record", "produced", "margin"),
    [
        (SIZED, 100, 1000.0, 10.0, 90.0),  # 1,000 records fit, 100 unread, 900 more at 10/s
        (SIZED, 1000, 1000.0, 10.0, 0.0),  # unread fills the limit already
        (SIZED, 2000, 1000.0, 10.0, 0.0),
        (SIZED, 100, 1000.0, 0.0, None),  # no producer: nothing pushes the record out
        (SIZED, 100, 1000.0, None, None),  # no rate yet
        (SIZED, 100, None, 10.0, None),  # no size known
        (SIZED, 0, 1000.0, 10.0, None),  # nothing unread
        (TopicRetention(None, None), 100, 1000.0, 10.0, None),
        (TopicRetention(None, 1_000_000, deletes=False), 100, 1000.0, 10.0, None),
        (TopicRetention(60_000, 500_000), 100, 250.0, 50.0, 38.0),  # both limits: this is the size one
    ],
)
def test_size_margin(
    retention: TopicRetention,
    lag_messages: int,
    bytes_per_record: float | None,
    produced: float | None,
    margin: float | None,
) -> None:
    assert size_margin(retention, lag_messages, bytes_per_record, produced) == margin


@pytest.mark.parametrize(
    ("size", "start", "end", "average"),
    [(10_500, 0, 10, 1050.0), (10_500, 5, 15, 1050.0), (0, 4, 4, None), (None, 0, 10, None), (300, 7, 3, None)],
)
def test_record_bytes(size: int | None, start: int, end: int, average: float | None) -> None:
    assert record_bytes(size, start, end) == average


def test_partition_sizes_take_the_largest_replica_and_skip_errors_and_future_replicas() -> None:
    def answer(*results: tuple[int, str, list[tuple[str, list[tuple[int, int, int, bool]]]]]) -> object:
        return DescribeLogDirsResponse_v1(0, list(results))

    broker1 = answer((0, "/d1", [("t", [(0, 900, 0, False), (1, 50, 0, False)])]), (57, "/bad", []))
    broker2 = answer((0, "/d2", [("t", [(0, 1000, 0, False), (1, 9999, 0, True)])]))
    assert partition_sizes([broker1, broker2]) == {T0: 1000, T1: 50}


@pytest.mark.parametrize(
    ("lag", "rate", "cap", "seconds"),
    [
        (0, None, 100.0, 0.0),  # caught up: 0 even before a rate is known
        (0, 0.0, 100.0, 0.0),
        (50, 10.0, 100.0, 5.0),
        (50, None, 100.0, None),  # one sample only
        (50, 0.0, 100.0, math.inf),  # waiting and not consuming
        (5000, 1.0, 100.0, 100.0),  # capped
    ],
)
def test_catch_up_seconds(lag: int, rate: float | None, cap: float, seconds: float | None) -> None:
    assert catch_up_seconds(lag, rate, cap) == seconds


@pytest.mark.parametrize(
    ("before", "after", "gained"),
    [
        ({T0: 10, T1: 20}, {T0: 15, T1: 30}, 15),
        ({T0: 10}, {T0: 15, T1: 30}, 5),  # T1's first commit: its advance is unknown, not 30
        ({T0: 10, T1: 20}, {T0: 5, T1: 30}, 10),  # T0 reset back: gains nothing, does not cancel T1
        ({}, {T0: 5}, None),
    ],
)
def test_advance(before: dict[TopicPartition, int], after: dict[TopicPartition, int], gained: int | None) -> None:
    assert advance(before, after, [T0, T1]) == gained


def sample(at: float, offset: int | None, end: int) -> Sample:
    return Sample(at, {} if offset is None else {"g": {T0: offset}}, {T0: end})


def test_rate_window_uses_the_newest_sample_a_window_old() -> None:
    w = RateWindow(10.0)
    w.add(sample(0.0, 0, 100))
    assert w.consumed_per_s("g", [T0]) is None
    w.add(sample(5.0, 50, 150))
    assert w.consumed_per_s("g", [T0]) == 10.0 and w.produced_per_s(T0) == 10.0
    w.add(sample(12.0, 60, 150))  # 0 s is still the baseline: 5 s is not a window old yet
    assert w.consumed_per_s("g", [T0]) == 5.0 and w.produced_per_s(T0) == 50 / 12
    w.add(sample(16.0, 100, 150))  # 5 s is the newest at least 10 s old: (100 - 50) / 11
    assert w.consumed_per_s("g", [T0]) == 50 / 11
    w.add(sample(20.0, None, 150))  # the group is gone: no rate rather than a guess
    assert w.consumed_per_s("g", [T0]) is None


def test_rate_window_needs_two_samples() -> None:
    w = RateWindow(10.0)
    assert w.consumed_per_s("g", [T0]) is None and w.produced_per_s(T0) is None
    w.add(sample(1.0, 5, 10))
    assert w.consumed_per_s("g", [T0]) is None and w.produced_per_s(T0) is None


def lag(topic: str, partition: int, messages: int, seconds: float | None) -> PartitionLag:
    return PartitionLag(topic, partition, True, messages, seconds)


def test_outlook_figures_per_partition_and_per_topic_families() -> None:
    o = Outlook(OutlookSettings(rate_window_s=10.0, catch_up_cap_s=1000.0))
    o.retention = {"t": TopicRetention(3_600_000, 1_000_000), "forever": TopicRetention(None, None)}
    o.record_bytes = {T0: 1000.0, T1: 1000.0}
    o.rates.add(Sample(0.0, {"g": {T0: 0, T1: 0, TopicPartition("forever", 0): 0}}, {T0: 100, T1: 100}))
    o.rates.add(Sample(10.0, {"g": {T0: 50, T1: 10, TopicPartition("forever", 0): 0}}, {T0: 200, T1: 100}))
    g = GroupLag(
        "g",
        "Stable",
        1,
        (lag("t", 0, 150, 600.0), lag("t", 1, 90, None), lag("forever", 0, 7, 30.0)),
    )
    never = GroupLag("never", "Stable", 1, (PartitionLag("t", 0, False, 200, 3500.0),))
    snap = LagSnapshot({"g": g, "never": never}, "g", 0.0)
    snap.outlook = o.figures([g, never])
    assert snap.outlook.margins == {
        ("g", "t", 0, "time"): 3000.0,
        ("g", "t", 0, "size"): (1000 - 150) / 10.0,  # T0 produced 100 records in 10 s
    }
    # 240 waiting on t, consumed at 6/s; nothing consumed on forever with 7 waiting. "never" has no
    # commit: no margin (its log start is always next to go), no rate.
    assert snap.outlook.catch_up == {("g", "t"): 40.0, ("g", "forever"): math.inf}
    per_partition = render([LagCollector(snap, "g")]).decode()
    assert 'ecomind_consumergroup_retention_margin_seconds{basis="size",group="g",partition="0",topic="t"} 85.0' in (
        per_partition
    )
    assert 'ecomind_consumergroup_catch_up_seconds{group="g",topic="forever"} +Inf' in per_partition
    per_topic = render([LagCollector(snap, "g", LagExport(granularity="topic"))]).decode()
    assert 'ecomind_consumergroup_retention_margin_seconds{basis="time",group="g",topic="t"} 3000.0' in per_topic
    assert 'ecomind_consumergroup_catch_up_seconds{group="g",topic="t"} 40.0' in per_topic


def test_per_topic_margin_is_the_lowest_partition_of_each_basis() -> None:
    figures = Figures(margins={("g", "t", 0, "time"): 50.0, ("g", "t", 1, "time"): 20.0, ("g", "t", 1, "size"): 70.0})
    text = render([LagCollector(LagSnapshot({}, "g", 0.0, outlook=figures), "g", LagExport("topic"))]).decode()
    assert 'retention_margin_seconds{basis="time",group="g",topic="t"} 20.0' in text
    assert 'retention_margin_seconds{basis="size",group="g",topic="t"} 70.0' in text


def test_settings_defaults_and_bounds() -> None:
    s = Settings.from_env({})
    assert (s.lag_rate_window_seconds, s.lag_retention_refresh_seconds, s.lag_catch_up_cap_seconds) == (
        60.0,
        300.0,
        604_800.0,
    )
    s = Settings.from_env({"STREAMS_LAG_RATE_WINDOW_SECONDS": "120", "STREAMS_LAG_CATCH_UP_CAP_SECONDS": "3600"})
    assert (s.lag_rate_window_seconds, s.lag_catch_up_cap_seconds) == (120.0, 3600.0)


@pytest.mark.parametrize(
    "env",
    [
        {"STREAMS_LAG_RATE_WINDOW_SECONDS": "0"},
        {"STREAMS_LAG_RATE_WINDOW_SECONDS": "soon"},
        {"STREAMS_LAG_RETENTION_REFRESH_SECONDS": "-5"},
        {"STREAMS_LAG_CATCH_UP_CAP_SECONDS": "0"},
    ],
)
def test_bad_settings_name_the_variable(env: dict[str, str]) -> None:
    with pytest.raises(SettingsError) as caught:
        Settings.from_env(env)
    assert next(iter(env)) in str(caught.value)


class ConfigAdmin:
    """Answers DescribeConfigs like a broker: one response for all topic resources of a request."""

    def __init__(self, configs: dict[str, dict[str, str]]) -> None:
        self.configs = configs
        self.asked: list[list[str]] = []

    async def describe_configs(self, resources: list[Any]) -> list[Any]:
        self.asked.append([r.name for r in resources])
        answers = [
            (0 if r.name in self.configs else 3, None, 2, r.name, list(self.configs.get(r.name, {}).items()))
            for r in resources
        ]
        return [type("Answer", (), {"resources": answers})()]


async def test_configs_are_read_in_one_request_and_again_only_after_the_refresh(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    clock = [1000.0]
    monkeypatch.setattr("streams.lag.outlook.time.monotonic", lambda: clock[0])
    admin = ConfigAdmin({"a": {"retention.ms": "60000"}, "b": {"retention.ms": "-1"}})
    o = Outlook(OutlookSettings(rate_window_s=10.0, retention_refresh_s=300.0))
    g = GroupLag("g", "Stable", 1, (lag("a", 0, 5, 20.0), lag("b", 0, 5, 20.0), lag("gone", 0, 5, 20.0)))

    async def cycle() -> Figures:
        snap = LagSnapshot({"g": g}, "g", 0.0)
        return await o.update(snap, admin, None, {"g": {}}, {}, {})

    assert (await cycle()).margins == {("g", "a", 0, "time"): 40.0}
    assert admin.asked == [["a", "b", "gone"]]  # one request; "gone" answered with an error: no config
    clock[0] += 299
    admin.configs["a"] = {"retention.ms": "120000"}
    assert (await cycle()).margins == {("g", "a", 0, "time"): 40.0}  # cached
    clock[0] += 1
    assert (await cycle()).margins == {("g", "a", 0, "time"): 100.0}
    assert admin.asked == [["a", "b", "gone"], ["a", "b", "gone"]]


class FailingAdmin(ConfigAdmin):
    def __init__(self) -> None:
        super().__init__({"a": {"retention.ms": "60000"}})
        self.failures = 1

    async def describe_configs(self, resources: list[Any]) -> list[Any]:
        if self.failures:
            self.failures -= 1
            raise KafkaConnectionError("broker gone")
        return await super().describe_configs(resources)


async def test_a_failed_describe_leaves_the_cycle_whole_and_backs_off(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = [1000.0]
    monkeypatch.setattr("streams.lag.outlook.time.monotonic", lambda: clock[0])
    admin = FailingAdmin()
    admin.failures = 2
    o = Outlook(OutlookSettings(retention_refresh_s=300.0))
    g = GroupLag("g", "Stable", 1, (lag("a", 0, 0, 0.0), lag("a", 1, 5, 20.0)))
    calls = [0]
    describe = admin.describe_configs

    async def counted(resources: list[Any]) -> list[Any]:
        calls[0] += 1
        return await describe(resources)

    admin.describe_configs = counted  # type: ignore[method-assign]

    async def cycle(after_s: float) -> tuple[LagSnapshot, Figures]:
        clock[0] += after_s
        snap = LagSnapshot({"g": g}, "g", 0.0)
        return snap, await o.update(snap, admin, None, {"g": {}}, {}, {})

    snap, figures = await cycle(0)
    assert figures.margins == {} and snap.errors == [] and calls[0] == 1  # lag whole; margins only missing
    # Asked, though not answered: not again until the refresh interval has passed.
    for _ in range(5):
        assert (await cycle(5))[1].margins == {}
    assert calls[0] == 1
    await cycle(275)
    assert calls[0] == 2  # failed again: the interval doubles
    await cycle(599)
    assert calls[0] == 2
    _, figures = await cycle(1)
    assert calls[0] == 3 and figures.margins == {("g", "a", 1, "time"): 40.0}
