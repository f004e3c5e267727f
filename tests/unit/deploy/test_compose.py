"""docker-compose.yml cannot run here (no Docker engine), so it is validated against the Compose
Specification's JSON schema (as compose-go ships it) and its promises are checked one by one: mounted
files exist, service names and ports agree with the Prometheus config, images are pinned, one image is
built, Kafka keeps its log on its volume, services start when what they need is healthy."""

import json
import subprocess
from pathlib import Path

import jsonschema
import yaml

ROOT = Path(__file__).resolve().parents[3]
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
    assert PROMETHEUS["rule_files"] == ["rules/recording.yml", "rules/alerts.yml", "rules/lag.yml"]


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


def test_the_file_is_valid_against_the_compose_specification_schema() -> None:
    done = subprocess.run(
        [str(ROOT / "deploy" / "tools" / "fetch-compose-schema")], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    validator = jsonschema.Draft202012Validator(json.loads(Path(done.stdout.strip()).read_text()))
    assert [e.message for e in validator.iter_errors(COMPOSE)] == []
    # The schema is strict enough to catch a misspelt key.
    broken = {**COMPOSE, "services": {**SERVICES, "redis": {**SERVICES["redis"], "helthcheck": {}}}}
    assert any("helthcheck" in e.message for e in validator.iter_errors(broken))


def test_prometheus_scrapes_only_services_the_stack_runs() -> None:
    for job in PROMETHEUS["scrape_configs"]:
        for static in job["static_configs"]:
            for target in static["targets"]:
                assert target.split(":")[0] in SERVICES, f"{job['job_name']} scrapes {target}, not a compose service"


def test_one_image_is_built_and_reused() -> None:
    built = [name for name, s in SERVICES.items() if "build" in s]
    assert built == ["streams-1"] and SERVICES["streams-1"]["build"]["context"] == "."
    # the image's optional extras (Dockerfile's EXTRAS) from the environment, none by default
    assert SERVICES["streams-1"]["build"]["args"] == {"EXTRAS": "${STREAMS_EXTRAS:-}"}
    image = SERVICES["streams-1"]["image"]
    reusers = [name for name, s in SERVICES.items() if s.get("image") == image and name != "streams-1"]
    assert sorted(reusers) == ["streams-2", "traffic"]
    assert all(SERVICES[name]["pull_policy"] == "never" for name in reusers)  # built here, not pulled


def test_kafka_keeps_its_log_on_its_volume() -> None:
    kafka = SERVICES["kafka"]
    (volume,) = kafka["volumes"]
    name, path = volume.split(":")
    assert name in COMPOSE["volumes"] and kafka["environment"]["KAFKA_LOG_DIRS"] == path


def test_dependencies_are_healthy_before_the_sidecars_start() -> None:
    assert "kafka-broker-api-versions.sh" in " ".join(SERVICES["kafka"]["healthcheck"]["test"])
    assert "redis-cli ping" in " ".join(SERVICES["redis"]["healthcheck"]["test"])
    for name in ("streams-1", "streams-2"):
        assert SERVICES[name]["depends_on"] == {
            "kafka": {"condition": "service_healthy"},
            "redis": {"condition": "service_healthy"},
        }
        assert "/ready" in " ".join(SERVICES[name]["healthcheck"]["test"])
    assert SERVICES["traffic"]["depends_on"] == {"kafka": {"condition": "service_healthy"}}
    # The traffic generator serves no HTTP: the image's HTTP healthcheck is switched off for it.
    assert SERVICES["traffic"]["healthcheck"] == {"disable": True}


def test_grafana_admin_password_comes_from_the_environment() -> None:
    env = SERVICES["grafana"]["environment"]
    assert env["GF_SECURITY_ADMIN_PASSWORD"].startswith("${GRAFANA_ADMIN_PASSWORD:?")
    assert "admin" not in {str(v) for v in env.values()}
