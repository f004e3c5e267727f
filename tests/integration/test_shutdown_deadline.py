"""The worst case of a SIGTERM: Redis frozen (SIGSTOP) with a batch write in flight and the broker frozen
too. The sidecar exits within STREAMS_SHUTDOWN_TIMEOUT_SECONDS plus the fixed margin the chart's grace
period adds (deploy/helm/ecomind-streams/templates/_helpers.tpl), and once both run again the write that
was in flight has landed whole or not at all: the restarted replica folds exactly what the stored
offsets do not cover, nothing twice."""

from __future__ import annotations

import os
import re
import signal
import time
from pathlib import Path

import pytest
import redis as redis_client

from core.deadline import EXIT_MARGIN_S, LOCAL_CLOSE_S
from streams.local.redis_server import LocalRedis
from streams.local.scrape import value
from streams.local.sidecar_proc import SidecarProc, wait_until
from streams.local.topics import make_topics
from streams.local.workload import BackgroundProducer, build
from tables.keys import Keys
from tests.integration.conftest import Names, all_folded, processed, sidecar_env

# Kafka only: it freezes the broker it runs on, and its producer is idempotent, which Tansu refuses to aiokafka.
pytestmark = [pytest.mark.integration, pytest.mark.kafka_only]

BUDGET_S = 6.0
# The chart's grace period is the budget plus EXIT_MARGIN_S (ecomind-streams.graceSeconds): what the sidecar
# may take past its deadline (closing sockets, LOCAL_CLOSE_S) and Faust's own teardown.
MARGIN_S = EXIT_MARGIN_S


def _freeze(pid: int, frozen: list[int]) -> None:
    os.kill(pid, signal.SIGSTOP)
    frozen.append(pid)


def _thaw(frozen: list[int]) -> None:
    while frozen:
        os.kill(frozen.pop(), signal.SIGCONT)


def test_sigterm_with_redis_frozen_mid_write_and_kafka_frozen_exits_by_the_budget_and_stays_exact(
    broker, names: Names, workdir: Path
) -> None:  # type: ignore[no-untyped-def]
    if broker.server is None or broker.server.proc is None:
        pytest.skip("the broker runs elsewhere: it cannot be frozen here")
    home = workdir / f"deadline-{names.app_id}"
    redis = LocalRedis(home / "redis").start()
    assert redis.server is not None and redis.server.proc is not None
    make_topics(broker.bootstrap, [names.raw, names.enriched], partitions=4)
    raws, enriched, truth = build(seed=73, raw_events=30_000, enriched_every=3)
    total = truth.raw_count + truth.enriched_count
    env = sidecar_env(
        broker, redis, names, STREAMS_BATCH_MAX_RECORDS="2000", STREAMS_SHUTDOWN_TIMEOUT_SECONDS=f"{BUDGET_S:g}"
    )
    proc = SidecarProc(home, env).start()
    # Idempotent: the broker freezes mid-send, and a retried send must not add a record the truth lacks.
    producer = BackgroundProducer(
        broker.bootstrap, [(names.raw, raws), (names.enriched, enriched)], 4_000, idempotent=True
    )
    store = redis_client.Redis.from_url(redis.url, decode_responses=True)
    keys = Keys(names.app_id)
    frozen: list[int] = []
    try:
        proc.wait_ready()
        producer.start()
        wait_until(lambda: processed(proc.scrape(), names) >= total // 4, 60, 0.1, what="a quarter folded")
        _freeze(redis.server.proc.pid, frozen)
        time.sleep(0.5)  # the next batch's write is now sent and unanswered
        _freeze(broker.server.proc.pid, frozen)
        assert proc.server is not None and proc.server.proc is not None
        asked = time.monotonic()
        proc.server.proc.send_signal(signal.SIGTERM)
        code = proc.server.proc.wait(timeout=BUDGET_S + 3 * MARGIN_S)
        exit_s = time.monotonic() - asked
        log_text = proc.log_tail(200_000)
        assert code == 0, proc.log_tail()
        assert "the batch write in flight is left unacknowledged" in log_text, "the stop must land mid-write"
        stopped = re.search(r"stopped ([0-9.]+)s after the stop began", log_text)
        assert stopped is not None, proc.log_tail()
        sidecar_s = float(stopped.group(1))
        print(f"\nSIGTERM to exit {exit_s:.1f}s, the sidecar's own stop {sidecar_s:.1f}s (budget {BUDGET_S:g}s)")
        # The sidecar's steps share one deadline; closing Redis's sockets may run LOCAL_CLOSE_S past it.
        assert sidecar_s <= BUDGET_S + LOCAL_CLOSE_S + 0.1, proc.log_tail()
        assert exit_s < BUDGET_S + MARGIN_S, f"exit took {exit_s:.1f}s"

        _thaw(frozen)
        # The frozen Redis still held the write in its socket buffer: it applies now, or never, but whole.
        time.sleep(0.5)
        stored = {f: int(v) for f, v in store.hgetall(keys.offsets).items() if not str(f).endswith(":id")}
        done_at_stop = sum(stored.values())
        counted = {t: int(v) for t, v in store.hgetall(keys.key("processed")).items()}
        assert sum(counted.values()) == done_at_stop, "state and offsets moved together"
        assert 0 < done_at_stop < total

        proc.start().wait_ready()
        producer.join(120)
        assert producer.error is None and producer.sent == total
        final = wait_until(lambda: all_folded(proc, names, total), 120, what="all folded after the restart")
        assert truth.mismatches(final, names.raw, names.enriched) == []
        assert value(final, "ecomind_streams_records_folded_total") == float(total - done_at_stop)
    finally:
        _thaw(frozen)
        store.close()
        proc.stop()
        redis.stop()
