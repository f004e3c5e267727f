"""What one scrape exports: the pure `decode` of the tables' raw parts (tables/table_reads.py) into the
Snapshot the collectors serve, "__other__" computed as a total minus the labelled part so sums stay exact.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from tables.checked import readable
from tables.delta import DELAY_BUCKETS_SECONDS, NANO, unpair
from tables.keys import (
    CO2_FIELD,
    DELAY_SUM,
    KWH_FIELD,
    MODEL_FIELD,
    ORGS,
    PROVIDER_FIELD,
    TOKENS_IN,
    TOKENS_OUT,
    TOTAL_CO2,
    TOTAL_KWH,
    TOTAL_TOKENS_IN,
    TOTAL_TOKENS_OUT,
    USERS,
    WINDOW_DAYS,
    delay_bucket_field,
    join_amount,
)
from tables.labels import OTHER, cap_amounts, cap_pairs
from tables.table_reads import LABELS, RawTables


@dataclass
class Snapshot:
    ingested: dict[tuple[str, str], int]
    calls: dict[tuple[str, str], int]
    processed: dict[str, int]
    invalid: dict[tuple[str, str], int]
    dropped_late: dict[str, int]
    last_ts_ms: dict[str, int]
    delay_buckets: list[int]
    delay_sum_ms: int
    active_orgs: int
    active_users: int
    kwh: dict[str, float]
    co2_kg: dict[str, float]
    folded: dict[str, int] = field(default_factory=dict)  # label -> values folded into "__other__"
    # The second set (docs/business-metrics.md).
    weekly_active_users: int = 0
    monthly_active_users: int = 0
    weekly_active_orgs: int = 0
    monthly_active_orgs: int = 0
    org_active_users: dict[str, int] = field(default_factory=dict)  # org -> users today
    tokens: dict[tuple[str, str], int] = field(default_factory=dict)  # (org, "in"/"out") -> today's tokens
    model_kwh: dict[tuple[str, str], float] = field(default_factory=dict)  # (provider, model) -> kWh today
    model_co2_kg: dict[tuple[str, str], float] = field(default_factory=dict)
    dropped_late_windows: dict[str, int] = field(default_factory=dict)  # topic -> events beyond the windows
    # table (a RawTables field) -> stored values that are not numbers, left out of this scrape
    unreadable: dict[str, int] = field(default_factory=dict)


def decode(raw: RawTables, raw_topic: str) -> Snapshot:
    """The Snapshot a scrape exports, from Redis's raw replies: pure, so it is tested on plain data.

    A stored value that is not a number (something else wrote it) costs its own series only: it is left
    out, counted in `unreadable` and logged, and the rest of the scrape is exported.
    """
    raw, unreadable = readable(raw)
    snap = decode_readable(raw, raw_topic)
    snap.unreadable = unreadable
    return snap


def decode_readable(raw: RawTables, raw_topic: str) -> Snapshot:
    """`decode` of tables already `readable`: every value reads as a number."""
    providers, models = set(raw.members["provider"]), set(raw.members["model"])
    per_org_ingested = {org: _prefixed(f, PROVIDER_FIELD) for org, f in raw.org_fields.items()}
    per_org_calls = {org: _prefixed(f, MODEL_FIELD) for org, f in raw.org_fields.items()}
    raw_total = int(raw.processed.get(raw_topic, 0))
    return Snapshot(
        ingested=cap_pairs(per_org_ingested, _present(raw.by_provider), raw_total, providers),
        calls=cap_pairs(per_org_calls, _present(raw.by_model), raw_total, models),
        processed=_ints(raw.processed),
        invalid={unpair(f): int(v) for f, v in raw.invalid.items()},
        dropped_late=_ints(raw.dropped_late),
        last_ts_ms={t: int(float(v)) for t, v in raw.last_ts.items()},
        delay_buckets=[int(raw.delay.get(delay_bucket_field(i), 0)) for i in range(len(DELAY_BUCKETS_SECONDS) + 1)],
        delay_sum_ms=join_amount(raw.delay.get(DELAY_SUM), raw.delay_remainder.get(DELAY_SUM)),
        active_orgs=raw.active_orgs,
        active_users=raw.active_users,
        kwh=_today(raw.kwh, raw.totals, raw.totals_remainder, TOTAL_KWH),
        co2_kg=_today(raw.co2, raw.totals, raw.totals_remainder, TOTAL_CO2),
        folded={label: max(0, raw.activity_sizes[label] - len(raw.members[label])) for label in LABELS},
        weekly_active_users=active_in_window(raw.window_pairs.get(USERS, {}), raw.today_index, 7),
        monthly_active_users=active_in_window(raw.window_pairs.get(USERS, {}), raw.today_index, WINDOW_DAYS),
        weekly_active_orgs=active_in_window(raw.window_pairs.get(ORGS, {}), raw.today_index, 7),
        monthly_active_orgs=active_in_window(raw.window_pairs.get(ORGS, {}), raw.today_index, WINDOW_DAYS),
        org_active_users=cap_amounts(_present(raw.org_users), raw.active_users),
        tokens=_tokens(raw),
        model_kwh=_by_model(raw, KWH_FIELD, TOTAL_KWH),
        model_co2_kg=_by_model(raw, CO2_FIELD, TOTAL_CO2),
        dropped_late_windows=_ints(raw.dropped_late_windows),
    )


def active_in_window(pairs: dict[int, dict[str, str]], today: int, days: int) -> int:
    """Subjects active in the `days` local days ending `today`: those whose last active day up to today
    is in the window, i.e. whose pair (a, b) of consecutive active days has a in it and b after today."""
    return sum(
        int(n) for day in range(today - days + 1, today + 1) for b, n in pairs.get(day, {}).items() if int(b) > today
    )


def _tokens(raw: RawTables) -> dict[tuple[str, str], int]:
    out: dict[tuple[str, str], int] = {}
    for prefix, direction, total_field in ((TOKENS_IN, "in", TOTAL_TOKENS_IN), (TOKENS_OUT, "out", TOTAL_TOKENS_OUT)):
        labelled = {
            org: join_amount(*parts)
            for f, parts in raw.tokens.items()
            if f.startswith(prefix) and parts != (None, None)
            for org in [f[len(prefix) :]]
        }
        total = join_amount(raw.totals.get(total_field), raw.totals_remainder.get(total_field))
        out.update({(org, direction): n for org, n in cap_amounts(labelled, total).items()})
    return out


def _by_model(raw: RawTables, prefix: str, total_field: str) -> dict[tuple[str, str], float]:
    """Today's energy by (provider, model), capped on both labels; `sum()` equals the org-labelled total."""
    per_provider = {
        provider: {
            f[len(prefix) :]: join_amount(fields.get(f), remainders.get(f))
            for f in fields.keys() | remainders.keys()  # a small amount has only its remainder
            if f.startswith(prefix)
        }
        for provider, (fields, remainders) in raw.provider_energy.items()
    }
    per_model = {
        f[len(prefix) :]: join_amount(*parts)
        for f, parts in raw.model_energy.items()
        if f.startswith(prefix) and parts != (None, None)
    }
    total = join_amount(raw.totals.get(total_field), raw.totals_remainder.get(total_field))
    capped = cap_pairs(per_provider, per_model, total, set(raw.members["model"]))
    capped.setdefault((OTHER, OTHER), 0)  # right after midnight `sum()` reads 0, not "no data"
    return {key: n / NANO for key, n in capped.items()}


def _prefixed(fields: dict[str, str], prefix: str) -> dict[str, int]:
    return {f[len(prefix) :]: int(v) for f, v in fields.items() if f.startswith(prefix)}


def _present(values: dict[str, str | None]) -> dict[str, int]:
    return {name: int(v) for name, v in values.items() if v is not None}


def _ints(found: dict[str, str]) -> dict[str, int]:
    return {key: int(v) for key, v in found.items()}


def _today(
    labelled: dict[str, tuple[str | None, str | None]], totals: dict[str, str], remainders: dict[str, str], name: str
) -> dict[str, float]:
    amounts = {org: join_amount(*parts) for org, parts in labelled.items() if parts != (None, None)}
    total = join_amount(totals.get(name), remainders.get(name))
    return {org: n / NANO for org, n in cap_amounts(amounts, total).items()}
