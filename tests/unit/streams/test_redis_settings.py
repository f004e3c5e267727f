"""REDIS_URL's topologies (one server, Sentinel, Cluster), their credentials and TLS files: parsed into
RedisSettings, refused with errors naming the variable, and turned into the right redis-py client."""

from __future__ import annotations

from pathlib import Path

import pytest
from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.sentinel import SentinelConnectionPool

from streams import clients
from streams.redis_settings import CLUSTER, SENTINEL, STANDALONE
from streams.settings import Settings, SettingsError


@pytest.mark.parametrize(
    ("url", "topology", "nodes", "service", "db", "tls"),
    [
        ("redis://redis:6379/2", STANDALONE, (), None, 0, False),
        ("rediss://redis:6380/0", STANDALONE, (), None, 0, True),
        ("unix:///run/redis.sock?db=1", STANDALONE, (), None, 0, False),
        ("redis+sentinel://s1:26379,s2:26380/mymaster", SENTINEL, (("s1", 26379), ("s2", 26380)), "mymaster", 0, False),
        ("redis+sentinel://s1,s2/mymaster/3", SENTINEL, (("s1", 26379), ("s2", 26379)), "mymaster", 3, False),
        ("rediss+sentinel://[::1]:5000/m", SENTINEL, (("::1", 5000),), "m", 0, True),
        ("REDIS+SENTINEL://s1:1/m/", SENTINEL, (("s1", 1),), "m", 0, False),
        ("redis+cluster://n1:7000,n2:7001", CLUSTER, (("n1", 7000), ("n2", 7001)), None, 0, False),
        ("rediss+cluster://n1", CLUSTER, (("n1", 6379),), None, 0, True),
        ("redis+cluster://n1:7000/", CLUSTER, (("n1", 7000),), None, 0, False),
    ],
)
def test_each_scheme_names_its_topology(
    url: str, topology: str, nodes: tuple[tuple[str, int], ...], service: str | None, db: int, tls: bool
) -> None:
    r = Settings.from_env({"REDIS_URL": url}).redis
    assert (r.topology, r.nodes, r.service, r.db, r.tls) == (topology, nodes, service, db, tls)


@pytest.mark.parametrize(
    ("env", "username", "password"),
    [
        ({"REDIS_URL": "redis+cluster://acl-user:p%40ss@n1:7000"}, "acl-user", "p@ss"),
        ({"REDIS_URL": "redis+cluster://acl-user@n1:7000", "REDIS_PASSWORD": "pw"}, "acl-user", "pw"),
        ({"REDIS_URL": "redis+sentinel://:pw@s1:26379/m"}, None, "pw"),
        ({"REDIS_URL": "redis+sentinel://s1:26379/m"}, None, None),
    ],
)
def test_credentials_come_from_the_url_or_redis_password(
    env: dict[str, str], username: str | None, password: str | None
) -> None:
    r = Settings.from_env(env).redis
    assert (r.username, r.password) == (username, password)
    assert "p@ss" not in repr(r) and "pw" not in repr(r).replace("password", "")  # never in a log line


def test_secrets_and_tls_files_come_from_files(tmp_path: Path) -> None:
    (tmp_path / "pw").write_text("data pw\n")
    (tmp_path / "spw").write_text("sentinel pw\n")
    for name in ("ca.pem", "cert.pem", "key.pem"):
        (tmp_path / name).write_text("x")
    env = {
        "REDIS_URL": "rediss+sentinel://s1:26379,s2:26379/mymaster/1",
        "REDIS_PASSWORD_FILE": str(tmp_path / "pw"),
        "REDIS_SENTINEL_PASSWORD_FILE": str(tmp_path / "spw"),
        "REDIS_TLS_CA_FILE": str(tmp_path / "ca.pem"),
        "REDIS_TLS_CERT_FILE": str(tmp_path / "cert.pem"),
        "REDIS_TLS_KEY_FILE": str(tmp_path / "key.pem"),
    }
    r = Settings.from_env(env).redis
    assert (r.password, r.sentinel_password) == ("data pw", "sentinel pw")
    assert r.tls_kwargs() == {
        "ssl": True,
        "ssl_ca_certs": str(tmp_path / "ca.pem"),
        "ssl_certfile": str(tmp_path / "cert.pem"),
        "ssl_keyfile": str(tmp_path / "key.pem"),
    }


