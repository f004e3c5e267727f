"""The exporter hand-over's simulator (tests/sim/exporters.py): a slice of its schedules, and proof that it
sees: each rule of the hand-over taken out is found within a few schedules.

The full search runs in ./scripts/test as part of `python -m tests.sim`.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

import streams.exporter
import tables.lease
from tests.sim.exporters import PROFILES, Violation, simulate_exporters

SEARCH_BUDGET = 40  # each mutant below is found within its first few schedules; this leaves room


@pytest.mark.parametrize("seed", range(6))
def test_schedules_pass_and_hand_over(seed: int) -> None:
    world = simulate_exporters(seed)
    assert world.replicas, "the schedule started replicas"
    if world.profile is PROFILES[1]:
        assert world.gaps_s, "a rollout profile hands the lease over at least once"


def _first_violation() -> str | None:
    for seed in range(SEARCH_BUDGET):
        try:
            simulate_exporters(seed)
        except Violation as exc:
            return str(exc)
    return None


async def _no_drain(self: streams.exporter.Exporter, budget_s: float, poll_s: float = 0.1) -> None:
    self.draining = True


MUTANTS: dict[str, tuple[Callable[[pytest.MonkeyPatch], None], str]] = {
    # A lapsed lease taken without the grace: the crashed exporter's last samples are still shown.
    "no-grace-after-a-crash": (
        lambda mp: mp.setattr(
            tables.lease, "HOLD_LUA", tables.lease.HOLD_LUA.replace("untl + (tonumber(h[5]) or 0)", "untl")
        ),
        "at once",
    ),
    # A released lease taken without waiting for the releaser's visibility bound.
    "release-visibility-ignored": (
        lambda mp: mp.setattr(
            tables.lease,
            "HOLD_LUA",
            tables.lease.HOLD_LUA.replace(
                "if state == 'released' then visible = tonumber(h[4]) or 0 end",
                "if state == 'released' then visible = 0 end",
            ),
        ),
        "at once",
    ),
    # No drain: the release must then cover every scraper, and rollouts leave long gaps.
    "no-drain": (lambda mp: mp.setattr(streams.exporter.Exporter, "drain", _no_drain), "rollout left"),
}


@pytest.mark.parametrize("name", sorted(MUTANTS))
def test_the_simulator_finds_each_rule_taken_out(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    mutate, symptom = MUTANTS[name]
    mutate(monkeypatch)
    found = _first_violation()
    assert found is not None, f"{name}: no violation within {SEARCH_BUDGET} schedules"
    assert symptom in found.splitlines()[0]
