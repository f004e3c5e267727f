"""Dashboards as code: the committed JSON is the generator's output, and it points at the
provisioned Prometheus datasource."""

import json
import subprocess
import sys
from pathlib import Path

import yaml

GRAFANA = Path(__file__).resolve().parents[2] / "ops" / "grafana"


def test_committed_dashboards_equal_the_generator_output() -> None:
    done = subprocess.run([sys.executable, str(GRAFANA / "generate.py"), "--check"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_every_panel_queries_the_provisioned_prometheus() -> None:
    datasources = yaml.safe_load((GRAFANA / "provisioning" / "datasources" / "prometheus.yml").read_text())
    uid = datasources["datasources"][0]["uid"]
    titles = set()
    for path in sorted((GRAFANA / "dashboards").glob("*.json")):
        board = json.loads(path.read_text())
        titles.add(board["title"])
        for panel in board["panels"]:
            assert panel["datasource"] == {"type": "prometheus", "uid": uid}, panel["title"]
            assert panel["targets"] and all(t["expr"] for t in panel["targets"]), panel["title"]
    assert titles == {"EcoMind Business", "EcoMind Pipeline"}
