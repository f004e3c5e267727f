"""/metrics over TLS with basic auth (exporter-toolkit web-config file); Redis AUTH from the URL."""

from __future__ import annotations

import http.client
import ssl
import subprocess
from pathlib import Path

import bcrypt
import pytest

from streams.local.redis_server import LocalRedis
from streams.local.scrape import value
from streams.local.sidecar_proc import SidecarProc
from tests.integration.conftest import Names, sidecar_env

pytestmark = pytest.mark.integration


def _self_signed(directory: Path) -> tuple[Path, Path]:
    cert, key = directory / "server.crt", directory / "server.key"
    argv = ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=127.0.0.1"]
    argv += ["-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)]
    subprocess.run(
        argv,
        check=True,
        capture_output=True,
    )
    return cert, key


def test_metrics_over_tls_with_basic_auth_and_redis_auth(broker, names: Names, workdir: Path) -> None:  # type: ignore[no-untyped-def]
    home = workdir / f"secure-{names.app_id}"
    home.mkdir()
    cert, _ = _self_signed(home)
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
