"""The chart's Redis topologies: a Sentinel or Cluster URL, the sentinels' password Secret, the Redis CA
from a ConfigMap or a Secret (and a client certificate), each giving an environment the sidecar's own
settings accept, NetworkPolicy egress to every Redis port, and combinations that cannot work refused.
Rendered by the real helm."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from streams.settings import Settings
from tests.unit.deploy.helm import CHART, KUBERNETES_VERSION, materialise_mounts, one, pod_container, run_helm
from tests.unit.deploy.strict_yaml import load_all_strict

SENTINEL = "redis+sentinel://sentinel-0.data:26379,sentinel-1.data:26380/streams/1"
CLUSTER = "rediss+cluster://node-0.data:7000,node-1.data:7001"
CLIENT_CERT = ["--set", "redis.tls.certKey=tls.crt", "--set", "redis.tls.keyKey=tls.key"]


def _commas(url: str) -> str:
    """`--set` splits values at commas unless escaped (a values file needs no escaping)."""
    return url.replace(",", "\\,")


def _template(*args: str) -> tuple[int, str, list[dict[str, Any]]]:
    done = run_helm("template", "prod", str(CHART), "--kube-version", KUBERNETES_VERSION, *args)
    return done.returncode, done.stderr, load_all_strict(done.stdout) if done.returncode == 0 else []


def _settings(docs: list[dict[str, Any]], root: Path) -> tuple[Settings, dict[str, str]]:
    """The sidecar's settings from the pod's env, with every mounted file in place."""
    pod, container = pod_container(docs)
    env = {e["name"]: e["value"] for e in container["env"] if "value" in e}
    mounts = materialise_mounts(pod, container, root)
    for name, path in env.items():
        if name.endswith("_FILE"):
            (mount,) = [m for m in mounts if path.startswith(m + "/")]
            env[name] = str(mounts[mount] / path[len(mount) + 1 :])
    return Settings.from_env(env), env


@pytest.mark.parametrize(
    ("values", "topology", "files"),
    [
        (
            ["--set", f"redis.url={_commas(SENTINEL)}", "--set", "redis.existingSecret=redis",
             "--set", "redis.sentinel.existingSecret=sentinels"],
            "sentinel",
            {"REDIS_PASSWORD_FILE": "redis/redis-password",
             "REDIS_SENTINEL_PASSWORD_FILE": "redis-sentinel/sentinel-password"},
        ),
        (
            ["--set", f"redis.url={_commas(CLUSTER)}", "--set", "redis.tls.caConfigMap=redis-ca"],
            "cluster",
            {"REDIS_TLS_CA_FILE": "redis-ca/ca.crt"},
        ),
        (
            ["--set", "redis.url=rediss://redis:6380/0", "--set", "redis.tls.existingSecret=redis-tls",
             "--set", "redis.tls.caKey=root.pem", *CLIENT_CERT],
            "standalone",
            {"REDIS_TLS_CA_FILE": "redis-tls/root.pem", "REDIS_TLS_CERT_FILE": "redis-tls/tls.crt",
             "REDIS_TLS_KEY_FILE": "redis-tls/tls.key"},
        ),
    ],
)  # fmt: skip
def test_each_topology_renders_an_environment_the_sidecar_accepts(
    values: list[str], topology: str, files: dict[str, str], tmp_path: Path
) -> None:
    code, err, docs = _template(*values)
    assert code == 0, err
    settings, env = _settings(docs, tmp_path)
    assert settings.redis.topology == topology
    redis_files = {k: v for k, v in env.items() if k.startswith("REDIS_") and k.endswith("_FILE")}
    assert {
        k: str(Path(v).relative_to(tmp_path / "etc/ecomind-streams/secrets")) for k, v in redis_files.items()
    } == files
    if topology == "sentinel":
        assert settings.redis.sentinel_password == "secret-value" and settings.redis.service == "streams"
    if topology == "cluster":
        assert settings.redis.ca_file == env["REDIS_TLS_CA_FILE"] and settings.redis.tls


@pytest.mark.parametrize(
    ("url", "extra", "ports"),
    [
        ("redis://redis:6379/0", [], [6379]),
        ("redis://redis/0", [], [6379]),
        (SENTINEL, [], [26379, 26380, 6379]),  # the data nodes behind the sentinels: 6379 unless told
        (SENTINEL, ["--set", "networkPolicy.egress.redisExtraPorts={6380}"], [26379, 26380, 6380]),
        ("redis+sentinel://s0,s1/streams", [], [26379, 6379]),
        (CLUSTER, [], [7000, 7001]),
        (
            "redis+cluster://[fd00::1]:7000,node-1",
            ["--set", "networkPolicy.egress.redisExtraPorts={7002}"],
            [7000, 6379, 7002],
        ),
    ],
)
def test_the_network_policy_opens_every_redis_port(url: str, extra: list[str], ports: list[int]) -> None:
    code, err, docs = _template("--set", f"redis.url={_commas(url)}", "--set", "networkPolicy.enabled=true",
                                "--set", "networkPolicy.egress.enabled=true", *extra)  # fmt: skip
    assert code == 0, err
    rules = one(docs, "NetworkPolicy")["spec"]["egress"]
    (redis,) = [r for r in rules if r["ports"][0]["port"] == ports[0]]
    assert [p["port"] for p in redis["ports"]] == ports


@pytest.mark.parametrize(
    ("values", "message"),
    [
        (["--set", "redis.tls.caConfigMap=ca"], "redis.tls is set but redis.url=redis://redis:6379/0 does not use TLS"),
        (["--set", "redis.url=rediss://r:6380/0", *CLIENT_CERT],
         "redis.tls.certKey and redis.tls.keyKey go together, in redis.tls.existingSecret"),
        (["--set", "redis.url=rediss://r:6380/0", "--set", "redis.tls.existingSecret=t", *CLIENT_CERT[:2]],
         "redis.tls.certKey and redis.tls.keyKey go together"),
        (["--set", "redis.sentinel.existingSecret=s"],
         "redis.sentinel.existingSecret is set but redis.url names no sentinels"),
        (["--set", "redis.url=redis+sentinel://:pw@s0:26379/streams"], "redis.existingSecret"),
        (["--set", "redis.url=redis-cluster://n0:7000"], "/redis/url"),
    ],
)  # fmt: skip
def test_combinations_that_cannot_work_are_refused(values: list[str], message: str) -> None:
    code, err, _ = _template(*values)
    assert code != 0 and message in err.replace("\\\\", "\\").replace("\\.", "."), err
