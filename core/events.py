"""Event contracts: the checks that turn a record's bytes into a valid event or name the rejection reason.

Pure functions, no Faust import. core/decode.py tries the msgspec schema first and comes here for
whatever it refuses, and for event times it cannot read itself (`parse_ts_ms`).
"""

from __future__ import annotations

import math
from operator import itemgetter
from typing import NamedTuple

import orjson
from orjson import JSONDecodeError, loads

from core.iso8601 import iso_ms
from core.schema import MAX_CO2_KG, MAX_KWH, MAX_LABEL_CHARS, MAX_TOKENS

# The fixed set of rejection reasons: the `reason` label of ecomind_streams_events_invalid_total.
NOT_UTF8 = "not_utf8"
NOT_JSON = "not_json"
NOT_OBJECT = "not_object"
MISSING_FIELD = "missing_field"
WRONG_TYPE = "wrong_type"
NEGATIVE_VALUE = "negative_value"
NON_FINITE = "non_finite"
OUT_OF_RANGE = "out_of_range"
BAD_TIMESTAMP = "bad_timestamp"
TOO_LARGE = "too_large"
REASONS = (
    NOT_UTF8,
    NOT_JSON,
    NOT_OBJECT,
    MISSING_FIELD,
    WRONG_TYPE,
    NEGATIVE_VALUE,
    NON_FINITE,
    OUT_OF_RANGE,
    BAD_TIMESTAMP,
    TOO_LARGE,
)

# Epoch numbers at or above this are milliseconds: 1e11 s is the year 5138, 1e11 ms is 1973.
EPOCH_MS_THRESHOLD = 100_000_000_000
MIN_TS_MS = 946_684_800_000  # 2000-01-01T00:00:00Z


class Invalid(Exception):
    """A record that breaks the contract; `reason` is one of REASONS."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class RawEvent(NamedTuple):
    org_id: str
    user_id: str
    provider: str
    model: str
    tokens_in: int
    tokens_out: int
    ts_ms: int


class EnrichedEvent(NamedTuple):
    raw: RawEvent
    kwh: float
    co2_kg: float


def _small_object(payload: bytes | None, max_payload_bytes: int) -> dict[str, object] | None:
    """The decoded object when all is well, else None (decode_object then says what is wrong)."""
    if payload is None or len(payload) > max_payload_bytes:
        return None
    try:
        obj = loads(payload)
    except JSONDecodeError:
        return None
    return obj if type(obj) is dict else None


def decode_object(payload: bytes | None, max_payload_bytes: int) -> dict[str, object]:
    if payload is None:
        raise Invalid(NOT_JSON)
    if len(payload) > max_payload_bytes:
        raise Invalid(TOO_LARGE)
    try:
        value = orjson.loads(payload)
    except orjson.JSONDecodeError as exc:
        raise Invalid(_decode_reason(payload, str(exc))) from None
    if not isinstance(value, dict):
        raise Invalid(NOT_OBJECT)
    return value


def _decode_reason(payload: bytes, message: str) -> str:
    try:
        payload.decode("utf-8")
    except UnicodeDecodeError:
        return NOT_UTF8
    if "infinity" in message or b"NaN" in payload or b"Infinity" in payload:
        return NON_FINITE
    return NOT_JSON


# The checks return plain tuples: building a NamedTuple per record showed in the profile (docs/performance.md).
RawTuple = tuple[str, str, str, str, int, int, int]
EnrichedTuple = tuple[RawTuple, float, float]


def raw_beyond_schema(payload: bytes | None, now_ms: int, max_future_ms: int, max_payload_bytes: int) -> RawTuple:
    """core.decode's tiers after the schema, for a payload it refused: orjson, then the checks that name a reason."""
    if payload is not None and len(payload) <= max_payload_bytes:
        try:
            obj = loads(payload)
        except JSONDecodeError:
            obj = None
        if type(obj) is dict:
            fast = _fast_raw(obj, now_ms, max_future_ms)
            if fast is not None:
                return fast
    obj = decode_object(payload, max_payload_bytes)
    return tuple(_raw_from(obj, now_ms, max_future_ms))  # type: ignore[return-value]


def enriched_beyond_schema(
    payload: bytes | None, now_ms: int, max_future_ms: int, max_payload_bytes: int
) -> EnrichedTuple:
    """raw_beyond_schema's tiers, for an enriched payload the schema refused."""
    obj = _small_object(payload, max_payload_bytes) or decode_object(payload, max_payload_bytes)
    raw = _fast_raw(obj, now_ms, max_future_ms)
    kwh, co2 = obj.get("kwh"), obj.get("co2_kg")
    if (
        raw is not None
        and (type(kwh) is float or type(kwh) is int)
        and (type(co2) is float or type(co2) is int)
        and 0 <= kwh <= MAX_KWH
        and 0 <= co2 <= MAX_CO2_KG
    ):
        return raw, float(kwh), float(co2)
    checked = _raw_from(obj, now_ms, max_future_ms)
    return tuple(checked), _amount(obj, "kwh", MAX_KWH), _amount(obj, "co2_kg", MAX_CO2_KG)  # type: ignore[return-value]


