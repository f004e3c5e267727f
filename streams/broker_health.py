"""Is the Kafka cluster reachable? Metadata must answer and every broker it lists must accept a connection.

A broker that died keeps its partitions' leadership in the metadata until the controller fences it,
and meanwhile the partitions it led are not consumed: the check reports it instead of waiting for that.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from aiokafka.client import AIOKafkaClient


@dataclass(frozen=True)
class BrokerHealth:
    metadata_ok: bool
    brokers_known: int
    brokers_unreachable: int

    @property
    def ok(self) -> bool:
        return self.metadata_ok and self.brokers_known > 0 and self.brokers_unreachable == 0


async def check_brokers(client: AIOKafkaClient, timeout_s: float = 5.0) -> BrokerHealth:
    try:
        metadata_ok = bool(await asyncio.wait_for(client.force_metadata_update(), timeout_s))
    except (TimeoutError, OSError):
        metadata_ok = False
    node_ids = [b.nodeId for b in client.cluster.brokers()]
    unreachable = 0
    for node_id in node_ids:
        try:
            reachable = await asyncio.wait_for(client.ready(node_id), timeout_s)
        except (TimeoutError, OSError):
            reachable = False
        unreachable += 0 if reachable else 1
    return BrokerHealth(metadata_ok, len(node_ids), unreachable)
