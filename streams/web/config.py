"""TLS and HTTP basic auth for /metrics from a web-config file in the Prometheus exporter-toolkit format.

    tls_server_config: {cert_file: server.crt, key_file: server.key}
    basic_auth_users: {prometheus: <bcrypt hash>}

Relative paths are read from the file's directory, as the exporter toolkit does.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import ssl
from dataclasses import dataclass, field
from pathlib import Path

import bcrypt
import yaml

_TLS_KEYS = {"cert_file", "key_file", "client_auth_type", "client_ca_file", "min_version"}
_TLS_VERSIONS = {"TLS12": ssl.TLSVersion.TLSv1_2, "TLS13": ssl.TLSVersion.TLSv1_3}
_CLIENT_AUTH = {"NoClientCert": ssl.CERT_NONE, "RequireAndVerifyClientCert": ssl.CERT_REQUIRED}


class WebConfigError(ValueError):
    """The web-config file cannot be used; the message names the field."""


@dataclass
class WebConfig:
    ssl_context: ssl.SSLContext | None = None
    users: dict[str, bytes] = field(default_factory=dict)  # name -> bcrypt hash
    # bcrypt costs tens of ms by design: a scrape every few seconds must not pay it each time.
    _verified: set[bytes] = field(default_factory=set)

    def authorized(self, header: str | None) -> bool:
        """Whether an Authorization header grants access; always true when no users are configured."""
        if not self.users:
            return True
        name, password = _basic_credentials(header)
        hashed = self.users.get(name or "")
        if name is None or password is None or hashed is None:
            return False
        token = hashlib.sha256(name.encode() + b"\0" + password.encode() + b"\0" + hashed).digest()
        if any(hmac.compare_digest(token, seen) for seen in self._verified):
            return True
        try:
            ok = bcrypt.checkpw(password.encode(), hashed)
        except ValueError:  # bcrypt refuses passwords over 72 bytes: they cannot match
            ok = False
        if ok and len(self._verified) < 64:
            self._verified.add(token)
        return ok


def _basic_credentials(header: str | None) -> tuple[str | None, str | None]:
    if not header or not header.startswith("Basic "):
        return None, None
    try:
        decoded = base64.b64decode(header[6:].strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None, None
    name, sep, password = decoded.partition(":")
    return (name, password) if sep else (None, None)


def load_web_config(path: str) -> WebConfig:
    source = Path(path)
    try:
        doc = yaml.safe_load(source.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise WebConfigError(f"{path}: cannot read: {exc}") from None
    doc = doc or {}
    if not isinstance(doc, dict):
        raise WebConfigError(f"{path}: expected a mapping at the top level")
    unknown = set(doc) - {"tls_server_config", "basic_auth_users", "http_server_config"}
    if unknown:
        raise WebConfigError(f"{path}: unknown keys {sorted(unknown)}")
    config = WebConfig()
    if doc.get("tls_server_config"):
        config.ssl_context = _tls_context(doc["tls_server_config"], source.parent, path)
    users = doc.get("basic_auth_users") or {}
    if not isinstance(users, dict):
        raise WebConfigError(f"{path}: basic_auth_users must map user names to bcrypt hashes")
    for name, hashed in users.items():
        if not isinstance(hashed, str) or not hashed.startswith(("$2a$", "$2b$", "$2y$")):
            raise WebConfigError(f"{path}: basic_auth_users.{name} is not a bcrypt hash")
        config.users[str(name)] = hashed.encode()
    return config


def _tls_context(tls: object, base: Path, path: str) -> ssl.SSLContext:
    if not isinstance(tls, dict):
        raise WebConfigError(f"{path}: tls_server_config must be a mapping")
    unknown = set(tls) - _TLS_KEYS
    if unknown:
        raise WebConfigError(f"{path}: tls_server_config: unsupported keys {sorted(unknown)}")
    for key in ("cert_file", "key_file"):
        if not tls.get(key):
            raise WebConfigError(f"{path}: tls_server_config.{key} is required")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = _TLS_VERSIONS.get(str(tls.get("min_version", "TLS12")), ssl.TLSVersion.TLSv1_2)
    try:
        context.load_cert_chain(base / tls["cert_file"], base / tls["key_file"])
        auth = str(tls.get("client_auth_type", "NoClientCert"))
        if auth not in _CLIENT_AUTH:
            raise WebConfigError(f"{path}: client_auth_type must be one of {sorted(_CLIENT_AUTH)}")
        context.verify_mode = _CLIENT_AUTH[auth]
        if tls.get("client_ca_file"):
            context.load_verify_locations(base / tls["client_ca_file"])
    except (OSError, ssl.SSLError) as exc:
        raise WebConfigError(f"{path}: tls_server_config: {exc}") from None
    return context
