"""Dashboards as code: the committed JSON is the generator's output, and every board is portable
(data source, org and instance variables, __inputs for import), queries the right way (instant where one
value per series is shown, today-gauges for "today"), and explains itself (descriptions, runbook links)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
GRAFANA = ROOT / "ops" / "grafana"
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


def test_every_panel_uses_the_variables_its_board_offers() -> None:
    for uid, panel in _panels():
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel["title"]
        assert panel["targets"] and all(t["expr"] for t in panel["targets"]), panel["title"]
        offered = {v["name"] for v in BOARDS[uid]["templating"]["list"]} | {"__range"}
        for target in panel["targets"]:
            used = set(re.findall(r"\$(\w+)", target["expr"]))
            assert used <= offered, (uid, panel["title"], used - offered)


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
    for _, panel in _panels():
        for target in panel["targets"]:
            assert "job=" not in target["expr"].replace(" ", ""), panel["title"]
