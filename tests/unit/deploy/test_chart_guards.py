"""What the chart derives or refuses so that a release works as the values mean it: scrape timeouts
Prometheus accepts, the 0.1 chart's image values, env names given once, the watched group's lag SLO,
labels written once, update strategies and names the API server accepts, and NOTES that match the
objects. Rendered by the real helm."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from tests.unit.deploy.helm import ALL_ON, CHART, KUBERNETES_VERSION, OPERATOR_APIS, one, run_helm
from tests.unit.deploy.strict_yaml import load_all_strict

APP_VERSION = yaml.safe_load((CHART / "Chart.yaml").read_text())["appVersion"]


def _template(*args: str, release: str = "prod") -> tuple[int, str, list[dict[str, Any]]]:
    done = run_helm("template", release, str(CHART), "--namespace", "monitoring",
                     "--kube-version", KUBERNETES_VERSION, *OPERATOR_APIS, *args)  # fmt: skip
    return done.returncode, done.stderr, load_all_strict(done.stdout) if done.returncode == 0 else []


def render(*args: str, release: str = "prod") -> list[dict[str, Any]]:
    code, err, docs = _template(*args, release=release)
    assert code == 0, err
    return docs


def refused(*args: str) -> str:
    code, err, _ = _template(*args)
    assert code != 0, f"{args} rendered"
    return err


def env(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    (container,) = one(docs, "Deployment")["spec"]["template"]["spec"]["containers"]
    entries: list[dict[str, Any]] = container["env"]
    return entries


def env_value(docs: list[dict[str, Any]], name: str) -> str:
    (value,) = [e["value"] for e in env(docs) if e["name"] == name]
    return str(value)


def endpoint(docs: list[dict[str, Any]]) -> dict[str, Any]:
    (found,) = one(docs, "ServiceMonitor")["spec"]["endpoints"]
    endpoint_: dict[str, Any] = found
    return endpoint_


# --- the scrape interval and timeout ----------------------------------------------------------------------


@pytest.mark.parametrize(("interval", "timeout"), [("5s", "5s"), ("10s", "10s"), ("15s", "10s"), ("2m", "10s")])
def test_the_scrape_timeout_defaults_to_10s_or_the_interval_when_shorter(interval: str, timeout: str) -> None:
    got = endpoint(render("--set", f"monitor.interval={interval}"))
    assert (got["interval"], got["scrapeTimeout"]) == (interval, timeout)


def test_an_explicit_scrape_timeout_is_kept_up_to_the_interval() -> None:
    assert (
        endpoint(render("--set", "monitor.interval=5s", "--set", "monitor.scrapeTimeout=4500ms"))["scrapeTimeout"]
        == "4500ms"
    )
    assert (
        endpoint(render("--set", "monitor.interval=30s", "--set", "monitor.scrapeTimeout=30s"))["scrapeTimeout"]
        == "30s"
    )
    error = refused("--set", "monitor.interval=30s", "--set", "monitor.scrapeTimeout=31s")
    assert "monitor.scrapeTimeout=31s is longer than monitor.interval=30s" in error, error


def test_the_interval_stops_at_five_minutes_where_the_budget_stays_within_the_sidecars_limit() -> None:
    docs = render("--set", "monitor.interval=5m")
    budget = float(env_value(docs, "STREAMS_SHUTDOWN_TIMEOUT_SECONDS"))
    assert budget == 334 and budget <= 3600  # 1.1 x 300 s + 4 s; the sidecar refuses more than 3600 s
    for interval in ("301s", "6m", "1h"):
        assert "/monitor/interval" in refused("--set", f"monitor.interval={interval}")
    error = refused("--skip-schema-validation", "--set", "monitor.interval=1h")
    assert "monitor.interval=1h is above 5m" in error, error


# --- the image of an upgrade from 0.1 ---------------------------------------------------------------------


def _image(*args: str) -> str:
    (container,) = one(render(*args), "Deployment")["spec"]["template"]["spec"]["containers"]
    return str(container["image"])


@pytest.mark.parametrize(
    "repository",
    ["mycompany/ecomind-streams", "ghcr.io/ecomind/ecomind-streams", "registry.example:5000/streams", "streams"],
)
def test_the_0_1_charts_image_values_give_the_image_they_gave(repository: str) -> None:
    # The 0.1 chart wrote "<repository>:<tag or appVersion>": the registry was part of the repository.
    assert _image("--set", f"image.repository={repository}", "--set", "image.tag=0.1.0") == f"{repository}:0.1.0"
    assert _image("--set", f"image.repository={repository}") == f"{repository}:{APP_VERSION}"


def test_a_registry_is_prefixed_when_given_and_ghcr_only_to_the_charts_own_repository() -> None:
    assert _image() == f"ghcr.io/ecomind/ecomind-streams:{APP_VERSION}"
    mine = ("--set", "image.repository=mycompany/ecomind-streams")
    assert (
        _image(*mine, "--set", "image.registry=reg.example") == f"reg.example/mycompany/ecomind-streams:{APP_VERSION}"
    )
    # a parent chart's registry, its trailing slash trimmed
    mirror = ("--set", "global.imageRegistry=mirror.example/")
    assert _image(*mirror) == f"mirror.example/ecomind/ecomind-streams:{APP_VERSION}"
    assert _image(*mirror, *mine) == f"mirror.example/mycompany/ecomind-streams:{APP_VERSION}"


# --- env --------------------------------------------------------------------------------------------------


def test_the_three_overridable_settings_are_listed_once_with_the_given_values() -> None:
    given = {"STREAMS_SHUTDOWN_TIMEOUT_SECONDS": "60", "STREAMS_LEADER_LEASE_SECONDS": "20",
             "STREAMS_LAG_SLO_SECONDS": "ecomind-worker=30"}  # fmt: skip
    docs = render(*(a for name, value in given.items() for a in ("--set-string", f"streams.extraEnv.{name}={value}")))
    names = [e["name"] for e in env(docs)]
    assert len(names) == len(set(names))
    assert {name: env_value(docs, name) for name in given} == given


@pytest.mark.parametrize(
    ("rules", "expected"),
    [
        ("sink-.*=300", "sink-.*=300,ecomind-worker=10"),  # the watched group keeps the alert's SLO
        ("sink-.*=300,", "sink-.*=300,ecomind-worker=10"),
        ("ecomind-.*=30", "ecomind-.*=30"),  # a rule that matches it is the user's choice
        ("ecomind-worker=5,sink-.*=300", "ecomind-worker=5,sink-.*=300"),
        ("ecomind=30", "ecomind=30,ecomind-worker=10"),  # a full match only, as the sidecar reads it
    ],
)
def test_lag_slo_rules_that_miss_the_watched_group_get_its_pair_after_them(rules: str, expected: str) -> None:
    docs = render("--set-json", json.dumps(rules).join(("streams.extraEnv.STREAMS_LAG_SLO_SECONDS=", "")))
    assert env_value(docs, "STREAMS_LAG_SLO_SECONDS") == expected


def test_the_watched_groups_pair_follows_the_threshold_and_quotes_the_group() -> None:
    docs = render("--set", "streams.watchGroup=orders.v2", "--set", "prometheusRule.thresholds.WorkerLagAboveSLO=2.5")
    assert env_value(docs, "STREAMS_LAG_SLO_SECONDS") == r"orders\.v2=2.5"


def test_an_extra_env_value_must_be_a_string() -> None:
    error = refused("--set", "extraEnv[0].name=HTTPS_PROXY", "--set", "extraEnv[0].value=3128")
    assert "/extraEnv/0/value" in error, error


# --- labels, strategy, names ------------------------------------------------------------------------------


def test_a_label_in_common_labels_and_an_objects_own_is_written_once_with_the_objects_value() -> None:
    values = yaml.safe_load(ALL_ON.read_text())
    shared = set(values["commonLabels"]) & set(values["podLabels"]) & set(values["dashboards"]["labels"])
    assert shared, "all-options must give one label in commonLabels and in the objects' own labels"
    docs = render("-f", str(ALL_ON))  # the strict loader refuses a key given twice
    pod = one(docs, "Deployment")["spec"]["template"]["metadata"]["labels"]
    for key in shared:
        assert pod[key] == values["podLabels"][key] != values["commonLabels"][key]
    for kind, own in (
        ("PodMonitor", values["monitor"]["labels"]),
        ("PrometheusRule", values["prometheusRule"]["labels"]),
    ):
        assert one(docs, kind)["metadata"]["labels"].items() >= (values["commonLabels"] | own).items()
    boards = [d for d in docs if d["kind"] == "ConfigMap"]
    assert boards and all(b["metadata"]["labels"].items() >= values["dashboards"]["labels"].items() for b in boards)


def test_monitor_and_alertmanager_config_labels_win_over_common_labels_once() -> None:
    docs = render("--set", "commonLabels.release=common", "--set", "monitor.labels.release=kps",
                  "--set", "alertmanagerConfig.enabled=true", "--set", "alertmanagerConfig.labels.release=am",
                  "--api-versions", "monitoring.coreos.com/v1alpha1/AlertmanagerConfig")  # fmt: skip
    assert one(docs, "ServiceMonitor")["metadata"]["labels"]["release"] == "kps"
    assert one(docs, "AlertmanagerConfig")["metadata"]["labels"]["release"] == "am"
    assert one(docs, "PrometheusRule")["metadata"]["labels"]["release"] == "common"


@pytest.mark.parametrize("rolling", ["", "  rollingUpdate: null\n"])
def test_recreate_renders_without_rolling_update(rolling: str, tmp_path: Path) -> None:
    path = tmp_path / "values.yaml"
    path.write_text("strategy:\n  type: Recreate\n" + rolling)
    deployment = one(render("-f", str(path)), "Deployment")
    assert deployment["spec"]["strategy"] == {"type": "Recreate"}
    kubernetes_validate.validate(deployment, KUBERNETES_VERSION, strict=True)
    error = refused("--set", "strategy.type=Recreate", "--set", "strategy.rollingUpdate.maxSurge=1")
    assert "/strategy/rollingUpdate" in error, error


def test_dashboard_config_maps_of_a_long_release_keep_distinct_names() -> None:
    release = "payments-platform-observability-staging"  # with the chart's name: 54 characters
    names = [d["metadata"]["name"] for d in render(release=release) if d["kind"] == "ConfigMap"]
    assert len(names) == len(set(names)) == 5
    assert all(len(n) <= 63 and not n.endswith("-") for n in names)
    assert any(n.endswith("-ecomind-business") for n in names)


# --- Redis and alerts -------------------------------------------------------------------------------------


@pytest.mark.parametrize("url", ["rediss://:hunter2@redis:6380/0", "redis://streams:hunter2@redis:6379/0",
                                 "redis://redis:6379/0?password=hunter2"])  # fmt: skip
def test_a_password_in_the_redis_url_is_refused(url: str) -> None:
    error = refused("--set", f"redis.url={url}")
    assert "/redis/url" in error, error
    if "?" not in url:
        assert "redis\\\\.existingSecret" in error or "redis.existingSecret" in error, error


def test_a_redis_url_with_a_user_name_and_no_password_renders() -> None:
    docs = render("--set", "redis.url=rediss://streams@redis:6380/0", "--set", "redis.existingSecret=redis")
    assert env_value(docs, "REDIS_URL") == "rediss://streams@redis:6380/0"


def _alert(docs: list[dict[str, Any]], name: str) -> dict[str, Any]:
    (rule,) = [r for g in one(docs, "PrometheusRule")["spec"]["groups"] for r in g["rules"] if r.get("alert") == name]
    found: dict[str, Any] = rule
    return found


def test_descriptions_say_the_for_the_rule_has() -> None:
    # 60 s scrapes: the no-exporter alert waits 10 s + 2.2 x 60 s + 2 s, 3 minutes.
    rule = _alert(render("--set", "monitor.interval=60s"), "EcoMindStreamsNoExporter")
    assert rule["for"] == "3m" and "for 3 minutes" in rule["annotations"]["description"]
    assert "for 1 minute" not in rule["annotations"]["description"]
    rule = _alert(render("--set", "prometheusRule.alerts.WorkerLagAboveSLO.for=5m"), "WorkerLagAboveSLO")
    assert rule["for"] == "5m" and rule["annotations"]["description"].startswith("For 5 minutes")


# --- NOTES ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("service_boards", "count"), [("true", 5), ("false", 2)])
def test_notes_count_the_dashboards_rendered(service_boards: str, count: int, tmp_path: Path) -> None:
    copy = tmp_path / "ecomind-streams"
    shutil.copytree(CHART, copy, symlinks=False)
    notes_tpl = (copy / "templates" / "NOTES.txt").read_text()
    (copy / "templates" / "_notes.tpl").write_text('{{- define "notes" -}}' + notes_tpl + "{{- end -}}")
    (copy / "templates" / "notes.yaml").write_text('notes: {{ include "notes" . | toJson }}\n')
    args = ["--set", f"dashboards.serviceBoards={service_boards}"]
    done = run_helm("template", "prod", str(copy), "--kube-version", KUBERNETES_VERSION, *args)
    assert done.returncode == 0, done.stderr
    docs = load_all_strict(done.stdout)
    notes = next(d["notes"] for d in docs if "notes" in d)
    assert f"Grafana: {count} dashboard ConfigMaps" in notes
    assert len([d for d in docs if d.get("kind") == "ConfigMap"]) == count
