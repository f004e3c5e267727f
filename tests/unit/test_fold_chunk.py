"""The fold of a clean chunk gives the same Delta as the per-event fold, on random chunks.

Chunks are drawn mostly clean (so the chunk fold runs) with, now and then, what must send a chunk to
the per-event fold: a record the schema refuses, an event of another day or ahead of time, a text time,
an extra field, an oversized payload. Each chunk is folded both ways into Deltas that already hold an
earlier chunk, and the two Deltas must be equal field by field.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import NamedTuple
from zoneinfo import ZoneInfo

import orjson
import pytest

from streams.calendar import DayCalendar
from streams.fold import FoldContext, fold_enriched, fold_enriched_each, fold_raw, fold_raw_each
from streams.fold_chunk import clean
from streams.schema import ENRICHED_DECODER, RAW_DECODER
from tables.delta import MAX_DELAY_MS, Delta

H = 3_600_000
NOW_MS = 1_795_780_800_000  # 2026-11-27T12:00:00Z
ZONES = ("UTC", "Europe/Paris", "Asia/Kolkata")


class Rec(NamedTuple):
    value: bytes | None
    timestamp: int
    offset: int = 0
    partition: int = 0


def ctx(zone: str, days_kept: int) -> FoldContext:
    return FoldContext(DayCalendar(ZoneInfo(zone)), NOW_MS, days_kept, 300_000, 400)


def event(rng: random.Random, enriched: bool, days_back: int = 0) -> dict[str, object]:
    body: dict[str, object] = {
        "org_id": f"org{rng.randrange(4)}",
        "user_id": f"u{rng.randrange(30)}",
        "provider": rng.choice(["openai", "anthropic"]),
        "model": rng.choice(["m1", "m2", "m3"]),
        "tokens_in": rng.randrange(0, 5000),
        "tokens_out": rng.randrange(0, 5000),
        "ts": NOW_MS - days_back * 24 * H - rng.randrange(0, 2 * H),
    }
    if enriched:
        body["kwh"] = rng.choice([0.0, rng.random(), rng.randrange(0, 3), 1e-10 * rng.random()])
        body["co2_kg"] = rng.random() / 3
    return body


def spoil(rng: random.Random, body: dict[str, object]) -> bytes | None:
    """One of the things that make a chunk unclean."""
    kind = rng.randrange(9)
    if kind == 0:
        return b"{not json"
    if kind == 1:
        return None
    if kind == 2:
        body["ts"] = NOW_MS - rng.randint(1, 40) * 24 * H  # another day, up to past the windows
    elif kind == 3:
        body["ts"] = NOW_MS + rng.choice([H, 10 * H])  # ahead: within the allowed future or past it
    elif kind == 4:
        body["ts"] = "2026-11-27T11:00:00Z"
    elif kind == 5:
        body["request_id"] = "r1"
    elif kind == 6:
        body["tokens_in"] = -1
    elif kind == 7:
        body["org_id"] = "x" * 500  # past the 400-byte payload limit of ctx()
    else:
        body["ts"] = NOW_MS - 13 * H  # yesterday in UTC, today in Kolkata: a chunk across midnight or not
    return orjson.dumps(body)


def chunk(rng: random.Random, enriched: bool) -> list[Rec]:
    records = []
    spoiled = rng.random() < 0.5
    # A whole chunk of an older day: kept or not, inside the 30-day windows or not.
    days_back = rng.choice([0, 0, 0, 0, 1, 6, 35])
    for i in range(rng.randint(1, 40)):
        body = event(rng, enriched, days_back)
        value = spoil(rng, body) if spoiled and rng.random() < 0.15 else orjson.dumps(body)
        ts = body["ts"] if isinstance(body["ts"], int) else NOW_MS
        # The broker's time: usually after the event's, sometimes before it or a day and more later.
        delay = rng.choice([rng.randrange(0, 20_000), -rng.randrange(1, 5000), MAX_DELAY_MS + rng.randrange(1, H)])
        records.append(Rec(value, ts + delay, offset=i, partition=rng.randrange(2)))
    return records


FOLDS: list[tuple[str, Callable[..., None], Callable[..., None], Callable[[bytes], object]]] = [
    ("raw", fold_raw, fold_raw_each, RAW_DECODER.decode),
    ("enriched", fold_enriched, fold_enriched_each, ENRICHED_DECODER.decode),
]


@pytest.mark.parametrize(("topic", "fold", "each", "decode"), FOLDS)
def test_chunk_fold_equals_the_per_event_fold(
    topic: str, fold: Callable[..., None], each: Callable[..., None], decode: Callable[[bytes], object]
) -> None:
    rng = random.Random(20261128)
    taken = 0
    for case in range(1500):
        c = ctx(rng.choice(ZONES), rng.choice([1, 2, 7, 45]))
        first, second = chunk(rng, topic == "enriched"), chunk(rng, topic == "enriched")
        fast, slow = Delta(), Delta()
        for records in (first, second):
            taken += clean(records, decode, c) is not None
            fold(fast, topic, records, c)
            each(slow, topic, records, c)
        assert fast == slow, f"case {case}"
    # Both folds were exercised: the clean one on about half of the chunks, the per-event one on the rest.
    assert 900 < taken < 2500, taken


def test_a_clean_chunk_takes_the_chunk_fold_and_an_unclean_one_does_not() -> None:
    rng = random.Random(3)
    c = ctx("UTC", 2)
    records = [Rec(orjson.dumps(event(rng, False)), NOW_MS) for _ in range(10)]
    found = clean(records, RAW_DECODER.decode, c)
    assert found is not None and found.day == "2026-11-27" and len(found.structs) == 10
    assert clean([*records, Rec(b"{", NOW_MS)], RAW_DECODER.decode, c) is None
    yesterday = orjson.dumps({**event(rng, False), "ts": NOW_MS - 13 * H})
    assert clean([*records, Rec(yesterday, NOW_MS)], RAW_DECODER.decode, c) is None
    assert clean([], RAW_DECODER.decode, c) is None
