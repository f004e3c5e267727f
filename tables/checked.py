"""A scrape's stored values checked before decoding: one value that is not a number (something else wrote
it into the tables' hashes) costs its own series, never the whole /metrics answer."""

from __future__ import annotations

import logging
import math
from collections import deque
from collections.abc import Iterable
from dataclasses import replace
from itertools import chain
from typing import TYPE_CHECKING, Any

from core.ratelog import RateLimitedLog
from tables.delta import unpair

if TYPE_CHECKING:
    from tables.table_reads import RawTables

log = logging.getLogger("tables.snapshot")
_warn = RateLimitedLog(log)


def _numbers(values: Iterable[Any], check: Any = int) -> bool:
    """Every value reads with `check` (int, float, or a field name's reader)."""
    try:
        deque(map(check, values), maxlen=0)
    except (TypeError, ValueError, OverflowError):
        return False
    return True


def readable(raw: RawTables, warn: bool = True) -> tuple[RawTables, dict[str, int]]:
    """`raw` without the values `decode` cannot read as numbers, and how many were left out per table.
    `warn=False` only asks: what is left out is not logged (the caller checks again where it counts)."""
    bad: dict[str, int] = {}

    def ok(table: str, name: object, value: object, check: Any = int) -> bool:
        try:
            check(value)
            return True
        except (TypeError, ValueError, OverflowError):
            bad[table] = bad.get(table, 0) + 1
            if warn:
                _warn.warning(
                    table, "scrape: %s field %r holds %r, not a number: its series is left out", table, name, value
                )
            return False

    # Each table is first checked whole in one C loop (a scrape reads every org's fields, in every shard):
    # only a table holding a value that is not a number is gone through value by value.
    def flat(table: str, values: dict[str, str], check: Any = int, name_check: Any = str) -> dict[str, str]:
        if _numbers(values.values(), check) and (name_check is str or _numbers(values, name_check)):
            return values
        return {f: v for f, v in values.items() if ok(table, f, f, name_check) and ok(table, f, v, check)}

    def parts(table: str, values: dict[str, tuple[str | None, str | None]]) -> dict[str, tuple[str | None, str | None]]:
        if _numbers([v for pair in values.values() for v in pair if v is not None]):
            return values
        return {
            name: pair if all(v is None or ok(table, name, v) for v in pair) else (None, None)
            for name, pair in values.items()
        }

    def optional(table: str, values: dict[str, str | None]) -> dict[str, str | None]:
        if _numbers([v for v in values.values() if v is not None]):
            return values
        return {name: v if v is None or ok(table, name, v) else None for name, v in values.items()}

    def pairs(table: str, by_day: dict[int, dict[str, str]]) -> dict[int, dict[str, str]]:
        return {day: flat(table, found, int, int) for day, found in by_day.items()}

    cleaned = replace(
        raw,
        processed=flat("processed", raw.processed),
        invalid=flat("invalid", raw.invalid, name_check=unpair),
        dropped_late=flat("dropped_late", raw.dropped_late),
        last_ts=flat("last_ts", raw.last_ts, _timestamp),
        delay=flat("delay", raw.delay),
        delay_remainder=flat("delay", raw.delay_remainder),
        org_fields=(
            raw.org_fields
            if _numbers(chain.from_iterable(fields.values() for fields in raw.org_fields.values()))
            else {org: flat("org_fields", fields) for org, fields in raw.org_fields.items()}
        ),
        kwh=parts("kwh", raw.kwh),
        co2=parts("co2", raw.co2),
        totals=flat("totals", raw.totals),
        totals_remainder=flat("totals", raw.totals_remainder),
        by_provider=optional("activity", raw.by_provider),
        by_model=optional("activity", raw.by_model),
        window_pairs={subject: pairs("window_pairs", by_day) for subject, by_day in raw.window_pairs.items()},
        dropped_late_windows=flat("dropped_late_windows", raw.dropped_late_windows),
        org_users=optional("org_users", raw.org_users),
        tokens=parts("tokens", raw.tokens),
        provider_energy={
            p: (flat("provider_energy", fields), flat("provider_energy", rests))
            for p, (fields, rests) in raw.provider_energy.items()
        },
        model_energy=parts("model_energy", raw.model_energy),
    )
    return cleaned, bad


def finite(value: str) -> float:
    """A stored `last_ts` as a number: any float text but infinities and NaN (ValueError)."""
    found = float(value)
    if not math.isfinite(found):
        raise ValueError(value)
    return found


def _timestamp(value: str) -> int:
    return int(finite(value))
