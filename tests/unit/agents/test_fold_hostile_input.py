"""Property-based: whatever bytes arrive, the fold never raises and counts exactly the records known to be
valid (from the generated dicts, not from the code's own parser) and nothing else. The exposition's side of
hostile input: tests/unit/streams/web/test_collectors_hostile_labels.py."""

from datetime import UTC, datetime
from functools import partial
from operator import attrgetter
from typing import NamedTuple
from zoneinfo import ZoneInfo

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agents.fold import FoldContext, fold_enriched, fold_raw
from core.calendar import DayCalendar
from tables.delta import NANO, Delta, add, pair

NOW_MS = 1_795_780_800_000
MAX_PAYLOAD_BYTES = 65_536


class Rec(NamedTuple):
    value: bytes | None
    timestamp: int
    offset: int
    partition: int = 0


class Case(NamedTuple):
    """One record and the truth about it, known by construction: the event each fold must accept from
    it, or None where the fold must reject it."""

    payload: bytes | None
    raw: dict[str, object] | None
    enriched: dict[str, object] | None


labels = st.text(min_size=1, max_size=40)
RAW_FIELDS = ("org_id", "user_id", "provider", "model", "tokens_in", "tokens_out", "ts")
AMOUNT_FIELDS = ("kwh", "co2_kg")
valid_event = st.fixed_dictionaries(
    {
        "org_id": labels,
        "user_id": labels,
        "provider": st.sampled_from(["openai", "anthropic"]),
        "model": labels,
        "tokens_in": st.integers(0, 10**9),
        "tokens_out": st.integers(0, 10**9),
        "ts": st.integers(NOW_MS - 3_600_000, NOW_MS),
        "kwh": st.floats(0, 10, allow_nan=False),
        "co2_kg": st.floats(0, 10, allow_nan=False),
    }
)
# At most four keys per object: no drawn JSON value can hold the seven fields an event needs.
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=20,
)


def valid(ev: dict[str, object]) -> Case:
    return Case(orjson.dumps(ev), ev, ev)


def invalid(payload: bytes | None) -> Case:
    return Case(payload, None, None)


def encoded_or_x(value: object) -> bytes:
    """The value as JSON, or b"x" when orjson cannot encode it (integers beyond 64 bits)."""
    try:
        return orjson.dumps(value)
    except (TypeError, orjson.JSONEncodeError):
        return b"x"


def with_null(ev: dict[str, object], field: str) -> Case:
    """A null field is a missing one: a raw field breaks both contracts, an amount only the enriched one
    (a raw event carries no amounts, so the raw fold still counts it)."""
    payload = orjson.dumps({**ev, field: None})
    return Case(payload, ev if field in AMOUNT_FIELDS else None, None)


def one_field_null(ev: dict[str, object]) -> st.SearchStrategy[Case]:
    return st.sampled_from(RAW_FIELDS + AMOUNT_FIELDS).map(partial(with_null, ev))


def with_negative_tokens(ev: dict[str, object]) -> Case:
    tokens = ev["tokens_in"]
    assert isinstance(tokens, int)
    return invalid(orjson.dumps({**ev, "tokens_in": -1 - tokens}))


hostile = st.one_of(
    st.binary(max_size=300).filter(lambda b: b"{" not in b).map(invalid),  # without "{", no object at all
    json_values.map(encoded_or_x).map(invalid),
    valid_event.flatmap(one_field_null),
    valid_event.map(with_negative_tokens),
    st.just(invalid(b'{"org_id": NaN}')),
    st.just(invalid(b"[" * 10_000 + b"]" * 10_000)),
    st.just(invalid(b'{"pad": "' + b"x" * 70_000 + b'"}')),  # over MAX_PAYLOAD_BYTES
    st.just(invalid(None)),
)


def _ctx() -> FoldContext:
    return FoldContext(DayCalendar(ZoneInfo("UTC")), NOW_MS, 2, 86_400_000, MAX_PAYLOAD_BYTES)


def _day(ev: dict[str, object]) -> str:
    ts = ev["ts"]
    assert isinstance(ts, int)
    return datetime.fromtimestamp(ts / 1000, UTC).date().isoformat()


def _expected_raw(events: list[dict[str, object]]) -> Delta:
    """What the raw fold must add for exactly these events, derived from the dicts alone."""
    want = Delta()
    for ev in events:
        org, user = str(ev["org_id"]), str(ev["user_id"])
        add(want.ingested, (org, str(ev["provider"])), 1)
        add(want.calls, (org, str(ev["model"])), 1)
        want.orgs.setdefault(_day(ev), set()).add(org)
        want.users.setdefault(_day(ev), set()).add(pair(org, user))
    return want


def _expected_enriched(events: list[dict[str, object]]) -> Delta:
    want = Delta()
    for ev in events:
        org, day = str(ev["org_id"]), _day(ev)
        add(want.kwh_nano.setdefault(day, {}), org, round(float(ev["kwh"]) * NANO))  # type: ignore[arg-type]
        add(want.co2_nano.setdefault(day, {}), org, round(float(ev["co2_kg"]) * NANO))  # type: ignore[arg-type]
    return want


def _nonzero(counters: dict[str, dict[str, int]]) -> dict[str, dict[str, int]]:
    return {day: {k: n for k, n in c.items() if n} for day, c in counters.items() if any(c.values())}


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(good=st.lists(valid_event.map(valid), max_size=15), bad=st.lists(hostile, max_size=15), data=st.data())
def test_the_fold_counts_exactly_the_known_valid_events(good: list[Case], bad: list[Case], data: st.DataObject) -> None:
    mixed: list[Case] = data.draw(st.permutations([*good, *bad]))
    records = [Rec(c.payload, NOW_MS, i) for i, c in enumerate(mixed)]
    for fold, truth_of, expected in (
        (fold_raw, attrgetter("raw"), _expected_raw),
        (fold_enriched, attrgetter("enriched"), _expected_enriched),
    ):
        events = [ev for ev in map(truth_of, mixed) if ev is not None]
        got, want = Delta(), expected(events)
        fold(got, "t", records, _ctx())
        assert got.processed.get("t", 0) == len(events)
        assert sum(got.invalid.values()) == len(mixed) - len(events) == len(got.rejections)
        assert [r.record.offset for r in got.rejections] == [i for i, c in enumerate(mixed) if truth_of(c) is None], (
            "the rejected records are exactly the ones known invalid"
        )
        assert not got.dropped_late
        assert dict(got.ingested) == dict(want.ingested)
        assert dict(got.calls) == dict(want.calls)
        assert {d: s for d, s in got.orgs.items() if s} == want.orgs
        assert {d: s for d, s in got.users.items() if s} == want.users
        assert _nonzero(got.kwh_nano) == _nonzero(want.kwh_nano)
        assert _nonzero(got.co2_nano) == _nonzero(want.co2_nano)
        if fold is fold_enriched:
            assert sum(got.delay_buckets) == len(events)
