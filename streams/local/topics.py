"""Create topics with a known partition count before producers or consumers auto-create them."""

from __future__ import annotations

import asyncio

from aiokafka.admin import AIOKafkaAdminClient, NewTopic


async def create_topics(
    bootstrap: str, topics: list[str], partitions: int, replicas: int = 1, configs: dict[str, str] | None = None
) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(t, partitions, replicas, topic_configs=configs or {}) for t in topics])
    finally:
        await admin.close()


def make_topics(
    bootstrap: str, topics: list[str], partitions: int, replicas: int = 1, configs: dict[str, str] | None = None
) -> None:
    """`configs`: topic-level settings, e.g. {"compression.type": "zstd"}."""
    asyncio.run(create_topics(bootstrap, topics, partitions, replicas, configs))
