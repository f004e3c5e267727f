"""Dashboards as code: the committed JSON is the generator's output, and every board is portable
(data source, org and instance variables, __inputs for import), tells releases apart (cluster, namespace
and job variables scope every query; uid and title replaceable per release; service boards apart from the
sidecar's), queries the right way (instant where one value per series is shown, today-gauges for "today"),
and explains itself (descriptions, runbook links)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[3]
GRAFANA = ROOT / "ops" / "grafana"
sys.path.insert(0, str(GRAFANA))  # boards.py, as generate.py imports it
BOARDS = {p.stem: json.loads(p.read_text()) for p in sorted((GRAFANA / "dashboards").glob("*.json"))}
ALERTS = {
    rule["alert"]: rule
    for path in sorted((ROOT / "ops" / "prometheus" / "rules").glob("*.yml"))
    for group in yaml.safe_load(path.read_text())["groups"]
    for rule in group["rules"]
    if "alert" in rule
}


def _panels() -> list[tuple[str, dict[str, Any]]]:
    return [(uid, panel) for uid, board in BOARDS.items() for panel in board["panels"]]


def test_committed_dashboards_equal_the_generator_output() -> None:
    done = subprocess.run([sys.executable, str(GRAFANA / "generate.py"), "--check"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_the_five_boards_of_the_design_document_exist() -> None:
    titles = {board["title"] for board in BOARDS.values()}
    assert titles == {"EcoMind Business", "EcoMind Pipeline", "EcoMind Gateway", "EcoMind API", "EcoMind Worker"}


def test_every_board_picks_its_data_source_and_can_be_imported() -> None:
    for uid, board in BOARDS.items():
        variables = {v["name"]: v for v in board["templating"]["list"]}
        assert variables["datasource"]["type"] == "datasource" and variables["datasource"]["query"] == "prometheus"
        assert [i["name"] for i in board["__inputs"]] == ["DS_PROMETHEUS"], uid
        # what an import replaces; nothing else may name a fixed data source
        assert variables["datasource"]["current"]["value"] == "${DS_PROMETHEUS}"
        text = json.dumps(board)
        assert '"uid": "prometheus"' not in text, uid
        for name, var in variables.items():
            if var["type"] == "query":
                assert var["datasource"]["uid"] == "${datasource}", (uid, name)
                assert var["multi"] and var["includeAll"] and var["allValue"] == ".*", (uid, name)
        assert ("org_id" in variables) == (uid == "ecomind-business")
        assert ("instance" in variables) == (uid != "ecomind-business")
        assert ("streams_job" in variables) == (uid == "ecomind-worker")
        # The release first, each variable listing what the ones before it leave.
        assert list(variables)[:4] == ["datasource", "cluster", "namespace", "job"], uid
        assert '$cluster"' in variables["namespace"]["query"] and '$namespace"' in variables["job"]["query"]
        for name in set(variables) - {"datasource", "cluster", "namespace", "streams_job"}:
            if name != "job":
                assert 'job=~"$job"' in variables[name]["query"], (uid, name)


def test_every_panel_uses_the_variables_its_board_offers() -> None:
    for uid, panel in _panels():
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel["title"]
        assert panel["targets"] and all(t["expr"] for t in panel["targets"]), panel["title"]
        offered = {v["name"] for v in BOARDS[uid]["templating"]["list"]} | {"__range"}
        for target in panel["targets"]:
            used = set(re.findall(r"\$(\w+)", target["expr"]))
            assert used <= offered, (uid, panel["title"], used - offered)


# A metric name where PromQL expects a selector: not a label name (inside braces), function or keyword.
METRIC = re.compile(r"(?<![\w:{,\"])\b(?:ecomind|process)_\w+\b(?![\w(=!~])|\bup\{")
# What only the gateway, API and worker export (ecomind_api_calls_total is the sidecar's, from raw events).
SERVICE_METRIC = re.compile(r"ecomind_gateway_|ecomind_api_(?!calls_total)|ecomind_worker_events|\bup\{")
RELEASE = re.compile(r'\{cluster=~"\$cluster",namespace=~"\$namespace",job=~"\$(?:job|streams_job)"[,}]')


def test_every_metric_selector_of_every_panel_is_scoped_to_the_release() -> None:
    # Two releases on one Prometheus: an unscoped selector would sum or list both on one panel.
    selectors = 0
    for uid, panel in _panels():
        for target in panel["targets"]:
            expr = target["expr"]
            names = METRIC.findall(expr)
            assert names, (uid, panel["title"], expr)
            assert len(RELEASE.findall(expr)) == len(names), (uid, panel["title"], expr)
            selectors += len(names)
    assert selectors >= 60, selectors


def test_only_sidecar_figures_on_a_service_board_follow_the_sidecar_release() -> None:
    for uid, panel in _panels():
        for target in panel["targets"]:
            if "$streams_job" in target["expr"]:
                assert uid == "ecomind-worker" and "ecomind_worker_kafka_lag" in target["expr"], panel["title"]


def test_uid_and_title_appear_once_so_a_deployment_can_prefix_them_per_release() -> None:
    for uid, board in BOARDS.items():
        text = (GRAFANA / "dashboards" / f"{uid}.json").read_text()
        assert board["uid"] == uid and len(uid) <= 40 - len("a-release-name-"), uid
        assert text.count(f'"uid": "{uid}"') == 1, uid
        assert text.count(f'"title": "{board["title"]}"') == 1, uid


def test_service_boards_are_apart_from_the_sidecar_boards() -> None:
    import boards  # found through the path set above

    sidecar, services = set(boards.SIDECAR_BOARDS), set(boards.SERVICE_BOARDS)
    assert sidecar == {"ecomind-business", "ecomind-pipeline"}
    assert services == {"ecomind-gateway", "ecomind-api", "ecomind-worker"}
    for uid, board in BOARDS.items():
        assert board["tags"] == ["ecomind", "ecomind-services" if uid in services else "ecomind-streams"]
        # A sidecar board shows nothing of the services: turning those off leaves it whole.
        if uid in sidecar:
            for panel in board["panels"]:
                for target in panel["targets"]:
                    assert not SERVICE_METRIC.search(target["expr"])


@pytest.mark.parametrize(
    ("values", "want"),
    [
        ({}, 'x{cluster=~".*",namespace=~".*",job=~".*",instance=~".*"}[1h]'),
        ({"namespace": "team-a", "job": "prod"}, 'x{cluster=~".*",namespace=~"team-a",job=~"prod",instance=~".*"}[1h]'),
    ],
)
def test_expand_sets_each_variable_or_all(values: dict[str, str], want: str) -> None:
    import boards

    expr = 'x{cluster=~"$cluster",namespace=~"$namespace",job=~"$job",instance=~"$instance"}[$__range]'
    assert boards.expand(expr, **values) == want
    with pytest.raises(ValueError, match="no such dashboard variable: release"):
        boards.expand(expr, release="a")


def test_tables_top_k_pies_and_stats_are_instant_queries() -> None:
    for _, panel in _panels():
        for target in panel["targets"]:
            one_value = panel["type"] != "timeseries" or "topk" in target["expr"]
            assert target.get("instant", False) is one_value and target.get("range", False) is not one_value, panel[
                "title"
            ]


def test_today_panels_read_the_today_gauges_not_a_range() -> None:
    today = [p for _, p in _panels() if "today" in p["title"].lower()]
    assert len(today) == 8
    for panel in today:
        for target in panel["targets"]:
            assert re.search(r"ecomind_(\w+_today|daily_active_\w+)", target["expr"]), panel["title"]
            assert not re.search(r"increase|rate|\[", target["expr"]), panel["title"]
    assert not any("[24h]" in t["expr"] for _, p in _panels() for t in p["targets"])


def test_panels_describe_themselves_and_link_the_runbook_of_the_alerts_that_watch_them() -> None:
    linked = set()
    for _, panel in _panels():
        assert len(panel.get("description", "")) > 20, panel["title"]
        for link in panel.get("links", []):
            alert = link["title"].removeprefix("Runbook: ")
            assert alert in ALERTS, link
            assert link["url"] == ALERTS[alert]["annotations"]["runbook_url"], link
            assert alert in panel["description"]
            linked.add(alert)
    # The new health panels are there and wired to the alerts they explain.
    assert {"DeadLetterWritesFailing", "LabelCapReached", "HighErrorRate", "HighLatency", "ServiceDown"} <= linked
    pipeline = {p["title"] for p in BOARDS["ecomind-pipeline"]["panels"]}
    assert {"Broker and Redis up, per replica", "Dead letters", "Process CPU", "Process memory"} <= pipeline


def test_no_panel_selects_by_job_name() -> None:
    # Jobs are picked through the variables only: a job's name differs between setups.
    for _, panel in _panels():
        for target in panel["targets"]:
            matchers = re.findall(r"\bjob\s*(=~|!~|!=|=)\s*\"([^\"]*)\"", target["expr"])
            assert matchers and all(m in {("=~", "$job"), ("=~", "$streams_job")} for m in matchers), panel["title"]


def _pipeline_panel(title: str) -> dict[str, Any]:
    return next(p for p in BOARDS["ecomind-pipeline"]["panels"] if p["title"] == title)


def test_every_lag_outlook_series_has_a_panel_on_the_pipeline_board() -> None:
    exprs = " ".join(t["expr"] for p in BOARDS["ecomind-pipeline"]["panels"] for t in p["targets"])
    for family in (
        "ecomind_consumergroup_retention_margin_seconds",
        "ecomind_consumergroup_catch_up_seconds",
        "ecomind_consumergroup_stale_partitions",
        "ecomind_consumergroup_member_lag",
        "ecomind_consumergroup_member_lag_seconds",
        "ecomind_consumergroup_member_partitions",
        "ecomind_consumergroup_lost_messages",
    ):
        assert re.search(rf"\b{family}\{{", exprs), family
    margin = _pipeline_panel("Retention margin (oldest unread record)")
    assert [link["title"] for link in margin["links"]] == ["Runbook: ConsumerGroupRetentionMarginLow"]
    assert margin["targets"][0]["expr"].startswith("min by (kafka_cluster, group, topic) (")
    clients = _pipeline_panel("Lag per client (messages)")
    assert clients["targets"][0]["expr"].startswith("sum by (kafka_cluster, group, client_id) (")


def test_time_to_catch_up_is_never_summed_and_shows_infinity_as_not_consuming() -> None:
    # +Inf is a value by design (messages wait, nothing is consumed): a sum or avg would turn every figure
    # it touches into +Inf, so only max/min may aggregate it, anywhere on any board.
    for _, panel in _panels():
        for target in panel["targets"]:
            if "catch_up_seconds" in target["expr"]:
                assert not re.search(r"\b(sum|avg)\b", target["expr"]), panel["title"]
    panel = _pipeline_panel("Time to catch up")
    assert panel["type"] == "stat" and panel["targets"][0]["instant"] is True
    assert panel["targets"][0]["expr"].startswith("max by (kafka_cluster, group, topic) (")
    defaults = panel["fieldConfig"]["defaults"]
    assert [(s["value"], s["color"]) for s in defaults["thresholds"]["steps"]] == [
        (None, "green"),
        (3600, "orange"),
        (21600, "red"),
    ]
    [mapping] = defaults["mappings"]
    # Grafana skips a range whose "to" is a number or null (it compares value > null as value > 0), so
    # +Inf only matches an open range: no "to" key at all. Its "from" is above any capped figure.
    assert mapping["type"] == "range" and "to" not in mapping["options"]
    assert mapping["options"]["from"] > 366 * 86_400
    assert mapping["options"]["result"] == {"text": "not consuming", "color": "red"}
    assert panel["options"]["colorMode"] == "background"


def test_boards_are_split_by_board_and_stay_small() -> None:
    # One module per board (or set of service boards) under ~300 lines, all loaded through boards.py.
    for path in sorted(GRAFANA.glob("*.py")):
        assert len(path.read_text().splitlines()) <= 300, path.name


def test_consumer_group_panels_keep_kafka_clusters_apart() -> None:
    # One group name on two Kafka clusters is two groups (STREAMS_LAG_CLUSTERS): every consumer-group panel
    # groups by kafka_cluster and filters by the board's $kafka_cluster, and the group list follows it.
    group_panels = [p for _, p in _panels() if any("ecomind_consumergroup_" in t["expr"] for t in p["targets"])]
    assert len(group_panels) >= 7
    for panel in group_panels:
        for target in panel["targets"]:
            assert "by (kafka_cluster, group" in target["expr"], panel["title"]
            assert 'kafka_cluster=~"$kafka_cluster"' in target["expr"], panel["title"]
    board = json.loads((GRAFANA / "dashboards" / "ecomind-pipeline.json").read_text())
    variables = {v["name"]: v for v in board["templating"]["list"]}
    assert 'kafka_cluster=~"$kafka_cluster"' in variables["group"]["query"]
    assert list(variables).index("kafka_cluster") < list(variables).index("group")


def test_each_kafka_clusters_probe_health_is_on_one_panel() -> None:
    # Durations on the left axis in seconds; up (0/1) on the right axis as no/yes, in steps: on the
    # seconds axis a 1 would read as "1 s".
    panel = _pipeline_panel("Lag probe per Kafka cluster")
    exprs = [t["expr"] for t in panel["targets"]]
    assert [re.findall(r"ecomind_streams_lag_\w+", e) for e in exprs] == [
        ["ecomind_streams_lag_cluster_last_success_timestamp_seconds"],
        ["ecomind_streams_lag_probe_duration_seconds"],
        ["ecomind_streams_lag_cluster_up"],
    ]
    assert all(e.startswith(("max by (kafka_cluster) (", "time() - max by (kafka_cluster) (")) for e in exprs)
    assert panel["fieldConfig"]["defaults"]["unit"] == "s"
    [override] = panel["fieldConfig"]["overrides"]
    assert override["matcher"] == {"id": "byFrameRefID", "options": panel["targets"][2]["refId"]}
    properties = {p["id"]: p["value"] for p in override["properties"]}
    assert properties["unit"] == "bool_yes_no" and (properties["min"], properties["max"]) == (0, 1)
    assert properties["custom.axisPlacement"] == "right"
    titles = [link["title"] for link in panel["links"]]
    assert titles == ["Runbook: LagProbeClusterDown", "Runbook: LagProbeStale"]
