"""The deterministic simulator of the tap: fixed regression seeds and a slice of random schedules.

The full search (random schedules for 80 s, seed printed) runs as its own step of ./scripts/test:
`python -m tests.sim`. Each seed here replays exactly.
"""

from __future__ import annotations

import asyncio
import random
from types import SimpleNamespace

import pytest
from aiokafka import TopicPartition

from tables.writes import OffsetMove
from tests.sim.cuts import Cuts, keeping_markers
from tests.sim.kafka import Entry
from tests.sim.mutants import Mutant
from tests.sim.world import PROFILES, Violation, first_violation, simulate

# Fixed schedules, replayed every run (40 steps, the fault profile PROFILES[seed % 3], as the search runs
# them). The first two are where the search finds a tap whose batch claims offsets from a reload that
# happened while it folded; the others each contain the named fault.
REGRESSIONS = [
    pytest.param(388, id="refused-write-while-folding-1"),
    pytest.param(1988, id="refused-write-while-folding-2"),
    pytest.param(0, id="aborted-transaction"),
    pytest.param(18, id="sigterm-during-redis-outage"),
    pytest.param(2, id="redis-restart-from-older-snapshot"),
    pytest.param(5, id="zombie-write-after-rebalance"),
    pytest.param(38, id="write-applied-reply-lost"),
    pytest.param(15, id="redis-restart-empty"),
    pytest.param(394, id="log-truncated-and-kill-9-with-write-in-flight"),
    pytest.param(114, id="members-left-out-after-redis-lost-writes"),
    pytest.param(222, id="users-left-out-after-redis-lost-writes"),
    pytest.param(265, id="log-cut-below-the-stored-offset"),
    pytest.param(58, id="batch-script-refused-whole-over-maxmemory"),
    pytest.param(25, id="topic-re-created-while-read"),
    # The record path (tests/sim/batches.py): a fetch that starts inside a batch, past visible records;
    # unreadable batches of each kind, an unknown codec and a failing CRC.
    pytest.param(111, id="fetch-inside-a-batch"),
    pytest.param(3, id="unreadable-batch-unknown-codec"),
    pytest.param(36, id="unreadable-batch-failing-crc"),
]

# Schedules the reverted fix must be found within (it is found far sooner; see the note in docs/guarantees.md).
SEARCH_BUDGET = 1_000


def _first_violation() -> tuple[int, str] | None:
    return first_violation(range(SEARCH_BUDGET))


@pytest.mark.parametrize("seed", REGRESSIONS)
def test_regression_seed(seed: int) -> None:
    world = simulate(seed, steps=40, faults=PROFILES[seed % len(PROFILES)])
    assert world.events_made > 0


def test_random_schedules_slice() -> None:
    base = random.SystemRandom().randrange(10**9)
    for seed in range(base, base + 150):
        try:
            simulate(seed, steps=40, faults=PROFILES[seed % len(PROFILES)])
        except Violation as exc:
            pytest.fail(f"base seed {base}: {exc}")


def test_simulator_finds_a_batch_that_claims_what_it_does_not_contain(monkeypatch: pytest.MonkeyPatch) -> None:
    """The checker is not blind: a tap that writes its batch under offsets computed after a reload (the
    hole once there) is caught by the random search, in the same schedules CI runs."""
    from agents import ports, tap

    original = tap.TapAgent.process

    async def claims_from_reloaded_offsets(self: tap.TapAgent, batch: ports.Batch, epoch: int) -> None:
        async with self.lock:
            fresh, _ = self._fresh(batch)
            if not fresh:
                return
            delta = await self._fold(fresh)
            moves = [
                OffsetMove(
                    tp.topic,
                    tp.partition,
                    self.expected[tp],
                    records[-1].offset + 1,
                    self.topic_ids.get(tp),
                    self.stored_ids.get(tp),
                )
                for tp, records in fresh.items()
            ]
            for m in moves:
                self.expected[TopicPartition(m.topic, m.partition)] = m.next_offset
            await self._drain()
            self._inflight = asyncio.create_task(self._apply(delta, moves))

    monkeypatch.setattr(tap.TapAgent, "process", claims_from_reloaded_offsets)
    found = _first_violation()
    monkeypatch.setattr(tap.TapAgent, "process", original)
    assert found is not None, f"the reverted fix went unnoticed in {SEARCH_BUDGET} schedules"
    # The check of a write against the records it claims finds it; which of the write's parts differs
    # first (a count, or members left out) depends on the schedule.
    assert ": a write " in found[1], found[1]


