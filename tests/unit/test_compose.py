"""docker-compose.yml cannot run here (no Docker engine), so its promises are checked one by one:
mounted files exist, service names and ports agree with the Prometheus config, images are pinned."""

from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
PROMETHEUS = yaml.safe_load((ROOT / "ops" / "prometheus" / "prometheus.yml").read_text())
SERVICES = COMPOSE["services"]


def test_every_bind_mount_exists_and_points_into_the_repo() -> None:
    for name, service in SERVICES.items():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("."):
                assert (ROOT / source).exists(), f"{name} mounts missing {source}"


def test_prometheus_config_and_rules_are_what_the_container_reads() -> None:
    mounts = dict(v.split(":")[:2] for v in SERVICES["prometheus"]["volumes"])
    assert mounts["./ops/prometheus/prometheus.yml"] == "/etc/prometheus/prometheus.yml"
    assert mounts["./ops/prometheus/rules"] == "/etc/prometheus/rules"
    assert PROMETHEUS["rule_files"] == ["rules/recording.yml", "rules/alerts.yml"]


def test_scrape_targets_are_compose_services_on_their_container_ports() -> None:
    jobs = {job["job_name"]: job for job in PROMETHEUS["scrape_configs"]}
    targets = [t for sc in jobs["ecomind-streams"]["static_configs"] for t in sc["targets"]]
    replicas = sorted(name for name in SERVICES if name.startswith("streams-"))
    assert sorted(t.split(":")[0] for t in targets) == replicas
    for target in targets:
        host, port = target.split(":")
        env = SERVICES[host].get("environment", {})
        assert env.get("STREAMS_WEB_PORT", SERVICES["streams-1"]["environment"]["STREAMS_WEB_PORT"]) == port
    am = PROMETHEUS["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"]
    assert am == ["alertmanager:9093"] and "9093:9093" in SERVICES["alertmanager"]["ports"]


def test_replicas_share_one_group_and_differ_in_lease_name() -> None:
    envs = [SERVICES[name]["environment"] for name in ("streams-1", "streams-2")]
    assert envs[0]["STREAMS_APP_ID"] == envs[1]["STREAMS_APP_ID"]
    assert envs[0]["STREAMS_REPLICA_ID"] != envs[1]["STREAMS_REPLICA_ID"]
    assert all(
        e["KAFKA_BOOTSTRAP_SERVERS"] == "kafka:9092" and e["REDIS_URL"].startswith("redis://redis:") for e in envs
    )


def test_images_are_pinned() -> None:
    for name, service in SERVICES.items():
        if "image" in service:
            assert ":" in service["image"] and not service["image"].endswith(":latest"), name
