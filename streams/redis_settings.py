"""Where the state's Redis is and how to reach it: one server, a Sentinel-managed primary or a Redis Cluster.

REDIS_URL names the topology by its scheme. `redis://`, `rediss://` and `unix://` are redis-py's own URLs,
handed to it unchanged. redis-py has no URL for the other two, so the sidecar reads the form RedisVL
(Redis's own Python library) and the `redis-sentinel-url` package use, and its `+cluster` sibling:

    redis+sentinel://[user:password@]host:port[,host:port...]/<service>[/<db>]   (rediss+sentinel:// for TLS)
    redis+cluster://[user:password@]host:port[,host:port...]                     (rediss+cluster:// for TLS)

The user and password are the data nodes' (REDIS_PASSWORD may give the password instead); sentinels often
have a password of their own (REDIS_SENTINEL_PASSWORD). TLS files apply to every connection of a TLS
scheme, sentinels included.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, unquote, urlsplit, urlunsplit

from streams.env_reader import EnvReader, SettingsError, check_file, check_nonempty

STANDALONE, SENTINEL, CLUSTER = "standalone", "sentinel", "cluster"
DEFAULT_URL = "redis://localhost:6379/0"
SENTINEL_PORT, CLUSTER_PORT = 26379, 6379
_SCHEMES = {
    "redis+sentinel": (SENTINEL, False),
    "rediss+sentinel": (SENTINEL, True),
    "redis+cluster": (CLUSTER, False),
    "rediss+cluster": (CLUSTER, True),
}
TLS_FILES = ("REDIS_TLS_CA_FILE", "REDIS_TLS_CERT_FILE", "REDIS_TLS_KEY_FILE")


@dataclass(frozen=True)
class RedisSettings:
    # REDIS_URL with REDIS_PASSWORD put in: what redis-py is given for one server.
    url: str = field(default=DEFAULT_URL, repr=False)
    topology: str = STANDALONE
    nodes: tuple[tuple[str, int], ...] = ()  # sentinels or cluster seed nodes
    service: str | None = None  # the primary's name at the sentinels
    db: int = 0
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    tls: bool = False
    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    sentinel_password: str | None = field(default=None, repr=False)

    def tls_files(self) -> dict[str, Any]:
        """redis-py's TLS file arguments (its defaults check the certificate and the host name)."""
        found = {"ssl_ca_certs": self.ca_file, "ssl_certfile": self.cert_file, "ssl_keyfile": self.key_file}
        return {k: v for k, v in found.items() if v is not None}

    def tls_kwargs(self) -> dict[str, Any]:
        """TLS for clients built from host and port (a URL's scheme says it itself)."""
        return {"ssl": True, **self.tls_files()} if self.tls else {}

    def auth_kwargs(self) -> dict[str, Any]:
        found = {"username": self.username, "password": self.password}
        return {k: v for k, v in found.items() if v is not None}

    @property
    def where(self) -> str:
        """For logs and errors: the topology and its nodes, never a password."""
        nodes = ",".join(f"{h}:{p}" for h, p in self.nodes)
        if self.topology == SENTINEL:
            return f"primary {self.service!r} of the sentinels {nodes}"
        if self.topology == CLUSTER:
            return f"the Redis Cluster seeded by {nodes}"
        parts = urlsplit(self.url)
        return parts.path if parts.scheme == "unix" else f"{parts.hostname}:{parts.port or 6379}"