def _mutant(monkeypatch: pytest.MonkeyPatch, guard: str, replacement: str = "") -> None:
    """The simulated stores run `tables/script.py`'s text with `guard` replaced: the real script, mutated."""
    from tables import script, store

    mutated = Mutant("guard", ((guard, replacement),)).apply(script.APPLY_LUA)  # found once, or it fails
    monkeypatch.setattr(store, "APPLY_LUA", mutated)


def test_simulator_finds_members_left_out_after_redis_lost_writes(monkeypatch: pytest.MonkeyPatch) -> None:
    """The batch script without its lineage check lets a store keep trusting its cache of written members
    after Redis lost some of its writes: it leaves out members Redis no longer holds; the search finds it."""
    _mutant(monkeypatch, "if lin[2] ~= '' and redis.call('GET', lin[1]) ~= lin[2] then return {3, lin[1]} end")
    found = _first_violation()
    assert found is not None, f"a cache trusted after lost writes went unnoticed in {SEARCH_BUDGET} schedules"
    assert "left out" in found[1]


def test_simulator_finds_a_script_that_does_not_check_the_offsets(monkeypatch: pytest.MonkeyPatch) -> None:
    """The batch script accepting a batch whose starting offset is not the stored one (a zombie's, or a
    resend after a lost reply) counts records twice: the search finds it."""
    _mutant(monkeypatch, "  elseif cur ~= o[2] then\n    return {0, o[1]}\n")
    found = _first_violation()
    assert found is not None, f"a script without its offset check went unnoticed in {SEARCH_BUDGET} schedules"


def test_simulator_finds_records_skipped_after_a_fetch_that_raised(monkeypatch: pytest.MonkeyPatch) -> None:
    """A getmany that raises may have moved positions past records it dropped (aiokafka collects partition
    after partition); a tap that did not read again from what its tables hold would skip them."""
    from agents import tap

    async def keeps_the_positions(self: tap.TapAgent) -> None:
        return None

    monkeypatch.setattr(tap.TapAgent, "_after_failed_fetch", keeps_the_positions)
    found = _first_violation()
    assert found is not None, f"the reverted fix went unnoticed in {SEARCH_BUDGET} schedules"


STALL_MUTATIONS = {
    # A tap that never pauses the unreadable partition: every fetch fails, the others stand still.
    "never-pauses": ("failed", lambda self, error, position, now_s: False, "the others stood still"),
    # Paused for good: the partition is never read again once its batch is readable.
    "never-resumes": ("due", lambda self, now_s: [], "never fully read"),
    # Read again but still reported: the stalled gauge and /ready would name it forever.
    "never-clears": ("settle", lambda self, now_s: None, "still reports stalled"),
}


