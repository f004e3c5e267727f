"""The tap's fetch settings: defaults chosen from the idle-cost measurement, and validated at start."""

import pytest

from streams.clients import tap_consumer
from streams.settings import Settings, SettingsError


def test_defaults_are_the_measured_ones() -> None:
    s = Settings.from_env({})
    # docs/performance.md, "Idle and low-rate cost", has the figures behind these three.
    assert (s.batch_timeout_ms, s.fetch_min_bytes, s.fetch_max_wait_ms) == (1_000, 16_384, 500)


async def test_the_tap_consumer_gets_them() -> None:
    s = Settings.from_env({"STREAMS_FETCH_MIN_BYTES": "1", "STREAMS_FETCH_MAX_WAIT_MS": "250"})
    consumer = tap_consumer(s, "r1")
    try:
        # aiokafka keeps them as private attributes until start() builds its fetcher.
        assert (consumer._fetch_min_bytes, consumer._fetch_max_wait_ms) == (1, 250)
    finally:
        await consumer.stop()


@pytest.mark.parametrize(
    ("name", "bad"),
    [("STREAMS_FETCH_MIN_BYTES", "0"), ("STREAMS_FETCH_MAX_WAIT_MS", "-1"), ("STREAMS_FETCH_MAX_WAIT_MS", "x")],
)
def test_bad_values_name_the_variable(name: str, bad: str) -> None:
    with pytest.raises(SettingsError, match=name):
        Settings.from_env({name: bad})
