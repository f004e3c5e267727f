"""Security settings end to end: /metrics over TLS with basic auth (exporter-toolkit web-config file),
Kafka over SASL_SSL and Redis over TLS with AUTH, all passed through from the environment."""

from __future__ import annotations

import asyncio
import http.client
import ssl
import time
from pathlib import Path

import bcrypt
import orjson
import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.helpers import create_ssl_context

from streams.local.brokers import LocalKafka, SaslSsl
from streams.local.redis_server import LocalRedis
from streams.local.scrape import Samples, series, value
from streams.local.sidecar_proc import SidecarProc, wait_until
from tests.integration.conftest import Names, self_signed, sidecar_env

pytestmark = pytest.mark.integration


def test_metrics_over_tls_with_basic_auth_and_redis_auth(broker, names: Names, workdir: Path) -> None:  # type: ignore[no-untyped-def]
    home = workdir / f"secure-{names.app_id}"
    home.mkdir()
    cert, _ = self_signed(home)
    hashed = bcrypt.hashpw(b"s3cret pass", bcrypt.gensalt(rounds=10)).decode()
    config = home / "web-config.yml"
    # Relative paths: read from the config file's directory, as the exporter toolkit does.
    config.write_text(
        "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n"
        f"basic_auth_users:\n  prometheus: '{hashed}'\n"
    )
    redis = LocalRedis(home / "redis", password="redis-pw").start()
    client_tls = ssl.create_default_context(cafile=str(cert))
    env = sidecar_env(broker, redis, names, STREAMS_WEB_CONFIG_FILE=str(config))
    proc = SidecarProc(home, env, tls=client_tls).start()
    try:
        proc.wait_ready()  # /ready stays open for probes, over TLS
        assert proc.get("/metrics")[0] == 401
        assert proc.get("/metrics", auth=("prometheus", "wrong"))[0] == 401
        assert proc.get("/metrics", auth=("someone", "s3cret pass"))[0] == 401
        assert proc.get("/metrics", auth=("prometheus", "x" * 100))[0] == 401
        status, body = proc.get("/metrics", auth=("prometheus", "s3cret pass"))
        assert status == 200
        assert b"ecomind_daily_active_users" in body
        proc.auth = ("prometheus", "s3cret pass")
        m = proc.scrape()
        assert value(m, "ecomind_streams_redis_up") == 1.0  # Redis AUTH passed through from REDIS_URL
        assert value(m, "ecomind_streams_ready") == 1.0
        # Plain HTTP on the TLS port gets no metrics.
        plain = http.client.HTTPConnection("127.0.0.1", proc.port, timeout=5)
        with pytest.raises((http.client.HTTPException, ConnectionError)):
            plain.request("GET", "/metrics")
            plain.getresponse()
        # A client that does not trust the certificate is refused by TLS itself.
        with pytest.raises(ssl.SSLError):
            untrusted = http.client.HTTPSConnection("127.0.0.1", proc.port, timeout=5)
            untrusted.request("GET", "/metrics")
    finally:
        proc.stop()
        redis.stop()


def test_wrong_redis_password_is_not_ready(broker, names: Names, workdir: Path) -> None:  # type: ignore[no-untyped-def]
    home = workdir / f"redis-auth-{names.app_id}"
    redis = LocalRedis(home / "redis", password="right").start()
    wrong = LocalRedis(home / "redis", port=redis.port, password="wrong")
    proc = SidecarProc(home, sidecar_env(broker, wrong, names)).start()
    try:
        proc.wait_until_serving()
        # Redis answered and refused the password (not merely: nothing connected yet).
        wait_until(lambda: _log_count(proc, REDIS_REFUSED) >= 2, 60, what="Redis AUTH refused")
        status, body = proc.get("/ready")
        assert status == 503 and b'"redis_reachable":false' in body.replace(b" ", b"")
        assert value(proc.scrape(), "ecomind_streams_redis_up") == 0.0
        assert proc.running()
    finally:
        proc.stop()
        redis.stop()


def test_bad_web_config_exits_with_a_clear_message(broker, redis_server, names: Names, workdir: Path) -> None:  # type: ignore[no-untyped-def]
    home = workdir / f"bad-config-{names.app_id}"
    home.mkdir()
    config = home / "web-config.yml"
    config.write_text("basic_auth_users:\n  prometheus: plaintext-password\n")
    proc = SidecarProc(home, sidecar_env(broker, redis_server, names, STREAMS_WEB_CONFIG_FILE=str(config))).start()
    assert proc.server is not None and proc.server.proc is not None
    assert proc.server.proc.wait(timeout=60) == 2
    assert "basic_auth_users.prometheus is not a bcrypt hash" in proc.log_tail()


def _kafka_security(cert: Path, user: str, password: str) -> dict[str, object]:
    return {
        "security_protocol": "SASL_SSL",
        "sasl_mechanism": "PLAIN",
        "sasl_plain_username": user,
        "sasl_plain_password": password,
        "ssl_context": create_ssl_context(cafile=str(cert)),
    }


