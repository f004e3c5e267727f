"""The tier-1 decode, defined once: a batch of records to events, the msgspec schema first.

Three tiers, each only for what the one before refused: the schema (an event of exactly the contract's
fields, decoded and bounded in C: core/schema.py), then orjson with one-pass checks (extra fields), then
the per-field checks, which name the reason (both in core/events.py). The fold iterates `raw_events` /
`enriched_events` over each chunk of records; `raw_tuple` and the other one-payload forms are the same
code on a batch of one.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import NamedTuple, Protocol, TypeVar

from msgspec.json import Decoder

from core.events import (
    EPOCH_MS_THRESHOLD,
    MIN_TS_MS,
    EnrichedEvent,
    EnrichedTuple,
    Invalid,
    RawEvent,
    RawTuple,
    enriched_beyond_schema,
    parse_ts_ms,
    raw_beyond_schema,
)
from core.iso8601 import KNOWN_TEXTS
from core.schema import ENRICHED_DECODER, RAW_DECODER, EnrichedShape, RawShape

Shape = TypeVar("Shape", RawShape, EnrichedShape)


class HasValue(Protocol):
    @property
    def value(self) -> bytes | None: ...


Rec = TypeVar("Rec", bound=HasValue)


def decode_batch(
    decoder: Decoder[Shape],
    beyond: Callable[[bytes | None, int, int, int], tuple[Shape, int]],
    records: Iterable[Rec],
    now_ms: int,
    max_future_ms: int,
    max_payload_bytes: int,
    refused: list[tuple[Rec, str]],
) -> Iterator[tuple[Rec, Shape, int]]:
    """(record, event, ts_ms) for each record accepted; (record, reason) appended to `refused` for the rest,
    which is complete once the generator is.

    A generator over the batch, so that the decode is written once and the fold still pays no call per
    record: a function called per record cost the fold 2.3-2.7 % more instructions than inlined copies,
    this 1.2-1.4 %, which the fold's loops won back (docs/performance.md, "Regression gate"). `beyond`
    answers for what the schema refused.
    """
    decode, newest_ts_ms, known_text_ms = decoder.decode, now_ms + max_future_ms, KNOWN_TEXTS.get
    min_ts_ms = MIN_TS_MS  # a local reads cheaper than a global, once per record
    for rec in records:
        payload = rec.value
        try:
            if payload is None or len(payload) > max_payload_bytes:
                raise ValueError
            e = decode(payload)
        except Exception:  # msgspec's errors, or UnicodeDecodeError: the next tiers decide
            try:
                e, ts_ms = beyond(payload, now_ms, max_future_ms, max_payload_bytes)
            except Invalid as exc:
                refused.append((rec, exc.reason))
                continue
            yield rec, e, ts_ms
            continue
        ts = e.ts
        # The common forms here (a call per event showed in the profile): ISO-8601 text read before,
        # epoch-ms integers, epoch-second floats; anything else, or out of bounds, is parse_ts_ms's
        # to read or reject.
        if type(ts) is str:
            ts_ms = known_text_ms(ts, 0)
        elif type(ts) is int:
            ts_ms = ts
        elif type(ts) is float and 0.0 < ts < EPOCH_MS_THRESHOLD:
            ts_ms = round(ts * 1000)
        else:
            ts_ms = 0
        if not min_ts_ms <= ts_ms <= newest_ts_ms:
            try:
                ts_ms = parse_ts_ms(ts, now_ms, max_future_ms)
            except Invalid as exc:
                refused.append((rec, exc.reason))
                continue
        yield rec, e, ts_ms


def raw_events(
    records: Iterable[Rec], now_ms: int, max_future_ms: int, max_payload_bytes: int, refused: list[tuple[Rec, str]]
) -> Iterator[tuple[Rec, RawShape, int]]:
    return decode_batch(RAW_DECODER, _raw_beyond, records, now_ms, max_future_ms, max_payload_bytes, refused)


def enriched_events(
    records: Iterable[Rec], now_ms: int, max_future_ms: int, max_payload_bytes: int, refused: list[tuple[Rec, str]]
) -> Iterator[tuple[Rec, EnrichedShape, int]]:
    return decode_batch(ENRICHED_DECODER, _enriched_beyond, records, now_ms, max_future_ms, max_payload_bytes, refused)


def _raw_beyond(payload: bytes | None, now_ms: int, max_future_ms: int, max_payload_bytes: int) -> tuple[RawShape, int]:
    # In the schema's shape, so that the fold reads one kind of event whichever tier accepted it.
    raw = raw_beyond_schema(payload, now_ms, max_future_ms, max_payload_bytes)
    return RawShape(*raw), raw[6]


def _enriched_beyond(
    payload: bytes | None, now_ms: int, max_future_ms: int, max_payload_bytes: int
) -> tuple[EnrichedShape, int]:
    raw, kwh, co2 = enriched_beyond_schema(payload, now_ms, max_future_ms, max_payload_bytes)
    return EnrichedShape(*raw, kwh, co2), raw[6]


class _Payload(NamedTuple):
    value: bytes | None


def _one(events: Iterator[tuple[_Payload, Shape, int]], refused: list[tuple[_Payload, str]]) -> tuple[Shape, int]:
    accepted = list(events)  # `refused` is complete once the events are
    if refused:
        raise Invalid(refused[0][1])
    (_, e, ts_ms), *_ = accepted
    return e, ts_ms


def raw_tuple(payload: bytes | None, now_ms: int, max_future_ms: int, max_payload_bytes: int) -> RawTuple:
    """(org_id, user_id, provider, model, tokens_in, tokens_out, ts_ms), or Invalid with its reason."""
    refused: list[tuple[_Payload, str]] = []
    e, ts_ms = _one(raw_events((_Payload(payload),), now_ms, max_future_ms, max_payload_bytes, refused), refused)
    return (e.org_id, e.user_id, e.provider, e.model, e.tokens_in, e.tokens_out, ts_ms)


def enriched_tuple(payload: bytes | None, now_ms: int, max_future_ms: int, max_payload_bytes: int) -> EnrichedTuple:
    """(raw tuple, kwh, co2_kg), or Invalid with its reason."""
    refused: list[tuple[_Payload, str]] = []
    e, ts_ms = _one(enriched_events((_Payload(payload),), now_ms, max_future_ms, max_payload_bytes, refused), refused)
    return (e.org_id, e.user_id, e.provider, e.model, e.tokens_in, e.tokens_out, ts_ms), e.kwh, e.co2_kg


def parse_raw(payload: bytes | None, now_ms: int, max_future_ms: int, max_payload_bytes: int) -> RawEvent:
    return RawEvent._make(raw_tuple(payload, now_ms, max_future_ms, max_payload_bytes))


def parse_enriched(payload: bytes | None, now_ms: int, max_future_ms: int, max_payload_bytes: int) -> EnrichedEvent:
    raw, kwh, co2 = enriched_tuple(payload, now_ms, max_future_ms, max_payload_bytes)
    return EnrichedEvent(RawEvent._make(raw), kwh, co2)
