"""Grafana dashboards as code (grafana-foundation-sdk): writes ops/grafana/dashboards/*.json from boards.py.

python ops/grafana/generate.py          # write the JSON
python ops/grafana/generate.py --check  # exit 1 if the committed JSON differs from this code

The boards are portable: every panel queries the $datasource variable (provisioning and the Grafana
sidecar pick the default Prometheus; an import through the UI asks for one through __inputs).

Several releases on one Prometheus and one Grafana: $cluster, $namespace and $job pick the release every
query is scoped to. Each board's uid and title appear once in its JSON, as `"uid": "<uid>"` and
`"title": "<title>"` at the top level, so a deployment that installs a board set per release replaces
those two strings (e.g. uid `<release>-ecomind-business`, at most 40 characters). Sidecar boards are
tagged ecomind-streams, the gateway, API and worker boards ecomind-services.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from grafana_foundation_sdk.builders import bargauge, dashboard, piechart, prometheus, stat, table, timeseries
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models.common import BigValueColorMode
from grafana_foundation_sdk.models.dashboard import (
    DashboardLinkType,
    DashboardRangeMapOptions,
    DataSourceRef,
    DynamicConfigValue,
    FieldColorModeId,
    RangeMap,
    Threshold,
    ThresholdsMode,
    ValueMappingResult,
    VariableOption,
    VariableRefresh,
    VariableSort,
)
from grafana_foundation_sdk.models.prometheus import PromQueryFormat

sys.path.insert(0, str(Path(__file__).resolve().parent))
from boards import BOARDS, SERVICE_BOARDS, Panel, Thresholds, runbook  # a sibling module, found through the path above

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
# Any: the SDK's panel builders share no base class that declares their common methods.
_KINDS: dict[str, Any] = {
    "stat": stat.Panel,
    "timeseries": timeseries.Panel,
    "bargauge": bargauge.Panel,
    "piechart": piechart.Panel,
    "table": table.Panel,
}


def _variables(board: dashboard.Dashboard, names: tuple[str, ...], targets: str) -> dashboard.Dashboard:
    """$datasource, the release ($cluster, $namespace, $job, each listing the values left by the ones
    before it among the targets' series), then the board's own."""
    source = (
        dashboard.DatasourceVariable("datasource")
        .label("Data source")
        .type("prometheus")
        .current(VariableOption(selected=True, text="${DS_PROMETHEUS}", value="${DS_PROMETHEUS}"))
    )
    board = board.with_variable(source)
    chosen = ""
    for name, label in (("cluster", "Cluster"), ("namespace", "Namespace"), ("job", "Job")):
        board = board.with_variable(_all_of(name, label, f"label_values({_within(targets, chosen)}, {name})"))
        chosen += f'{"," if chosen else ""}{name}=~"${name}"'
    own = {
        "org_id": ("Org", "ecomind_events_ingested_total"),
        "instance": ("Instance", targets),
        "kafka_cluster": ("Kafka cluster", "ecomind_consumergroup_lag"),
        "group": ("Consumer group", "ecomind_consumergroup_lag"),
        "streams_job": ("Streams job", "ecomind_streams_build_info"),
    }
    for name in names:
        label, metric = own[name]
        # The sidecar release a service board reads lag from shares cluster and namespace, not job.
        within = chosen if name != "streams_job" else 'cluster=~"$cluster",namespace=~"$namespace"'
        listed = "job" if name == "streams_job" else name
        board = board.with_variable(_all_of(name, label, f"label_values({_within(metric, within)}, {listed})"))
        if name == "kafka_cluster":  # the groups listed are those of the clusters chosen
            chosen += ',kafka_cluster=~"$kafka_cluster"'
    return board


def _within(metric: str, matchers: str) -> str:
    """The metric's selector with more matchers: up{ecomind_component="api"} + job=~"$job"."""
    if not matchers:
        return metric
    if metric.endswith("}"):
        return f"{metric[:-1]},{matchers}}}"
    return f"{metric}{{{matchers}}}"


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
    if spec.thresholds is not None:
        panel = _coloured(panel, spec.thresholds, spec.kind)
    if spec.right is not None:
        r = spec.right
        properties = [("unit", r.unit), ("min", r.min), ("max", r.max), ("custom.axisPlacement", "right")]
        properties.append(("custom.lineInterpolation", "stepAfter"))
        panel = panel.override_by_query("ABCDEFGH"[r.query], [DynamicConfigValue(k, v) for k, v in properties])
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


class _UpFrom(DashboardRangeMapOptions):
    """A range with no upper end. Grafana compares `value > to` when `to` is a number, and null counts as
    one (0), so `"to": null` would never match +Inf: the key is left out instead."""

    def to_json(self) -> dict[str, object]:
        payload = super().to_json()
        if self.to is None:
            del payload["to"]
        return payload


# Above any finite figure a panel with an `infinite` text shows (the catch-up cap is at most 366 days).
_INFINITE_FROM = 1e12


def _coloured(panel: Any, thresholds: Thresholds, kind: str) -> Any:
    steps = [Threshold(None, "green")] + [Threshold(value, colour) for value, colour in thresholds.steps]
    panel = panel.thresholds(dashboard.ThresholdsConfig().mode(ThresholdsMode.ABSOLUTE).steps(steps))
    panel = panel.color_scheme(dashboard.FieldColor().mode(FieldColorModeId.THRESHOLDS))
    if thresholds.infinite:
        text = ValueMappingResult(text=thresholds.infinite, color=thresholds.steps[-1][1])
        panel = panel.mappings([RangeMap(_UpFrom(from_val=_INFINITE_FROM, result=text))])
    if kind == "stat":
        panel = panel.color_mode(BigValueColorMode.BACKGROUND)
    return panel


def build(uid: str) -> dict[str, object]:
    title, panels, variables, targets = BOARDS[uid]
    kind = "ecomind-services" if uid in SERVICE_BOARDS else "ecomind-streams"
    board = dashboard.Dashboard(title).uid(uid).tags(["ecomind", kind]).refresh("30s").time("now-6h", "now")
    board = _variables(board, variables, targets)
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
