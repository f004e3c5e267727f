"""Property-based: whatever bytes arrive, the fold never raises, every record is counted valid or
invalid, invalid ones do not change the valid totals, and the exposition stays parseable."""

from functools import partial
from typing import NamedTuple
from zoneinfo import ZoneInfo

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client.parser import text_string_to_metric_families

from streams.calendar import DayCalendar
from streams.exposition import render
from streams.fold import FoldContext, fold_enriched, fold_raw
from streams.metrics import BusinessCollector
from tables.delta import Delta
from tables.snapshot import Snapshot

NOW_MS = 1_795_780_800_000


class Rec(NamedTuple):
    value: bytes | None
    timestamp: int
    offset: int
    partition: int = 0


labels = st.text(min_size=1, max_size=40)
EVENT_FIELDS = ("org_id", "user_id", "provider", "model", "tokens_in", "tokens_out", "ts", "kwh", "co2_kg")
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
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=20,
)


def encoded_or_x(value: object) -> bytes:
    """The value as JSON, or b"x" when orjson cannot encode it (integers beyond 64 bits)."""
    try:
        return orjson.dumps(value)
    except (TypeError, orjson.JSONEncodeError):
        return b"x"


def with_null(ev: dict[str, object], field: str) -> bytes:
    return orjson.dumps({**ev, field: None})


def one_field_null(ev: dict[str, object]) -> st.SearchStrategy[bytes]:
    return st.sampled_from(EVENT_FIELDS).map(partial(with_null, ev))


def with_negative_tokens(ev: dict[str, object]) -> bytes:
    tokens = ev["tokens_in"]
    assert isinstance(tokens, int)
    return orjson.dumps({**ev, "tokens_in": -1 - tokens})


hostile = st.one_of(
    st.binary(max_size=300),
    json_values.map(encoded_or_x),
    valid_event.flatmap(one_field_null),
    valid_event.map(with_negative_tokens),
    st.just(b'{"org_id": NaN}'),
    st.just(b"[" * 10_000 + b"]" * 10_000),
    st.just(b'{"pad": "' + b"x" * 70_000 + b'"}'),
    st.none(),
)


def _ctx() -> FoldContext:
    return FoldContext(DayCalendar(ZoneInfo("UTC")), NOW_MS, 2, 86_400_000, 65_536)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(good=st.lists(valid_event, max_size=15), bad=st.lists(hostile, max_size=15), data=st.data())
def test_hostile_records_never_disturb_the_valid_totals(
    good: list[dict[str, object]], bad: list[bytes | None], data: st.DataObject
) -> None:
    good_bytes = [orjson.dumps(ev) for ev in good]
    mixed = data.draw(st.permutations([*good_bytes, *bad]))
    for fold in (fold_raw, fold_enriched):
        clean, noisy = Delta(), Delta()
        fold(clean, "t", [Rec(v, NOW_MS, i) for i, v in enumerate(good_bytes)], _ctx())
        fold(noisy, "t", [Rec(v, NOW_MS, i) for i, v in enumerate(mixed)], _ctx())
        valid, invalid = noisy.processed.get("t", 0), sum(noisy.invalid.values())
        assert valid + invalid == len(mixed)
        assert valid >= len(good)
        # Every generated "bad" record that happened to be valid is counted; the good ones are all there.
        for key, n in clean.ingested.items():
            assert noisy.ingested[key] >= n
        for day, members in clean.users.items():
            assert members <= noisy.users[day]


@settings(max_examples=100, deadline=None)
@given(orgs=st.lists(st.text(min_size=1, max_size=30), max_size=10, unique=True))
def test_any_org_id_gives_a_parseable_exposition(orgs: list[str]) -> None:
    snap = Snapshot(
        ingested={(o, "openai"): 1 for o in orgs},
        calls={(o, 'm"\\\n'): 2 for o in orgs},
        processed={"t": 1},
        invalid={},
        dropped_late={},
        last_ts_ms={},
        delay_buckets=[0] * 12,
        delay_sum_ms=0,
        active_orgs=len(orgs),
        active_users=1,
        kwh={o: 0.5 for o in orgs},
        co2_kg={},
        folded={},
    )
    text = render([BusinessCollector(snap, ["t"])]).decode()
    parsed = {
        (s.name, s.labels.get("org_id")): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }
    for org in orgs:
        assert parsed[("ecomind_events_ingested_total", org)] == 1.0
        assert parsed[("ecomind_total_kwh_today", org)] == 0.5
