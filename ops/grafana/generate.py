"""Grafana dashboards as code (grafana-foundation-sdk): writes ops/grafana/dashboards/*.json.

python ops/grafana/generate.py          # write the JSON
python ops/grafana/generate.py --check  # exit 1 if the committed JSON differs from this code
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from grafana_foundation_sdk.builders import bargauge, dashboard, piechart, prometheus, stat, timeseries
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models.dashboard import DataSourceRef

OUT = Path(__file__).resolve().parent / "dashboards"
DATASOURCE = DataSourceRef(type_val="prometheus", uid="prometheus")

# (title, kind, unit, [(expr, legend)]) per panel; the end-to-end test runs every expr on Prometheus.
BUSINESS = [
    ("Active orgs today", "stat", "short", [("sum(ecomind_daily_active_orgs)", "orgs")]),
    ("Active users today", "stat", "short", [("sum(ecomind_daily_active_users)", "users")]),
    ("Energy today", "stat", "kwatth", [("sum(ecomind_total_kwh_today)", "kWh")]),
    ("CO2 today", "stat", "masskg", [("sum(ecomind_total_co2_kg_today)", "kg")]),
    (
        "Top orgs by events (24 h)",
        "bargauge",
        "short",
        [("topk(10, sum by (org_id) (increase(ecomind_events_ingested_total[24h])))", "{{org_id}}")],
    ),
    (
        "Top orgs by energy today",
        "bargauge",
        "kwatth",
        [("topk(10, sum by (org_id) (ecomind_total_kwh_today))", "{{org_id}}")],
    ),
    (
        "API calls by model",
        "timeseries",
        "reqps",
        [("sum by (model) (rate(ecomind_api_calls_total[5m]))", "{{model}}")],
    ),
    (
        "Provider mix (24 h)",
        "piechart",
        "short",
        [("sum by (provider) (increase(ecomind_events_ingested_total[24h]))", "{{provider}}")],
    ),
]
_DELAY = "sum by (le) (rate(ecomind_streams_enrichment_delay_seconds_bucket[5m]))"
PIPELINE = [
    (
        "Worker lag (messages)",
        "timeseries",
        "short",
        [("sum by (topic, partition) (ecomind_worker_kafka_lag)", "{{topic}}/{{partition}}")],
    ),
    (
        "Worker lag (age of oldest unconsumed record)",
        "timeseries",
        "s",
        [("max by (topic, partition) (ecomind_worker_kafka_lag_seconds)", "{{topic}}/{{partition}}")],
    ),
    (
        "Enrichment delay",
        "timeseries",
        "s",
        [(f"histogram_quantile({q}, {_DELAY})", f"p{int(q * 100)}") for q in (0.5, 0.95, 0.99)],
    ),
    (
        "Events/s per topic",
        "timeseries",
        "ops",
        [("sum by (topic) (rate(ecomind_streams_events_processed_total[5m]))", "{{topic}}")],
    ),
    (
        "Invalid events by reason",
        "timeseries",
        "ops",
        [("sum by (topic, reason) (rate(ecomind_streams_events_invalid_total[5m]))", "{{topic}} {{reason}}")],
    ),
    (
        "Replicas, ready, exporting",
        "stat",
        "short",
        [
            ("count(ecomind_streams_build_info)", "up"),
            ("sum(ecomind_streams_ready)", "ready"),
            ("sum(ecomind_streams_exporter_leader)", "exporting"),
        ],
    ),
]
BOARDS = {"ecomind-business": ("EcoMind Business", BUSINESS), "ecomind-pipeline": ("EcoMind Pipeline", PIPELINE)}
_KINDS = {"stat": stat.Panel, "timeseries": timeseries.Panel, "bargauge": bargauge.Panel, "piechart": piechart.Panel}


def build(uid: str) -> dict[str, object]:
    title, panels = BOARDS[uid]
    board = dashboard.Dashboard(title).uid(uid).tags(["ecomind"]).refresh("30s").time("now-6h", "now")
    for name, kind, unit, queries in panels:
        panel = _KINDS[kind]().title(name).datasource(DATASOURCE).unit(unit).height(8).span(12 if kind != "stat" else 6)
        for ref, (expr, legend) in zip("ABCDEFGH", queries, strict=False):
            panel = panel.with_target(prometheus.Dataquery().expr(expr).legend_format(legend).ref_id(ref))
        board = board.with_panel(panel)
    return json.loads(json.dumps(board.build(), cls=JSONEncoder))


def render(uid: str) -> str:
    return json.dumps(build(uid), indent=2, sort_keys=True) + "\n"


def main() -> int:
    check = "--check" in sys.argv[1:]
    stale = []
    for uid in BOARDS:
        path = OUT / f"{uid}.json"
        text = render(uid)
        if check:
            if not path.exists() or path.read_text() != text:
                stale.append(path.name)
        else:
            path.write_text(text)
    if stale:
        print(f"out of date, run python ops/grafana/generate.py: {', '.join(stale)}", file=sys.stderr)
    return 1 if stale else 0


if __name__ == "__main__":
    sys.exit(main())
