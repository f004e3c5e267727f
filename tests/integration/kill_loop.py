"""kill -9 sidecars mid-stream and restart them, the loops the crash tests share: one process killed at
random moments, or two replicas of one app losing one of them at a time."""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

from streams.local.scrape import Samples
from streams.local.sidecar_proc import SidecarProc, wait_until
from streams.local.workload import BackgroundProducer
from tests.integration.conftest import Names, all_folded, at_least, processed, summed_processed


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
    _release(producer, total)
    final = wait_until(lambda: all_folded(proc, names, total), 120, what="all events folded after the kills")
    return Kills(final, last_scrapes, at)


def _release(producer: BackgroundProducer, total: int) -> None:
    """Lets the producer send its held-back tail, and checks that all `total` events went out."""
    producer.release()
    producer.join(180)
    assert producer.error is None and producer.sent == total


class Replicas:
    """Two sidecars of one app (one consumer group, one exporter lease), started at once. `up` holds the
    ones a scrape may reach: a killed replica leaves it until it is restarted."""

    def __init__(self, home: Path, env: dict[str, str], names: Names) -> None:
        self.a = SidecarProc(home, env, name="a").start()
        self.b = SidecarProc(home, env, name="b").start()
        self.both = [self.a, self.b]
        self.up = list(self.both)
        self.names = names

    def wait_ready(self) -> None:
        for r in self.both:
            r.wait_ready()

    def scrape_all(self) -> list[Samples]:
        return [r.scrape() for r in self.up if r.running()]

    def processed(self) -> float:
        """Events folded, summed over the replicas up."""
        return summed_processed(self.scrape_all(), self.names)

    def wait_processed(self, floor: int, what: str, timeout_s: float = 90) -> None:
        wait_until(lambda: self.processed() >= floor, timeout_s, what=what)

    def kill(self, proc: SidecarProc, total: int, what: str) -> None:
        """kill -9 `proc`, asserting it died mid-stream: fewer than `total` events folded beforehand."""
        at_kill = self.processed()
        proc.kill()
        assert at_kill < total, f"{what} must land mid-stream"
        self.up = [r for r in self.up if r is not proc]

    def restart(self, proc: SidecarProc) -> None:
        proc.start()  # rejoins the group: a rebalance while events flow
        self.up = list(self.both)
        proc.wait_ready()

    def finish(self, producer: BackgroundProducer, total: int) -> None:
        """Releases the producer's held-back tail and waits until the replicas folded all `total` events."""
        _release(producer, total)
        self.wait_processed(total, "all folded", timeout_s=120)

    def stop(self) -> None:
        for r in self.both:
            r.stop()
