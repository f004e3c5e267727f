import pytest
from prometheus_client import CollectorRegistry, generate_latest

from streams.exposition import render
from streams.lag import GroupLag, LagSnapshot, PartitionLag
from streams.lag_metrics import LagCollector
from streams.metrics import BusinessCollector
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