async def _setup_topics(kafka: LocalKafka, names: Names, dead: str, cert: Path) -> None:
    security = _kafka_security(cert, "admin", "admin-pw")
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka.bootstrap, **security)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(t, 2, 1) for t in (names.raw, names.enriched, dead)])
    finally:
        await admin.close()
    producer = AIOKafkaProducer(bootstrap_servers=kafka.bootstrap, acks="all", **security)
    await producer.start()
    try:
        now_ms = int(time.time() * 1000)
        for n in range(100):
            ev = {"org_id": f"o{n % 3}", "user_id": f"u{n}", "provider": "openai", "model": "gpt-4o"}
            await producer.send(names.raw, orjson.dumps({**ev, "tokens_in": 1, "tokens_out": 2, "ts": now_ms}))
        await producer.send_and_wait(names.raw, b"{not json")
    finally:
        await producer.stop()


@pytest.mark.kafka_only
def test_kafka_sasl_ssl_and_redis_tls_pass_through(names: Names, workdir: Path) -> None:
    home = workdir / f"sasl-{names.app_id}"
    home.mkdir()
    cert, key = self_signed(home)
    keystore = home / "keystore.pem"
    keystore.write_bytes(key.read_bytes() + cert.read_bytes())
    users = {"admin": "admin-pw", "streams": "streams-pw"}
    kafka = LocalKafka(home / "kafka", sasl_ssl=SaslSsl(keystore, cert, users)).start()
    redis = LocalRedis(home / "redis", password="redis-pw", tls=(cert, key)).start()
    dead = f"dead.{names.app_id}"
    procs: list[SidecarProc] = []
    try:
        asyncio.run(_setup_topics(kafka, names, dead, cert))
        secure = {
            "KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
            "KAFKA_SASL_MECHANISM": "PLAIN",
            "KAFKA_SASL_USERNAME": "streams",
            "KAFKA_SASL_PASSWORD": "streams-pw",
            "KAFKA_SSL_CAFILE": str(cert),
            "STREAMS_DEAD_LETTER_TOPIC": dead,
        }
        assert redis.url.startswith("rediss://:redis-pw@")
        good = SidecarProc(home / "good", sidecar_env(kafka, redis, names, **secure)).start()
        procs.append(good)
        good.wait_ready()
        m = wait_until(lambda: _counted(good, names, 100), 60, what="events read over SASL_SSL")
        assert value(m, "ecomind_daily_active_users") == 100.0
        assert value(m, "ecomind_streams_events_invalid_total", topic=names.raw, reason="not_json") == 1.0
        assert value(m, "ecomind_streams_dead_letters_total") == 1.0  # the dead-letter producer too
        assert value(m, "ecomind_streams_broker_up") == 1.0 and value(m, "ecomind_streams_redis_up") == 1.0
        # The lag probe's admin client and consumer connect too: one committed-offset series per partition.
        wait_until(
            lambda: len(series(good.scrape(), "ecomind_streams_watch_group_committed")) == 2, 30, what="lag probe"
        )

        # The control: the same settings with the right password passed the SASL handshake.
        assert _log_count(good, SASL_REFUSED) == 0 and _log_count(good, "Authenticated as streams via PLAIN") > 0

        wrong = {**secure, "KAFKA_SASL_PASSWORD": "not-the-password"}
        bad = SidecarProc(home / "bad", sidecar_env(kafka, redis, names, **wrong), name="bad").start()
        procs.append(bad)
        bad.wait_until_serving()
        # Not "nothing happened yet": the broker answered the handshake and refused these credentials,
        # more than once (the clients retry), and through all of it the sidecar never counted the broker up.
        wait_until(lambda: _log_count(bad, SASL_REFUSED) >= 3, 60, what="SASL handshakes refused by the broker")
        status, body = bad.get("/ready")
        assert status == 503 and b'"broker_reachable":false' in body.replace(b" ", b"")
        assert value(bad.scrape(), "ecomind_streams_broker_up") == 0.0
        assert _log_count(bad, "Authenticated as streams") == 0
        assert _log_count(bad, "Kafka reachable") == 0  # logged when broker_up turns 1
        assert bad.running()
    finally:
        for proc in procs:
            proc.stop()
        redis.stop()
        kafka.stop()


# What the clients log when the server refuses credentials (aiokafka: Kafka's SASL_AUTHENTICATION_FAILED,
# error 58; redis-py: Redis's WRONGPASS): only a refused handshake produces these lines.
SASL_REFUSED = "SaslAuthenticationFailed"
REDIS_REFUSED = "invalid username-password pair"


def _log_count(proc: SidecarProc, text: str) -> int:
    assert proc.server is not None
    return proc.server.log_path.read_text(errors="replace").count(text)


def _counted(proc: SidecarProc, names: Names, raw: int) -> Samples | None:
    m = proc.scrape()
    return m if value(m, "ecomind_streams_events_processed_total", topic=names.raw) == float(raw) else None
