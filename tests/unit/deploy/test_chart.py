"""The Helm chart, rendered by a real helm (built by scripts/setup) with the default values and with every
option on, and checked offline: lint, Kubernetes' own schemas (strict, pinned version), the Prometheus
Operator's types (strict decoding, pinned module), promtool, and the sidecar's own settings code."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from core.deadline import EXIT_MARGIN_S
from streams.settings import Settings
from tests.unit.deploy.helm import (
    ALL_ON,
    CHART,
    KUBERNETES_VERSION,
    OPERATOR_KINDS,
    ROOT,
    VALUES,
    crdcheck,
    crdschemas,
    materialise_mounts,
    one,
    ops_groups,
    pod_container,
    render,
    render_text,
    run_helm,
    settings_env_names,
    web_routes,
)


@pytest.mark.parametrize("which", VALUES)
def test_helm_lint_strict(which: str) -> None:
    done = run_helm("lint", "--strict", str(CHART), "--kube-version", KUBERNETES_VERSION, *VALUES[which])
    assert done.returncode == 0, done.stdout + done.stderr
    assert "1 chart(s) linted, 0 chart(s) failed" in done.stdout


def test_defaults_and_all_options_render_the_expected_objects() -> None:
    default = sorted(d["kind"] for d in render("default"))
    assert default == sorted(
        ["ConfigMap"] * len(list((ROOT / "ops" / "grafana" / "dashboards").glob("*.json")))
        + ["Deployment", "PodDisruptionBudget", "PrometheusRule", "Service", "ServiceAccount", "ServiceMonitor"]
        + ["Pod"]  # `helm test`'s
    )
    every = {d["kind"] for d in render("all-options")}
    assert {"NetworkPolicy", "PodMonitor"} <= every and "ServiceMonitor" not in every


def test_values_schema_rejects_what_the_sidecar_would_reject() -> None:
    for bad in (
        ["--set", "kafka.securityProtocol=TLS"],
        ["--set", "streams.rawTopic=events raw"],
        ["--set", "streams.extraEnv.HOME=/root"],
        ["--set", "monitor.kind=Probe"],
        ["--set", "kafka.sasl.mechanism=PLAIN"],  # without a username
        ["--set", "webConfig.enabled=true"],  # without the Secret holding the file
        ["--set", "runbookBaseUrl=RUNBOOK.md"],  # relative links are dead in a pager
    ):
        done = run_helm("template", "prod", str(CHART), "--kube-version", KUBERNETES_VERSION, *bad)
        assert done.returncode != 0, bad
        assert "schema" in done.stderr, done.stderr


@pytest.mark.parametrize("which", VALUES)
def test_core_objects_are_valid_for_kubernetes_strictly(which: str) -> None:
    for doc in render(which):
        if doc["kind"] not in OPERATOR_KINDS:
            # strict: an unknown field is an error, as `kubectl apply --validate=strict` would say.
            kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)


def test_strict_validation_catches_a_misspelt_field() -> None:
    deployment = one(render("default"), "Deployment")
    deployment["spec"]["template"]["spec"]["containers"][0]["readinesProbe"] = {}
    with pytest.raises(kubernetes_validate.ValidationError, match="readinesProbe"):
        kubernetes_validate.validate(deployment, KUBERNETES_VERSION, strict=True)


@pytest.mark.parametrize("which", VALUES)
def test_operator_objects_decode_strictly_into_the_operators_types(which: str) -> None:
    done = crdcheck(render_text(which))
    assert done.returncode == 0, done.stdout + done.stderr
    kinds = {d["kind"] for d in render(which)} & OPERATOR_KINDS
    assert {line.split()[1].split("/")[0] for line in done.stdout.splitlines() if line.startswith("valid ")} == kinds
    # and the other monitor kind, with the same endpoint settings
    other = "ServiceMonitor" if "PodMonitor" in kinds else "PodMonitor"
    done = crdcheck(render_text(which, "--set", f"monitor.kind={other}"))
    assert done.returncode == 0 and f"valid {other}/" in done.stdout, done.stdout + done.stderr


def test_operator_check_catches_a_misspelt_field() -> None:
    text = render_text("all-options").replace("podMetricsEndpoints:", "podMetricEndpoints:")
    done = crdcheck(text)
    assert (
        done.returncode == 1
        and "INVALID PodMonitor/prod-ecomind-streams" in done.stdout
        and 'unknown field "podMetricEndpoints"' in done.stdout
    ), done.stdout


@pytest.mark.parametrize("which", VALUES)
def test_operator_objects_match_the_crd_schemas(which: str) -> None:
    # Types, enums, patterns (durations) and required fields, from @kubernetes-models/prometheus-operator.
    for docs in (render(which), render(which, "--set", "monitor.kind=ServiceMonitor"),
                 render(which, "--set", "monitor.kind=PodMonitor")):  # fmt: skip
        done = crdschemas(docs)
        assert done.returncode == 0, done.stdout + done.stderr
        kinds = {d["kind"] for d in docs} & OPERATOR_KINDS
        assert {line.split()[1].split("/")[0] for line in done.stdout.splitlines()} == kinds


def test_crd_schemas_catch_a_bad_duration() -> None:
    docs = render("all-options")
    one(docs, "PodMonitor")["spec"]["podMetricsEndpoints"][0]["interval"] = "30 seconds"
    done = crdschemas(docs)
    assert done.returncode == 1 and "INVALID PodMonitor/prod-ecomind-streams" in done.stdout, done.stdout
    assert "interval must match pattern" in done.stdout


def test_rendered_rules_are_ops_rules_with_the_runbook_base_set_once(tmp_path: Path) -> None:
    default = one(render("default"), "PrometheusRule")["spec"]["groups"]
    assert default == ops_groups()
    base = yaml.safe_load(ALL_ON.read_text())["runbookBaseUrl"]
    custom = one(render("all-options"), "PrometheusRule")["spec"]["groups"]
    expected = ops_groups(base)
    for rule in (r for g in expected for r in g["rules"] if r.get("alert") == "EcoMindStreamsNoExporter"):
        rule["for"] = "2m"  # all-options scrapes every 30 s: the one `for:` that follows the interval
        # and the description's "for 1 minute" says so
        assert "for 1 minute" in rule["annotations"]["description"]
        rule["annotations"]["description"] = rule["annotations"]["description"].replace("for 1 minute", "for 2 minutes")
    assert custom == expected and custom != default
    urls = [r["annotations"]["runbook_url"] for g in custom for r in g["rules"] if "alert" in r]
    assert urls and all(u.startswith(f"{base}#") for u in urls)
    promtool = shutil.which("promtool")
    assert promtool, "promtool comes with Debian's prometheus package (scripts/setup installs it)"
    for name, groups in (("default", default), ("custom", custom)):
        path = tmp_path / f"{name}.yml"
        path.write_text(yaml.safe_dump({"groups": groups}))
        done = subprocess.run([promtool, "check", "rules", str(path)], capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stdout + done.stderr
        assert f"SUCCESS: {sum(len(g['rules']) for g in groups)} rules found" in done.stdout


@pytest.mark.parametrize("which", VALUES)
def test_dashboards_are_the_ops_json_labelled_for_the_grafana_sidecar(which: str) -> None:
    values = yaml.safe_load((CHART / "values.yaml").read_text()) | (
        yaml.safe_load(ALL_ON.read_text()) if which == "all-options" else {}
    )
    maps = [d for d in render(which) if d["kind"] == "ConfigMap"]
    default_base = "https://github.com/ecomind/ecomind-streams/blob/main/RUNBOOK.md#"
    boards = {
        p.name: json.loads(p.read_text().replace(default_base, values["runbookBaseUrl"] + "#"))
        for p in (ROOT / "ops" / "grafana" / "dashboards").glob("*.json")
    }
    got = {}
    for cm in maps:
        for key, value in values["dashboards"]["labels"].items():
            assert cm["metadata"]["labels"][key] == value
        assert cm["metadata"]["annotations"]["grafana_folder"] == values["dashboards"]["folder"]
        ((name, text),) = cm["data"].items()
        got[name] = json.loads(text)
    assert got == boards and len(got) == 5
    links = [link["url"] for board in got.values() for p in board["panels"] for link in p.get("links", [])]
    assert links and all(url.startswith(values["runbookBaseUrl"] + "#") for url in links)


# --- the Deployment against the code the sidecar runs --------------------------------------------------


@pytest.mark.parametrize("which", VALUES)
def test_deployment_env_probes_port_and_secret_files_agree_with_the_sidecar(which: str, tmp_path: Path) -> None:
    pod, container = pod_container(render(which))
    # extraEnv's entries are the operator's (valueFrom, a proxy): the chart's own env comes before them.
    extra = (yaml.safe_load(ALL_ON.read_text()) if which == "all-options" else {}).get("extraEnv", [])
    own = container["env"][: len(container["env"]) - len(extra)]
    assert container["env"][len(own) :] == extra
    env = {e["name"]: e["value"] for e in own}
    assert set(env) <= settings_env_names(), set(env) - settings_env_names()
    assert all(e["name"] for e in container["env"]) and len(env) == len(own)
    # Every file the env names lies in a mounted Secret with that key; with those files in place the
    # sidecar's own settings code accepts the whole environment.
    mounts = materialise_mounts(pod, container, tmp_path)
    file_vars = {k: v for k, v in env.items() if k.endswith(("_FILE", "_CAFILE", "_CERTFILE", "_KEYFILE"))}
    local = dict(env)
    for name, path in file_vars.items():
        (mount,) = [m for m in mounts if path.startswith(m + "/")]
        local[name] = str(mounts[mount] / path[len(mount) + 1 :])
        assert Path(local[name]).is_file(), f"{name}={path} is not a key of the Secret mounted at {mount}"
    if "STREAMS_WEB_CONFIG_FILE" in local:
        Path(local["STREAMS_WEB_CONFIG_FILE"]).write_text("basic_auth_users: {}\n")
    settings = Settings.from_env(local)
    assert settings.redis_shards == (3 if which == "all-options" else 1)  # streams.redisShards
    # The chart mounts no Secret or ConfigMap that no variable names a file of (extraVolumes are the operator's).
    own = {m for m in mounts if m.startswith("/etc/ecomind-streams/")}
    assert {m for path in file_vars.values() for m in mounts if path.startswith(m + "/")} == own
    # Ports and probes: the container port is the one the settings give the web server, and the probes
    # ask routes the web server really has.
    (port,) = container["ports"]
    assert port["containerPort"] == settings.web_port and port["name"] == "http-metrics"
    routes = web_routes()
    assert container["livenessProbe"]["httpGet"]["path"] == "/health" in routes
    assert container["readinessProbe"]["httpGet"]["path"] == "/ready" in routes
    assert container["startupProbe"]["httpGet"]["path"] == "/ready"
    scheme = "HTTPS" if settings.web_config_file else "HTTP"
    assert {container[p]["httpGet"]["scheme"] for p in ("livenessProbe", "readinessProbe", "startupProbe")} == {scheme}
    # read-only root filesystem, with Faust's data dir on the emptyDir
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    datadir = container["command"][container["command"].index("--datadir") + 1]
    tmp_mounts = [m["mountPath"] for m in container["volumeMounts"] if m["name"] == "tmp"]
    assert any(datadir.startswith(m + "/") for m in tmp_mounts), (datadir, tmp_mounts)
    assert pod["securityContext"]["runAsNonRoot"] is True


def test_all_options_set_every_secret_file_the_sidecar_accepts() -> None:
    _, container = pod_container(render("all-options"))
    names = {e["name"] for e in container["env"]}
    assert {"KAFKA_SASL_PASSWORD_FILE", "REDIS_PASSWORD_FILE", "STREAMS_WEB_CONFIG_FILE"} <= names
    assert {"KAFKA_SASL_PASSWORD", "REDIS_PASSWORD"}.isdisjoint(names)  # secrets never inline


def test_the_recorded_env_names_include_the_secret_file_variants() -> None:
    names = settings_env_names()
    assert {"KAFKA_SASL_PASSWORD_FILE", "REDIS_URL_FILE", "REDIS_PASSWORD_FILE", "STREAMS_WEB_PORT"} <= names


def test_monitors_scrape_the_service_port_with_tls_and_basic_auth_when_the_web_config_is_on() -> None:
    default = one(render("default"), "ServiceMonitor")["spec"]["endpoints"][0]
    assert default["scheme"] == "http" and "tlsConfig" not in default and "basicAuth" not in default
    assert one(render("default"), "Service")["spec"]["ports"][0]["targetPort"] == "http-metrics"
    pm = one(render("all-options"), "PodMonitor")["spec"]["podMetricsEndpoints"][0]
    assert pm["scheme"] == "https" and pm["tlsConfig"]["ca"]["secret"]["name"] == "streams-web-ca"
    assert pm["basicAuth"]["password"] == {"name": "streams-scrape", "key": "password"}
    for endpoint in (default, pm):
        assert endpoint["port"] == "http-metrics" and endpoint["path"] == "/metrics"
        assert {"targetLabel": "ecomind_component", "replacement": "streams", "action": "replace"} in endpoint[
            "relabelings"
        ]


def test_notes_say_how_to_reach_metrics_and_which_labels_are_expected(tmp_path: Path) -> None:
    # `helm install --dry-run` takes no --kube-version, so NOTES.txt is rendered as an ordinary template
    # of a copy of the chart.
    copy = tmp_path / "ecomind-streams"
    shutil.copytree(CHART, copy, symlinks=False)
    notes_tpl = (copy / "templates" / "NOTES.txt").read_text()
    (copy / "templates" / "_notes.tpl").write_text('{{- define "notes" -}}' + notes_tpl + "{{- end -}}")
    (copy / "templates" / "notes.yaml").write_text('notes: {{ include "notes" . | toJson }}\n')
    done = run_helm("template", "prod", str(copy), "--namespace", "monitoring", "--kube-version", KUBERNETES_VERSION,
                     "-f", str(ALL_ON), "--show-only", "templates/notes.yaml")  # fmt: skip
    assert done.returncode == 0, done.stderr
    notes = yaml.safe_load(done.stdout)["notes"]
    assert "https://prod-ecomind-streams.monitoring.svc:8443/metrics" in notes
    assert "kubectl -n monitoring port-forward svc/prod-ecomind-streams 8443" in notes
    assert "podMonitorSelector" in notes and "release=kube-prometheus-stack" in notes
    assert "grafana_dashboard=1" in notes and 'ecomind_component="streams"' in notes
    assert "helm test prod -n monitoring" in notes


@pytest.fixture(autouse=True, scope="module")
def _no_stray_files() -> Iterator[None]:
    yield
    # Rendering must not write into the chart (helm keeps nothing there, and neither do the tests).
    assert not list(CHART.glob("*.tgz"))


def test_the_runbook_base_has_one_default_everywhere() -> None:
    default = yaml.safe_load((CHART / "values.yaml").read_text())["runbookBaseUrl"]
    for template in ("prometheusrule.yaml", "dashboards.yaml"):
        text = (CHART / "templates" / template).read_text()
        assert f'$default := "{default}#"' in text, template
    assert f'RUNBOOK_BASE = "{default}"' in (ROOT / "ops" / "grafana" / "board_kit.py").read_text()
    urls = [r["annotations"]["runbook_url"] for g in ops_groups() for r in g["rules"] if "alert" in r]
    assert urls and all(u == f"{default}#{u.rpartition('#')[2]}" for u in urls)


@pytest.mark.parametrize(
    ("interval", "seconds", "shutdown_s", "grace_s", "no_exporter_for"),
    [("15s", 15, 20, 25, "1m"), ("30s", 30, 37, 42, "2m"), ("1m", 60, 70, 75, "3m"), ("2m", 120, 136, 141, "5m")],
)
def test_the_hand_over_settings_grace_period_and_alert_follow_the_scrape_interval(
    interval: str, seconds: int, shutdown_s: int, grace_s: int, no_exporter_for: str
) -> None:
    docs = render("default", "--set", f"monitor.interval={interval}")
    pod, container = pod_container(docs)
    env = {e["name"]: e["value"] for e in container["env"]}
    settings = Settings.from_env(env)
    assert settings.scrape_interval_seconds == seconds
    # The drain can wait 1.1 intervals + 1 s for the last scrape and still release within the budget.
    assert settings.shutdown_timeout_seconds == shutdown_s >= 1.1 * seconds + 3
    # The kubelet waits for the sidecar's worst-case stop: one budget shared by every step, and the margin
    # past it (Faust's teardown) that the shutdown test measures against.
    assert pod["terminationGracePeriodSeconds"] == grace_s >= settings.shutdown_timeout_seconds + EXIT_MARGIN_S
    groups = one(docs, "PrometheusRule")["spec"]["groups"]
    (rule,) = [r for g in groups for r in g["rules"] if r.get("alert") == "EcoMindStreamsNoExporter"]
    assert rule["for"] == no_exporter_for
    # Longer than the longest planned gap: a crash handed over (10 s lease + 2.1 intervals + 1.5 s).
    assert int(no_exporter_for[:-1]) * 60 > 10 + 2.1 * seconds + 1.5


def test_a_compound_scrape_interval_is_refused_by_the_schema() -> None:
    done = run_helm(
        "template", "x", str(CHART), "--kube-version", KUBERNETES_VERSION, "--set", "monitor.interval=1m30s"
    )
    assert done.returncode != 0 and "interval" in done.stderr
