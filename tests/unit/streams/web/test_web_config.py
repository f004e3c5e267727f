"""The exporter-toolkit web-config file: what it accepts, what it refuses, and how basic auth decides."""

from __future__ import annotations

import base64
from pathlib import Path

import bcrypt
import pytest

from streams.web.config import WebConfig, WebConfigError, load_web_config

HASH = bcrypt.hashpw(b"right", bcrypt.gensalt(rounds=4)).decode()


def _basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


@pytest.mark.parametrize(
    ("header", "allowed"),
    [
        (_basic("prom", "right"), True),
        (_basic("prom", "wrong"), False),
        (_basic("other", "right"), False),
        (_basic("prom", "right" + "x" * 80), False),  # over bcrypt's 72 bytes: refused, not truncated
        ("Basic !!!not-base64", False),
        ("Bearer abc", False),
        ("Basic " + base64.b64encode(b"no-colon").decode(), False),
        (None, False),
        ("", False),
    ],
)
def test_basic_auth(header: str | None, allowed: bool) -> None:
    config = WebConfig(users={"prom": HASH.encode()})
    assert config.authorized(header) is allowed
    assert config.authorized(header) is allowed  # the cache of verified credentials changes nothing


def test_no_users_means_no_auth() -> None:
    assert WebConfig().authorized(None) is True


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("- a list\n", "expected a mapping at the top level"),
        ("tls_config: {}\n", "unknown keys ['tls_config']"),
        ("basic_auth_users:\n  prom: plain\n", "basic_auth_users.prom is not a bcrypt hash"),
        ("basic_auth_users: [prom]\n", "basic_auth_users must map user names to bcrypt hashes"),
        ("tls_server_config:\n  cert_file: a.crt\n", "tls_server_config.key_file is required"),
        ("tls_server_config:\n  cert_file: a.crt\n  key_file: a.key\n", "tls_server_config: [Errno 2]"),
        ("tls_server_config:\n  cert_file: a\n  key_file: b\n  cipher_suites: [x]\n", "unsupported keys"),
        ("basic_auth_users: {prom: [unclosed\n", "cannot read"),
    ],
)
def test_bad_files_are_refused_with_the_field_named(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "web.yml"
    path.write_text(text)
    with pytest.raises(WebConfigError) as caught:
        load_web_config(str(path))
    assert message in str(caught.value)


def test_users_only_file_serves_plain_http_with_auth(tmp_path: Path) -> None:
    path = tmp_path / "web.yml"
    path.write_text(f"basic_auth_users:\n  prom: '{HASH}'\n")
    config = load_web_config(str(path))
    assert config.ssl_context is None
    assert config.authorized(_basic("prom", "right"))
