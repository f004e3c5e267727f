"""Stopping the tap: the batch write in flight is waited for within the shutdown's deadline and never
cancelled, not by a cancel of the tap's task nor at the deadline, so its outcome is still recorded."""

from __future__ import annotations

import asyncio

from aiokafka import TopicPartition

from agents.tap import TapAgent
from core.deadline import Deadline
from core.status import Status
from streams.settings import Settings
from tables.delta import Delta
from tables.writes import OffsetMove

TP = TopicPartition("events.raw", 0)


class _Store:
    """A Redis whose script call hangs until `release` is set (a SIGSTOPped redis-server)."""

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.started = asyncio.Event()
        self.applied: list[list[OffsetMove]] = []
        self.cancelled = 0

    async def apply(self, delta: Delta, moves: list[OffsetMove]) -> None:
        self.started.set()
        try:
            await self.release.wait()
        except asyncio.CancelledError:
            self.cancelled += 1
            raise
        self.applied.append(moves)


class _Consumer:
    def __init__(self, stop_s: float = 0.0) -> None:
        self.commits: list[dict[TopicPartition, int]] = []
        self.stop_s = stop_s
        self.stopped = False

    async def commit(self, offsets: dict[TopicPartition, int]) -> None:
        self.commits.append(dict(offsets))

    async def stop(self) -> None:
        await asyncio.sleep(self.stop_s)  # a hung broker: longer than anything left
        self.stopped = True


def _agent(store: _Store, consumer: _Consumer) -> TapAgent:
    agent = TapAgent(Settings(), store, Status(replica_id="r"), consumer)  # type: ignore[arg-type]
    agent.expected[TP] = 150
    agent.applied[TP] = 100
    agent._inflight = asyncio.create_task(agent._apply(Delta(), [OffsetMove(TP.topic, TP.partition, 100, 150)]))
    return agent


async def _draining(agent: TapAgent) -> None:
    async with agent.lock:
        await agent._drain()


async def test_cancelling_the_tap_while_it_drains_never_cancels_the_write() -> None:
    store, consumer = _Store(), _Consumer()
    agent = _agent(store, consumer)
    await store.started.wait()
    tap = asyncio.create_task(_draining(agent))  # the tap's task, in process(), waiting for the write
    await asyncio.sleep(0.01)
    tap.cancel()  # what Sidecar.stop does at SIGTERM
    await asyncio.gather(tap, return_exceptions=True)
    assert tap.cancelled() and store.cancelled == 0
    assert agent._inflight is not None and not agent._inflight.done(), "kept for stop() to wait for"
    store.release.set()
    await agent.stop(Deadline(2.0, asyncio.get_running_loop().time))
    # The write landed and stop waited for it: Kafka is told exactly what Redis holds.
    assert len(store.applied) == 1 and agent.applied[TP] == 150
    assert consumer.commits == [{TP: 150}] and consumer.stopped


async def test_a_write_that_cannot_finish_is_left_running_and_stop_ends_by_the_deadline() -> None:
    store, consumer = _Store(), _Consumer(stop_s=10.0)
    agent = _agent(store, consumer)
    await store.started.wait()
    loop = asyncio.get_running_loop()
    deadline = Deadline(0.4, loop.time)
    await agent.stop(deadline)
    assert 0.39 <= deadline.elapsed() < 0.65, deadline.elapsed()
    assert store.cancelled == 0, "a write cancelled client-side may still apply server-side"
    assert consumer.commits == [] and not consumer.stopped, "no commit of offsets Redis has not acknowledged"
    assert agent.status.recovering
    # Redis answers after all (SIGCONT): the write's outcome is recorded, not lost to a cancel.
    store.release.set()
    task = agent._inflight
    assert task is not None
    await task
    assert agent.applied[TP] == 150 and agent.status.batches == 1


async def test_the_consumer_close_keeps_its_share_when_the_write_hangs() -> None:
    store, consumer = _Store(), _Consumer(stop_s=0.05)
    agent = _agent(store, consumer)
    await store.started.wait()
    deadline = Deadline(0.4, asyncio.get_running_loop().time)  # the close keeps a quarter: 0.1 s
    await agent.stop(deadline)
    assert consumer.stopped, "the group is left even though the write never answered"
    assert deadline.elapsed() < 0.55
    store.release.set()


async def test_a_tap_replaced_after_a_failure_cancels_its_write_left_in_flight() -> None:
    store, consumer = _Store(), _Consumer()
    agent = _agent(store, consumer)
    await store.started.wait()
    await agent.stop(Deadline(0.1, asyncio.get_running_loop().time))
    task = agent._inflight
    assert task is not None and not task.done()  # stop leaves it (a SIGTERM's exit ends it anyway)
    agent.abandon()  # the sidecar is about to build the next tap on the same store
    await asyncio.gather(task, return_exceptions=True)
    assert task.cancelled() and store.cancelled == 1 and store.applied == []
    assert agent.applied[TP] == 100  # nothing recorded for a write that did not answer