@pytest.mark.parametrize("mutation", sorted(STALL_MUTATIONS))
def test_simulator_finds_a_broken_partition_stall(mutation: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Unreadable batches (a codec the process lacks) are in the search: the real tap must pause that
    partition alone, read the others to their end, and resume and clear it once its batch reads."""
    from agents.stalls import Stalls

    name, replacement, message = STALL_MUTATIONS[mutation]
    monkeypatch.setattr(Stalls, name, replacement)
    if mutation == "never-clears":  # records read past the stall clear it too: neither may
        monkeypatch.setattr(Stalls, "read", lambda self, tp, next_offset: None)
    found = _first_violation()
    assert found is not None, f"{mutation} went unnoticed in {SEARCH_BUDGET} schedules"
    assert message in found[1]


def test_the_search_reaches_unreadable_batches() -> None:
    traces = ["\n".join(simulate(seed, steps=40, faults=PROFILES[seed % len(PROFILES)]).trace) for seed in range(60)]
    stalled = [t for t in traces if "unreadable batch" in t]
    assert len(stalled) >= 5
    assert all("unreadable batches readable again" in t or "unreadable batch was cut away" in t for t in stalled)


def test_a_cut_log_is_resumed_at_its_end_and_counted() -> None:
    """Seed 265 cuts a log below its stored offset (an unclean leader election, same topic ID): the
    tap that finds it resumes at the log's end and counts the reset; the checker holds it exact."""
    world = simulate(265, steps=40, faults=PROFILES[265 % len(PROFILES)])
    assert any(t.startswith("log cut") for t in world.trace)
    status = [r.agent.status for r in world.replicas.values()]
    resets = sum(s.offset_resets[(t, "log_cut")] for s in status for t in ("raw", "enriched"))
    assert resets >= 1


def test_simulator_finds_a_tap_that_reads_a_cut_log_again(monkeypatch: pytest.MonkeyPatch) -> None:
    """The rule without topic IDs takes a cut log for a re-created topic and reads it from its start,
    counting its records twice: the search finds that within its budget."""
    from agents import log_changes, offsets

    def without_ids(stored: int, log_start: int, *ignored: object) -> tuple[str, int, int]:
        return offsets.out_of_range_rule(stored, log_start)

    monkeypatch.setattr(log_changes, "out_of_range_rule", without_ids)
    found = _first_violation()
    assert found is not None, f"a cut log read again went unnoticed in {SEARCH_BUDGET} schedules"
    assert "counted twice after a log cut" in found[1]


def _entries(spec: str) -> list[Entry]:
    """'.' a record outside transactions, 'a'/'b' a record of that transaction, 'A'/'B' its marker."""
    return [
        Entry(k, None if c.isupper() else b"{}", 0, None if c == "." else ord(c.lower()), c.isupper())
        for k, c in enumerate(spec)
    ]


@pytest.mark.parametrize(
    ("spec", "drawn", "cut"),
    [
        ("..aaA..", 6, 6),  # the transaction and its marker both kept
        ("..aaA..", 4, 2),  # its marker would go: the cut goes below its first record
        ("..aaA..", 2, 2),  # all of it goes
        (".abaBA.", 5, 1),  # b's marker would go, then a's: below both
        (".abaB.A", 5, 1),  # a's marker past the cut, with b's kept: below a
        ("..aa...", 3, 3),  # still open: its marker comes later, after the new leader's records
    ],
)
def test_a_cut_never_parts_a_transaction_from_its_marker(spec: str, drawn: int, cut: int) -> None:
    assert keeping_markers(_entries(spec), drawn) == cut


def test_a_cut_drawn_inside_a_transaction_goes_below_it() -> None:
    """Seed 20749 once drew a cut between an aborted transaction's records and its marker: a hanging
    transaction in Kafka, and in the simulated broker records aborted with no marker. Seed 718 draws one
    inside a transaction; the cut goes below it and the schedule stays exact."""
    world = simulate(718, steps=40, faults=PROFILES[718 % len(PROFILES)])
    assert "log cut enriched/0 at 12 (was 18), lowered from 15 to keep a transaction whole" in world.trace


def test_simulator_finds_a_tap_that_writes_a_re_created_topics_records_under_the_old_id(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A topic deleted and created again, its producers writing past the tap's position before the next
    fetch: without the ID asked after each fetch, the new topic's records are written under the old ID
    and counted again once the change is found (or never, below the old position)."""
    from agents import log_changes

    async def trusting(self: object, asked: asyncio.Future[object] | None, tps: object) -> bool:
        if asked is not None:
            await asked
        return True

    monkeypatch.setattr(log_changes.LogChanges, "same_topics", trusting)
    found = _first_violation()
    assert found is not None, f"a re-created topic read under its old ID went unnoticed in {SEARCH_BUDGET} schedules"
    assert "counted twice after a log cut" in found[1] or "was never counted" in found[1]


def test_a_re_created_topic_is_read_from_its_start() -> None:
    world = simulate(25, steps=40, faults=PROFILES[25 % len(PROFILES)])
    assert any(" deleted and created again" in t for t in world.trace)
    assert sum(r.agent.status.topics_recreated[t] for r in world.replicas.values() for t in ("raw", "enriched")) >= 1


RAW0 = TopicPartition("raw", 0)


def _history(n: int, tag: int) -> list[Entry]:
    return [Entry(i, f"{tag}:{i}".encode(), 0) for i in range(n)]


def test_a_cut_window_does_not_excuse_a_loss_in_a_topic_created_again_after_it() -> None:
    """Cut at 0 (the tap went on at 90 in the cut log), then the topic is deleted and created again with
    120 records; a tap that resumes the new topic at 90 never counts its records 0-89."""
    cuts = Cuts(0)
    gen0 = _history(100, 0)
    gen1 = _history(100, 1)  # the cut log, written again from 0
    new = _history(120, 2)  # the re-created topic
    cuts.histories[RAW0] = [gen0, gen1]
    cuts.points[RAW0] = [0, 0]
    cuts.recreations[RAW0] = {1}
    log = SimpleNamespace(entries=new, start=0, visible=lambda e: True)
    world = SimpleNamespace(logs={RAW0: log})
    claimed = [(0, 90, "counted", 0), (90, 100, "counted", 1), (90, 120, "counted", 2)]
    with pytest.raises(Violation):
        cuts.check(world, RAW0, claimed)  # type: ignore[arg-type]
