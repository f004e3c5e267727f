"""Generated events for the contract's tests: hypothesis strategies of payloads (valid, edge, one field wrong),
and reference decoders simple enough to be obviously right, which the schema and the fold are held to."""

from __future__ import annotations

import json

from hypothesis import strategies as st

from core.decode import enriched_tuple, raw_tuple
from core.events import Invalid, _amount, _raw_from, decode_object
from core.schema import MAX_CO2_KG, MAX_KWH, MAX_LABEL_CHARS, MAX_TOKENS

NOW_MS = 1_795_780_800_000  # 2026-11-27T12:00:00Z


FUTURE_MS = 300_000


RAW_FIELDS = ("org_id", "user_id", "provider", "model", "tokens_in", "tokens_out", "ts")


ENRICHED_FIELDS = (*RAW_FIELDS, "kwh", "co2_kg")


def reference_raw(payload: bytes | None, max_bytes: int, now_ms: int = NOW_MS) -> tuple[object, ...]:
    return tuple(_raw_from(decode_object(payload, max_bytes), now_ms, FUTURE_MS))


def reference_enriched(payload: bytes | None, max_bytes: int, now_ms: int = NOW_MS) -> tuple[object, ...]:
    obj = decode_object(payload, max_bytes)
    return tuple(_raw_from(obj, now_ms, FUTURE_MS)), _amount(obj, "kwh", MAX_KWH), _amount(obj, "co2_kg", MAX_CO2_KG)


def outcome(fn, payload: bytes | None, max_bytes: int, now_ms: int = NOW_MS) -> tuple[str, str]:  # type: ignore[no-untyped-def]
    try:
        value = fn(payload, max_bytes, now_ms)
    except Invalid as exc:
        return ("invalid", exc.reason)
    # Types matter too: a float where the reference has an int would change a sum's rendering.
    return ("ok", repr(value))


def fast_raw(payload: bytes | None, max_bytes: int, now_ms: int = NOW_MS) -> object:
    return raw_tuple(payload, now_ms, FUTURE_MS, max_bytes)


def fast_enriched(payload: bytes | None, max_bytes: int, now_ms: int = NOW_MS) -> object:
    return enriched_tuple(payload, now_ms, FUTURE_MS, max_bytes)


def edge_texts() -> st.SearchStrategy[str]:
    sizes = st.sampled_from([0, 1, MAX_LABEL_CHARS - 1, MAX_LABEL_CHARS, MAX_LABEL_CHARS + 1])
    chars = st.sampled_from(["a", "é", "😀", "\x00", "\u2028", '"', "\\"])
    return st.one_of(st.text(max_size=8), st.builds(lambda n, c: c * n, sizes, chars))


INTS = st.one_of(
    st.sampled_from([0, -1, 1, MAX_TOKENS, MAX_TOKENS + 1, 2**63 - 1, 2**63, 2**64, 2**64 + 1, -(2**63) - 1, 10**30]),
    st.integers(min_value=-(10**12), max_value=10**12),
)


FLOATS = st.one_of(
    st.sampled_from([0.0, -0.0, 1.0, 0.5, -0.5, -1e-9, MAX_KWH, MAX_KWH + 1e-9, 1e308, -1e-300, 5e-324]),
    st.floats(allow_nan=False, allow_infinity=False),
)


