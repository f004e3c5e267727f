"""Secret settings also come from files (NAME_FILE, the Docker/Kubernetes convention), validated the same
way, with errors that name the variable and never print the secret."""

from __future__ import annotations

from pathlib import Path

import pytest
import redis.asyncio as aioredis

from streams.settings import Settings, SettingsError


def _file(tmp_path: Path, name: str, text: str) -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def test_sasl_password_from_a_file_drops_the_trailing_newline(tmp_path: Path) -> None:
    env = {
        "KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
        "KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
        "KAFKA_SASL_USERNAME": "streams",
        "KAFKA_SASL_PASSWORD_FILE": _file(tmp_path, "pw", "s3cr3t with spaces \n"),
    }
    s = Settings.from_env(env)
    assert s.kafka.client_kwargs()["sasl_plain_password"] == "s3cr3t with spaces "
    assert Settings.from_env({**env, "KAFKA_SASL_PASSWORD_FILE": ""}).kafka.sasl_password is None


def test_sasl_password_from_the_environment_still_works() -> None:
    s = Settings.from_env({"KAFKA_SASL_MECHANISM": "PLAIN", "KAFKA_SASL_USERNAME": "u", "KAFKA_SASL_PASSWORD": "p"})
    assert s.kafka.sasl_password == "p"


def test_redis_url_from_a_file_is_validated_like_the_variable(tmp_path: Path) -> None:
    good = _file(tmp_path, "url", "rediss://:pw@redis.example:6380/2\n")
    assert Settings.from_env({"REDIS_URL_FILE": good}).redis_url == "rediss://:pw@redis.example:6380/2"
    bad = _file(tmp_path, "bad", "redis.example:6379\n")
    with pytest.raises(SettingsError, match=r"^REDIS_URL_FILE='.*/bad': expected a redis://, rediss:// or unix://"):
        Settings.from_env({"REDIS_URL_FILE": bad})


@pytest.mark.parametrize(
    ("url", "password", "want"),
    [
        ("redis://redis:6379/0", "p@ss:w/rd", "redis://:p%40ss%3Aw%2Frd@redis:6379/0"),
        ("rediss://acl-user@redis:6380/1", "pw", "rediss://acl-user:pw@redis:6380/1"),
        ("unix:///run/redis.sock?db=3", "pw", "unix:///run/redis.sock?db=3&password=pw"),
    ],
)
def test_redis_password_is_put_into_the_url(tmp_path: Path, url: str, password: str, want: str) -> None:
    from_file = Settings.from_env({"REDIS_URL": url, "REDIS_PASSWORD_FILE": _file(tmp_path, "rpw", password + "\n")})
    from_env = Settings.from_env({"REDIS_URL": url, "REDIS_PASSWORD": password})
    assert from_file.redis_url == from_env.redis_url == want
    # redis-py reads the password back out of the URL unchanged.
    client = aioredis.from_url(want)
    assert client.connection_pool.connection_kwargs["password"] == password


def test_default_redis_url_takes_the_password() -> None:
    assert Settings.from_env({"REDIS_PASSWORD": "pw"}).redis_url == "redis://:pw@localhost:6379/0"


@pytest.mark.parametrize(
    ("env", "message"),
    [
        (
            {"KAFKA_SASL_PASSWORD": "inline", "KAFKA_SASL_PASSWORD_FILE": "/etc/pw"},
            "KAFKA_SASL_PASSWORD and KAFKA_SASL_PASSWORD_FILE are both set: set one of them",
        ),
        (
            {"REDIS_URL": "redis://r:6379/0", "REDIS_URL_FILE": "/etc/url"},
            "REDIS_URL and REDIS_URL_FILE are both set",
        ),
        (
            {"REDIS_PASSWORD": "a", "REDIS_PASSWORD_FILE": "/etc/pw"},
            "REDIS_PASSWORD and REDIS_PASSWORD_FILE are both set",
        ),
        (
            {"KAFKA_SASL_PASSWORD_FILE": "/nonexistent/pw"},
            "KAFKA_SASL_PASSWORD_FILE='/nonexistent/pw': cannot read the file (FileNotFoundError)",
        ),
        (
            {"REDIS_URL": "redis://:old@redis:6379/0", "REDIS_PASSWORD": "new"},
            "REDIS_URL already holds a password",
        ),
        (
            {"REDIS_URL": "tcp://:hunter2@redis:6379"},
            "REDIS_URL='tcp://:***@redis:6379': expected a redis://",
        ),
    ],
)
def test_errors_name_the_variable(env: dict[str, str], message: str) -> None:
    with pytest.raises(SettingsError) as caught:
        Settings.from_env(env)
    assert str(caught.value).startswith(message)
    assert "hunter2" not in str(caught.value) and "inline" not in str(caught.value)


def test_unreadable_and_empty_files_are_errors(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match=r"^REDIS_PASSWORD_FILE='.*': cannot read the file \(IsADirectoryError\)"):
        Settings.from_env({"REDIS_PASSWORD_FILE": str(tmp_path)})
    empty = _file(tmp_path, "empty", "\n")
    with pytest.raises(SettingsError, match=r"^KAFKA_SASL_PASSWORD_FILE='.*/empty': the file is empty$"):
        Settings.from_env({"KAFKA_SASL_PASSWORD_FILE": empty})
