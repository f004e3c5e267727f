"""Daily windows in a time zone: which local day an epoch-millisecond instant falls in."""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo


class DayCalendar:
    """Maps epoch milliseconds to local day names ("2026-11-27"), caching each day's bounds.

    A day is [local midnight, next local midnight), so DST days of 23 or 25 hours are right.
    """

    def __init__(self, zone: ZoneInfo) -> None:
        self.zone = zone
        self._days: dict[str, tuple[int, int]] = {}
        self._last: tuple[int, int, str] = (0, 0, "")

    def day_of(self, ts_ms: int) -> str:
        start_ms, end_ms, name = self._last
        if start_ms <= ts_ms < end_ms:
            return name
        local = datetime.fromtimestamp(ts_ms / 1000, self.zone).date()
        name = local.isoformat()
        start_ms, end_ms = self.bounds(local)
        self._last = (start_ms, end_ms, name)
        return name

    def day_span(self, ts_ms: int) -> tuple[int, int, str]:
        """(start_ms, end_ms, name) of the local day holding `ts_ms`: callers test the bounds inline."""
        self.day_of(ts_ms)
        return self._last

    def bounds(self, day: date) -> tuple[int, int]:
        name = day.isoformat()
        cached = self._days.get(name)
        if cached is None:
            if len(self._days) > 64:
                self._days.clear()
            cached = (self._midnight_ms(day), self._midnight_ms(day + timedelta(days=1)))
            self._days[name] = cached
        return cached

    def _midnight_ms(self, day: date) -> int:
        return round(datetime.combine(day, time(0), self.zone).timestamp() * 1000)

    def oldest_kept_start_ms(self, now_ms: int, days_kept: int) -> int:
        """Start of the oldest day still kept: today and the days_kept - 1 before it."""
        today = datetime.fromtimestamp(now_ms / 1000, self.zone).date()
        return self.bounds(today - timedelta(days=days_kept - 1))[0]

    def today_index(self, now_ms: int) -> int:
        """Today's local date as an ordinal: the rolling windows count days by these integers."""
        return datetime.fromtimestamp(now_ms / 1000, self.zone).date().toordinal()

    def today(self, now_ms: int) -> str:
        return datetime.fromtimestamp(now_ms / 1000, self.zone).date().isoformat()