_RAW_FIELDS = itemgetter("org_id", "user_id", "provider", "model", "tokens_in", "tokens_out", "ts")


def _fast_raw(obj: dict[str, object], now_ms: int, max_future_ms: int) -> RawTuple | None:
    """The common, valid event in one pass (the hot path); None sends it to the checks that name a reason.

    One itemgetter call reads the seven fields in C (faster than seven dict.get calls; docs/performance.md); `type(x)
    is ...` rather than isinstance: it is faster, and it keeps bool out of the integers.
    """
    try:
        org, user, provider, model, t_in, t_out, ts = _RAW_FIELDS(obj)
    except KeyError:
        return None
    if not (
        type(org) is str
        and type(user) is str
        and type(provider) is str
        and type(model) is str
        and 0 < len(org) <= MAX_LABEL_CHARS
        and 0 < len(user) <= MAX_LABEL_CHARS
        and 0 < len(provider) <= MAX_LABEL_CHARS
        and 0 < len(model) <= MAX_LABEL_CHARS
        and type(t_in) is int
        and type(t_out) is int
        and 0 <= t_in <= MAX_TOKENS
        and 0 <= t_out <= MAX_TOKENS
        and ts is not None
    ):
        return None
    if type(ts) is int and MIN_TS_MS <= ts <= now_ms + max_future_ms:
        ts_ms = ts
    else:
        ts_ms = parse_ts_ms(ts, now_ms, max_future_ms)
    return (org, user, provider, model, t_in, t_out, ts_ms)


def _raw_from(obj: dict[str, object], now_ms: int, max_future_ms: int) -> RawEvent:
    return RawEvent(
        org_id=_label(obj, "org_id"),
        user_id=_label(obj, "user_id"),
        provider=_label(obj, "provider"),
        model=_label(obj, "model"),
        tokens_in=_tokens(obj, "tokens_in"),
        tokens_out=_tokens(obj, "tokens_out"),
        ts_ms=parse_ts_ms(_field(obj, "ts"), now_ms, max_future_ms),
    )


def _field(obj: dict[str, object], name: str) -> object:
    value = obj.get(name)
    if value is None:
        raise Invalid(MISSING_FIELD)
    return value


def _label(obj: dict[str, object], name: str) -> str:
    value = _field(obj, name)
    if not isinstance(value, str):
        raise Invalid(WRONG_TYPE)
    if not value:
        raise Invalid(MISSING_FIELD)
    if len(value) > MAX_LABEL_CHARS:
        raise Invalid(OUT_OF_RANGE)
    return value


def _tokens(obj: dict[str, object], name: str) -> int:
    value = _field(obj, name)
    if isinstance(value, bool) or not isinstance(value, int):
        raise Invalid(WRONG_TYPE)
    if value < 0:
        raise Invalid(NEGATIVE_VALUE)
    if value > MAX_TOKENS:
        raise Invalid(OUT_OF_RANGE)
    return value


def _amount(obj: dict[str, object], name: str, maximum: float) -> float:
    value = _field(obj, name)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise Invalid(WRONG_TYPE)
    number = float(value)
    if not math.isfinite(number):
        raise Invalid(NON_FINITE)
    if number < 0:
        raise Invalid(NEGATIVE_VALUE)
    if number > maximum:
        raise Invalid(OUT_OF_RANGE)
    return number


def parse_ts_ms(value: object, now_ms: int, max_future_ms: int) -> int:
    """Event time in epoch milliseconds from ISO-8601 text or epoch seconds/milliseconds."""
    if isinstance(value, str):  # the gateway's form first: this runs for most events
        try:
            ts_ms = iso_ms(value)
        except ValueError:
            raise Invalid(BAD_TIMESTAMP) from None
    elif isinstance(value, bool):
        raise Invalid(WRONG_TYPE)
    elif isinstance(value, (int, float)):
        # isfinite() of an int past a float's range raises OverflowError: only floats can be infinite.
        if isinstance(value, float) and not math.isfinite(value):
            raise Invalid(NON_FINITE)
        ts_ms = int(value) if abs(value) >= EPOCH_MS_THRESHOLD else round(value * 1000)
    else:
        raise Invalid(WRONG_TYPE)
    if ts_ms < MIN_TS_MS or ts_ms > now_ms + max_future_ms:
        raise Invalid(BAD_TIMESTAMP)
    return ts_ms
