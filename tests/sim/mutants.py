"""Hand-made mutants of the batch script (tables/script.py), and what kills each: `python -m tests.sim.mutants`.

Each mutant is one exact text change of the real script: a guard or refusal removed, or the offset
write moved before the state writes. A change of the script that makes a mutant's text no longer match
fails loudly (`Mutant.apply`), so a stale mutant never tests the original instead. Every mutant runs in
the simulator (the simulated stores register the mutated text; tables/script.py is never edited) over
schedules from a fixed first seed until the first Violation: first with the search's own faults (as CI
runs it), then with foreign values put in Redis during writes too (`Faults.foreign_values`: the real
script refuses those whole; a mutant that writes part of a batch is found counting it twice). A mutant
neither search kills is put to the batch script's direct checks (tests/sim/script_checks.py). The table
and the figures are in docs/guarantees.md ("Mutation run: the batch script");
tests/unit/sim/test_script_mutants.py holds each mutant to what killed it here.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, replace

from tables import script, store
from tests.sim.world import PROFILES, Violation, simulate


@dataclass(frozen=True)
class Mutant:
    """`edits`: (text, replacement) pairs, each text found exactly once in the script as it stands then."""

    name: str
    edits: tuple[tuple[str, str], ...]

    def apply(self, source: str) -> str:
        for old, new in self.edits:
            found = source.count(old)
            if found != 1:
                raise AssertionError(f"mutant {self.name}: {old!r} is in the script {found} times, not once")
            source = source.replace(old, new)
        return source


def _m(name: str, old: str, new: str = "") -> Mutant:
    return Mutant(name, ((old, new),))


_OFFSETS = "for _, o in ipairs(p.off) do redis.call('HSET', KEYS[1], o[1], o[3]) end\n"
_FIRST_WRITE = "if w then redis.call('HSET', w.state, 'sweep', (cursor + 1) % w.buckets) end\n"
_CUR = "  local cur = redis.call('HGET', KEYS[1], o[1])\n"
_DEL_MARKER = "redis.call('DEL', writing)\n"

MUTANTS = (
    # The cluster slot check (reply 5) and its refusal when CLUSTER NODES is not allowed (reply 6).
    _m("cluster-unseen", "  if type(nodes) ~= 'string' then return {6, tostring(nodes['err'] or nodes)} end\n"),
    _m("cluster-slot-moving", "  if string.find(nodes, '[' .. ARGV[2] .. '-', 1, true) then return {5, ARGV[2]} end\n"),
    # Stored offsets and topic IDs (reply 0).
    _m("offset-none-expected", "    if cur then return {0, o[1]} end\n"),
    _m("offset-equal", "  elseif cur ~= o[2] then\n    return {0, o[1]}\n"),
    _m("topic-id", _CUR, _CUR + "  if string.sub(o[1], -3) == ':id' then cur = o[2] ~= '' and o[2] end\n"),
    _m("partition-offset", _CUR, _CUR + "  if string.sub(o[1], -3) ~= ':id' then cur = o[2] ~= '' and o[2] end\n"),
    # Key types (reply 2).
    _m("type-offsets-key", "if not is(KEYS[1], 'hash') then return {2, KEYS[1]} end\n"),
    _m("type-lineage", "  if not is(lin[1], 'string') then return {2, lin[1]} end\n"),
    _m("type-hincr", "for _, h in ipairs(p.hincr) do if not is(h[1], 'hash') then return {2, h[1]} end end\n"),
    _m("type-amount", "is(a[1], 'hash') and is(a[1] .. p.lo, 'hash')", "true"),
    _m("type-amount-remainder", "is(a[1], 'hash') and is(a[1] .. p.lo, 'hash')", "is(a[1], 'hash')"),
    _m("type-sadd", "for _, s in ipairs(p.sadd) do if not is(s[1], 'set') then return {2, s[1]} end end\n"),
    _m("type-usersadd", "is(u[1], 'set') and is(u[2], 'hash')", "true"),
    _m("type-hmax", "for _, m in ipairs(p.hmax) do if not is(m[1], 'hash') then return {2, m[1]} end end\n"),
    _m("type-expire", "for _, e in ipairs(p.expire) do if not is(e[1], e[3]) then return {2, e[1]} end end\n"),
    _m("type-admit", "for _, a in ipairs(p.admit) do if not is(a[1], 'set') then return {2, a[1]} end end\n"),
    _m("type-window-state", "  if not is(w.state, 'hash') then return {2, w.state} end\n"),
    _m("type-window-bucket", "    if not is(bk, 'hash') then return {2, bk} end\n"),
    _m("type-window-list", "        if not is(key, 'hash') then return {2, key} end\n"),
    _m(
        "type-window-pairs",
        "  for _, key in ipairs(pair_keys) do if not is(key, 'hash') then return {2, key} end end\n",
    ),
    # The writer's lineage (reply 3).
    _m("lineage", "  if lin[2] ~= '' and redis.call('GET', lin[1]) ~= lin[2] then return {3, lin[1]} end\n"),
    # Stored values the batch increments or compares (reply 4).
    _m("number-sweep-cursor", "  if not string.find(at, '^%d+$') then return {4, w.state, 'sweep'} end\n"),
    _m("number-window-bucket", "      if not last then return {4, bk, found[i]} end\n"),
    _m("number-hincr", "for _, h in ipairs(p.hincr) do if bad_int(h[1], h[2]) then return {4, h[1], h[2]} end end\n"),
    _m("number-amount", "  if bad_int(a[1], a[2]) then return {4, a[1], a[2]} end\n"),
    _m("number-amount-remainder", "  if bad_int(a[1] .. p.lo, a[2]) then return {4, a[1] .. p.lo, a[2]} end\n"),
    _m(
        "number-org-users", "  for _, r in ipairs(u[4]) do if bad_int(u[2], r[1]) then return {4, u[2], r[1]} end end\n"
    ),
    _m("number-hmax", "  if cur and not tonumber(cur) then return {4, m[1], m[2]} end\n"),
    _m("number-window-pairs", "    if n ~= 0 and bad_int(key, b) then return {4, key, tostring(b)} end\n"),
    _m("number-length", "(#v <= 18 and string.find(v, '^%-?[1-9]%d*$'))", "string.find(v, '^%-?[1-9]%d*$')"),
    # Label admission: the cap, and the overflow value never admitted as a series of its own.
    _m("label-cap", "    if room <= 0 then break end\n"),
    _m(
        "label-other",
        "    if v ~= p.other then room = room - redis.call('SADD', a[1], v) end\n",
        "    room = room - redis.call('SADD', a[1], v)\n",
    ),
    # Rolling windows: the day sets' shortcut, the compacted-day skip, the reach.
    _m(
        "window-day-set-shortcut",
        "          if not (present[d] and present[d][member]) then todo[#todo + 1] = d end\n",
        "          todo[#todo + 1] = d\n",
    ),
    _m(
        "window-compacted-skip",
        "local skip = found or (pos == 1 and #days > 0 and days[1] <= w.today)",
        "local skip = found",
    ),
    _m("window-reach-forget", "        if #days > 0 and days[#days] < w.horizon then days = {} end\n"),
    _m("window-pair-horizon", "            if pred and pred >= w.horizon then", "            if pred then"),
    # The shebang: over maxmemory, refused whole before it runs.
    _m("shebang", "#!lua\n"),
    # Offsets written first: a failure after them would leave the offsets ahead of the state.
    Mutant("offsets-first", ((_OFFSETS, ""), (_FIRST_WRITE, _OFFSETS + _FIRST_WRITE))),
    # The write-in-progress marker (reply 7): not checked, not set, deleted before the offsets are written.
    _m("marker-check", "if left then return {7, writing, left} end\n"),
    _m("type-marker", "if not is(writing, 'string') then return {2, writing} end\n"),
    _m("marker-set", "redis.call('SET', writing, table.concat(moves, ', '))\n"),
    Mutant("marker-deleted-early", ((_DEL_MARKER, ""), (_OFFSETS, _DEL_MARKER + _OFFSETS))),
)

# Mutants no run can tell from the script, each argued in docs/guarantees.md ("Mutation run: the batch script").
EQUIVALENT = {
    "type-sadd": "every sadd key is in the expire section with its type, checked before any read or write",
    "type-usersadd": "both keys of every usersadd entry are in the expire section with their types",
    "window-day-set-shortcut": "a day the day's set holds is in the list, or was compacted: re-inserting it is a no-op",
    "window-compacted-skip": "the pair it adds ends on a day not after today: no scrape, now or later, reads it",
    "window-reach-forget": "the days kept are before the reach: they bump no pair, and no scrape reads them",
    "window-pair-horizon": "the pairs it moves start before the reach: no scrape, now or later, reads them",
    "shebang": "without flags Redis checks maxmemory at a script's first write only: refused with nothing written",
}


@contextmanager
def registered(source: str) -> Iterator[None]:
    """Stores made from here on (the simulator makes them per schedule) register `source` as their script."""
    names = vars(store)  # the name RedisStore's constructor reads the script by
    original = names["APPLY_LUA"]
    names["APPLY_LUA"] = source
    try:
        yield
    finally:
        names["APPLY_LUA"] = original


def search(mutant: Mutant, first: int, schedules: int, foreign: bool = False) -> tuple[int | None, str]:
    """The first schedule from seed `first` (as `python -m tests.sim` runs them; with `foreign`, with foreign
    values in Redis too) whose run fails with the mutant in place, and how: a Violation, or any other
    exception out of the run (a test would fail on it)."""
    with registered(mutant.apply(script.APPLY_LUA)):
        for seed in range(first, first + schedules):
            faults = replace(PROFILES[seed % len(PROFILES)], foreign_values=foreign)
            try:
                simulate(seed, steps=40, faults=faults)
            except Violation as exc:
                return seed, str(exc).splitlines()[0]
            except Exception as exc:  # a run that raises is a run that fails, as a test would
                return seed, f"{type(exc).__name__}: {exc}".splitlines()[0]
    return None, ""


@dataclass(frozen=True)
class Result:
    name: str
    seed: int | None  # the simulator's first failing schedule, or None
    foreign: bool  # found with foreign values in Redis (Faults.foreign_values), the search's faults not enough
    check: str | None  # else the first direct check (tests/sim/script_checks.py) that fails, or None
    how: str
    seconds: float


def run_one(args: tuple[str, int, int]) -> Result:
    """The simulator as CI runs it, then with foreign values in Redis, then the direct checks."""
    logging.disable(logging.CRITICAL)
    name, first, schedules = args
    mutant = next(m for m in MUTANTS if m.name == name)
    started = time.monotonic()
    for foreign in (False, True):
        seed, how = search(mutant, first, schedules, foreign)
        if seed is not None:
            return Result(name, seed, foreign, None, how, time.monotonic() - started)
    from tests.sim import script_checks

    check, how = script_checks.first_failure(mutant.apply(script.APPLY_LUA)) or (None, "")
    return Result(name, None, False, check, how, time.monotonic() - started)


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.sim.mutants")
    parser.add_argument("--schedules", type=int, default=600, help="schedules per mutant, at most")
    parser.add_argument("--seed", type=int, default=0, help="first seed of every mutant's schedules")
    parser.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1))
    parser.add_argument("--only", nargs="*", default=None, help="mutant names (default: all)")
    args = parser.parse_args()
    names = args.only or [m.name for m in MUTANTS]
    for m in MUTANTS:  # a stale mutant fails here, before anything runs
        m.apply(script.APPLY_LUA)
    started = time.monotonic()
    print(f"batch script mutants: {len(names)}, up to {args.schedules} schedules each from seed {args.seed}")
    print(f"{'mutant':<26} {'killed by':<40} {'schedules':>9} {'seconds':>8}")
    survivors = stale = 0
    with ProcessPoolExecutor(args.workers) as pool:
        for r in pool.map(run_one, [(n, args.seed, args.schedules) for n in names]):
            how = r.how
            if r.seed is not None:
                by = f"simulator{' + foreign values' if r.foreign else ''}, seed {r.seed}"
                count = str(r.seed - args.seed + 1)
            elif r.check is not None:
                by, count = f"check {r.check}", "-"
            elif r.name in EQUIVALENT:
                by, count, how = "equivalent (docs/guarantees.md)", "-", EQUIVALENT[r.name]
            else:
                by, count = "SURVIVED", "-"
                survivors += 1
            if r.name in EQUIVALENT and (r.seed is not None or r.check is not None):
                by, stale = f"{by}, listed as equivalent", stale + 1  # the list or the docs are out of date
            print(f"{r.name:<26} {by:<40} {count:>9} {r.seconds:>8.1f}   {how[:100]}", flush=True)
    total, equivalent = len(names), len(set(names) & EQUIVALENT.keys()) - stale
    print(
        f"score: {total - equivalent - survivors}/{total - equivalent} killed, {equivalent} equivalent,"
        f" {survivors} surviving; {time.monotonic() - started:.0f} s"
    )
    return 1 if survivors or stale else 0


if __name__ == "__main__":
    sys.exit(main())
