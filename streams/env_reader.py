"""Reading one setting from the environment: the value's check, its bounds, secrets from files, and errors
that name the variable (never echoing a secret)."""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

_TOPIC_RE = re.compile(r"^[A-Za-z0-9._-]{1,249}$")


class SettingsError(ValueError):
    """A setting has a value the sidecar cannot run with; the message names the variable."""


class EnvReader:
    def __init__(self, env: Mapping[str, str]) -> None:
        self.env = env

    def _raw(self, name: str) -> str | None:
        value = self.env.get(name)
        if value is None or value.strip() == "":
            return None
        return value.strip()

    def text(self, name: str, default: str, check: Callable[[str], str | None]) -> str:
        value = self._raw(name)
        if value is None:
            return default
        problem = check(value)
        if problem:
            raise SettingsError(f"{name}={_masked(value)!r}: expected {problem}")
        return value

    def optional_text(self, name: str, check: Callable[[str], str | None]) -> str | None:
        value = self._raw(name)
        return None if value is None else self.text(name, value, check)

    def secret(self, name: str, check: Callable[[str], str | None]) -> str | None:
        """A secret from NAME or from the file NAME_FILE names (the Docker/Kubernetes convention); errors
        name the variable but never echo the secret."""
        inline, path = self.env.get(name), self._raw(f"{name}_FILE")
        inline = inline if inline and inline.strip() else None  # blank means unset, as for other settings
        if inline is not None and path is not None:
            raise SettingsError(f"{name} and {name}_FILE are both set: set one of them")
        if path is None:
            value = inline
        else:
            try:
                with open(path, encoding="utf-8") as file:
                    value = file.read().rstrip("\r\n")  # editors and `echo` end files with a newline
            except (OSError, UnicodeDecodeError) as exc:
                raise SettingsError(f"{name}_FILE={path!r}: cannot read the file ({exc.__class__.__name__})") from None
            if not value:
                raise SettingsError(f"{name}_FILE={path!r}: the file is empty")
        if value is None:
            return None
        problem = check(value)
        if problem:
            # A URL's password is masked: the message ends up in logs.
            source = f"{name}_FILE={path!r}" if path is not None else f"{name}={_masked(value)!r}"
            raise SettingsError(f"{source}: expected {problem}")
        return value

    def integer(self, name: str, default: int, low: int, high: int) -> int:
        value = self._raw(name)
        if value is None:
            return default
        try:
            number = int(value)
        except ValueError:
            raise SettingsError(f"{name}={value!r}: expected an integer from {low} to {high}") from None
        if not low <= number <= high:
            raise SettingsError(f"{name}={value!r}: expected an integer from {low} to {high}")
        return number

    def number(self, name: str, default: float, low: float, high: float) -> float:
        value = self._raw(name)
        if value is None:
            return default
        try:
            number = float(value)
        except ValueError:
            raise SettingsError(f"{name}={value!r}: expected a number from {low:g} to {high:g}") from None
        if not low <= number <= high:
            raise SettingsError(f"{name}={value!r}: expected a number from {low:g} to {high:g}")
        return number

    def flag(self, name: str, default: bool) -> bool:
        value = self._raw(name)
        if value is None:
            return default
        if value.lower() in ("1", "true", "yes", "on"):
            return True
        if value.lower() in ("0", "false", "no", "off"):
            return False
        raise SettingsError(f"{name}={value!r}: expected true or false")

    def choice(self, name: str, default: str, choices: tuple[str, ...]) -> str:
        value = self._raw(name)
        if value is None:
            return default
        if value.upper() not in choices:
            raise SettingsError(f"{name}={value!r}: expected one of {', '.join(choices)}")
        return value.upper()

    def optional_choice(self, name: str, choices: tuple[str, ...]) -> str | None:
        value = self._raw(name)
        return None if value is None else self.choice(name, value, choices)


def check_nonempty(value: str) -> str | None:
    return None if value else "a non-empty value"


def check_servers(value: str) -> str | None:
    for server in value.split(","):
        host, sep, port = server.strip().removeprefix("kafka://").rpartition(":")
        if not sep or not host or not port.isdigit():
            return "a comma-separated list of host:port"
    return None


def check_name(value: str) -> str | None:
    return None if re.fullmatch(r"[A-Za-z0-9._-]{1,200}", value) else "letters, digits, '.', '_' or '-'"


def check_file(value: str) -> str | None:
    return None if os.path.isfile(value) else "the path of a readable file"


def check_topic(value: str) -> str | None:
    return None if _TOPIC_RE.match(value) else "a Kafka topic name (letters, digits, '.', '_', '-')"


def check_zone(value: str) -> str | None:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        return "an IANA time zone name such as UTC or Europe/Paris"
    return None


def _masked(value: str) -> str:
    """A URL's password masked: error messages end up in logs."""
    return re.sub(r":[^:@/]*@", ":***@", value)