@pytest.mark.parametrize(
    ("env", "message"),
    [
        (
            {"REDIS_URL": "redis+sentinel://s1:26379"},
            r"^REDIS_URL: redis\+sentinel:// needs the primary's service name",
        ),
        ({"REDIS_URL": "redis+sentinel://s1:26379/"}, "needs the primary's service name"),
        ({"REDIS_URL": "redis+sentinel://s1:26379/m/x"}, r"expected /<service>\[/<db number>\].*found /m/x"),
        ({"REDIS_URL": "redis+sentinel://s1:26379/m/1/2"}, "found /m/1/2"),
        ({"REDIS_URL": "redis+cluster://n1:7000/1"}, r"^REDIS_URL: a Redis Cluster has only database 0"),
        ({"REDIS_URL": "redis+cluster://n1:7000,n2:x"}, r"^REDIS_URL: 'n2:x' is not a host:port"),
        ({"REDIS_URL": "redis+cluster://n1:70000"}, "'n1:70000' is not a host:port"),
        ({"REDIS_URL": "redis+cluster://n1:7000,,n2"}, "'' is not a host:port"),
        ({"REDIS_URL": "redis+cluster://[::1]x"}, r"'\[::1\]x' is not a host:port"),
        ({"REDIS_URL": "redis+cluster://"}, "^REDIS_URL names no host"),
        ({"REDIS_URL": "redis+cluster://n1:7000?ssl_ca_certs=/ca"}, r"takes no \?options"),
        ({"REDIS_URL": "redis-sentinel://s1/m"}, r"^REDIS_URL='redis-sentinel://s1/m': expected a redis://"),
        ({"REDIS_URL": "redis+cluster://:pw@n1", "REDIS_PASSWORD": "pw"}, "REDIS_URL already holds a password"),
        ({"REDIS_URL": "redis://:pw@r:6379/0", "REDIS_PASSWORD": "pw"}, "REDIS_URL already holds a password"),
        ({"REDIS_URL": "redis://r", "REDIS_SENTINEL_PASSWORD": "x"}, "^REDIS_SENTINEL_PASSWORD is set but REDIS_URL"),
        ({"REDIS_URL": "redis+cluster://n1", "REDIS_SENTINEL_PASSWORD": "x"}, "names no sentinels"),
        ({"REDIS_TLS_CA_FILE": "/no/such/ca.pem"}, r"^REDIS_TLS_CA_FILE='/no/such/ca.pem': expected the path"),
        ({"REDIS_TLS_KEY_FILE": "/no/such/key.pem"}, "^REDIS_TLS_KEY_FILE="),
        ({"REDIS_PASSWORD_FILE": "/no/such/pw"}, r"^REDIS_PASSWORD_FILE='/no/such/pw': cannot read the file"),
        ({"REDIS_SENTINEL_PASSWORD": "a", "REDIS_SENTINEL_PASSWORD_FILE": "/x"}, "are both set"),
    ],
)
def test_bad_settings_name_the_variable_and_the_problem(env: dict[str, str], message: str) -> None:
    with pytest.raises(SettingsError, match=message):
        Settings.from_env(env)


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("redis://r:6379/0", r"^REDIS_TLS_CA_FILE is set but REDIS_URL is redis://, without TLS: use rediss://"),
        ("redis+sentinel://s1/m", r"REDIS_URL is redis\+sentinel://, without TLS: use rediss\+sentinel://"),
        ("redis+cluster://n1", r"use rediss\+cluster://"),
    ],
)
def test_tls_files_need_a_tls_scheme(tmp_path: Path, url: str, message: str) -> None:
    (tmp_path / "ca.pem").write_text("x")
    with pytest.raises(SettingsError, match=message):
        Settings.from_env({"REDIS_URL": url, "REDIS_TLS_CA_FILE": str(tmp_path / "ca.pem")})


