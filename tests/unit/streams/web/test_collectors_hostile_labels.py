"""Property-based: whatever org IDs the events carried, the business collector's exposition stays
parseable and gives each org its own series. The fold's side of hostile input:
tests/unit/agents/test_fold_hostile_input.py."""

from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client.parser import text_string_to_metric_families

from streams.exposition import render
from streams.web.collectors import BusinessCollector
from tables.snapshot import Snapshot


@settings(max_examples=100, deadline=None)
@given(orgs=st.lists(st.text(min_size=1, max_size=30), max_size=10, unique=True))
def test_any_org_id_gives_a_parseable_exposition(orgs: list[str]) -> None:
    snap = Snapshot(
        ingested={(o, "openai"): 1 for o in orgs},
        calls={(o, 'm"\\\n'): 2 for o in orgs},
        processed={"t": 1},
        invalid={},
        dropped_late={},
        last_ts_ms={},
        delay_buckets=[0] * 12,
        delay_sum_ms=0,
        active_orgs=len(orgs),
        active_users=1,
        kwh={o: 0.5 for o in orgs},
        co2_kg={},
        folded={},
    )
    text = render([BusinessCollector(snap, ["t"])]).decode()
    parsed = {
        (s.name, s.labels.get("org_id")): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }
    for org in orgs:
        assert parsed[("ecomind_events_ingested_total", org)] == 1.0
        assert parsed[("ecomind_total_kwh_today", org)] == 0.5
