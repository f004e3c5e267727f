"""The sidecar's lag probe on its own thread: its figures reach the web side, its stalls do not."""

import asyncio
import gzip
import threading
import time
from dataclasses import replace
from typing import Any

from core.retry import Backoff
from streams.broker_health import BrokerHealth
from streams.deflated import gzip_joined
from streams.lag.model import GroupLag, LagSnapshot, PartitionLag
from streams.local.scrape import parse, value
from streams.settings import Settings
from streams.sidecar import Sidecar
from tests.unit.streams.lease_redis import LeaseRedis


class BusyProbe:
    """Each cycle holds its loop 0.3 s in Python, as aiokafka decoding a Fetch of 5,000 partitions does."""

    def __init__(self) -> None:
        self.cycles, self.threads, self.stopped_on = 0, set[int](), 0
        self.client = object()

    async def start(self) -> None:
        self.threads.add(threading.get_ident())

    async def stop(self) -> None:
        self.stopped_on = threading.get_ident()

    async def measure(self) -> LagSnapshot:
        self.threads.add(threading.get_ident())
        end = time.monotonic() + 0.3
        while time.monotonic() < end:
            pass
        self.cycles += 1
        g = GroupLag("sink", "Stable", 1, (PartitionLag("t", 0, True, self.cycles, 1.0),))
        return LagSnapshot({"sink": g}, "worker", time.time(), 0.3)


async def test_probe_cycles_run_off_the_web_loop_and_publish_compressed_figures(monkeypatch: Any) -> None:
    probe = BusyProbe()

    async def healthy(_: Any) -> BrokerHealth:
        return BrokerHealth(True, 1, 0)

    monkeypatch.setattr("streams.lag.loops.probe_from_settings", lambda *_, **__: probe)
    monkeypatch.setattr("streams.lag.loops.check_brokers", healthy)
    sidecar = Sidecar(replace(Settings(), lag_interval_seconds=0.01), 6066, redis=LeaseRedis("noeviction"))  # type: ignore[arg-type]
    sidecar.status.leader = True  # read across threads by the probe loop
    sidecar.probes.start()
    worst, until = 0.0, time.monotonic() + 1.5
    while time.monotonic() < until:
        asked = time.monotonic()
        await asyncio.sleep(0.005)
        worst = max(worst, time.monotonic() - asked - 0.005)
    assert await sidecar.probes.stop(5.0) is True
    assert probe.cycles >= 2 and threading.get_ident() not in probe.threads and len(probe.threads) == 1
    assert probe.stopped_on in probe.threads  # closed on the loop its clients were built on
    assert worst < 0.1, worst  # each cycle held the probe's loop 0.3 s
    assert sidecar.status.broker_ok is True and sidecar.lag is not None
    published = sidecar.lag_deflated
    assert published is not None and sidecar.lag_exposition == published.text
    m = parse(published.text.decode())
    cycles = value(m, "ecomind_consumergroup_lag", kafka_cluster="default", group="sink", topic="t", partition="0")
    assert cycles is not None and cycles >= 1
    # The blocks published with the text are that text: a scrape only prepends its own part.
    assert gzip.decompress(gzip_joined([published])) == published.text


async def test_no_cycle_while_not_the_exporter(monkeypatch: Any) -> None:
    probe = BusyProbe()

    async def healthy(_: Any) -> BrokerHealth:
        return BrokerHealth(True, 1, 0)

    monkeypatch.setattr("streams.lag.loops.probe_from_settings", lambda *_, **__: probe)
    monkeypatch.setattr("streams.lag.loops.check_brokers", healthy)
    sidecar = Sidecar(replace(Settings(), lag_interval_seconds=0.01), 6066, redis=LeaseRedis("noeviction"))  # type: ignore[arg-type]
    sidecar.status.leader = False
    sidecar.probes.start()
    await asyncio.sleep(0.3)
    assert await sidecar.probes.stop(5.0) is True
    assert probe.cycles == 0 and sidecar.lag_deflated is None and sidecar.status.broker_ok is True


async def test_a_failed_probe_loop_closes_its_clients_before_building_new_ones(monkeypatch: Any) -> None:
    built: list[BusyProbe] = []
    memories: list[object] = []
    checks = 0

    def build(*_: Any, stale_memory: object = None) -> BusyProbe:
        memories.append(stale_memory)
        built.append(BusyProbe())
        return built[-1]

    async def first_fails(_: Any) -> BrokerHealth:
        nonlocal checks
        checks += 1
        if checks == 1:
            raise RuntimeError("metadata answer could not be decoded")
        return BrokerHealth(True, 1, 0)

    monkeypatch.setattr("streams.lag.loops.probe_from_settings", build)
    monkeypatch.setattr("streams.lag.loops.check_brokers", first_fails)
    monkeypatch.setattr("streams.lag.loops.SERVICES", Backoff(0.01, 0.01))
    sidecar = Sidecar(replace(Settings(), lag_interval_seconds=0.01), 6066, redis=LeaseRedis("noeviction"))  # type: ignore[arg-type]
    sidecar.probes.start()
    deadline = time.monotonic() + 5
    while len(built) < 2 and time.monotonic() < deadline:
        await asyncio.sleep(0.01)
    assert await sidecar.probes.stop(5.0) is True
    assert len(built) == 2 and built[0].stopped_on != 0  # the failed attempt's clients were closed
    assert built[1].stopped_on != 0 and sidecar.status.broker_ok is True
    # The second attempt's probe judges stale topics from the first one's memory (streams/lag/scope.py).
    tapped = sidecar.probes.clusters.stale["default"]
    assert len(memories) == 2 and all(m is tapped for m in memories)
