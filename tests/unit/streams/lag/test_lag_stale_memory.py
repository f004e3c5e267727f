"""A cluster's stale judgements outlive its probes: a probe rebuilt after a failure (streams/lag/loops.py's
retry, a failed cycle of an extra cluster in streams/lag/clusters.py) still knows which topics an Empty
group left, so their series do not come back until the group's next Stable cycle says otherwise."""

from __future__ import annotations

import asyncio
import re
from dataclasses import replace
from types import SimpleNamespace
from typing import Any

from streams.cluster_settings import LagCluster, LagClusterSettings
from streams.kafka_settings import KafkaSecurity
from streams.lag.clusters import LagClusters
from streams.lag.model import GroupLag, LagSnapshot, PartitionLag
from streams.lag.probe import LagProbe
from streams.lag.scope import LagScope, StaleMemory
from streams.settings import Settings
from tests.unit.streams.lag.fakes import FakeAdmin, FakeConsumer, FakeLog
from tests.unit.streams.lag.group_wire import encoded


class GroupAdmin(FakeAdmin):
    """Group "sink" commits on orders/0 (offset 2 of 10). Stable: one member, owning partition 0 of
    `owned` (audit alone: orders is stale). Empty: no member, so nothing can be judged from it."""

    def __init__(self, state: str, owned: tuple[str, ...]) -> None:
        super().__init__({"w": 4, "sink": 2})
        self.state, self.owned = state, owned

    async def describe_consumer_groups(self, group_ids: list[str], group_coordinator_id: int | None = None) -> Any:
        assignment = encoded(*((t, [0]) for t in self.owned))
        members = [("m1", "svc", "/h", b"", assignment)] if self.state == "Stable" else []
        rows = [(0, g, self.state, "consumer", "range", members if g == "sink" else []) for g in group_ids]
        return [SimpleNamespace(groups=rows)]

    async def describe_topics(self, topics: list[str] | None = None) -> list[Any]:
        return [
            {"error_code": 0, "topic": t, "is_internal": False, "partitions": [{"partition": 0}]} for t in topics or []
        ]


def built(state: str, memory: StaleMemory | None, owned: tuple[str, ...] = ("audit",)) -> LagProbe:
    admin, consumer = GroupAdmin(state, owned), FakeConsumer(FakeLog())
    scope, every = LagScope(), re.compile(".*")
    return LagProbe(admin, consumer, "w", "orders", every, fetch_timeout_ms=200, scope=scope, stale_memory=memory)


async def test_a_rebuilt_probe_keeps_the_clusters_judgement_for_an_empty_group() -> None:
    memory: StaleMemory = {}
    first = (await built("Stable", memory).measure()).groups["sink"]
    assert {p.topic for p in first.partitions} == {"audit"} and first.stale_topics == frozenset({"orders"})
    assert memory == {"w": frozenset(), "sink": frozenset({"orders"})}
    # The group empties (its consumer restarts) while the cluster's probe is rebuilt after a failure.
    again = (await built("Empty", memory).measure()).groups["sink"]
    assert again.stale_topics == frozenset({"orders"}) and again.stale_partitions == 1
    assert again.partitions == ()  # orders still dropped; audit, with no commit and no member, unmeasured
    # What a probe that forgot would have exported: the stale topic's "lag" back, 8 records on orders.
    forgot = (await built("Empty", None).measure()).groups["sink"]
    assert forgot.stale_topics == frozenset() and {p.topic: p.lag_messages for p in forgot.partitions} == {"orders": 8}
    # The next Stable cycle judges afresh: the member now owns orders too, so nothing is stale.
    live = (await built("Stable", memory, owned=("audit", "orders")).measure()).groups["sink"]
    assert live.stale_topics == frozenset() and memory["sink"] == frozenset()
    assert {p.topic: p.lag_messages for p in live.partitions} == {"audit": 10, "orders": 8}


class FailingOnce:
    """A cluster's probe whose first cycle fails (its clients are then closed and built anew)."""

    def __init__(self, fail: bool) -> None:
        self.fail = fail

    async def start(self) -> None: ...
    async def stop(self) -> None: ...

    async def measure(self) -> LagSnapshot:
        if self.fail:
            raise ConnectionError("broker went away")
        g = GroupLag("g", "Stable", 1, (PartitionLag("t", 0, True, 1, 1.0),))
        return LagSnapshot({"g": g}, "\x00none", 1_800_000_000.0)


def test_every_probe_built_for_a_cluster_gets_that_clusters_one_memory() -> None:
    extra = tuple(LagCluster(n, f"{n}:9092", KafkaSecurity()) for n in ("eu", "us"))
    s = replace(Settings(), lag_interval_seconds=0.02, lag_clusters=LagClusterSettings("local", extra, 1.0))
    given: list[tuple[str, StaleMemory]] = []

    def build(_: Settings, cluster: LagCluster, memory: StaleMemory) -> Any:
        given.append((cluster.name, memory))
        return FailingOnce(fail=sum(1 for n, _ in given if n == cluster.name) == 1)

    clusters = LagClusters(s, lambda _: None, lambda: True, build)

    async def run() -> None:
        clusters.start()
        await asyncio.sleep(0.5)
        assert await clusters.stop(2.0) is True

    asyncio.run(run())
    for name in ("eu", "us"):
        memories = [m for n, m in given if n == name]
        assert len(memories) == 2, given  # the failed probe, then its replacement, which kept going
        assert all(m is clusters.stale[name] for m in memories)
    assert clusters.stale["eu"] is not clusters.stale["us"] and set(clusters.stale) == {"local", "eu", "us"}
    assert clusters.health["eu"].up and clusters.health["us"].up
