"""Hypothesis strategies for records the gateway or the worker should never write, mixed with valid
events whose truth is known from the generated dict, not from the sidecar's own parser."""

from __future__ import annotations

import time
from dataclasses import dataclass

import orjson
from hypothesis import strategies as st

from streams.events import EPOCH_MS_THRESHOLD
from tables.labels import OTHER

NOW_MS = int(time.time() * 1000)
MIN_TS_MS = 946_684_800_000  # the contract's floor: 2000-01-01


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
        "ts": st.integers(NOW_MS - 60_000, NOW_MS),
    }
)
valid_enriched = valid_raw.flatmap(
    lambda ev: st.integers(0, 10**9).map(lambda n: {**ev, "kwh": n / 1e9 * 100, "co2_kg": n / 1e9 * 50})
)
_fields = ["org_id", "user_id", "provider", "model", "tokens_in", "tokens_out", "ts"]
_json_scalars = st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.floats(allow_nan=False) | st.text()
_json = st.recursive(_json_scalars, lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(), c, max_size=3))


def _dumps(ev: dict[str, object]) -> bytes:
    return orjson.dumps(ev)


def _invalid_variants(ev: dict[str, object]) -> st.SearchStrategy[bytes | None]:
    good = _dumps(ev)
    return st.one_of(
        st.integers(1, len(good) - 1).map(lambda n: good[:n]),  # truncated JSON
        st.sampled_from(_fields).map(lambda k: _dumps({x: v for x, v in ev.items() if x != k})),  # missing field
        st.sampled_from(_fields).flatmap(  # wrong type: a container, a bool, null or a deep list
            lambda k: st.sampled_from([[1], {"a": 1}, True, None, [[[[["deep"]]]]]]).map(lambda v: _dumps({**ev, k: v}))
        ),
        st.sampled_from(["tokens_in", "tokens_out"]).flatmap(  # negative or enormous numbers
            lambda k: st.one_of(st.integers(-(2**63), -1), st.integers(10**10 + 1, 2**63 - 1)).map(
                lambda n: _dumps({**ev, k: n})
            )
        ),
        st.sampled_from(["NaN", "Infinity", "-Infinity", "1e999"]).map(
            lambda lit: good.replace(b'"tokens_in":', b'"tokens_in":' + lit.encode() + b',"x":', 1)
        ),
        st.one_of(
            # Before 2000 read as epoch seconds (below 1e11) or as epoch milliseconds (from 1e11 on);
            # numbers in between are seconds after 2000, some of them valid, so they are not drawn here.
            st.integers(-(10**15), MIN_TS_MS // 1000 - 1),
            st.integers(EPOCH_MS_THRESHOLD, MIN_TS_MS - 1),
            st.integers(NOW_MS + 3 * 86_400_000, 10**17),  # far future
        ).map(lambda ts: _dumps({**ev, "ts": ts})),
        st.sampled_from(["not a date", "9999-99-99", "1970-01-01T00:00:00Z", "x" * 100]).map(
            lambda ts: _dumps({**ev, "ts": ts})
        ),
        st.integers(257, 70_000).map(lambda n: _dumps({**ev, "org_id": "o" * n})),  # huge string
        st.just(good[:5] + b"\xff\xfe" + good[5:]),  # not UTF-8
        _json.filter(lambda v: not isinstance(v, dict)).map(orjson.dumps),  # valid JSON, not an object
        st.integers(2, 5_000).map(lambda n: b"[" * n + b"]" * n),  # deep nesting
        st.just(b""),
        st.none(),  # a tombstone
    )


def item() -> st.SearchStrategy[Item]:
    raw = st.one_of(
        valid_raw.map(lambda ev: Item(False, _dumps(ev), ev)),
        valid_raw.flatmap(_invalid_variants).map(lambda p: Item(False, p, None)),
    )
    enriched = st.one_of(
        valid_enriched.map(lambda ev: Item(True, _dumps(ev), ev)),
        valid_enriched.flatmap(
            lambda ev: st.one_of(
                _invalid_variants(ev),
                st.sampled_from(["kwh", "co2_kg"]).flatmap(  # negative, absurd or non-numeric amounts
                    lambda k: st.sampled_from([-1.0, 1e6, "1.5", None]).map(lambda v: _dumps({**ev, k: v}))
                ),
            )
        ).map(lambda p: Item(True, p, None)),
    )
    return st.one_of(raw, enriched)


def one_megabyte(ev: dict[str, object], size: int = 1_000_000) -> bytes:
    """A payload of about 1 MB: an event with a padding field, far over the payload limit."""
    return _dumps({**ev, "pad": "x" * size})
