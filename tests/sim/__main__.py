"""Run many random schedules of the simulator: `python -m tests.sim --schedules 10000 [--seconds S] [--seed S]`.

Each schedule's seed is the base seed plus its index; the base seed is printed first, so any failure
replays with `python -m tests.sim --replay SEED`. Runs on every core.
"""

from __future__ import annotations

import argparse
import logging
import os
import random
import sys
import time
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait

from core.compiled import stale_reason
from tests.sim.exporters import Violation as ExporterViolation
from tests.sim.exporters import simulate_exporters
from tests.sim.shards import LOG_CHANGES, SHARDED_PROFILES, TRUNCATION, simulate_sharded
from tests.sim.world import PROFILES, Violation, simulate

# One seed in SHARDED_EVERY runs the sharded world (tests/sim/shards.py) over 2 or 3 shards, its profiles
# in turn; the others the one-shard world. The seed alone decides, so --replay runs the same schedule.
SHARDED_EVERY = 4
SHARDED_SEARCH = (*SHARDED_PROFILES, TRUNCATION, LOG_CHANGES)


def schedule(seed: int, steps: int) -> None:
    if seed % SHARDED_EVERY == SHARDED_EVERY - 1:
        turn = seed // SHARDED_EVERY
        simulate_sharded(seed, steps, SHARDED_SEARCH[turn % len(SHARDED_SEARCH)], shards=2 + turn % 2)
    else:
        simulate(seed, steps=steps, faults=PROFILES[seed % len(PROFILES)])


def _run(args: tuple[int, int, int]) -> list[str]:
    logging.disable(logging.CRITICAL)
    first, count, steps = args
    failures = []
    for seed in range(first, first + count):
        try:
            schedule(seed, steps)
        except Violation as exc:
            failures.append(str(exc))
    return failures


def _run_exporters(args: tuple[int, int]) -> list[str]:
    """The exporter hand-over's search (tests/sim/exporters.py): its own schedules, seeded alike."""
    logging.disable(logging.CRITICAL)
    first, count = args
    failures = []
    for seed in range(first, first + count):
        try:
            simulate_exporters(seed)
        except ExporterViolation as exc:
            failures.append(str(exc))
    return failures


def main() -> int:
    stale = stale_reason()
    if stale:  # the search would run code that is not the checkout's
        print(f"tests.sim: {stale}", file=sys.stderr)
        return 2
    parser = argparse.ArgumentParser(prog="python -m tests.sim")
    parser.add_argument("--schedules", type=int, default=10_000, help="the tap's schedules (at most, with --seconds)")
    # A time budget, as fuzzers run in CI: no new schedules are begun after it, so the step's length holds
    # on a slower or busier machine, and what ran is printed (the seeds stay consecutive from the base).
    parser.add_argument("--seconds", type=float, default=None, help="begin no tap schedule after this")
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--seed", type=int, default=None, help="base seed (default: random, printed)")
    parser.add_argument("--replay", type=int, default=None, help="run one seed and print its trace")
    parser.add_argument("--exporter-schedules", type=int, default=200, help="schedules of the exporter hand-over")
    parser.add_argument("--replay-exporter", type=int, default=None, help="run one exporter seed, print its trace")
    # Fixed unless asked: its rollout-gap bounds are fitted to the design's worst cases, and a bound met by
    # every fixed schedule must not turn CI red on a rare schedule (search others with this flag).
    parser.add_argument("--exporter-seed", type=int, default=0, help="first seed of the exporter hand-over's schedules")
    args = parser.parse_args()
    if args.replay_exporter is not None:
        failures = _run_exporters((args.replay_exporter, 1))
        print(failures[0] if failures else f"exporter seed {args.replay_exporter}: passed")
        return 1 if failures else 0
    if args.replay is not None:
        failures = _run((args.replay, 1, args.steps))
        print(failures[0] if failures else f"seed {args.replay}: passed")
        return 1 if failures else 0
    base = args.seed if args.seed is not None else random.SystemRandom().randrange(10**9)
    print(f"simulator: {args.schedules} schedules of {args.steps} steps, base seed {base}", flush=True)
    workers = os.cpu_count() or 1
    # Small jobs, so that every core stays busy to the end: an exporter schedule costs tens of tap schedules.
    # Under a time budget, smaller still: the jobs begun before it ends are what it overruns by.
    chunk = max(1, min(100 if args.seconds is None else 20, args.schedules // (workers * 8)))
    jobs = [(base + i, min(chunk, args.schedules - i), args.steps) for i in range(0, args.schedules, chunk)]
    started = time.monotonic()
    n = args.exporter_schedules
    print(f"simulator: {n} schedules of the exporter hand-over, from seed {args.exporter_seed}", flush=True)
    exporter_jobs = [(args.exporter_seed + i, min(2, n - i)) for i in range(0, n, 2)]
    with ProcessPoolExecutor(workers) as pool:
        # The exporter's schedules first, the longest jobs; the tap's short ones then fill in around them.
        exporter_found = [pool.submit(_run_exporters, job) for job in exporter_jobs]
        failures, ran = _search(pool, jobs, workers, None if args.seconds is None else started + args.seconds)
        failures += [f for future in exporter_found for f in future.result()]
    for failure in failures[:3]:
        print(failure)
    elapsed = time.monotonic() - started
    print(f"simulator: {elapsed:.0f} s, {ran} of the tap's schedules (seeds {base} to {base + ran - 1})")
    print(f"{ran + n - len(failures)} passed, {len(failures)} failed")
    return 1 if failures else 0


def _search(
    pool: ProcessPoolExecutor, jobs: list[tuple[int, int, int]], workers: int, deadline: float | None
) -> tuple[list[str], int]:
    """The tap's jobs in seed order, a few in flight at a time; none begun after the deadline."""
    failures: list[str] = []
    ran, queue = 0, iter(jobs)
    running: dict[Future[list[str]], int] = {}  # each job's schedule count
    while True:
        while len(running) < workers * 2 and (deadline is None or time.monotonic() < deadline):
            job = next(queue, None)
            if job is None:
                break
            running[pool.submit(_run, job)] = job[1]
        if not running:
            return failures, ran
        done, _ = wait(running, return_when=FIRST_COMPLETED)
        for future in done:
            failures += future.result()
            ran += running.pop(future)


if __name__ == "__main__":
    sys.exit(main())
