"""The simulator oracle's reading of a record: the event contract as docs/design.md states it, written again.

Stdlib `json` and `datetime.fromisoformat`, no import of the product's decoder (core/decode.py,
core/events.py, core/schema.py, core/iso8601.py); tests/unit/sim/test_oracle.py holds the two to the same
answer, reason included, on every kind of record the contract names.
"""

from __future__ import annotations

import json
import math
from datetime import UTC, date, datetime, timedelta
from typing import NamedTuple
from zoneinfo import ZoneInfo

# The contract (docs/design.md, "Event contracts").
MAX_LABEL_CHARS, MAX_TOKENS, MAX_AMOUNT = 256, 10_000_000_000, 1_000
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
MIN_TS_MS = (datetime(2000, 1, 1, tzinfo=UTC) - EPOCH) // timedelta(milliseconds=1)
MS_THRESHOLD = 100_000_000_000  # epoch numbers at or above 1e11 are milliseconds


def local_day(ts_ms: int, zone: ZoneInfo) -> date:
    """The local date of an instant: the day an event counts on (both checker oracles use this one)."""
    return datetime.fromtimestamp(ts_ms / 1000, zone).date()


class Refused(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class Event(NamedTuple):
    org: str
    user: str
    provider: str
    model: str
    tokens_in: int
    tokens_out: int
    ts_ms: int
    kwh: float
    co2_kg: float


class _NonFinite(ValueError):
    pass


def _non_finite(name: str) -> float:
    raise _NonFinite(name)


_JSON = json.JSONDecoder(parse_constant=_non_finite)  # NaN and Infinity are not JSON numbers


def read_event(value: bytes | None, enriched: bool, now_ms: int, max_future_ms: int, max_bytes: int) -> Event:
    """The event a record holds, or Refused with the contract's reason (checked in the fields' order)."""
    if value is None:
        raise Refused("not_json")
    if len(value) > max_bytes:
        raise Refused("too_large")
    try:
        text = value.decode("utf-8")
    except UnicodeDecodeError:
        raise Refused("not_utf8") from None
    try:
        obj = _JSON.decode(text)
    except _NonFinite:
        raise Refused("non_finite") from None
    except ValueError:
        raise Refused("not_json") from None
    if not isinstance(obj, dict):
        raise Refused("not_object")
    org, user, provider, model = (_label(obj.get(name)) for name in ("org_id", "user_id", "provider", "model"))
    tokens_in, tokens_out = (_tokens(obj.get(name)) for name in ("tokens_in", "tokens_out"))
    ts_ms = _ts_ms(obj.get("ts"), now_ms, max_future_ms)
    kwh, co2 = (_amount(obj.get(name)) for name in ("kwh", "co2_kg")) if enriched else (0.0, 0.0)
    return Event(org, user, provider, model, tokens_in, tokens_out, ts_ms, kwh, co2)


def _label(value: object) -> str:
    if value is None or value == "":
        raise Refused("missing_field")
    if not isinstance(value, str):
        raise Refused("wrong_type")
    if len(value) > MAX_LABEL_CHARS:
        raise Refused("out_of_range")
    return value


def _tokens(value: object) -> int:
    if value is None:
        raise Refused("missing_field")
    if type(value) is not int:
        raise Refused("wrong_type")
    if value < 0:
        raise Refused("negative_value")
    if value > MAX_TOKENS:
        raise Refused("out_of_range")
    return value


def _amount(value: object) -> float:
    if value is None:
        raise Refused("missing_field")
    if type(value) not in (int, float):
        raise Refused("wrong_type")
    number = float(value)  # type: ignore[arg-type]
    if not math.isfinite(number):
        raise Refused("non_finite")
    if number < 0:
        raise Refused("negative_value")
    if number > MAX_AMOUNT:
        raise Refused("out_of_range")
    return number


def _ts_ms(value: object, now_ms: int, max_future_ms: int) -> int:
    """ISO-8601 as datetime.fromisoformat reads it (UTC without an offset), or epoch seconds or milliseconds;
    refused before 2000 or further ahead than the allowed future."""
    if value is None:
        raise Refused("missing_field")
    if isinstance(value, str):
        try:
            moment = datetime.fromisoformat(value)
        except ValueError:
            raise Refused("bad_timestamp") from None
        moment = moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
        ts_ms = round((moment - EPOCH) / timedelta(milliseconds=1))
    elif type(value) is int or type(value) is float:
        if not math.isfinite(value):
            raise Refused("non_finite")
        ts_ms = int(value) if abs(value) >= MS_THRESHOLD else round(value * 1000)
    else:
        raise Refused("wrong_type")
    if not MIN_TS_MS <= ts_ms <= now_ms + max_future_ms:
        raise Refused("bad_timestamp")
    return ts_ms
