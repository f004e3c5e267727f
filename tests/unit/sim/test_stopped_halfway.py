"""A batch script stopped halfway, in the simulator: a refused command at a write after its first (Redis
keeps what was written before it, tests/integration/test_store_script.py shows it on a real server). The
real tap, store and script then write no batch at all: every later one meets the marker and is refused,
counted as `partial_write`, instead of counting the stopped batch's first part again."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from typing import Any

import pytest
from redis.exceptions import ResponseError

from tables import script
from tests.sim.keyspace import WRITES, Keyspace
from tests.sim.loop import run_virtually
from tests.sim.mutants import MUTANTS, registered
from tests.sim.store_redis import SimRedis
from tests.sim.world import PROFILES, Violation, World

STOP_AT_CALL, STOP_AT_WRITE = 2, 3  # the second script run of the schedule, at its third write


def _marked(world: World) -> bool:
    return world.store.keys.writing in world.redis.data


@contextmanager
def stopping(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Any]]:
    """Stops one script run halfway; counts the batches written past a marker (a Redis restarted from a
    snapshot before it, or empty, has forgotten the stopped batch with its marker: writing then is right)."""
    seen: dict[str, Any] = {"calls": 0, "stopped": False, "past_marker": 0}
    apply, check_write = SimRedis.apply, World.check_write

    def counting_check(self: World, payload: dict[str, Any]) -> None:
        seen["past_marker"] += _marked(self)  # before the batch's first write, its own marker's SET
        check_write(self, payload)

    def stopping_apply(self: SimRedis, source: str, keys: list[str], args: list[Any]) -> Any:
        seen["calls"] += 1
        if seen["calls"] != STOP_AT_CALL:
            return apply(self, source, keys, args)
        keyspace, writes = self.keyspace, [0]

        def run(command: str, a: Sequence[str]) -> Any:
            if command.upper() in WRITES:
                writes[0] += 1
                if writes[0] == STOP_AT_WRITE:
                    seen["stopped"] = True
                    raise ResponseError("ERR The user executing the script can't run this command or subcommand")
            return Keyspace.run(keyspace, command, a)

        keyspace.run = run  # type: ignore[method-assign]
        try:
            return apply(self, source, keys, args)
        finally:
            del keyspace.run

    monkeypatch.setattr(SimRedis, "apply", stopping_apply)
    monkeypatch.setattr(World, "check_write", counting_check)
    yield seen


def _run(seed: int) -> World:
    world = World(seed, 40, PROFILES[seed % len(PROFILES)])
    # The tables hold part of a batch: exact they cannot be, and that is not asked here.
    with suppress(Violation):
        run_virtually(world.run())
    return world


@pytest.mark.parametrize("seed", [1, 3, 6, 9, 12, 14])
def test_no_batch_is_written_past_the_marker_of_one_stopped_halfway(seed: int, monkeypatch: pytest.MonkeyPatch) -> None:
    with stopping(monkeypatch) as seen:
        world = _run(seed)
    assert seen["stopped"], "the schedule made fewer script runs than the test needs"
    assert seen["past_marker"] == 0, "a batch was written after one stopped halfway: its first part counts twice"
    if _marked(world):
        assert sum(r.agent.status.writes_refused["partial_write"] for r in world.replicas.values()) >= 1


def test_without_the_marker_check_batches_are_written_past_it(monkeypatch: pytest.MonkeyPatch) -> None:
    mutant = next(m for m in MUTANTS if m.name == "marker-check")
    with registered(mutant.apply(script.APPLY_LUA)), stopping(monkeypatch) as seen:
        _run(1)
    assert seen["stopped"] and seen["past_marker"] >= 1
