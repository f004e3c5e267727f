"""A stream through a Redis fault (a primary killed, a slot moved): the sidecar folds a known workload
while a producer keeps writing, the fault lands mid-stream, and the figures must end exact. The time
from the fault to the first batch written after it and to exact figures is measured and printed."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from streams.local.scrape import Samples, value
from streams.local.sidecar_proc import SidecarProc, wait_until
from streams.local.topics import make_topics
from streams.local.workload import BackgroundProducer, build
from tests.integration.conftest import Names, all_folded, at_least, processed, sidecar_env

RAW_EVENTS = 24_000
RATE_PER_S = 3_000  # about 9 s of stream: the fault lands with records still arriving


@dataclass
class Recovery:
    fault_s: float  # how long the fault itself took (a slot moved key by key; nothing for a kill)
    first_write_s: float  # from the fault's end to the first batch Redis acknowledged after it
    exact_s: float  # from the fault's end to every event folded and the figures exact
    final: Samples


def stream_through(
    broker,
    topology,
    names: Names,
    home: Path,
    fault: Callable[[], None],
    seed: int,
    what: str,
    raw_events: int = RAW_EVENTS,
    extra_env: dict[str, str] | None = None,
) -> Recovery:  # type: ignore[no-untyped-def]
    """Runs the workload through `topology`, calls `fault` once a third of it is folded, and returns the
    measured recovery once the figures are exact against the workload's truth. `extra_env`: more of the
    sidecar's settings (STREAMS_REDIS_SHARDS)."""
    make_topics(broker.bootstrap, [names.raw, names.enriched], partitions=4)
    raws, enriched, truth = build(seed=seed, raw_events=raw_events, enriched_every=3)
    total = truth.raw_count + truth.enriched_count
    # Small batches: several writes a second, so one is likely in flight when the fault comes.
    env = {**sidecar_env(broker, topology, names, STREAMS_BATCH_MAX_RECORDS="500"), **topology.env, **(extra_env or {})}
    proc = SidecarProc(home, env).start()
    producer = BackgroundProducer(broker.bootstrap, [(names.raw, raws), (names.enriched, enriched)], RATE_PER_S)
    try:
        proc.wait_ready()
        producer.start()
        wait_until(lambda: at_least(proc, names, total // 3), 60, what="a third folded")
        assert processed(proc.scrape(), names) < total, "the fault must land mid-stream"
        started = time.monotonic()
        fault()
        at_fault = time.monotonic()
        fault_s = at_fault - started
        after = proc.scrape()
        before = _batches(after)
        wait_until(lambda: _batches(proc.scrape()) > before, 60, interval_s=0.05, what=f"a write after {what}")
        first_write_s = time.monotonic() - at_fault
        producer.join(120)
        assert producer.error is None and producer.sent == total
        final = wait_until(lambda: all_folded(proc, names, total), 90, interval_s=0.1, what=f"all folded after {what}")
        exact_s = time.monotonic() - at_fault
        assert truth.mismatches(final, names.raw, names.enriched) == []
        assert value(final, "ecomind_daily_active_users") == float(len(truth.users))
        assert processed(final, names) == total  # nothing counted twice
        refused = sum(v for k, v in final.items() if k[0] == "ecomind_streams_state_writes_refused_total")
        assert refused == 0, "a fault of the topology is retried, never counted as a refused write"
        proc.wait_ready(60)
        print(
            f"\n{what}: took {fault_s:.2f} s, first write after {first_write_s:.2f} s, exact after {exact_s:.2f} s; "
            f"redis errors {value(final, 'ecomind_streams_redis_errors_total')}, "
            f"conflicts {value(final, 'ecomind_streams_batch_conflicts_total')}, "
            f"rewinds {value(final, 'ecomind_streams_state_rewinds_total')}"
        )
        return Recovery(fault_s, first_write_s, exact_s, final)
    finally:
        proc.stop()


def crash_ahead_of_the_replica(primary, replica, password: str | None) -> None:  # type: ignore[no-untyped-def]
    """kill -9 of `primary` (a node of streams/local/redis_topologies.py) with writes it acknowledged that
    `replica` never received, as with any lag of asynchronous replication: the replica frozen and its link
    cut just before the crash (freezing alone loses nothing on loopback: the kernel's socket buffers hand the
    replica what was sent). Thawed at once, it is still electable."""
    assert replica.server is not None and replica.server.proc is not None
    os.kill(replica.server.proc.pid, signal.SIGSTOP)
    try:
        primary.client(password).client_kill_filter(_type="replica")
        time.sleep(0.5)
        primary.kill()
    finally:
        os.kill(replica.server.proc.pid, signal.SIGCONT)


def _batches(m: Samples) -> float:
    return value(m, "ecomind_streams_batches_total") or 0.0
