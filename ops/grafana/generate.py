"""Grafana dashboards as code (grafana-foundation-sdk): writes ops/grafana/dashboards/*.json from boards.py.

python ops/grafana/generate.py          # write the JSON
python ops/grafana/generate.py --check  # exit 1 if the committed JSON differs from this code

The boards are portable: every panel queries the $datasource variable (provisioning and the Grafana
sidecar pick the default Prometheus; an import through the UI asks for one through __inputs).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from grafana_foundation_sdk.builders import bargauge, dashboard, piechart, prometheus, stat, table, timeseries
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models.dashboard import (
    DashboardLinkType,
    DataSourceRef,
    VariableOption,
    VariableRefresh,
    VariableSort,
)
from grafana_foundation_sdk.models.prometheus import PromQueryFormat

sys.path.insert(0, str(Path(__file__).resolve().parent))
from boards import BOARDS, Panel, runbook  # a sibling module, found through the path above

OUT = Path(__file__).resolve().parent / "dashboards"
DATASOURCE = DataSourceRef(type_val="prometheus", uid="${datasource}")
# An import through Grafana's UI replaces ${DS_PROMETHEUS} with the data source picked; provisioned
# boards keep it, find no such data source, and the variable falls back to the default Prometheus.
INPUTS = [
    {
        "name": "DS_PROMETHEUS",
        "label": "Prometheus",
        "description": "The Prometheus that scrapes EcoMind",
        "type": "datasource",
        "pluginId": "prometheus",
        "pluginName": "Prometheus",
    }
]
_KINDS = {
    "stat": stat.Panel,
    "timeseries": timeseries.Panel,
    "bargauge": bargauge.Panel,
    "piechart": piechart.Panel,
    "table": table.Panel,
}


def _variables(board: dashboard.Dashboard, names: tuple[str, ...], instance_metric: str) -> dashboard.Dashboard:
    source = (
        dashboard.DatasourceVariable("datasource")
        .label("Data source")
        .type("prometheus")
        .current(VariableOption(selected=True, text="${DS_PROMETHEUS}", value="${DS_PROMETHEUS}"))
    )
    board = board.with_variable(source)
    if "org_id" in names:
        board = board.with_variable(_all_of("org_id", "Org", "label_values(ecomind_events_ingested_total, org_id)"))
    if "instance" in names:
        board = board.with_variable(_all_of("instance", "Instance", f"label_values({instance_metric}, instance)"))
    if "group" in names:
        board = board.with_variable(
            _all_of("group", "Consumer group", "label_values(ecomind_consumergroup_lag, group)")
        )
    return board


def _all_of(name: str, label: str, query: str) -> dashboard.QueryVariable:
    return (
        dashboard.QueryVariable(name)
        .label(label)
        .datasource(DATASOURCE)
        .query(query)
        .multi(True)
        .include_all(True)
        .all_value(".*")
        .current(VariableOption(selected=True, text="All", value="$__all"))
        .refresh(VariableRefresh.ON_TIME_RANGE_CHANGED)
        .sort(VariableSort.ALPHABETICAL_ASC)
    )


def _panel(spec: Panel) -> object:
    width = 6 if spec.kind == "stat" else 12
    panel = (
        _KINDS[spec.kind]()
        .title(spec.title)
        .description(spec.description + (" Alerts: " + ", ".join(spec.alerts) + "." if spec.alerts else ""))
        .datasource(DATASOURCE)
        .unit(spec.unit)
        .height(8)
        .span(width)
    )
    if spec.alerts:
        links = [
            dashboard.DashboardLink(f"Runbook: {alert}")
            .type(DashboardLinkType.LINK)
            .url(runbook(alert))
            .target_blank(True)
            for alert in spec.alerts
        ]
        panel = panel.links(links)
    for ref, (expr, legend) in zip("ABCDEFGH", spec.queries, strict=False):
        query = prometheus.Dataquery().expr(expr).legend_format(legend).ref_id(ref)
        # Tables, top-k, pies and stats show one value per series: an instant query, not a range.
        if spec.instant:
            fmt = PromQueryFormat.TABLE if spec.kind == "table" else PromQueryFormat.TIME_SERIES
            query = query.instant().format(fmt)
        else:
            query = query.range()
        panel = panel.with_target(query)
    return panel


def build(uid: str) -> dict[str, object]:
    title, panels, variables, instance_metric = BOARDS[uid]
    board = dashboard.Dashboard(title).uid(uid).tags(["ecomind"]).refresh("30s").time("now-6h", "now")
    board = _variables(board, variables, instance_metric)
    for spec in panels:
        board = board.with_panel(_panel(spec))  # type: ignore[arg-type]
    built: dict[str, object] = json.loads(json.dumps(board.build(), cls=JSONEncoder))
    return {"__inputs": INPUTS, **built}


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
