"""A Delta as one comparable text, for tests that hold two ways of folding to the same result."""

from __future__ import annotations

from tables.delta import Delta


def delta_summary(d: Delta) -> str:
    # repr keeps the types: an int where a float belongs would change a sum's rendering.
    return repr(
        (
            dict(d.processed),
            dict(d.invalid),
            dict(d.ingested),
            dict(d.calls),
            d.users,
            d.orgs,
            d.window_only_users,
            d.window_only_orgs,
            {day: dict(c) for day, c in d.tokens_in.items()},
            {day: dict(c) for day, c in d.tokens_out.items()},
            {day: dict(c) for day, c in d.kwh_nano.items()},
            {day: dict(c) for day, c in d.co2_nano.items()},
            {day: dict(c) for day, c in d.model_kwh_nano.items()},
            dict(d.dropped_late),
            dict(d.dropped_late_windows),
            [(r.topic, r.reason) for r in d.rejections],
        )
    )