def redis_settings(r: EnvReader) -> RedisSettings:
    url = r.secret("REDIS_URL", check_redis_url) or DEFAULT_URL
    password = r.secret("REDIS_PASSWORD", check_nonempty)
    sentinel_password = r.secret("REDIS_SENTINEL_PASSWORD", check_nonempty)
    ca, cert, key = (r.optional_text(name, check_file) for name in TLS_FILES)
    scheme = url.partition("://")[0].lower()
    if (cert is None) != (key is None):
        raise SettingsError("REDIS_TLS_CERT_FILE and REDIS_TLS_KEY_FILE go together: set both or neither")
    if scheme not in _SCHEMES:
        tls = scheme == "rediss"
        _no_tls_files(ca, cert, key, tls, scheme)
        if sentinel_password is not None:
            raise SettingsError("REDIS_SENTINEL_PASSWORD is set but REDIS_URL names no sentinels (redis+sentinel://)")
        full = with_redis_password(url, password)
        return RedisSettings(url=full, tls=tls, ca_file=ca, cert_file=cert, key_file=key)
    topology, tls = _SCHEMES[scheme]
    _no_tls_files(ca, cert, key, tls, scheme)
    if sentinel_password is not None and topology != SENTINEL:
        raise SettingsError("REDIS_SENTINEL_PASSWORD is set but REDIS_URL names no sentinels (redis+sentinel://)")
    rest = url.split("://", 1)[1]
    if "?" in rest or "#" in rest:
        raise SettingsError(
            f"REDIS_URL: {scheme}:// takes no ?options: TLS files, passwords and timeouts are REDIS_* variables"
        )
    netloc, _, path = rest.partition("/")
    userinfo, _, hosts = netloc.rpartition("@")
    user, has_password, url_password = userinfo.partition(":")
    if has_password and password is not None:
        raise SettingsError("REDIS_URL already holds a password: drop it there or unset REDIS_PASSWORD")
    nodes = _nodes(hosts, SENTINEL_PORT if topology == SENTINEL else CLUSTER_PORT)
    service, db = _path(path, topology)
    return RedisSettings(
        url=url,
        topology=topology,
        nodes=nodes,
        service=service,
        db=db,
        username=unquote(user) or None,
        password=unquote(url_password) if has_password else password,
        tls=tls,
        ca_file=ca,
        cert_file=cert,
        key_file=key,
        sentinel_password=sentinel_password,
    )


def _no_tls_files(ca: str | None, cert: str | None, key: str | None, tls: bool, scheme: str) -> None:
    if tls or (ca is None and cert is None):
        return
    name = "REDIS_TLS_CA_FILE" if ca is not None else "REDIS_TLS_CERT_FILE"
    secure = "rediss" if scheme in ("redis", "unix") else scheme.replace("redis+", "rediss+")
    raise SettingsError(f"{name} is set but REDIS_URL is {scheme}://, without TLS: use {secure}://")


def _nodes(hosts: str, default_port: int) -> tuple[tuple[str, int], ...]:
    if not hosts:
        raise SettingsError("REDIS_URL names no host: expected host:port[,host:port...] after the scheme")
    return tuple(_node(item.strip(), default_port) for item in hosts.split(","))


def _node(item: str, default_port: int) -> tuple[str, int]:
    if item.startswith("["):  # an IPv6 address: [::1]:26379
        host, _, after = item[1:].partition("]")
        port = after.removeprefix(":") if after.startswith(":") else None if not after else "bad"
    else:
        host, sep, port_text = item.partition(":")
        port = port_text if sep else None
    ok = bool(host) and all(c.isalnum() or c in ".-_:" for c in host)
    if port is not None:
        ok = ok and port.isdigit() and 0 < int(port) < 65536
    if not ok:
        raise SettingsError(f"REDIS_URL: {item!r} is not a host:port (port 1-65535)")
    return host, int(port) if port is not None else default_port


def _path(path: str, topology: str) -> tuple[str | None, int]:
    parts = path.removesuffix("/").split("/") if path else []
    if topology == CLUSTER:
        if any(parts):
            raise SettingsError(
                f"REDIS_URL: a Redis Cluster has only database 0, so redis+cluster:// takes no path (found /{path})"
            )
        return None, 0
    if not parts or not parts[0]:
        raise SettingsError("REDIS_URL: redis+sentinel:// needs the primary's service name: host:port,.../<service>")
    if len(parts) > 2 or (len(parts) == 2 and not parts[1].isdigit()):
        raise SettingsError(f"REDIS_URL: expected /<service>[/<db number>] after the sentinels, found /{path}")
    return unquote(parts[0]), int(parts[1]) if len(parts) == 2 else 0


def with_redis_password(url: str, password: str | None) -> str:
    """REDIS_URL with REDIS_PASSWORD put in, so the password can come from its own Secret."""
    if password is None:
        return url
    parts = urlsplit(url)
    if parts.password is not None or "password=" in parts.query:
        raise SettingsError("REDIS_URL already holds a password: drop it there or unset REDIS_PASSWORD")
    if parts.scheme == "unix":
        return f"{url}{'&' if parts.query else '?'}password={quote(password, safe='')}"
    user, _, host = parts.netloc.rpartition("@")  # the user stays as written (already URL-encoded)
    return urlunsplit(parts._replace(netloc=f"{user}:{quote(password, safe='')}@{host}"))


def check_redis_url(value: str) -> str | None:
    ok = value.lower().startswith(("redis://", "rediss://", "unix://", *(f"{s}://" for s in _SCHEMES)))
    return (
        None
        if ok
        else "a redis://, rediss:// or unix:// URL, or redis+sentinel:// or redis+cluster:// (rediss+ for TLS)"
    )
