"""Hypothesis strategies for records the gateway or the worker should never write, mixed with valid
events whose truth is known from the generated dict, not from the sidecar's own parser."""

from __future__ import annotations

import time
from dataclasses import dataclass
from functools import partial

import orjson
from hypothesis import strategies as st

from core.events import EPOCH_MS_THRESHOLD
from streams.local.workload import without
from tables.labels import OTHER

DAY_MS = 86_400_000
MIN_TS_MS = 946_684_800_000  # the contract's floor: 2000-01-01


def _from_now_ms(delta_ms: int) -> int:
    return int(time.time() * 1000) + delta_ms


@dataclass(frozen=True)
class Item:
    enriched: bool  # which topic it goes to
    payload: bytes | None
    event: dict[str, object] | None  # the event when the record is valid, else None


# Label values an attacker would try: quotes, backslashes, newlines, control characters, emoji.
_nasty = st.sampled_from(['"', "\\", "\n", "\x00", "\x1b[31m", "\r\n", "{}", 'org_id="x"', "é", "🔥", " "])
labels = st.one_of(
    st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), min_size=1, max_size=40),
    st.lists(_nasty, min_size=1, max_size=6).map("".join),
    st.text("abc", min_size=1, max_size=3),  # few distinct values: many events per org
).filter(lambda s: s != OTHER)

valid_raw = st.fixed_dictionaries(
    {
        "org_id": labels,
        "user_id": labels,
        "provider": st.sampled_from(["openai", "anthropic", "google"]),
        "model": st.sampled_from(["gpt-4o", "claude", "gemini"]),
        "tokens_in": st.integers(0, 10**9),
        "tokens_out": st.integers(0, 10**9),
        "ts": st.integers(-60_000, 0).map(_from_now_ms),  # read when drawn: the test's day, not the import's
    }
)


def with_amounts(ev: dict[str, object], n: int) -> dict[str, object]:
    """The raw event enriched with kWh and CO2 derived from n (0 to 1e9)."""
    return {**ev, "kwh": n / 1e9 * 100, "co2_kg": n / 1e9 * 50}


def _enriched_from(ev: dict[str, object]) -> st.SearchStrategy[dict[str, object]]:
    return st.integers(0, 10**9).map(partial(with_amounts, ev))


valid_enriched = valid_raw.flatmap(_enriched_from)

FIELDS = ("org_id", "user_id", "provider", "model", "tokens_in", "tokens_out", "ts")
WRONG_TYPES = ([1], {"a": 1}, True, None, [[[[["deep"]]]]])  # a container, a bool, null, a deep list
NON_FINITE = ("NaN", "Infinity", "-Infinity", "1e999")
BAD_TS_TEXT = ("not a date", "9999-99-99", "1970-01-01T00:00:00Z", "x" * 100)
BAD_AMOUNTS = (-1.0, 1e6, "1.5", None)  # negative, absurd or non-numeric kWh / CO2
_json_scalars = st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.floats(allow_nan=False) | st.text()
_json = st.recursive(_json_scalars, lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(), c, max_size=3))
_out_of_range_tokens = st.one_of(st.integers(-(2**63), -1), st.integers(10**10 + 1, 2**63 - 1))
_bad_ts_numbers = st.one_of(
    # Before 2000 read as epoch seconds (below 1e11) or as epoch milliseconds (from 1e11 on);
    # numbers in between are seconds after 2000, some of them valid, so they are not drawn here.
    st.integers(-(10**15), MIN_TS_MS // 1000 - 1),
    st.integers(EPOCH_MS_THRESHOLD, MIN_TS_MS - 1),
    st.integers(3 * DAY_MS, 10**17 - 2 * 10**12).map(_from_now_ms),  # far future
)


def encoded(ev: dict[str, object]) -> bytes:
    return orjson.dumps(ev)


def replaced(ev: dict[str, object], field: str, value: object) -> bytes:
    return encoded({**ev, field: value})


def missing(ev: dict[str, object], field: str) -> bytes:
    return without(encoded(ev), field)


def truncated(ev: dict[str, object], length: int) -> bytes:
    return encoded(ev)[:length]


def non_finite_tokens(ev: dict[str, object], literal: str) -> bytes:
    """tokens_in set to a literal no JSON number allows (NaN, Infinity, 1e999): orjson will not write it,
    so it is spliced into the encoded text, and the original value moves to an extra key "x"."""
    return encoded(ev).replace(b'"tokens_in":', b'"tokens_in":' + literal.encode() + b',"x":', 1)


def not_utf8(ev: dict[str, object]) -> bytes:
    good = encoded(ev)
    return good[:5] + b"\xff\xfe" + good[5:]


def huge_org_id(ev: dict[str, object], length: int) -> bytes:
    return replaced(ev, "org_id", "o" * length)


def deeply_nested(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


def _invalid_variants(ev: dict[str, object]) -> st.SearchStrategy[bytes | None]:
    this = st.just(ev)
    return st.one_of(
        st.integers(1, len(encoded(ev)) - 1).map(partial(truncated, ev)),
        st.sampled_from(FIELDS).map(partial(missing, ev)),
        st.builds(replaced, this, st.sampled_from(FIELDS), st.sampled_from(WRONG_TYPES)),
        st.builds(replaced, this, st.sampled_from(["tokens_in", "tokens_out"]), _out_of_range_tokens),
        st.sampled_from(NON_FINITE).map(partial(non_finite_tokens, ev)),
        _bad_ts_numbers.map(partial(replaced, ev, "ts")),
        st.sampled_from(BAD_TS_TEXT).map(partial(replaced, ev, "ts")),
        st.integers(257, 70_000).map(partial(huge_org_id, ev)),
        st.just(not_utf8(ev)),
        _json.filter(lambda v: not isinstance(v, dict)).map(orjson.dumps),  # valid JSON, not an object
        st.integers(2, 5_000).map(deeply_nested),
        st.just(b""),
        st.none(),  # a tombstone
    )


def _invalid_enriched_variants(ev: dict[str, object]) -> st.SearchStrategy[bytes | None]:
    bad_amount = st.builds(replaced, st.just(ev), st.sampled_from(["kwh", "co2_kg"]), st.sampled_from(BAD_AMOUNTS))
    return st.one_of(_invalid_variants(ev), bad_amount)


def valid_item(enriched: bool, ev: dict[str, object]) -> Item:
    return Item(enriched, encoded(ev), ev)


def invalid_item(enriched: bool, payload: bytes | None) -> Item:
    return Item(enriched, payload, None)


def item() -> st.SearchStrategy[Item]:
    raw = st.one_of(
        valid_raw.map(partial(valid_item, False)),
        valid_raw.flatmap(_invalid_variants).map(partial(invalid_item, False)),
    )
    enriched = st.one_of(
        valid_enriched.map(partial(valid_item, True)),
        valid_enriched.flatmap(_invalid_enriched_variants).map(partial(invalid_item, True)),
    )
    return st.one_of(raw, enriched)


def one_megabyte(ev: dict[str, object], size: int = 1_000_000) -> bytes:
    """A payload of about 1 MB: an event with a padding field, far over the payload limit."""
    return encoded({**ev, "pad": "x" * size})
