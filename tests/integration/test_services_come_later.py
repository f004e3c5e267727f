"""A sidecar started before Redis and the broker exist says why it is not ready, and connects, by itself,
once they come up on the addresses it was given."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from streams.local.brokers import LocalKafka, LocalTansu
from streams.local.proc import Server, free_port, port_open
from streams.local.redis_server import LocalRedis
from streams.local.sidecar_proc import FAUST, SidecarProc, wait_until
from streams.local.topics import make_topics
from tests.integration.conftest import BROKER_KIND, Names, sidecar_env

pytestmark = pytest.mark.integration

SYNTHETIC = Path(__file__).resolve().parents[2] / "ops" / "synthetic" / "check_sidecar.py"


def _ready(proc: SidecarProc) -> tuple[int, dict[str, object]]:
    status, body = proc.get("/ready")
    return status, json.loads(body)


def _synthetic(proc: SidecarProc) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, str(SYNTHETIC), proc.url]
    return subprocess.run(argv, capture_output=True, text=True, timeout=30)


def test_not_ready_without_services_then_connects_when_they_come(names: Names, workdir: Path) -> None:
    home = workdir / f"late-{names.app_id}"
    # Addresses fixed now, servers started later: nothing listens there while the sidecar starts.
    broker: LocalKafka | LocalTansu = (
        LocalTansu(home / "tansu") if BROKER_KIND == "tansu" else LocalKafka(home / "kafka")
    )
    redis = LocalRedis(home / "redis")
    assert not port_open(broker.port) and not port_open(redis.port)
    flag_port, env_port = free_port(), free_port()
    proc = SidecarProc(home, sidecar_env(broker, redis, names), port=flag_port)
    proc.env["STREAMS_WEB_PORT"] = str(env_port)  # Faust's --web-port flag must win over the variable
    argv = [FAUST, "-A", "streams", "--datadir", str(home / "faust"), "worker", "-l", "info"]
    proc.server = Server("sidecar", [*argv, "--web-port", str(flag_port)], home / "sidecar.log", env=proc.env)
    proc.server.start()
    try:
        # Not ready, and /ready says why: neither service answers.
        status, body = wait_until(lambda: _with_reasons(proc), 60, what="/ready with its reasons")
        assert status == 503, body
        assert body["ready"] is False
        assert body["redis_reachable"] is False and body["broker_reachable"] is False
        assert proc.get("/health")[0] == 200
        assert not port_open(env_port)
        check = _synthetic(proc)
        assert check.returncode == 1 and "/ready: HTTP 503" in check.stderr
        assert proc.running()

        redis.start()
        broker.start()
        make_topics(broker.bootstrap, [names.raw, names.enriched], partitions=2)
        # Connects by itself: the flags turn true from their initial false, and /ready answers 200.
        status, body = wait_until(lambda: _ready_now(proc), 120, what="ready once the services are up")
        assert body["redis_reachable"] is True and body["broker_reachable"] is True, body
        assert body["tables_recovered"] is True, body
        check = _synthetic(proc)
        assert check.returncode == 0, check.stderr
        assert proc.running()
    finally:
        proc.stop()
        broker.stop()
        redis.stop()


def _with_reasons(proc: SidecarProc) -> tuple[int, dict[str, object]] | None:
    """/ready once the sidecar reports its services (before that it only says "starting")."""
    status, body = _ready(proc)
    return (status, body) if "redis_reachable" in body else None


def _ready_now(proc: SidecarProc) -> tuple[int, dict[str, object]] | None:
    status, body = _ready(proc)
    return (status, body) if status == 200 else None
