from collections.abc import Iterator

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.metrics_core import Metric

from streams.exposition import RowsFamily, render
from streams.lag.metrics import LagCollector
from streams.lag.model import GroupLag, LagSnapshot, PartitionLag
from streams.web.collectors import BusinessCollector
from tables.snapshot import Snapshot

TRICKY = ['org "quoted"', "back\\slash", "new\nline", "ünïcødé", "__other__", "tab\tand\x01control"]


def snapshot(orgs: list[str]) -> Snapshot:
    return Snapshot(
        ingested={(o, "openai"): i + 1 for i, o in enumerate(orgs)},
        calls={(o, "gpt-4o"): 10**12 + i for i, o in enumerate(orgs)},
        processed={"events.raw": 5},
        invalid={("events.raw", "not_json"): 2},
        dropped_late={"events.raw": 0},
        last_ts_ms={"events.raw": 1_795_780_800_123},
        delay_buckets=[1, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 3],
        delay_sum_ms=12_345,
        active_orgs=len(orgs),
        active_users=7,
        kwh={o: 0.1 * (i + 1) for i, o in enumerate(orgs)},
        co2_kg={o: 1e-9 * (i + 1) for i, o in enumerate(orgs)},
        folded={"org_id": 3},
    )


@pytest.mark.parametrize("orgs", [[], ["org_a"], TRICKY, [f"org_{i}" for i in range(300)]])
def test_render_is_byte_for_byte_generate_latest(orgs: list[str]) -> None:
    parts = (PartitionLag("events.raw", 0, True, 12, 3.5), PartitionLag("events.raw", 1, False, 4, None))
    lag = LagSnapshot({"g": GroupLag("g", "Stable", 2, parts)}, "g", 1.5)
    collectors = [BusinessCollector(snapshot(orgs), ["events.raw", "events.enriched"]), LagCollector(lag, "g")]
    registry = CollectorRegistry(auto_describe=False)
    for c in collectors:
        registry.register(c)
    assert render(collectors) == generate_latest(registry)


class _Rows:
    def collect(self) -> Iterator[Metric]:
        yield RowsFamily("c", "Counter\nwith \\ doc.", "counter", ("zeta", "alpha", "mid"), THREE_LABEL_ROWS)
        yield RowsFamily("g", "Gauge.", "gauge", ("b", "a"), [(("x", '"y"'), 1e-9), (("\\", "\n"), -3)])
        yield RowsFamily("one", "One label.", "gauge", ("org_id",), [((o,), 0.5) for o in TRICKY])
        yield RowsFamily("none", "No labels.", "gauge", (), [((), 7)])
        yield RowsFamily("empty", "No rows.", "counter", ("org_id",), [])


# Whole numbers either side of 1e6, where the text switches to exponents, big, negative and floats.
VALUES = [0, 1, 999_999, 1_000_000, 1_234_567, 10**15, 2**53 + 1, -5, 0.1, 1e-9, 12345.678, float("inf"), True]
THREE_LABEL_ROWS = [((f"z{i}", TRICKY[i % len(TRICKY)], "m"), v) for i, v in enumerate(VALUES)]


def test_rows_families_render_as_generate_latest_does() -> None:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Rows())
    assert render([_Rows()]) == generate_latest(registry)
    assert b'c_total{alpha="back\\\\slash",mid="m",zeta="z1"} 1.0\n' in render([_Rows()])


def test_rows_family_samples_are_its_rows() -> None:
    family = RowsFamily("c", "C.", "counter", ("org_id", "provider"), [(("o", "p"), 3)])
    assert [(s.name, s.labels, s.value) for s in family.samples] == [("c_total", {"org_id": "o", "provider": "p"}, 3)]
    with pytest.raises(ValueError, match="without _total"):
        RowsFamily("c_total", "C.", "counter", (), [])
    with pytest.raises(ValueError, match="counters and gauges"):
        RowsFamily("h", "H.", "histogram", (), [])
