"""Per-client lag's bounds: STREAMS_LAG_MEMBERS_PER_GROUP per group and STREAMS_LAG_MEMBERS_TOTAL over all
groups of a cluster; whatever they leave out folds into its own group's `__other__` row, so every
group's clients still sum to its owned lag (streams/lag/members.py)."""

from __future__ import annotations

import pytest

from streams.exposition import render
from streams.lag.members import capped_groups
from streams.lag.metrics import LagCollector, LagExport
from streams.lag.model import GroupLag, LagSnapshot, MemberLag, PartitionLag
from streams.local.scrape import parse, series
from streams.settings import Settings, SettingsError
from tables.labels import OTHER


def rows(*lags: int) -> list[MemberLag]:
    return [MemberLag(f"c{i}", f"/h{i}", 1, lag, float(lag)) for i, lag in enumerate(lags)]


GROUPS = {"a": rows(50, 40, 1), "b": rows(45, 30), "c": rows(5)}


def labelled(out: dict[str, list[MemberLag]]) -> dict[str, list[tuple[str, int]]]:
    return {g: [(r.client_id, r.lag_messages) for r in kept] for g, kept in out.items()}


@pytest.mark.parametrize(
    ("per_group", "total", "want"),
    [
        # Per group only (the total never binds): the two most lagging clients of a, the rest in __other__.
        (2, 100, {"a": [("c0", 50), ("c1", 40), (OTHER, 1)], "b": [("c0", 45), ("c1", 30)], "c": [("c0", 5)]}),
        # 3 labelled rows over all groups: a/c0 50, b/c0 45, a/c1 40; the rest fold, group by group.
        (2, 3, {"a": [("c0", 50), ("c1", 40), (OTHER, 1)], "b": [("c0", 45), (OTHER, 30)], "c": [(OTHER, 5)]}),
        # The per-group cap applies first: a/c1 (40) is out of a's two, so b/c1 (30) gets the third place.
        (1, 3, {"a": [("c0", 50), (OTHER, 41)], "b": [("c0", 45), (OTHER, 30)], "c": [("c0", 5)]}),
        (20, 1, {"a": [("c0", 50), (OTHER, 41)], "b": [(OTHER, 75)], "c": [(OTHER, 5)]}),
    ],
)
def test_the_most_lagging_keep_their_labels_and_every_group_sums_exactly(
    per_group: int, total: int, want: dict[str, list[tuple[str, int]]]
) -> None:
    out = capped_groups(GROUPS, per_group, total)
    assert labelled(out) == want
    assert sum(1 for kept in out.values() for r in kept if r.client_id != OTHER) <= total
    for g, kept in out.items():
        assert sum(r.lag_messages for r in kept) == sum(r.lag_messages for r in GROUPS[g])
        assert sum(r.partitions for r in kept) == len(GROUPS[g])


def test_a_ranking_tie_is_broken_by_group_then_client_the_same_every_cycle() -> None:
    tied = {"y": rows(7, 7), "x": rows(7)}
    assert labelled(capped_groups(tied, 5, 2)) == {"y": [("c0", 7), (OTHER, 7)], "x": [("c0", 7)]}


def test_two_thousand_groups_of_fifty_clients_stay_under_the_bound() -> None:
    groups = {}
    for n in range(2_000):
        parts = (PartitionLag("t", 0, True, n, 1.0),)
        owned = tuple(MemberLag(f"c{i}", "/h", 1, (n * 50 + i) % 997, 1.0) for i in range(50))
        groups[f"g{n}"] = GroupLag(f"g{n}", "Stable", 50, parts, member_lag=owned)
    snap = LagSnapshot(groups, "worker", 1_800_000_000.0, 0.1)
    export = LagExport(members=True, members_per_group=20, members_total=2_000)
    m = parse(render([LagCollector(snap, "worker", export)]).decode())
    found = series(m, "ecomind_consumergroup_member_lag")
    named = [k for k in found if dict(k)["client_id"] != OTHER]
    # Uncapped: 100,000 series; per group only: 42,000. Bounded: 2,000 named + one __other__ per group.
    assert len(named) == 2_000 and len(found) == 2_000 + 2_000
    assert sum(found.values()) == sum(r.lag_messages for g in groups.values() for r in g.member_lag)
    # The labelled ones are the 2,000 most lagging of the 40,000 each group's top 20 allows.
    allowed = sorted(lag for g in groups.values() for lag in sorted(r.lag_messages for r in g.member_lag)[-20:])
    assert sorted(found[k] for k in named) == allowed[-2_000:]


def test_the_total_setting() -> None:
    assert Settings.from_env({}).lag_members_total == 2_000
    assert LagExport.from_settings(Settings.from_env({"STREAMS_LAG_MEMBERS_TOTAL": "300"})).members_total == 300
    with pytest.raises(SettingsError) as caught:
        Settings.from_env({"STREAMS_LAG_MEMBERS_TOTAL": "0"})
    assert "STREAMS_LAG_MEMBERS_TOTAL='0': expected an integer from 1" in str(caught.value)
