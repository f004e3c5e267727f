"""A bounded search as a unit test: the first schedules pass, as `python -m tests.sim` runs them. The
mutation run (./scripts/mutation) gives it to every mutant of the tap's and the store's Python besides
their unit tests, so that what only a schedule can reach is in the test command too."""

from __future__ import annotations

from tests.sim.world import first_violation

SCHEDULES = 150  # about 3 s here: every profile fifty times


def test_the_first_schedules_pass() -> None:
    assert first_violation(range(SCHEDULES)) is None
