"""The simulator over sharded state (tests/sim/shards.py): fixed schedules with each fault of docs/design.md,
"Sharded state", a slice of random ones, and two bugs put in on purpose that the checker must find."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from agents import sharded_tap
from tables import shard_split, sharded_store
from tests.sim.shard_end import MEMBER_SERIES, _outside
from tests.sim.shards import LOG_CHANGES, TRUNCATION, simulate_sharded
from tests.sim.world import Violation

REGRESSIONS = [
    pytest.param(12, id="one-shard-back-from-a-snapshot-its-members-re-read"),
    pytest.param(15, id="one-shard-restarted-empty-its-members-re-read"),
    pytest.param(239, id="refused-member-re-read-drops-its-batch-and-resyncs"),
    pytest.param(8, id="kill-9-between-member-writes"),
    pytest.param(48, id="kill-9-before-the-partition-writes"),
    pytest.param(122, id="kill-9-between-partition-writes-1"),
    pytest.param(539, id="kill-9-between-partition-writes-2"),
    pytest.param(5, id="foreign-value-refuses-one-shards-write"),
    pytest.param(36, id="offsets-moved-over-invisible-records"),
]


@pytest.mark.parametrize("seed", REGRESSIONS)
def test_regression_seed(seed: int) -> None:
    world = simulate_sharded(seed)
    assert world.events_made > 0


@pytest.mark.parametrize("first", [0, 50, 100])
def test_random_schedules(first: int) -> None:
    for seed in range(first + 1000, first + 1050):
        simulate_sharded(seed)


def test_random_schedules_over_three_shards_one_without_partitions() -> None:
    """Three partitions over three shards: shard 2 holds members only (no partition is 2 mod 3)."""
    for seed in range(2000, 2050):
        simulate_sharded(seed, shards=3)


def test_random_schedules_with_truncated_logs() -> None:
    for seed in range(3000, 3060):
        simulate_sharded(seed, faults=TRUNCATION)


def test_random_schedules_with_log_cuts_and_re_created_topics() -> None:
    for seed in range(3000, 3060):
        simulate_sharded(seed, faults=LOG_CHANGES)


def test_members_of_a_batch_whose_records_left_the_log_before_it_was_counted_stay_counted_within_bounds() -> None:
    """A partition write that failed (Redis down) after its member writes landed, then the topic re-created:
    the old records are never counted, their members stay in the day sets (docs/design.md, the one inexact
    case). The end's check holds the sums exact and the distinct counts within the lost records' reach."""
    world = simulate_sharded(229, faults=LOG_CHANGES)
    assert world.members_over


LOW = {"processed": {"raw": 3}, "active_users": 2, "org_active_users": {"o1": 2}}
HIGH = {"processed": {"raw": 5}, "active_users": 4, "org_active_users": {"o1": 3, "o2": 1}}
for name in MEMBER_SERIES - LOW.keys():
    LOW[name] = HIGH[name] = 0


@pytest.mark.parametrize(
    ("changes", "most_extra", "found"),
    [
        ({}, 9, []),
        ({"active_users": 4, "org_active_users": {"o1": 3, "o2": 1}}, 9, []),
        ({"active_users": 5}, 9, ["active_users: 5 outside [2, 4]"]),
        ({"active_users": 1}, 9, ["active_users: 1 outside [2, 4]"]),
        ({"active_users": 4}, 1, ["active_users: 4 outside [2, 4]"]),
        ({"org_active_users": {"o1": 2, "o3": 1}}, 9, ["org_active_users[o3]: 1 outside [0, 0]"]),
        ({"processed": {"raw": 5}}, 9, ["processed: want {'raw': 3}, exported {'raw': 5}"]),
    ],
)
def test_the_bound_holds_sums_exact_and_distinct_counts_between_counted_and_lost(
    changes: dict[str, object], most_extra: int, found: list[str]
) -> None:
    exported = SimpleNamespace(**{**LOW, **changes})
    assert _outside(LOW, HIGH, exported, most_extra) == found


def _first_violation(seeds: range) -> str | None:
    for seed in seeds:
        try:
            simulate_sharded(seed)
        except Violation as exc:
            return str(exc)
    return None


def test_a_tap_that_never_re_reads_a_member_shards_loss_is_found(monkeypatch: pytest.MonkeyPatch) -> None:
    async def never(self: object, partitions: object, patient: bool = True) -> None:
        return None

    monkeypatch.setattr(sharded_tap.ShardedTapAgent, "_members_check", never)
    found = _first_violation(range(100))
    assert found is not None and "never fully read" in found


def test_a_split_that_loses_members_is_found_in_the_export(monkeypatch: pytest.MonkeyPatch) -> None:
    real = shard_split.member_parts

    def lossy(deltas: object, shards: int) -> object:
        parts = real(deltas, shards)  # type: ignore[arg-type]
        parts[1].window_only_users = {}  # shard 1 never gets the windows' members of days past the tables
        return parts

    monkeypatch.setattr(sharded_store, "member_parts", lossy)  # where the store looks it up
    found = _first_violation(range(100))
    assert found is not None and "differs from the oracle" in found
