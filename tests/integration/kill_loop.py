"""kill -9 a sidecar at random moments of a stream and restart it, the loop the crash tests share."""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, field
from functools import partial

from streams.local.scrape import Samples
from streams.local.sidecar_proc import SidecarProc, wait_until
from streams.local.workload import BackgroundProducer
from tests.integration.conftest import Names, all_folded, at_least, processed


@dataclass
class Kills:
    final: Samples  # the scrape once every event is folded, after the last restart
    last_scrapes: list[Samples] = field(default_factory=list)  # each killed process's last scrape
    at: list[float] = field(default_factory=list)  # events processed when each kill came


def kill_mid_stream(
    proc: SidecarProc,
    producer: BackgroundProducer,
    names: Names,
    total: int,
    floors: list[int],
    rng: random.Random,
    seed: int,
) -> Kills:
    """Kills `proc` once past each floor of processed events (plus a random phase within a batch), asserts
    every kill lands mid-stream, restarts it, then releases the producer's held-back events and waits
    until all `total` are folded. The producer holds a tail back, so the last kill still finds work."""
    last_scrapes, at = [], []
    for floor in floors:
        wait_until(partial(at_least, proc, names, floor), 120, what=f"progress past {floor} (seed {seed})")
        time.sleep(rng.uniform(0, 0.3))
        last = proc.scrape()
        proc.kill()
        at_kill = processed(last, names)
        assert at_kill < total, f"the kill must land mid-stream (seed {seed})"
        last_scrapes.append(last)
        at.append(at_kill)
        proc.start()
        proc.wait_ready()
    producer.release()
    producer.join(180)
    assert producer.error is None and producer.sent == total
    final = wait_until(lambda: all_folded(proc, names, total), 120, what="all events folded after the kills")
    return Kills(final, last_scrapes, at)
