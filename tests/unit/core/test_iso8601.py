"""The cached ISO-8601 reader answers exactly as the reference parse, for every text, in any order.

The caches are module state: each test starts from empty caches, and the generated texts come in an
order hypothesis picks, so a part learned from one text is used on others.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core import iso8601
from core.iso8601 import KNOWN_TEXTS, iso_ms, reference_iso_ms


@pytest.fixture(autouse=True)
def empty_caches() -> Iterator[None]:
    for cache in (iso8601._minutes, iso8601._rests, KNOWN_TEXTS):
        cache.clear()
    yield


def _answer(read: object, text: str) -> int | str:
    try:
        return read(text)  # type: ignore[operator,no-any-return]
    except ValueError:
        return "ValueError"


DIGITS = st.sampled_from("0123456789")
two = st.builds(lambda a, b: a + b, DIGITS, DIGITS)
# Near-valid texts: each part drawn from valid values, edge values and junk, so both the fast path
# and the reference's refusals are reached, and cached parts meet parts of other texts.
date_part = st.one_of(
    st.sampled_from(["2025-10-07", "2024-02-29", "2023-02-29", "1999-12-31", "0001-01-01", "9999-12-31"]),
    st.builds(lambda y, m, d: f"20{y}-{m}-{d}", two, two, two),
)
sep = st.sampled_from(["T", " ", "t", "_"])
hour_minute = st.one_of(
    st.sampled_from(["00:00", "23:59", "24:00", "12:60", "1200", "12:0", "13", "13+01", "13-03"]),
    st.builds(lambda h, m: f"{h}:{m}", two, two),
)
seconds = st.one_of(st.sampled_from([":00", ":59", ":60", ":75", "", ":5", ":٣٤"]), st.builds(lambda s: ":" + s, two))
fraction = st.sampled_from(["", ".1", ".12", ".123", ".1234", ".123456", ".1234567", ".", ".x"])
offset = st.sampled_from(["", "Z", "z", "+00:00", "-05:30", "+14:00", "+23:59", "+24:00", "+01", "+0100", "+01:00:30"])
texts = st.builds(lambda *parts: "".join(parts), date_part, sep, hour_minute, seconds, fraction, offset)


@settings(max_examples=600, deadline=None)
@given(st.lists(st.one_of(texts, st.text(max_size=30)), min_size=1, max_size=40))
def test_cached_reads_equal_the_reference(batch: list[str]) -> None:
    for cache in (iso8601._minutes, iso8601._rests, KNOWN_TEXTS):
        cache.clear()
    for text in batch + batch:  # the second pass reads from the caches the first filled
        assert _answer(iso_ms, text) == _answer(reference_iso_ms, text), text


@pytest.mark.parametrize(
    ("learned", "text", "expected_ms"),
    [
        # A minute and a rest from two other texts make a third, never parsed as a whole.
        (["2025-10-07T11:59:00Z", "2025-10-08T00:00:43.120+02:00"], "2025-10-07T11:59:43.120+02:00", 1_759_831_183_120),
        (["2025-10-07T11:59:00Z", "2000-01-01T00:00:07"], "2025-10-07T11:59:07", 1_759_838_347_000),
        (["2024-02-29T23:59:00Z", "2025-10-07T11:59:59.999-00:30"], "2024-02-29T23:59:59.999-00:30", 1_709_252_999_999),
    ],
)
def test_parts_learned_from_other_texts_add_up(learned: list[str], text: str, expected_ms: int) -> None:
    for t in learned:
        iso_ms(t)
    KNOWN_TEXTS.clear()
    assert iso_ms(text) == reference_iso_ms(text) == expected_ms


def test_parts_the_reference_would_not_read_alone_are_never_learned() -> None:
    iso_ms("2025-10-07T11:59:43.1234Z")  # four fraction digits: read by the reference, not cached
    iso_ms("2025-10-07T11:59:43+01:00:30")  # an offset with seconds
    assert iso8601._rests == {} and iso8601._minutes == {}
    with pytest.raises(ValueError):
        iso_ms("2025-10-07T24:00:00Z")
    assert "2025-10-07T24:00" not in iso8601._minutes


@pytest.mark.parametrize(
    "text",
    # Valid texts of other shapes whose 17th character on looks like a rest: there it is an offset's
    # minutes, which Python does not bound, and never seconds.
    ["2026-11-30T13+01:60", "20261130T1300+01:75", "2026-11-30 13-03:60", "2026-11-30T13:00+01:99"],
)
def test_texts_of_other_shapes_are_read_as_the_reference_reads_them(text: str) -> None:
    for _ in range(2):
        assert iso_ms(text) == reference_iso_ms(text)


def test_a_str_subclass_never_reads_from_the_caches() -> None:
    class Odd(str):
        def __hash__(self) -> int:
            return hash("2025-10-07T12:00:00Z")

        def __eq__(self, other: object) -> bool:
            return True

    iso_ms("2025-10-07T12:00:00Z")
    with pytest.raises(ValueError):
        iso_ms(Odd("not a time"))


def test_the_caches_stay_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(iso8601, "MAX_CACHED_PARTS", 8)
    monkeypatch.setattr(iso8601, "MAX_KNOWN_TEXTS", 8)
    for minute in range(30):
        text = f"2025-10-07T11:{minute:02d}:{minute:02d}Z"
        assert iso_ms(text) == reference_iso_ms(text)
    assert max(len(iso8601._minutes), len(iso8601._rests), len(KNOWN_TEXTS)) <= 8


def test_a_text_over_the_length_limit_is_refused_even_with_known_parts() -> None:
    iso_ms("2025-10-07T11:59:43Z")
    with pytest.raises(ValueError):
        iso_ms("2025-10-07T11:59:43Z" + " " * 60)
