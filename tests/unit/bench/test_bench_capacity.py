"""The arithmetic and verdicts of the capacity sections of the benchmark (bench/cost.py, fleet.py, run.py)."""

from __future__ import annotations

import orjson

from bench.ceiling import decoders
from bench.cost import CostRow, percent_of_core, table
from bench.fleet import FleetRow
from bench.run import every_run
from bench.runners import Row
from bench.state import day_name, org_delta, user_delta
from tables.delta import pair


def _cost(rate: int, cpu_s: float, peak_mb: float = 80.0, folded: int | None = None) -> CostRow:
    sent = rate * 60
    return CostRow(rate, 60.0, cpu_s, 0.3, 0.1, 70.0, peak_mb, 27.0, 4, sent, sent if folded is None else folded)


def test_percent_of_one_core() -> None:
    assert percent_of_core(0.6, 60.0) == 1.0
    assert percent_of_core(1.0, 0.0) == 0.0


def test_cost_targets_by_rate() -> None:
    assert _cost(0, 0.59).verdict() == "met"  # 0.98 % idle
    assert _cost(0, 0.61).verdict() == "MISSED: CPU above 1 %"
    assert _cost(100, 1.19).verdict() == "met"  # 1.98 % at 100 events/s
    assert _cost(100, 1.21).verdict() == "MISSED: CPU above 2 %"
    assert _cost(1_000, 30.0).verdict() == "met"  # no CPU goal at 1,000 events/s, RSS only
    assert _cost(1_000, 1.0, peak_mb=121).verdict() == "MISSED: RSS above 120 MB"


def test_cost_counts_a_lost_event_as_wrong() -> None:
    row = _cost(100, 0.5, folded=5_999)
    assert row.verdict() == "MISSED: WRONG: folded 5,999 of 6,000"
    assert "5,999 / 6,000" in table([row])


def test_fleet_per_event_and_saturation() -> None:
    row = FleetRow("x", 2, 500_000, 4.0, sidecar_cpu_s=2.0, redis_cpu_s=0.25)
    assert row.sidecar_us_per_event == 4.0
    assert row.redis_us_per_event == 0.5
    assert row.redis_share == 0.25 / 2.25
    assert row.redis_saturates_at == 2_000_000


def test_every_run_judges_the_worst_run() -> None:
    ceilings = [Row("c", 1000, 1.0, 1.0, 1.0), Row("c", 1000, 1.0, 1.0, 1.0), Row("c", 1000, 2.0, 1.0, 1.0)]
    ours = [Row("e", 1000, 1.8, 1.0, 1.0), Row("e", 1000, 1.9, 1.0, 1.0), Row("e", 1000, 4.2, 1.0, 1.0)]
    # 56 %, 53 %, 48 %: the median would pass, the third run does not.
    assert "MISSED" in every_run(ceilings, ours)
    assert "lowest 48%" in every_run(ceilings, ours)
    assert "met in every run" in every_run(ceilings[:2], ours[:2])
    # A comparison without a goal reports each run and judges nothing.
    line = every_run(ceilings, ours, goal=None, against="the schema consumer")
    assert line == "EcoMind Streams vs the schema consumer: run 1: 56%, run 2: 53%, run 3: 48%."


def test_the_schema_ceiling_decodes_each_topic_with_its_own_schema() -> None:
    chosen = decoders("schema", ["raw", "enriched"])
    raw = b'{"org_id":"o","user_id":"u","provider":"p","model":"m","tokens_in":1,"tokens_out":2,"ts":3}'
    assert chosen["raw"](raw).tokens_out == 2  # type: ignore[attr-defined]
    assert chosen["enriched"](raw[:-1] + b',"kwh":0.5,"co2_kg":0.25}').co2_kg == 0.25  # type: ignore[attr-defined]
    assert decoders("orjson", ["raw", "enriched"])["enriched"](raw) == orjson.loads(raw)


def test_state_seeds_what_it_claims() -> None:
    delta = org_delta(range(3), day_name(0))
    assert sum(delta.ingested.values()) == 3
    assert delta.orgs[day_name(0)] == {"org-00000000", "org-00000001", "org-00000002"}
    users = user_delta(range(10), orgs=4, day=day_name(29))
    assert len(users.users[day_name(29)]) == 10
    assert pair("org-00000001", "user-00000000005") in users.users["2026-01-30"]


def test_each_run_is_judged_against_the_ceilings_around_it() -> None:
    from bench.run import bracket
    from bench.runners import Row

    before = Row("ceiling", 2_000_000, 4.0, cpu_s=8.0, rss_mb=90)
    after = Row("ceiling", 2_000_000, 8.0, cpu_s=10.0, rss_mb=95)
    both = bracket(before, after)
    assert (both.seconds, both.cpu_s, both.rss_mb) == (6.0, 9.0, 95)
    assert round(both.events_per_s) == 333_333
