"""Event times as producers write them, for the seeded workloads, and the truth's own reading of them.

The contract (docs/design.md, "Event contracts") accepts ISO-8601 text, epoch seconds and epoch
milliseconds. The workload writes each, and its truth reads them back here, from the contract rather than
with the sidecar's parser (core/events.py `parse_ts_ms`): a truth that shared the parser would agree
with it whatever it did. tests/unit/streams/local/test_workload.py holds the two to the same day.
"""

from __future__ import annotations

import random
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

EPOCH_MS = "epoch_ms"  # integers, as the workload always wrote them
EPOCH_S = "epoch_s"  # floats with milliseconds, e.g. 1759838400.123
ISO = "iso"  # the gateway's text, e.g. "2025-10-07T12:00:00Z" (whole seconds)
TS_FORMATS = (EPOCH_MS, EPOCH_S, ISO)

# The contract: numbers at or above 1e11 are milliseconds (1e11 s is the year 5138, 1e11 ms is 1973).
EPOCH_MS_THRESHOLD = 100_000_000_000


def format_ts(ts_ms: int, ts_format: str) -> int | float | str:
    """The event time `ts_ms` written as `ts_format` writes it (one of TS_FORMATS)."""
    if ts_format == EPOCH_MS:
        return ts_ms
    if ts_format == EPOCH_S:
        return ts_ms / 1000
    if ts_format == ISO:
        # Whole seconds, floored: the gateway's format carries no fraction.
        return datetime.fromtimestamp(ts_ms // 1000, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    raise ValueError(f"unknown ts format {ts_format!r}; expected one of {', '.join(TS_FORMATS)}")


def ts_ms_of(value: object) -> int:
    """Epoch milliseconds of a `ts` as the contract reads it: text as ISO-8601 (UTC without an offset),
    numbers as milliseconds from 1e11 up and as seconds below."""
    if isinstance(value, str):
        moment = datetime.fromisoformat(value)  # Python 3.11 reads a trailing "Z"
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        return round(moment.timestamp() * 1000)
    if isinstance(value, int | float) and not isinstance(value, bool):
        return int(value) if abs(value) >= EPOCH_MS_THRESHOLD else round(value * 1000)
    raise TypeError(f"not an event time: {value!r}")


def previous_day_ms(rng: random.Random, now_ms: int, zone: ZoneInfo) -> int:
    """An instant drawn uniformly from the local day before the one holding `now_ms`: a late event that
    the daily tables still keep (STREAMS_DAYS_KEPT is 2 by default)."""
    today = datetime.fromtimestamp(now_ms / 1000, zone).date()
    return rng.randrange(_midnight_ms(today - timedelta(days=1), zone), _midnight_ms(today, zone))


def _midnight_ms(day: date, zone: ZoneInfo) -> int:
    return round(datetime.combine(day, time(0), zone).timestamp() * 1000)
