"""The tap mirrors its applied offsets into Kafka at most once a second, and only when they moved."""

from __future__ import annotations

import asyncio
from typing import Any

from aiokafka import TopicPartition

from agents.tap import TapAgent
from streams.settings import Settings
from streams.status import Status


class _Consumer:
    def __init__(self) -> None:
        self.commits: list[dict[TopicPartition, int]] = []

    async def commit(self, offsets: dict[TopicPartition, int]) -> None:
        self.commits.append(dict(offsets))


def test_the_mirror_commit_is_sent_only_when_the_offsets_moved() -> None:
    consumer = _Consumer()
    agent = TapAgent(Settings(), None, Status(replica_id="r"), consumer)  # type: ignore[arg-type]
    tp = TopicPartition("events.raw", 0)

    async def scenario() -> list[Any]:
        agent.applied[tp] = 5
        await agent._commit(force=True)
        await agent._commit(force=True)  # nothing moved: an idle replica sends nothing
        agent.applied[tp] = 9
        await agent._commit(force=True)
        await agent._commit()  # moved nothing and within the interval
        return consumer.commits

    assert asyncio.run(scenario()) == [{tp: 5}, {tp: 9}]
