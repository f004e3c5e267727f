"""ISO-8601 event times to epoch milliseconds, with the gateway's shape read from small caches.

`datetime.fromisoformat` and `.timestamp()` cost about as much per event as decoding the whole JSON
payload (docs/performance.md). The gateway writes times like "2025-10-07T12:00:00Z": the first 16
characters name a minute, which a day of traffic repeats thousands of times, and the rest (seconds,
up to three fraction digits, an optional offset) takes a few thousand values at most. Each part is
learned once, by the reference parse of a string built from it alone, and the two add up: the minute
read as UTC, plus the seconds and fraction minus the offset. Text of any other shape, and a part seen
for the first time, goes through the reference parse itself (`reference_iso_ms`), whose answer is the
contract; tests/unit/core/test_iso8601.py holds the two to the same answers.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime

MAX_ISO_CHARS = 64
# Learned parts are dropped wholesale past this many: a week of minutes, and bounded memory whatever
# the traffic sends.
MAX_CACHED_PARTS = 16_384
# [0-9], not \d: \d matches other scripts' digits, which the minute and rest would then disagree on.
_MINUTE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}[T ][0-9]{2}:[0-9]{2}")
# Three fraction digits at most: a millisecond fraction needs no rounding, so the sum is exactly what
# the reference's rounding of a float gives.
_REST = re.compile(r":[0-5][0-9](?:\.[0-9]{1,3})?(?:Z|[+-][0-9]{2}:[0-9]{2})?")
MAX_KNOWN_TEXTS = 65_536  # most of a day of whole seconds; a few MB at most
_MINUTE_CHARS = 16
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_ONE_MS = datetime(1970, 1, 1, 0, 0, 0, 1000, tzinfo=UTC) - _EPOCH
_REST_BASE = "2000-01-01T00:00"  # any valid minute: the rest's value does not depend on it

_minutes: dict[str, int] = {}
_rests: dict[str, int] = {}
# Whole texts already read: a gateway writing whole seconds repeats each text for every event of that
# second, and one lookup is cheaper still than the two parts. core/decode.py reads it inline (KNOWN_TEXTS.get).
KNOWN_TEXTS: dict[str, int] = {}


def iso_ms(text: str) -> int:
    """Epoch milliseconds of ISO-8601 text (UTC when it names no offset); ValueError when it is not one."""
    if type(text) is not str:  # a subclass may hash and compare as it likes: never from the caches
        return reference_iso_ms(text)
    ts_ms = KNOWN_TEXTS.get(text)
    if ts_ms is not None:
        return ts_ms
    minute_ms = _minutes.get(text[:_MINUTE_CHARS])
    rest_ms = _rests.get(text[_MINUTE_CHARS:]) if minute_ms is not None else None
    if minute_ms is not None and rest_ms is not None:
        ts_ms = minute_ms + rest_ms
    else:
        ts_ms = reference_iso_ms(text)
        _learn(text)
    # Every text here is within MAX_ISO_CHARS: the reference refuses longer ones, and the parts are short.
    if len(KNOWN_TEXTS) >= MAX_KNOWN_TEXTS:
        KNOWN_TEXTS.clear()
    KNOWN_TEXTS[text] = ts_ms
    return ts_ms


def reference_iso_ms(text: str) -> int:
    """The contract: what `datetime.fromisoformat` reads, as UTC when it names no offset."""
    if len(text) > MAX_ISO_CHARS:
        raise ValueError("ISO-8601 text too long")
    moment = datetime.fromisoformat(text)
    if moment.tzinfo is None:
        # The gateway writes UTC; a time without an offset is read as UTC rather than rejected.
        moment = moment.replace(tzinfo=UTC)
    return round(moment.timestamp() * 1000)


def _learn(text: str) -> None:
    """Cache the minute and the rest of a valid text, each checked on its own by the reference parse."""
    minute, rest = text[:_MINUTE_CHARS], text[_MINUTE_CHARS:]
    # Only a text of the fast path's shape as a whole: then the reference read it as this minute plus
    # this rest, and each part is valid alone. (A part of another shape can look like one: the ":60" of
    # "2026-11-30T13+01:60" is an offset's minutes there, and no second.)
    if not (_MINUTE.fullmatch(minute) and _REST.fullmatch(rest)):
        return
    try:
        minute_ms = _exact_ms(minute)
        rest_ms = _exact_ms(_REST_BASE + rest) - _exact_ms(_REST_BASE)
    except ValueError:  # not expected of a text the reference read; learning must never refuse one
        return
    if len(_minutes) >= MAX_CACHED_PARTS:
        _minutes.clear()
    if len(_rests) >= MAX_CACHED_PARTS:
        _rests.clear()
    _minutes[minute], _rests[rest] = minute_ms, rest_ms


def _exact_ms(text: str) -> int:
    """Whole milliseconds from the epoch, in integers (the learned shapes have no finer fraction)."""
    moment = datetime.fromisoformat(text)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return (moment - _EPOCH) // _ONE_MS