TIMES = st.one_of(
    st.sampled_from(
        [
            "2026-11-27T11:00:00Z",
            "2026-11-27T11:00:00.123456+02:00",
            "2026-11-27T11:00:00",
            "2026-11-27",
            "yesterday",
            "",
            "2026-13-01T00:00:00Z",
        ]
    ),
    st.integers(min_value=NOW_MS - 10**11, max_value=NOW_MS + 10**6),
    st.integers(min_value=(NOW_MS - 10**11) // 1000, max_value=(NOW_MS + 10**6) // 1000),
    st.floats(min_value=1.5e9, max_value=1.9e12, allow_nan=False),
    st.sampled_from([946_684_800_000, 946_684_799_999, NOW_MS + FUTURE_MS, NOW_MS + FUTURE_MS + 1]),
)


VALUES = st.one_of(
    edge_texts(), INTS, FLOATS, TIMES, st.booleans(), st.none(), st.just([]), st.just({"a": 1}), st.just([1, "x"])
)


VALID_VALUES = {
    "org_id": st.text(min_size=1, max_size=8),
    "user_id": st.text(min_size=1, max_size=8),
    "provider": st.sampled_from(["openai", "anthropic"]),
    "model": st.sampled_from(["gpt-4o", "claude-haiku"]),
    "tokens_in": st.integers(0, 10**6),
    "tokens_out": st.integers(0, 10**6),
    "ts": st.one_of(st.integers(NOW_MS - 10**9, NOW_MS), st.just("2026-11-27T11:00:00Z")),
    "kwh": st.floats(0, 10),
    "co2_kg": st.floats(0, 10),
}


EDGE_VALUES = {
    "org_id": edge_texts(),
    "user_id": edge_texts(),
    "provider": edge_texts(),
    "model": edge_texts(),
    "tokens_in": INTS,
    "tokens_out": INTS,
    "ts": TIMES,
    "kwh": st.one_of(FLOATS, INTS),
    "co2_kg": st.one_of(FLOATS, INTS),
}


@st.composite
def payloads(draw: st.DrawFn, fields: tuple[str, ...]) -> bytes:
    """A JSON object of the contract's fields, each usually valid, sometimes at or past a bound, of any
    kind, missing or repeated, with extra fields, encoded with or without escapes, sometimes mangled.
    Mostly valid fields, so that one field at a time is wrong: that is where a schema bound that differs
    from the checks shows."""
    items: list[tuple[str, object]] = []
    for name in fields:
        roll = draw(st.integers(0, 29))
        if roll == 0:
            continue
        value = draw(VALUES if roll == 1 else EDGE_VALUES[name] if roll < 5 else VALID_VALUES[name])
        items.append((name, value))
        if roll == 2:  # a repeated key: the last one counts for both decoders
            items.append((name, draw(EDGE_VALUES[name])))
    for _ in range(draw(st.integers(0, 2))):
        items.append((draw(st.sampled_from(["extra", "kwh", "TS", "org"])), draw(VALUES)))
    ascii_only = draw(st.booleans())
    pieces = [(json.dumps(k) + ":" + json.dumps(v, ensure_ascii=ascii_only)).encode() for k, v in items]
    if draw(st.integers(0, 4)) == 0:  # a field nobody reads, holding what orjson refuses
        pieces.append(draw(st.sampled_from(JUNK_FIELDS)))
    order = draw(st.permutations(range(len(pieces))))
    encoded = b"{" + b",".join(pieces[i] for i in order) + b"}"
    mangle = draw(st.integers(0, 9))
    if mangle == 0 and encoded:
        at = draw(st.integers(0, len(encoded) - 1))
        encoded = encoded[:at] + bytes([draw(st.integers(0, 255))]) + encoded[at + 1 :]
    elif mangle == 1:
        encoded = encoded[: draw(st.integers(0, len(encoded)))]
    elif mangle == 2:
        encoded = draw(st.sampled_from([b"[", b"", b"\xef\xbb\xbf", b" ", b"\xff"])) + encoded
    return encoded


KIND = {name: "label" for name in RAW_FIELDS[:4]} | {
    "tokens_in": "tokens",
    "tokens_out": "tokens",
    "ts": "ts",
    "kwh": "amount",
    "co2_kg": "amount",
}


NUMBERS_OF_ANOTHER_KIND = [True, False, None, "1", 1.0]


BOUNDS: dict[str, list[object]] = {
    "label": ["", "a" * (MAX_LABEL_CHARS + 1), "😀" * MAX_LABEL_CHARS, "😀" * (MAX_LABEL_CHARS + 1), 1, None, True],
    "tokens": [-1, 0, MAX_TOKENS, MAX_TOKENS + 1, 2**64, 10**309, *NUMBERS_OF_ANOTHER_KIND],
    "ts": [
        *(946_684_799_999, 946_684_800_000, NOW_MS + FUTURE_MS, NOW_MS + FUTURE_MS + 1, True, None, "", 1.5e9),
        # Integers past 64 bits and past a float's range (orjson reads them as floats, or infinity).
        *(2**63 - 1, 2**63, -(2**63) - 1, 10**30, 10**308, 10**309, -(10**309), 10**400),
    ],
    "amount": [-0.5, -1e-9, -0.0, 0, MAX_KWH, MAX_KWH + 1e-9, MAX_KWH + 1, True, None, "1", 10**30, 10**309],
}


@st.composite
def one_field_wrong(draw: st.DrawFn, fields: tuple[str, ...]) -> bytes:
    """A valid event but for one field at or past a bound, or of another kind: where a schema bound
    that differs from the checks shows."""
    wrong = draw(st.sampled_from(fields))
    body = {name: draw(VALID_VALUES[name]) for name in fields}
    body[wrong] = draw(st.one_of(st.sampled_from(BOUNDS[KIND[wrong]]), EDGE_VALUES[wrong], VALUES))
    return json.dumps(body, ensure_ascii=draw(st.booleans())).encode()


JUNK_FIELDS = [
    b'"extra":"\xff"',
    b'"extra":"\xed\xa0\x80"',
    b'"extra":1e400',
    b'"extra":-1e999',
    b'"extra":' + b"9" * 400,
    b'"\xffkey":1',
    b'"extra":"\\ud800"',
    b'"extra":[1,]',
]


LIMITS = st.sampled_from([65_536, 200, 64])


BOUNDARY_CASES = [
    (kind, name, value)
    for kind, fields in (("raw", RAW_FIELDS), ("enriched", ENRICHED_FIELDS))
    for name in fields
    for value in BOUNDS[KIND[name]]
]
