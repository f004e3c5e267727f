"""The chart's monitoring side, rendered by the real helm: monitors and rules only where the Operator's CRDs
are served (or forced), per-alert switches, thresholds and `for:` checked by promtool, the timing the
sidecar and the no-exporter alert share, release-unique dashboards, and the AlertmanagerConfig built
from ops/alertmanager/alertmanager.yml, each validated against the Operator's types and CRD schemas."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from functools import cache
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from streams.settings import Settings
from tests.unit.deploy.helm import (
    ALL_ON,
    CHART,
    KUBERNETES_VERSION,
    OPERATOR_KINDS,
    ROOT,
    crdcheck,
    crdschemas,
    one,
    ops_groups,
    run_helm,
    tool_path,
)
from tests.unit.deploy.strict_yaml import load_all_strict

API = {kind: f"monitoring.coreos.com/v1/{kind}" for kind in OPERATOR_KINDS}
WITH_OPERATOR = tuple(a for kind in sorted(API) for a in ("--api-versions", API[kind]))
FORCED = ("--set", "monitor.enabled=true", "--set", "prometheusRule.enabled=true")
SERVICE_ALERTS = {"HighErrorRate", "HighLatency", "DatabasePoolExhausted"}
SERVICE_BOARDS = {"ecomind-api.json", "ecomind-gateway.json", "ecomind-worker.json"}
BOARD_FILES = sorted((ROOT / "ops" / "grafana" / "dashboards").glob("*.json"))


@cache
def _helm_template(release: str, namespace: str, args: tuple[str, ...]) -> subprocess.CompletedProcess[str]:
    return run_helm("template", release, str(CHART), "--namespace", namespace, "--kube-version", KUBERNETES_VERSION,
                     *args)  # fmt: skip


def render(*args: str, release: str = "prod", namespace: str = "monitoring") -> list[dict[str, Any]]:
    done = _helm_template(release, namespace, args)
    assert done.returncode == 0, done.stderr
    return load_all_strict(done.stdout)


def refused(*args: str) -> str:
    done = _helm_template("prod", "monitoring", args)
    assert done.returncode != 0, args
    return done.stderr


def kinds(docs: list[dict[str, Any]]) -> set[str]:
    return {d["kind"] for d in docs}


def alerts(docs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    groups = one(docs, "PrometheusRule")["spec"]["groups"]
    return {r["alert"]: r for g in groups for r in g["rules"] if "alert" in r}


def ops_alerts() -> dict[str, dict[str, Any]]:
    return {r["alert"]: r for g in ops_groups() for r in g["rules"] if "alert" in r}


def promtool_check(groups: list[dict[str, Any]], tmp_path: Path) -> None:
    promtool = shutil.which("promtool")
    assert promtool, "promtool comes with Debian's prometheus package (scripts/setup installs it)"
    path = tmp_path / "rules.yml"
    path.write_text(yaml.safe_dump({"groups": groups}))
    done = subprocess.run([promtool, "check", "rules", str(path)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"SUCCESS: {sum(len(g['rules']) for g in groups)} rules found" in done.stdout


def alertmanager_config_check(docs: list[dict[str, Any]], tmp_path: Path) -> str:
    """AlertmanagerConfig against its CRD schema, from the same pinned kubernetes-models package."""
    models = (
        Path(tool_path("install-crdschemas")).parent / "node_modules" / "@kubernetes-models" / "prometheus-operator"
    )
    script = tmp_path / "amc.mjs"
    script.write_text(
        'import { readFileSync } from "node:fs";\n'
        f'import {{ AlertmanagerConfig }} from "{models}/monitoring.coreos.com/v1alpha1/AlertmanagerConfig.js";\n'
        'for (const o of JSON.parse(readFileSync(0, "utf8")).filter((o) => o.kind === "AlertmanagerConfig")) {\n'
        '  try { new AlertmanagerConfig(o).validate(); console.log("valid " + o.metadata.name); }\n'
        '  catch (e) { console.log("INVALID " + o.metadata.name + ": " + e.message); process.exitCode = 1; }\n'
        "}\n"
    )
    node = shutil.which("node")
    assert node
    done = subprocess.run([node, str(script)], input=json.dumps(docs), capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


# --- monitors and rules only where the Operator is ------------------------------------------------------


def test_a_cluster_without_the_operator_gets_no_monitor_or_rule_unless_forced() -> None:
    assert not kinds(render()) & OPERATOR_KINDS
    assert kinds(render(*WITH_OPERATOR)) & OPERATOR_KINDS == {"ServiceMonitor", "PrometheusRule"}
    # Each object asks for its own kind: a PodMonitor needs the PodMonitor CRD, not the ServiceMonitor one.
    only_sm = ("--api-versions", API["ServiceMonitor"])
    assert kinds(render(*only_sm)) & OPERATOR_KINDS == {"ServiceMonitor"}
    assert not kinds(render(*only_sm, "--set", "monitor.kind=PodMonitor")) & OPERATOR_KINDS
    assert kinds(render(*FORCED)) & OPERATOR_KINDS == {"ServiceMonitor", "PrometheusRule"}
    off = ("--set", "monitor.enabled=false", "--set", "prometheusRule.enabled=false")
    assert not kinds(render(*WITH_OPERATOR, *off)) & OPERATOR_KINDS
    assert "monitor/enabled" in refused("--set", "monitor.enabled=yes")


@pytest.mark.parametrize("kind", ["ServiceMonitor", "PodMonitor"])
def test_monitor_options_reach_the_endpoint_and_decode_into_the_operator_types(kind: str) -> None:
    extra = {
        "monitor": {
            "enabled": True, "kind": kind, "namespace": "observability", "interval": "30s", "scrapeTimeout": "25s",
            "labels": {"release": "kps"}, "annotations": {"team": "data"}, "sampleLimit": 20000,
            "relabelings": [{"sourceLabels": ["__meta_kubernetes_pod_node_name"], "targetLabel": "node"}],
            "metricRelabelings": [{"sourceLabels": ["__name__"], "regex": "go_.*", "action": "drop"}],
            "targetLabels": ["team"] if kind == "ServiceMonitor" else [],
            "podTargetLabels": ["app.kubernetes.io/version"],
        }
    }  # fmt: skip
    docs = render("--set-json", f"monitor={json.dumps(extra['monitor'])}")
    monitor = one(docs, kind)
    assert monitor["metadata"]["namespace"] == "observability"
    assert monitor["metadata"]["labels"]["release"] == "kps" and monitor["metadata"]["annotations"] == {"team": "data"}
    spec = monitor["spec"]
    assert spec["namespaceSelector"] == {"matchNames": ["monitoring"]}  # the pods stay where the release is
    assert spec["sampleLimit"] == 20000 and spec["podTargetLabels"] == ["app.kubernetes.io/version"]
    assert spec.get("targetLabels") == (["team"] if kind == "ServiceMonitor" else None)
    (endpoint,) = spec["endpoints" if kind == "ServiceMonitor" else "podMetricsEndpoints"]
    assert endpoint["interval"] == "30s" and endpoint["scrapeTimeout"] == "25s"
    # The chart's ecomind_component first, so a user rule cannot run before it; the user's after.
    assert [r.get("targetLabel") for r in endpoint["relabelings"]] == ["ecomind_component", "node"]
    assert endpoint["metricRelabelings"] == extra["monitor"]["metricRelabelings"]
    text = yaml.safe_dump_all(docs)
    done = crdcheck(text)
    assert done.returncode == 0 and f"valid {kind}/prod-ecomind-streams" in done.stdout, done.stdout
    done = crdschemas(docs)
    assert done.returncode == 0 and f"valid {kind}/prod-ecomind-streams" in done.stdout, done.stdout


def test_service_target_labels_are_refused_on_a_pod_monitor() -> None:
    assert "targetLabels" in refused("--set", "monitor.kind=PodMonitor", "--set", "monitor.targetLabels={team}")


# --- the PrometheusRule -----------------------------------------------------------------------------


def test_disabled_and_service_alerts_are_absent_and_unknown_names_are_refused() -> None:
    everything = alerts(render(*FORCED))
    assert everything.keys() == ops_alerts().keys() and everything.keys() >= SERVICE_ALERTS
    fewer = alerts(render(*FORCED, "--set", "prometheusRule.disabled.LabelCapReached=true",
                          "--set", "prometheusRule.disabled.HighKafkaLag=true"))  # fmt: skip
    assert fewer.keys() == everything.keys() - {"LabelCapReached", "HighKafkaLag"}
    no_services = alerts(render(*FORCED, "--set", "prometheusRule.serviceAlerts=false"))
    assert no_services.keys() == everything.keys() - SERVICE_ALERTS
    # false leaves the alert in, as kube-prometheus-stack's map does
    assert alerts(render(*FORCED, "--set", "prometheusRule.disabled.LabelCapReached=false")).keys() == everything.keys()
    for key in ("disabled.HighKafkaLagg=true", "alerts.NoSuchAlert.for=5m"):
        assert "no alert of that name" in refused(*FORCED, "--set", f"prometheusRule.{key}")


def test_service_alerts_read_only_metrics_the_sidecar_does_not_export() -> None:
    source = "\n".join(p.read_text() for p in (ROOT / "streams").rglob("*.py"))

    def metrics(expr: str) -> set[str]:
        return {re.sub(r"_(total|bucket|count|sum)$", "", m) for m in re.findall(r"\becomind_[a-z_]+", expr)}

    for name, rule in ops_alerts().items():
        exported = {m for m in metrics(rule["expr"]) if f'"{m}"' in source}
        if name in SERVICE_ALERTS:
            assert metrics(rule["expr"]) and not exported, name
        elif name != "ServiceDown":  # up{} of every component, the sidecar's included
            assert exported or "ecomind:" in rule["expr"], name


def _shipped_thresholds() -> dict[str, Any]:
    thresholds: dict[str, Any] = yaml.safe_load((CHART / "values.yaml").read_text())["prometheusRule"]["thresholds"]
    return thresholds


def test_the_default_thresholds_are_the_numbers_in_ops_rules() -> None:
    ops = ops_alerts()
    for name, value in _shipped_thresholds().items():
        found = re.findall(r"(?:>=|<=|!=|==|>|<)\s*([0-9.]+)\b", ops[name]["expr"])
        assert float(value) in {float(f) for f in found}, (name, value, found)


def test_thresholds_and_for_overrides_are_applied_and_pass_promtool(tmp_path: Path) -> None:
    new = {"HighKafkaLag": 5000, "WorkerLagAboveSLO": 20, "WorkerLagAboveSLA": 90, "InvalidEventsSpike": 0.1,
           "HighLatency": 0.25, "HighErrorRate": 1.5}  # fmt: skip
    values = {
        "thresholds": new,
        "alerts": {"HighKafkaLag": {"for": "15m", "labels": {"severity": "critical", "team": "data"}},
                   "EcoMindStreamsNotReady": {"for": "10m", "annotations": {"dashboard": "https://grafana/d/x"}}},
        "additionalRuleLabels": {"team": "streams", "env": "prod"},
        "additionalRuleAnnotations": {"owner": "data-platform"},
        "namespace": "rules", "labels": {"release": "kps"},
    }  # fmt: skip
    docs = render(*FORCED, "--set-json", f"prometheusRule={json.dumps(values)}")
    got, ops = alerts(docs), ops_alerts()
    for name, value in new.items():
        shipped = str(_shipped_thresholds()[name])
        expected = re.sub(rf"(>=|<=|!=|==|>|<)(\s*){re.escape(shipped)}\b", rf"\g<1>\g<2>{value}", ops[name]["expr"])
        assert got[name]["expr"] == expected != ops[name]["expr"], name
    assert "20 s SLO" in got["WorkerLagAboveSLO"]["annotations"]["summary"]
    assert "90 s SLA" in got["WorkerLagAboveSLA"]["annotations"]["description"]
    assert got["HighKafkaLag"]["for"] == "15m" and got["EcoMindStreamsNotReady"]["for"] == "10m"
    assert "for 10 minutes" in got["EcoMindStreamsNotReady"]["annotations"]["description"]
    # per alert over global over the rule's own
    assert got["HighKafkaLag"]["labels"] == {"severity": "critical", "team": "data", "env": "prod"}
    assert got["ServiceDown"]["labels"] == {"severity": "critical", "team": "streams", "env": "prod"}
    assert all(r["annotations"]["owner"] == "data-platform" for r in got.values())
    not_ready = "EcoMindStreamsNotReady"
    assert got[not_ready]["annotations"]["runbook_url"] == ops[not_ready]["annotations"]["runbook_url"]
    rule = one(docs, "PrometheusRule")
    assert rule["metadata"]["namespace"] == "rules" and rule["metadata"]["labels"]["release"] == "kps"
    records = [r for g in rule["spec"]["groups"] for r in g["rules"] if "record" in r]
    assert records == [r for g in ops_groups() for r in g["rules"] if "record" in r]  # untouched
    promtool_check(rule["spec"]["groups"], tmp_path)
    assert crdcheck(yaml.safe_dump_all(docs)).returncode == 0


def test_thresholds_given_with_set_are_numbers_and_bad_ones_are_refused() -> None:
    got = alerts(render(*FORCED, "--set", "prometheusRule.thresholds.HighLatency=0.75",
                        "--set", "prometheusRule.thresholds.HighKafkaLag=1e6",
                        "--set", "prometheusRule.thresholds.HighErrorRate=0"))  # fmt: skip
    assert got["HighLatency"]["expr"].endswith("> 0.75") and got["HighKafkaLag"]["expr"].endswith("> 1000000")
    assert got["HighErrorRate"]["expr"].endswith("> 0")  # 0 is a threshold, not "unset"
    for bad in ("thresholds.HighLatency=fast", "thresholds.InvalidEventsSpike=5", "thresholds.NoSuchAlert=1",
                "alerts.HighKafkaLag.for=10 minutes"):  # fmt: skip
        assert "schema" in refused(*FORCED, "--set", f"prometheusRule.{bad}"), bad


# --- timing shared by the sidecar and the no-exporter alert -----------------------------------------------


@pytest.mark.parametrize(
    ("args", "expected_for"),
    [
        ((), "1m"),
        (("--set", "timing.leaseSeconds=30"), "2m"),  # 30 + 33 + 2 s
        (("--set", "monitor.interval=1m", "--set", "timing.leaseSeconds=60"), "4m"),  # 60 + 132 + 2 s
        (("--set-string", "streams.extraEnv.STREAMS_LEADER_LEASE_SECONDS=100"), "3m"),  # the lease the pods get
        (("--set", "prometheusRule.alerts.EcoMindStreamsNoExporter.for=10m"), "10m"),
    ],
)
def test_the_no_exporter_for_outlasts_lease_plus_two_scrape_intervals(args: tuple[str, ...], expected_for: str) -> None:
    docs = render(*FORCED, *args)
    rule = alerts(docs)["EcoMindStreamsNoExporter"]
    assert rule["for"] == expected_for
    env = {e["name"]: e["value"] for e in one(docs, "Deployment")["spec"]["template"]["spec"]["containers"][0]["env"]}
    interval = Settings.from_env(env).scrape_interval_seconds
    lease = 10.0
    for arg in args:
        if arg.startswith(("timing.leaseSeconds=", "streams.extraEnv.STREAMS_LEADER_LEASE_SECONDS=")):
            lease = float(arg.partition("=")[2])
    # a crash: the lease's TTL, 1.1 intervals of grace, up to one more interval, the poll
    assert int(expected_for[:-1]) * 60 >= lease + 2.2 * interval + 2


def test_a_no_exporter_for_shorter_than_a_hand_over_and_bad_leases_are_refused() -> None:
    err = refused(*FORCED, "--set", "prometheusRule.alerts.EcoMindStreamsNoExporter.for=40s")
    assert "shorter than a hand-over after a crash (45 s" in err
    assert "leaseSeconds" in refused("--set", "timing.leaseSeconds=0")
    assert "leaseSeconds" in refused("--set", "timing.leaseSeconds=601")
    assert "not a number" in refused(*FORCED, "--set", "streams.extraEnv.STREAMS_LEADER_LEASE_SECONDS=10s")


def test_the_pods_get_the_timing_the_alert_assumes() -> None:
    def env(*args: str) -> dict[str, str]:
        (container,) = one(render(*args), "Deployment")["spec"]["template"]["spec"]["containers"]
        return {e["name"]: e["value"] for e in container["env"] if "value" in e}

    got = env("--set", "monitor.interval=30s", "--set", "timing.leaseSeconds=25")
    settings = Settings.from_env(got)
    assert (settings.scrape_interval_seconds, settings.leader_lease_seconds) == (30, 25)
    assert settings.shutdown_timeout_seconds >= 1.1 * 30 + 3
    # A lease given in extraEnv (all-options: 15) is the one the pods get, listed once.
    pod = one(render("-f", str(ALL_ON)), "Deployment")["spec"]["template"]["spec"]
    leases = [e for e in pod["containers"][0]["env"] if e["name"] == "STREAMS_LEADER_LEASE_SECONDS"]
    assert leases == [{"name": "STREAMS_LEADER_LEASE_SECONDS", "value": "15"}]


def test_thresholds_follow_reworded_ops_rules_and_a_lost_number_fails_the_render(tmp_path: Path) -> None:
    copy = tmp_path / "ecomind-streams"
    shutil.copytree(CHART, copy, symlinks=False)  # files/ become copies of ops/ that the test may change
    rules = copy / "files" / "prometheus-rules" / "alerts.yml"
    text = rules.read_text()
    aggregated = "max by (namespace, job, topic, partition) (ecomind_worker_kafka_lag) > 1000"
    rules.write_text(text.replace("ecomind_worker_kafka_lag > 1000", aggregated))

    def template(*args: str) -> subprocess.CompletedProcess[str]:
        return run_helm("template", "prod", str(copy), "--kube-version", KUBERNETES_VERSION, *FORCED, *args)

    done = template("--set", "prometheusRule.thresholds.HighKafkaLag=4000")
    assert done.returncode == 0, done.stderr
    assert alerts(load_all_strict(done.stdout))["HighKafkaLag"]["expr"] == aggregated.replace("1000", "4000")
    rules.write_text(text.replace("ecomind_worker_kafka_lag > 1000", "ecomind_worker_kafka_lag > 2000"))
    done = template()
    assert done.returncode != 0 and "HighKafkaLag compares with 1000 0 times" in done.stderr, done.stderr


# --- dashboards ------------------------------------------------------------------------------------------


def boards(docs: list[dict[str, Any]]) -> dict[str, tuple[dict[str, Any], dict[str, Any]]]:
    """file name -> (ConfigMap metadata, parsed board)"""
    found = {}
    for cm in (d for d in docs if d["kind"] == "ConfigMap"):
        ((name, text),) = cm["data"].items()
        found[name] = (cm["metadata"], json.loads(text))
    return found


def test_dashboards_uids_are_unique_per_release_when_asked_and_fit_grafana() -> None:
    ops_uids = {p.name: json.loads(p.read_text())["uid"] for p in BOARD_FILES}
    assert {n: b["uid"] for n, (_, b) in boards(render()).items()} == ops_uids  # shipped once: the ops uids
    unique = ("--set", "dashboards.uniqueUids=true")
    releases = [render(*unique), render(*unique, release="staging"), render(*unique, namespace="team-b")]
    uid_sets = [{b["uid"] for _, b in boards(docs).values()} for docs in releases]
    title_sets = [{b["title"] for _, b in boards(docs).values()} for docs in releases]
    assert all(len(s) == len(ops_uids) for s in uid_sets + title_sets)
    for i, j in ((0, 1), (0, 2), (1, 2)):
        assert uid_sets[i].isdisjoint(uid_sets[j]) and title_sets[i].isdisjoint(title_sets[j])
    assert uid_sets[0] == {b["uid"] for _, b in boards(render(*unique)).values()}  # stable across upgrades
    assert all(len(uid) <= 40 and re.fullmatch(r"[a-zA-Z0-9_-]+", uid) for s in uid_sets for uid in s)
    (_, pipeline) = boards(releases[1])["ecomind-pipeline.json"]
    assert pipeline["title"] == "EcoMind Pipeline (monitoring/staging)"


def test_service_boards_folder_annotation_and_namespace_are_options() -> None:
    got = boards(render("--set", "dashboards.serviceBoards=false", "--set", "dashboards.namespace=grafana",
                        "--set", "dashboards.folderAnnotation=k8s-sidecar-target-directory",
                        "--set", "dashboards.folder=/tmp/dashboards/ecomind"))  # fmt: skip
    assert set(got) == {p.name for p in BOARD_FILES} - SERVICE_BOARDS
    for meta, _ in got.values():
        assert meta["namespace"] == "grafana" and meta["labels"]["grafana_dashboard"] == "1"
        assert meta["annotations"] == {"k8s-sidecar-target-directory": "/tmp/dashboards/ecomind"}
    no_folder = boards(render("--set", "dashboards.folder="))
    assert len(no_folder) == 5 and all("annotations" not in meta for meta, _ in no_folder.values())


# --- the AlertmanagerConfig ------------------------------------------------------------------------------


def _ops_inhibitions() -> list[dict[str, Any]]:
    def matchers(rule: dict[str, Any], side: str) -> list[dict[str, str]]:
        found = []
        for text in rule.get(f"{side}_matchers", []):
            name, op, value = re.fullmatch(r'\s*(\w+)\s*(=~|!~|!=|=)\s*"?(.*?)"?\s*', text).groups()  # type: ignore[union-attr]
            found.append({"name": name, "matchType": op, "value": value})
        return found

    config = yaml.safe_load((ROOT / "ops" / "alertmanager" / "alertmanager.yml").read_text())
    return [
        {"sourceMatch": matchers(r, "source"), "targetMatch": matchers(r, "target"), "equal": r.get("equal", [])}
        for r in config["inhibit_rules"]
    ]


def test_alertmanager_config_is_off_by_default_and_carries_the_ops_inhibitions(tmp_path: Path) -> None:
    assert "AlertmanagerConfig" not in kinds(render(*WITH_OPERATOR))
    docs = render("--set", "alertmanagerConfig.enabled=true", "--set", "alertmanagerConfig.labels.alertmanager=main")
    amc = one(docs, "AlertmanagerConfig")
    assert amc["apiVersion"] == "monitoring.coreos.com/v1alpha1" and amc["metadata"]["namespace"] == "monitoring"
    assert amc["metadata"]["labels"]["alertmanager"] == "main"
    rules, ops = amc["spec"]["inhibitRules"], _ops_inhibitions()
    assert len(rules) == len(ops) > 0
    for got, want in zip(rules, ops, strict=True):
        assert got["sourceMatch"] == want["sourceMatch"] and got["targetMatch"] == want["targetMatch"]
        # namespace keeps two releases apart; the labels the ops file compares stay compared
        assert got["equal"][0] == "namespace" and set(got["equal"]) == {"namespace", *want["equal"]}
    assert alertmanager_config_check(docs, tmp_path) == "valid prod-ecomind-streams\n"
    # the Operator's Go types, once crdcheck knows the kind (it skips kinds it does not know)
    done = crdcheck(yaml.safe_dump_all(docs))
    assert done.returncode == 0 and "INVALID" not in done.stdout, done.stdout
    broken = json.loads(json.dumps(docs).replace('"matchType": "=~"', '"matchType": "~"'))
    with pytest.raises(AssertionError, match="matchType"):
        alertmanager_config_check(broken, tmp_path)


# --- a table of value combinations, each rendered and checked by every validator ------------------------------

COMBINATIONS = {
    "crd-less, nothing forced": [],
    "operator, defaults": [*WITH_OPERATOR],
    "all options, everything on": ["-f", str(ALL_ON), "--set", "alertmanagerConfig.enabled=true",
                                   "--set", "dashboards.uniqueUids=true"],
    "pod monitor elsewhere, few alerts": [*WITH_OPERATOR, "--set", "monitor.kind=PodMonitor",
        "--set", "monitor.namespace=obs", "--set", "prometheusRule.namespace=obs",
        "--set", "prometheusRule.serviceAlerts=false", "--set", "prometheusRule.disabled.LagProbeStale=true",
        "--set", "dashboards.serviceBoards=false"],
    "slow scrapes, long lease, tuned": [*FORCED, "--set", "monitor.interval=2m", "--set", "monitor.scrapeTimeout=1m",
        "--set", "timing.leaseSeconds=120", "--set", "prometheusRule.thresholds.WorkerLagAboveSLA=300",
        "--set", "prometheusRule.alerts.WorkerLagAboveSLA.for=5m", "--set", "monitor.sampleLimit=50000",
        "--set", "alertmanagerConfig.enabled=true", "--set", "alertmanagerConfig.namespace=alerting"],
    "monitoring off": ["--set", "monitor.enabled=false", "--set", "prometheusRule.enabled=false",
                       "--set", "dashboards.enabled=false"],
}  # fmt: skip


@pytest.mark.parametrize("name", COMBINATIONS)
def test_value_combinations_render_and_validate(name: str, tmp_path: Path) -> None:
    args = COMBINATIONS[name]
    # helm lint has no --api-versions: it sees a cluster without the Operator
    lint = [a for i, a in enumerate(args) if "--api-versions" not in (a, args[i - 1] if i else "")]
    done = run_helm("lint", "--strict", str(CHART), "--kube-version", KUBERNETES_VERSION, *lint)
    assert done.returncode == 0, done.stdout + done.stderr
    docs = render(*args)
    for doc in docs:
        if doc["kind"] not in OPERATOR_KINDS | {"AlertmanagerConfig"}:
            kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
    operator = kinds(docs) & OPERATOR_KINDS
    done = crdcheck(yaml.safe_dump_all(docs))
    assert done.returncode == 0, done.stdout
    assert {line.split()[1].split("/")[0] for line in done.stdout.splitlines() if line.startswith("valid ")} == operator
    done = crdschemas(docs)
    assert done.returncode == 0, done.stdout
    if "PrometheusRule" in operator:
        promtool_check(one(docs, "PrometheusRule")["spec"]["groups"], tmp_path)
    if "AlertmanagerConfig" in kinds(docs):
        assert alertmanager_config_check(docs, tmp_path).startswith("valid ")
    names = [(d["kind"], d["metadata"].get("namespace"), d["metadata"]["name"]) for d in docs]
    assert len(names) == len(set(names))
