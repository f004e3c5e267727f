"""The chart as a dependency of a parent chart, the way kube-prometheus-stack carries its exporters: a
`file://` dependency fetched by `helm dependency update`, rendered with the parent's `global` values, a
condition, nameOverride / fullnameOverride and commonLabels, then linted and validated strictly."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from tests.unit.deploy.helm import CHART, KUBERNETES_VERSION, OPERATOR_APIS, OPERATOR_KINDS, crdcheck, run_helm
from tests.unit.deploy.strict_yaml import load_all_strict

CHART_META = yaml.safe_load((CHART / "Chart.yaml").read_text())


def _parent(tmp_path: Path, values: dict[str, Any]) -> Path:
    parent = tmp_path / "platform"
    parent.mkdir()
    (parent / "Chart.yaml").write_text(yaml.safe_dump({
        "apiVersion": "v2", "name": "platform", "version": "1.0.0", "type": "application",
        "dependencies": [{"name": "ecomind-streams", "version": CHART_META["version"],
                          "repository": f"file://{CHART}", "condition": "ecomind-streams.enabled"}],
    }))  # fmt: skip
    (parent / "values.yaml").write_text(yaml.safe_dump(values))
    done = run_helm("dependency", "update", str(parent))
    assert done.returncode == 0, done.stdout + done.stderr
    assert (parent / "charts" / f"ecomind-streams-{CHART_META['version']}.tgz").is_file()
    return parent


def _render(parent: Path, *extra: str) -> tuple[str, list[dict[str, Any]]]:
    done = run_helm("template", "edge", str(parent), "--namespace", "platform",
                     "--kube-version", KUBERNETES_VERSION, *OPERATOR_APIS, *extra)  # fmt: skip
    assert done.returncode == 0, done.stderr
    return done.stdout, load_all_strict(done.stdout)


PARENT_VALUES: dict[str, Any] = {
    "global": {"imageRegistry": "mirror.example", "imagePullSecrets": [{"name": "mirror"}, "mirror-2"]},
    "ecomind-streams": {
        "enabled": True,
        "nameOverride": "metrics",
        "commonLabels": {"team": "data", "platform.example/stack": "edge"},
        "imagePullSecrets": [{"name": "mirror"}],
        "networkPolicy": {"enabled": True},
    },
}


def test_a_parent_chart_renders_it_with_global_values_and_name_overrides(tmp_path: Path) -> None:
    parent = _parent(tmp_path, PARENT_VALUES)
    text, docs = _render(parent)
    kinds = sorted(d["kind"] for d in docs)
    assert {"Deployment", "Service", "ServiceMonitor", "PrometheusRule", "ConfigMap", "NetworkPolicy"} <= set(kinds)
    for doc in docs:
        labels = doc["metadata"]["labels"]
        # commonLabels reach every object, the monitoring ones included, through the labels helper.
        assert labels["team"] == "data" and labels["platform.example/stack"] == "edge", doc["metadata"]
        assert labels["app.kubernetes.io/instance"] == "edge"
        if doc["kind"] != "Pod":  # the test pod has a name of its own, off the Service's selector
            assert labels["app.kubernetes.io/name"] == "metrics", doc["metadata"]
        if doc["kind"] != "ConfigMap":  # one ConfigMap per dashboard, named after it
            assert doc["metadata"]["name"].startswith("edge-metrics"), doc["metadata"]["name"]
        if doc["kind"] not in OPERATOR_KINDS:
            kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
    (deployment,) = [d for d in docs if d["kind"] == "Deployment"]
    pod = deployment["spec"]["template"]["spec"]
    assert pod["containers"][0]["image"] == f"mirror.example/ecomind/ecomind-streams:{CHART_META['appVersion']}"
    assert pod["imagePullSecrets"] == [{"name": "mirror"}, {"name": "mirror-2"}]  # once each
    assert deployment["spec"]["selector"]["matchLabels"] == {
        "app.kubernetes.io/name": "metrics",
        "app.kubernetes.io/instance": "edge",
    }
    assert pod["serviceAccountName"] == "edge-metrics"
    assert deployment["spec"]["template"]["metadata"]["labels"]["team"] == "data"
    done = crdcheck(text)
    assert done.returncode == 0, done.stdout + done.stderr
    lint = run_helm("lint", "--strict", str(parent), "--kube-version", KUBERNETES_VERSION)
    assert lint.returncode == 0 and "0 chart(s) failed" in lint.stdout, lint.stdout + lint.stderr


def test_full_name_override_and_the_condition(tmp_path: Path) -> None:
    parent = _parent(tmp_path, PARENT_VALUES)
    _, docs = _render(parent, "--set", "ecomind-streams.fullnameOverride=streams")
    names = {d["metadata"]["name"] for d in docs if d["kind"] != "ConfigMap"}
    assert names == {"streams", "streams-test"}
    _, docs = _render(parent, "--set", "ecomind-streams.enabled=false")
    assert docs == []


@pytest.mark.parametrize(
    ("values", "refused"),
    [
        ({"ecomind-streams": {"nameOverride": "Not_A_Name"}}, "/nameOverride"),
        ({"ecomind-streams": {"commonLabels": {"team": 7}}}, "/commonLabels/team"),
        ({"ecomind-streams": {"image": {"digest": "latest"}}}, "/image/digest"),
    ],
)
def test_the_schema_still_checks_a_subchart_s_values(tmp_path: Path, values: dict[str, Any], refused: str) -> None:
    parent = _parent(tmp_path, PARENT_VALUES)
    overrides = tmp_path / "overrides.yaml"
    overrides.write_text(yaml.safe_dump(values))
    done = run_helm("template", "edge", str(parent), "--kube-version", KUBERNETES_VERSION, "-f", str(overrides))
    assert done.returncode != 0 and refused in done.stderr, done.stderr
