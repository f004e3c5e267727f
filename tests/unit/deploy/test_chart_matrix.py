"""A table of value combinations, each rendered by the real helm, linted strictly, validated against
Kubernetes' schemas (strict) and the Prometheus Operator's types, with the Deployment's env accepted by the
sidecar's own settings code. Beside the defaults and ci/all-options-values.yaml, these are the
combinations that take other branches of the templates."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from core.deadline import EXIT_MARGIN_S
from streams.settings import Settings
from tests.unit.deploy.helm import (
    CHART,
    KUBERNETES_VERSION,
    OPERATOR_KINDS,
    crdcheck,
    materialise_mounts,
    run_helm,
    settings_env_names,
)
from tests.unit.deploy.strict_yaml import load_all_strict

SASL_SSL = {"bootstrapServers": "b-1.msk.example:9096,b-2.msk.example:9096", "securityProtocol": "SASL_SSL"}
CASES: dict[str, dict[str, Any]] = {
    "scram, mutual TLS": {
        "kafka": {**SASL_SSL, "sasl": {"mechanism": "SCRAM-SHA-256", "username": "u", "existingSecret": "k"},
                  "tls": {"existingSecret": "t", "caKey": "ca.pem", "certKey": "c.pem", "keyKey": "k.pem"}},
    },
    "server-only TLS": {
        "kafka": {"bootstrapServers": "kafka:9093", "securityProtocol": "SSL", "tls": {"existingSecret": "ca"}},
    },
    "oauthbearer, network policy": {
        "kafka": {**SASL_SSL, "sasl": {"mechanism": "OAUTHBEARER", "oauth": {
            "tokenUrl": "https://login.example:8443/oauth2/token", "clientId": "streams", "existingSecret": "o",
            "scope": "kafka", "extensions": {"logicalCluster": "lkc-1"}}}},
        "networkPolicy": {"enabled": True},
    },
    "aws msk iam, irsa, network policy": {
        "kafka": {"bootstrapServers": "b-1.c1.kafka.eu-west-1.amazonaws.com:9098", "securityProtocol": "SASL_SSL",
                  "sasl": {"mechanism": "AWS_MSK_IAM", "aws": {"region": "eu-west-1",
                           "roleArn": "arn:aws:iam::123456789012:role/streams", "roleSessionName": "streams"}}},
        "serviceAccount": {"annotations": {"eks.amazonaws.com/role-arn": "arn:aws:iam::123456789012:role/s"}},
        "networkPolicy": {"enabled": True, "egress": {"dnsTo": [{"namespaceSelector": {}}]}},
    },
    "web config: TLS without basic auth, service monitor": {
        "webConfig": {"enabled": True, "existingSecret": "web", "tls": True, "scrape": {"insecureSkipVerify": True}},
        "monitor": {"kind": "ServiceMonitor"},
    },
    "web config: basic auth over plain HTTP": {
        "webConfig": {"enabled": True, "existingSecret": "web", "tls": False, "scrape": {"basicAuthSecret": "ba"}},
    },
    "escape hatches": {
        "extraEnv": [
            {"name": "STREAMS_REPLICA_ID", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
            {"name": "AWS_STS_REGIONAL_ENDPOINTS", "value": "regional"},
            {"name": "NO_PROXY", "valueFrom": {"configMapKeyRef": {"name": "proxy", "key": "no-proxy"}}},
        ],
        "envFrom": [{"secretRef": {"name": "more-settings"}}, {"configMapRef": {"name": "tuning", "optional": True}}],
        "extraVolumes": [{"name": "ca", "secret": {"secretName": "corporate-ca"}}],
        "extraVolumeMounts": [{"name": "ca", "mountPath": "/etc/ssl/corporate", "readOnly": True}],
        "strategy": {"type": "Recreate"},
        "revisionHistoryLimit": 0,
        "image": {"registry": "mirror.example:5000", "digest": "sha256:" + "ab" * 32},
        "resources": {"requests": {"ephemeral-storage": "100Mi"}, "limits": {"ephemeral-storage": "1Gi"}},
        "topologySpreadConstraints": [{"maxSkew": 1, "topologyKey": "topology.kubernetes.io/zone",
                                       "whenUnsatisfiable": "DoNotSchedule",
                                       "labelSelector": {"matchLabels": {"app.kubernetes.io/name": "x"}}}],
    },
    "names and labels": {
        "global": {"imageRegistry": "mirror.example", "imagePullSecrets": ["pull"]},
        "nameOverride": "metrics", "fullnameOverride": "ecomind-metrics",
        "commonLabels": {"team": "data"}, "podLabels": {"tier": "obs"}, "podAnnotations": {"a.example/b": "c"},
    },
    "everything optional off": {
        "serviceAccount": {"create": False, "name": "shared"},
        "podDisruptionBudget": {"enabled": False}, "tests": {"enabled": False}, "topologySpread": {"enabled": False},
        "monitor": {"enabled": False}, "prometheusRule": {"enabled": False}, "dashboards": {"enabled": False},
        "replicaCount": 1,
    },
    "network policy: ingress only, unix socket redis": {
        "networkPolicy": {"enabled": True, "from": [{"podSelector": {}}], "egress": {"enabled": False}},
        "redis": {"url": "unix:///var/run/redis/redis.sock"},
    },
    "long scrape interval, own budget and grace period": {
        "monitor": {"interval": "2m", "scrapeTimeout": "30s"},
        "streams": {"extraEnv": {"STREAMS_SHUTDOWN_TIMEOUT_SECONDS": "140.5"}},
        "terminationGracePeriodSeconds": 600,
    },
    "budget as a percentage, node port": {
        "replicaCount": 4, "podDisruptionBudget": {"maxUnavailable": "25%"}, "service": {"type": "NodePort"},
        "redis": {"url": "rediss://redis.data.svc", "existingSecret": "redis"},
        "networkPolicy": {"enabled": True, "egress": {"kafkaExtraPorts": [9094, 9092]}},
    },
}  # fmt: skip


def _render(values: dict[str, Any], tmp_path: Path) -> tuple[Path, str]:
    path = tmp_path / "values.yaml"
    path.write_text(yaml.safe_dump(values))
    done = run_helm("template", "prod", str(CHART), "--namespace", "monitoring", "--kube-version",
                     KUBERNETES_VERSION, "-f", str(path))  # fmt: skip
    assert done.returncode == 0, done.stderr
    return path, done.stdout


@pytest.mark.parametrize("case", CASES)
def test_each_combination_renders_lints_and_validates(case: str, tmp_path: Path) -> None:
    path, text = _render(CASES[case], tmp_path)
    lint = run_helm("lint", "--strict", str(CHART), "--kube-version", KUBERNETES_VERSION, "-f", str(path))
    assert lint.returncode == 0 and "0 chart(s) failed" in lint.stdout, lint.stdout + lint.stderr
    docs = load_all_strict(text)
    for doc in docs:
        if doc["kind"] not in OPERATOR_KINDS:
            kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
    if {d["kind"] for d in docs} & OPERATOR_KINDS:
        done = crdcheck(text)
        assert done.returncode == 0, done.stdout + done.stderr
    # The chart's own env (before extraEnv's) is what the sidecar's settings code reads and accepts.
    (deployment,) = [d for d in docs if d["kind"] == "Deployment"]
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    extra = CASES[case].get("extraEnv", [])
    own = container["env"][: len(container["env"]) - len(extra)]
    assert container["env"][len(own) :] == extra
    env = {e["name"]: e["value"] for e in own}
    assert set(env) <= settings_env_names(), set(env) - settings_env_names()
    mounts = materialise_mounts(pod, container, tmp_path / "root")
    for name, value in env.items():
        if name.endswith(("_FILE", "_CAFILE", "_CERTFILE", "_KEYFILE")):
            (mount,) = [m for m in mounts if value.startswith(m + "/")]
            env[name] = str(mounts[mount] / value[len(mount) + 1 :])
    if "STREAMS_WEB_CONFIG_FILE" in env:
        Path(env["STREAMS_WEB_CONFIG_FILE"]).write_text("basic_auth_users: {}\n")
    settings = Settings.from_env(env)
    assert pod["terminationGracePeriodSeconds"] >= settings.shutdown_timeout_seconds + EXIT_MARGIN_S
    assert pod["enableServiceLinks"] is False


def _egress(values: dict[str, Any], tmp_path: Path) -> list[dict[str, Any]]:
    _, text = _render(values, tmp_path)
    (policy,) = [d for d in load_all_strict(text) if d["kind"] == "NetworkPolicy"]
    rules: list[dict[str, Any]] = policy["spec"].get("egress", [])
    return rules


def _ports(rule: dict[str, Any]) -> list[tuple[int, str]]:
    return [(p["port"], p["protocol"]) for p in rule["ports"]]


DNS = [(53, "UDP"), (53, "TCP")]


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("oauthbearer, network policy", [DNS, [(9096, "TCP")], [(6379, "TCP")], [(8443, "TCP")]]),
        ("aws msk iam, irsa, network policy", [DNS, [(9098, "TCP")], [(6379, "TCP")], [(443, "TCP")], [(80, "TCP")]]),
        ("budget as a percentage, node port", [DNS, [(9092, "TCP"), (9094, "TCP")], [(6379, "TCP")]]),
        ("network policy: ingress only, unix socket redis", []),
    ],
)
def test_egress_follows_the_broker_redis_and_token_addresses(
    case: str, expected: list[list[tuple[int, str]]], tmp_path: Path
) -> None:
    rules = _egress(CASES[case], tmp_path)
    assert [_ports(r) for r in rules] == expected
    if case.startswith("aws"):
        assert rules[0]["to"] == [{"namespaceSelector": {}}]  # egress.dnsTo
        assert [p["ipBlock"]["cidr"] for p in rules[-1]["to"]] == ["169.254.169.254/32", "169.254.170.23/32"]


def test_egress_with_a_unix_socket_has_no_redis_rule_and_extra_rules_come_last(tmp_path: Path) -> None:
    values: dict[str, Any] = {"networkPolicy": {"enabled": True}, "redis": {"url": "unix:///run/redis.sock"}}
    assert [_ports(r) for r in _egress(values, tmp_path)] == [DNS, [(9092, "TCP")]]
    proxy = {"to": [{"ipBlock": {"cidr": "10.0.0.0/8"}}], "ports": [{"port": 3128, "protocol": "TCP"}]}
    values = {"networkPolicy": {"enabled": True, "egress": {"extra": [proxy]}}}
    assert _egress(values, tmp_path)[-1] == proxy


@pytest.mark.parametrize(
    ("values", "image"),
    [
        ({}, "ghcr.io/ecomind/ecomind-streams:{app}"),
        ({"image": {"tag": "0.2.1"}}, "ghcr.io/ecomind/ecomind-streams:0.2.1"),
        ({"global": {"imageRegistry": "mirror.example"}}, "mirror.example/ecomind/ecomind-streams:{app}"),
        ({"image": {"registry": "", "repository": "streams"}}, "streams:{app}"),
        # the 0.1 chart's form: the registry in the repository
        ({"image": {"repository": "reg.example:5000/streams"}}, "reg.example:5000/streams:{app}"),
        ({"image": {"repository": "localhost/streams", "tag": "dev"}}, "localhost/streams:dev"),
        ({"image": {"digest": "sha256:" + "0" * 64}}, "ghcr.io/ecomind/ecomind-streams:{app}@sha256:" + "0" * 64),
    ],
)  # fmt: skip
def test_the_image_reference(values: dict[str, Any], image: str, tmp_path: Path) -> None:
    _, text = _render(values, tmp_path)
    app = yaml.safe_load((CHART / "Chart.yaml").read_text())["appVersion"]
    images = {c["image"] for d in load_all_strict(text) if d["kind"] in ("Deployment", "Pod")
              for c in (d["spec"].get("template", d)["spec"]["containers"])}  # fmt: skip
    assert images == {image.format(app=app)}  # the test pod runs the same image


@pytest.mark.parametrize("kube", ["1.25.0", "1.31.0", "1.34.0"])
@pytest.mark.parametrize("which", ["default", "all-options"])
def test_renders_validate_on_the_oldest_the_reference_and_a_recent_kubernetes(kube: str, which: str) -> None:
    args = [] if which == "default" else ["-f", str(CHART / "ci" / "all-options-values.yaml")]
    done = run_helm("template", "prod", str(CHART), "--namespace", "monitoring", "--kube-version", kube, *args)
    assert done.returncode == 0, done.stderr
    docs = load_all_strict(done.stdout)
    assert {d["kind"] for d in docs} >= {"Deployment", "Service", "PodDisruptionBudget"}
    for doc in docs:
        if doc["kind"] not in OPERATOR_KINDS:
            kubernetes_validate.validate(doc, kube, strict=True)
