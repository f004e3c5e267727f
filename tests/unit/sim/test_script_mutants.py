"""The batch script's hand-made mutants stay killed: each by the simulator within its recorded budget of
schedules, or by the direct check that killed it in the mutation run (`python -m tests.sim.mutants`,
docs/guarantees.md "Mutation run: the batch script"); the rest are the ones argued equivalent there."""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path

import pytest

from tables.script import APPLY_LUA
from tests.sim import script_checks
from tests.sim.mutants import EQUIVALENT, MUTANTS, Mutant, search
from tests.sim.world import PROFILES, Violation, simulate

# The first schedule (from seed 0, as the mutation run searches) that fails with the mutant in place, and
# whether that took foreign values in Redis (Faults.foreign_values) besides the search's own faults.
SIMULATOR_KILLS = {
    "offset-none-expected": (5, False),
    "offset-equal": (17, False),
    "partition-offset": (17, False),
    "lineage": (17, False),
    "type-admit": (111, True),
    "number-hincr": (6, True),
    "number-amount": (33, True),
    "number-amount-remainder": (65, True),
    "number-org-users": (5, True),
    "number-hmax": (60, True),
    "number-length": (8, True),
}
# Schedules each must be found within: the mutation run's budget.
SCHEDULE_BUDGET = 600
CHECK_KILLS = {
    "cluster-unseen": "cluster-slot",
    "cluster-slot-moving": "cluster-slot",
    "topic-id": "offsets-and-ids",
    "type-offsets-key": "refused-whole",
    "type-lineage": "refused-whole",
    "type-hincr": "refused-whole",
    "type-amount": "refused-whole",
    "type-amount-remainder": "refused-whole",
    "type-hmax": "refused-whole",
    "type-expire": "refused-whole",
    "type-window-state": "refused-whole",
    "type-window-bucket": "refused-whole",
    "type-window-list": "refused-whole",
    "type-window-pairs": "refused-whole",
    "number-sweep-cursor": "refused-whole",
    "number-window-bucket": "refused-whole",
    "number-window-pairs": "refused-whole",
    "label-cap": "label-caps",
    "label-other": "label-caps",
    "offsets-first": "offsets-last",
    "marker-check": "stopped-halfway",
    "type-marker": "refused-whole",
    "marker-set": "stopped-halfway",
    "marker-deleted-early": "offsets-last",
}
BY_NAME = {m.name: m for m in MUTANTS}


def test_every_mutant_is_killed_or_argued_equivalent_in_the_docs() -> None:
    assert len(BY_NAME) == len(MUTANTS)
    assert SIMULATOR_KILLS.keys() | CHECK_KILLS.keys() | EQUIVALENT.keys() == BY_NAME.keys()
    assert (
        not SIMULATOR_KILLS.keys() & CHECK_KILLS.keys()
        and not (SIMULATOR_KILLS.keys() | CHECK_KILLS.keys()) & EQUIVALENT.keys()
    )
    docs = (Path(__file__).parents[3] / "docs" / "guarantees.md").read_text()
    section = docs[docs.index("## Mutation run: the batch script") :]
    for name in BY_NAME:
        assert re.search(rf"`{re.escape(name)}`", section), f"{name} is not in the docs' mutation table"


def test_a_mutant_whose_text_left_the_script_fails_loudly() -> None:
    stale = Mutant("stale", (("redis.call('NOSUCH')", ""),))
    with pytest.raises(AssertionError, match="0 times"):
        stale.apply(APPLY_LUA)


def test_the_real_script_passes_every_direct_check() -> None:
    assert script_checks.first_failure(APPLY_LUA) is None
    assert len(script_checks.batches()) >= 10
    # Among them a key only the expire section names, whose type that section alone checks.
    only_expired = []
    for batch in script_checks.batches():
        p = batch.payload
        named = {h[0] for h in p["hincr"]} | {m[0] for m in p["hmax"]} | {a[0] for a in p["amount"]}
        named |= {s[0] for s in p["sadd"]} | {k for u in p["usersadd"] for k in u[:2]} | {a[0] for a in p["admit"]}
        only_expired += [e[0] for e in p["expire"] if e[0] not in named and not e[0].endswith(p["lo"])]
    assert only_expired


@pytest.mark.parametrize("name", sorted(SIMULATOR_KILLS))
def test_the_simulator_kills(name: str) -> None:
    """The recorded schedule first (one run); if the simulator changed since, any within the budget."""
    recorded, foreign = SIMULATOR_KILLS[name]
    assert recorded < SCHEDULE_BUDGET
    seed, how = search(BY_NAME[name], recorded, 1, foreign)
    if seed is None:
        seed, how = search(BY_NAME[name], 0, SCHEDULE_BUDGET, foreign)
    assert seed is not None, f"{name} survived {SCHEDULE_BUDGET} schedules"
    assert how.startswith(f"seed {seed}: ")  # a Violation of the checker, not a crash


def test_the_real_script_passes_the_recorded_schedules() -> None:
    for seed, foreign in sorted(set(SIMULATOR_KILLS.values())):
        try:
            simulate(seed, steps=40, faults=replace(PROFILES[seed % len(PROFILES)], foreign_values=foreign))
        except Violation as exc:
            pytest.fail(str(exc))


def test_foreign_values_are_refused_whole_and_the_batch_written_once_repaired() -> None:
    """The fault that lets the simulator see a script that writes part of a batch: the real script refuses
    the batch, the tap pauses the partition and writes it again later, and the tables stay exact."""
    planted = refused = 0
    for seed in range(40):
        world = simulate(seed, steps=40, faults=replace(PROFILES[seed % len(PROFILES)], foreign_values=True))
        planted += sum(line.startswith("foreign ") for line in world.trace)
        refused += sum(sum(r.agent.status.writes_refused.values()) for r in world.replicas.values())
    assert planted >= 10
    assert refused >= 1


@pytest.mark.parametrize("name", sorted(CHECK_KILLS))
def test_a_direct_check_kills(name: str) -> None:
    with pytest.raises(AssertionError):
        script_checks.CHECKS[CHECK_KILLS[name]](BY_NAME[name].apply(APPLY_LUA))
