"""Both Kafka consumers of the sidecar let aiokafka's fetcher sleep up to a second when it has nothing
to do, instead of waking five times a second (aiokafka's 200 ms default): idle cost, docs/performance.md."""

from __future__ import annotations

from streams.clients import FETCHER_WAKE_MS, build_clients, tap_consumer
from streams.settings import Settings


async def test_the_tap_and_the_probe_consumers_wake_at_most_once_a_second_when_idle() -> None:
    assert FETCHER_WAKE_MS == 1000
    s = Settings.from_env({})
    tap = tap_consumer(s, "r1")
    admin, probe = build_clients(s.bootstrap_servers, s.kafka.client_kwargs())
    try:
        # aiokafka keeps it as the fetcher routine's wait timeout, in seconds, until start() builds it.
        assert tap._consumer_timeout == 1.0
        assert probe._consumer_timeout == 1.0
    finally:
        await tap.stop()
        await probe.stop()
        await admin.close()