def test_a_client_certificate_needs_its_key(tmp_path: Path) -> None:
    (tmp_path / "cert.pem").write_text("x")
    env = {"REDIS_URL": "rediss://r", "REDIS_TLS_CERT_FILE": str(tmp_path / "cert.pem")}
    with pytest.raises(SettingsError, match=r"^REDIS_TLS_CERT_FILE and REDIS_TLS_KEY_FILE go together"):
        Settings.from_env(env)


async def test_a_sentinel_url_builds_a_client_of_the_primary_with_both_passwords(tmp_path: Path) -> None:
    (tmp_path / "ca.pem").write_text("x")
    env = {
        "REDIS_URL": "rediss+sentinel://streams:data-pw@s1:26379,s2:26380/mymaster/2",
        "REDIS_SENTINEL_PASSWORD": "sentinel-pw",
        "REDIS_TLS_CA_FILE": str(tmp_path / "ca.pem"),
    }
    client = clients.redis_client(Settings.from_env(env))
    pool = client.connection_pool
    assert isinstance(client, Redis) and isinstance(pool, SentinelConnectionPool)
    assert pool.service_name == "mymaster"
    data = pool.connection_kwargs
    assert (data["username"], data["password"], data["db"], data["decode_responses"]) == ("streams", "data-pw", 2, True)
    assert pool.connection_class.__name__ == "SentinelManagedSSLConnection"
    assert data["ssl_ca_certs"] == str(tmp_path / "ca.pem")
    assert (data["socket_timeout"], data["socket_connect_timeout"]) == (5, 5)
    sentinels = pool.sentinel_manager.sentinels
    assert [
        (s.connection_pool.connection_kwargs["host"], s.connection_pool.connection_kwargs["port"]) for s in sentinels
    ] == [
        ("s1", 26379),
        ("s2", 26380),
    ]
    first = sentinels[0].connection_pool.connection_kwargs
    assert (first["password"], first["ssl_ca_certs"], first["socket_timeout"]) == (
        "sentinel-pw",
        str(tmp_path / "ca.pem"),
        5,
    )
    assert first.get("username") is None  # the sentinels' own auth, not the data user's
    await client.aclose()


async def test_a_cluster_url_builds_a_cluster_client() -> None:
    client = clients.redis_client(Settings.from_env({"REDIS_URL": "redis+cluster://streams:pw@n1:7000,n2:7001"}))
    assert isinstance(client, RedisCluster)
    assert [(n.host, n.port) for n in client.nodes_manager.startup_nodes.values()] == [("n1", 7000), ("n2", 7001)]
    kwargs = client.connection_kwargs
    assert (kwargs["username"], kwargs["password"], kwargs["decode_responses"]) == ("streams", "pw", True)
    assert (kwargs["socket_timeout"], kwargs["socket_connect_timeout"]) == (5, 5)
    assert "ssl" not in kwargs
    await client.aclose()


async def test_a_tls_server_url_gets_the_tls_files(tmp_path: Path) -> None:
    (tmp_path / "ca.pem").write_text("x")
    env = {"REDIS_URL": "rediss://r:6380/1", "REDIS_TLS_CA_FILE": str(tmp_path / "ca.pem"), "REDIS_PASSWORD": "pw"}
    client = clients.redis_client(Settings.from_env(env))
    kwargs = client.connection_pool.connection_kwargs
    assert (kwargs["ssl_ca_certs"], kwargs["password"], kwargs["db"]) == (str(tmp_path / "ca.pem"), "pw", 1)
    assert client.connection_pool.connection_class.__name__ == "SSLConnection"
    await client.aclose()
