"""The batch write's payload (pure) and the scrape's decode (pure), on plain data."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from streams.settings import Settings
from tables.delta import NANO, Delta, add, pair
from tables.keys import AMOUNT_BASE, REMAINDER_SUFFIX, Keys, join_amount, split_amount
from tables.labels import OTHER
from tables.snapshot import decode
from tables.store import RedisStore
from tables.table_reads import RawTables
from tables.writes import OffsetMove


class _NoClient:
    def register_script(self, lua: str) -> None:
        return None


def _store(caps: dict[str, int] | None = None) -> RedisStore:
    return RedisStore(_NoClient(), "app", days_kept=2, label_caps=caps)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("n", "parts"),
    [(0, (0, 0)), (1, (0, 1)), (AMOUNT_BASE, (1, 0)), (1000 * NANO * 20_000 + 7, (20_000_000, 7))],
)
def test_amounts_split_into_whole_units_and_a_remainder(n: int, parts: tuple[int, int]) -> None:
    assert split_amount(n) == parts
    assert join_amount(*parts) == n
    assert join_amount(str(parts[0]), str(parts[1])) == n


def test_payload_claims_its_offsets_and_writes_them_last_in_order() -> None:
    moves = [OffsetMove("raw", 0, None, 10), OffsetMove("raw", 1, 5, 9)]
    payload = _store().build_payload(Delta(), moves)
    assert payload["off"] == [["raw:0", "", "10"], ["raw:1", "5", "9"]]
    assert payload["hincr"] == [] and payload["amount"] == [] and payload["sadd"] == []


def test_payload_of_one_batch() -> None:
    k = Keys("app")
    delta = Delta()
    delta.processed["raw"] += 3
    add(delta.ingested, ("o1", "openai"), 2)
    add(delta.ingested, (OTHER, "openai"), 1)
    add(delta.calls, ("o1", "m"), 3)
    delta.kwh_nano["2026-11-27"] = Counter({"o1": 1000 * NANO + 5})
    delta.users["2026-11-27"] = {pair("o1", "u")}
    delta.delay_sum_ms = 3 * AMOUNT_BASE + 2
    payload: dict[str, Any] = _store({"org_id": 1, "provider": 5, "model": 5}).build_payload(delta, [])
    assert [k.key("processed"), "raw", "3"] in payload["hincr"]
    assert [k.org("o1"), "p:openai", "2"] in payload["hincr"]
    assert [k.org("o1"), "m:m", "3"] in payload["hincr"]
    assert [k.activity("provider"), "openai", "3"] in payload["hincr"]
    assert [k.day("2026-11-27", "kwh"), "o1", "1000", "5"] in payload["amount"]
    assert [k.day("2026-11-27", "totals"), "kwh", "1000", "5"] in payload["amount"]
    assert [k.key("delay"), "sum_ms", "3", "2"] in payload["amount"]
    assert [k.day("2026-11-27", "kwh") + REMAINDER_SUFFIX, str(3 * 86_400), "hash"] in payload["expire"]
    # A day's users go with the per-org runs the script counts new users by.
    day_index = 739_947  # 2026-11-27 as a date ordinal: the script skips the window days it proves
    users = [k.day("2026-11-27", "users"), k.day("2026-11-27", "org_users"), [pair("o1", "u")], [["o1", 1]], day_index]
    assert users in payload["usersadd"]
    # Label admission rides on the write, capped, with the fold bucket's name never admitted.
    assert [k.labels("org_id"), "1", [OTHER, "o1"]] in payload["admit"]
    assert payload["other"] == OTHER


def test_payload_of_every_section_with_each_key_expiring_by_its_type() -> None:
    # Tokens in without tokens out on a day, and a model's energy from two providers.
    k, day, today = Keys("app"), "2026-11-27", "2026-11-28"
    delta = Delta()
    delta.delay_buckets[3] = 2
    delta.kwh_nano[day] = {"o1": 5}
    delta.tokens_in[today] = {"o1": 7}
    delta.model_kwh_nano[day] = {("openai", "m1"): 3, ("anthropic", "m2"): 4, ("openai", "m2"): 1}
    delta.orgs[today] = {"o1"}
    delta.users[today] = {pair("o1", "u")}
    payload = _store().build_payload(delta, [])
    ttl = str(3 * 86_400)

    def hashes(*keys: str) -> list[list[str]]:
        return [entry for key in keys for entry in ([key, ttl, "hash"], [key + REMAINDER_SUFFIX, ttl, "hash"])]

    models = k.day(day, "model_energy")
    openai, anthropic = k.provider_energy(day, "openai"), k.provider_energy(day, "anthropic")
    assert payload == {
        "off": [],
        "hincr": [[k.key("delay"), "b3", "2"], [k.activity("org_id"), "o1", "0"]],
        "amount": [
            [k.day(day, "kwh"), "o1", "0", "5"],
            [k.day(day, "totals"), "kwh", "0", "5"],
            [k.day(today, "tokens"), "i:o1", "0", "7"],
            [k.day(today, "totals"), "tokens_in", "0", "7"],
            [k.day(today, "totals"), "tokens_out", "0", "0"],
            [openai, "k:m1", "0", "3"],
            [anthropic, "k:m2", "0", "4"],
            [openai, "k:m2", "0", "1"],
            [models, "k:m1", "0", "3"],
            [models, "k:m2", "0", "5"],
        ],
        "lo": REMAINDER_SUFFIX,
        "base": AMOUNT_BASE,
        "sadd": [[k.day(today, "orgs"), ["o1"]]],
        "usersadd": [
            [k.day(today, "users"), k.day(today, "org_users"), [pair("o1", "u")], [["o1", 1]], 739_948],
        ],
        "win": None,  # no raw record folded
        "hmax": [],
        # The script checks each key's type by the one named here before its first write.
        "expire": [
            *hashes(k.day(day, "kwh"), k.day(day, "totals"), k.day(today, "tokens"), models, anthropic, openai),
            [k.day(today, "orgs"), ttl, "set"],
            [k.day(today, "users"), ttl, "set"],
            [k.day(today, "org_users"), ttl, "hash"],
        ],
        # A store given no caps admits as many values as a sidecar of default settings.
        "admit": [
            [k.labels("org_id"), str(Settings.max_org_series), ["o1"]],
            [k.labels("provider"), str(Settings.max_label_values), ["anthropic", "openai"]],
            [k.labels("model"), str(Settings.max_label_values), ["m1", "m2"]],
        ],
        "other": OTHER,
    }


_ids = st.text(max_size=3, alphabet="ab:1" + chr(0x10FFFF))
_n = st.integers(min_value=0, max_value=3 * AMOUNT_BASE)
_day = st.sampled_from(["2026-11-26", "2026-11-27"])
_per_org = st.dictionaries(_day, st.dictionaries(_ids, _n, max_size=4), max_size=2)


@given(
    st.dictionaries(st.tuples(_ids, _ids), st.integers(1, 99), max_size=6),
    st.dictionaries(st.tuples(_ids, _ids), st.integers(1, 99), max_size=6),
    _per_org,
    _per_org,
    _per_org,
    _per_org,
)
def test_counts_and_amounts_are_those_of_one_call_per_entry(
    ingested: dict[tuple[str, str], int],
    calls: dict[tuple[str, str], int],
    kwh: dict[str, dict[str, int]],
    co2: dict[str, dict[str, int]],
    tokens_in: dict[str, dict[str, int]],
    tokens_out: dict[str, dict[str, int]],
) -> None:
    # The builder makes these sections in comprehensions and C loops; here each entry is made on its
    # own with the key and amount helpers, in the order the script gets them.
    k = Keys("app")
    delta = Delta(ingested=ingested, calls=calls, kwh_nano=kwh, co2_nano=co2)
    delta.tokens_in, delta.tokens_out = tokens_in, tokens_out
    payload: dict[str, Any] = _store().build_payload(delta, [])

    def amount(key: str, field: str, n: int) -> list[str]:
        return [key, field, *map(str, split_amount(n))]

    hincr: list[list[str]] = []
    activity: Counter[str] = Counter()
    for prefix, label, counts in (("p:", "provider", ingested), ("m:", "model", calls)):
        totals: Counter[str] = Counter()
        for (org, value), n in counts.items():
            hincr.append([k.org(org), prefix + value, str(n)])
            totals[value] += n
            if prefix == "p:":
                activity[org] += n
        hincr += [[k.activity(label), value, str(n)] for value, n in totals.items()]
    amounts: list[list[str]] = []
    for name, total, per_day in (("kwh", "kwh", kwh), ("co2", "co2", co2)):
        for day, per_org in per_day.items():
            amounts += [amount(k.day(day, name), org, n) for org, n in per_org.items()]
            activity.update(dict.fromkeys(per_org, 0))
            amounts.append(amount(k.day(day, "totals"), total, sum(per_org.values())))
    for day in tokens_in.keys() | tokens_out.keys():
        for prefix, total, per_day in (("i:", "tokens_in", tokens_in), ("o:", "tokens_out", tokens_out)):
            per_org = per_day.get(day, {})
            amounts += [amount(k.day(day, "tokens"), prefix + org, n) for org, n in per_org.items()]
            amounts.append(amount(k.day(day, "totals"), total, sum(per_org.values())))
    hincr += [[k.activity("org_id"), org, str(n)] for org, n in activity.items()]
    assert payload["hincr"] == hincr
    assert payload["amount"] == amounts
    admitted = {key: values for key, _, values in payload["admit"]}
    assert admitted.get(k.labels("org_id"), []) == sorted(activity)
    assert admitted.get(k.labels("provider"), []) == sorted({p for _, p in ingested})
    assert admitted.get(k.labels("model"), []) == sorted({m for _, m in calls})


def _raw(**changes: object) -> RawTables:
    base: dict[str, object] = dict(
        members={"org_id": ["a"], "provider": ["openai"], "model": ["m"]},
        processed={"raw": "10", "enriched": "4"},
        invalid={pair("raw", "not_json"): "2"},
        dropped_late={},
        last_ts={"raw": "1700000000000"},
        delay={"b0": "3", "b11": "1", "sum_ms": "1"},
        delay_remainder={"sum_ms": "500"},
        active_orgs=2,
        active_users=5,
        org_fields={"a": {"p:openai": "6", "m:m": "6"}},
        kwh={"a": ("1", "500000000")},
        co2={"a": (None, None)},
        totals={"kwh": "3", "co2": "0"},
        totals_remainder={"kwh": "0", "co2": "7"},
        by_provider={"openai": "8"},
        by_model={"m": "9"},
        activity_sizes={"org_id": 3, "provider": 2, "model": 1},
    )
    base.update(changes)
    return RawTables(**base)  # type: ignore[arg-type]


def test_decode_builds_the_snapshot_with_exact_other_buckets() -> None:
    snap = decode(_raw(), "raw")
    assert snap.ingested == {("a", "openai"): 6, (OTHER, "openai"): 2, (OTHER, OTHER): 2}
    assert snap.calls == {("a", "m"): 6, (OTHER, "m"): 3, (OTHER, OTHER): 1}
    assert snap.processed == {"raw": 10, "enriched": 4}
    assert snap.invalid == {("raw", "not_json"): 2}
    assert snap.delay_buckets[0] == 3 and snap.delay_buckets[11] == 1
    assert snap.delay_sum_ms == AMOUNT_BASE + 500
    assert snap.kwh == {"a": 1.5, OTHER: 1.5}
    assert snap.co2_kg == {OTHER: 7 / NANO}
    assert snap.folded == {"org_id": 2, "provider": 1, "model": 0}
    assert (snap.active_orgs, snap.active_users) == (2, 5)


def test_decode_right_after_midnight_has_zero_series_not_none() -> None:
    snap = decode(_raw(kwh={"a": (None, None)}, totals={}, totals_remainder={}), "raw")
    assert snap.kwh == {OTHER: 0.0}
    assert sum(snap.kwh.values()) == 0
