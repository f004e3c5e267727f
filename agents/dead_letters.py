"""Dead letters: every rejected record goes to a topic of its own, with why and where it came from.

Delivery is at least once: the records are acknowledged before the batch that rejected them is
applied, so a crash in between sends them again on replay. Readers deduplicate by the source headers.

A dead-letter failure never stops the business metrics: a few bounded attempts, then the records are
dropped from the dead-letter path (they are still in their source topic), counted by reason and logged
with their source positions; while the sink keeps failing, later batches do not wait for it again.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Protocol

from aiokafka.errors import (
    KafkaTimeoutError,
    MessageSizeTooLargeError,
    TopicAuthorizationFailedError,
    UnknownTopicOrPartitionError,
)

from core.retry import Backoff, retry
from core.status import Status
from tables.delta import Rejection

log = logging.getLogger(__name__)

# Below Kafka's default message.max.bytes (1 MiB), so a dead letter fits a topic with default limits;
# the source offset in the headers points at the full record.
MAX_VALUE_BYTES = 900_000
ATTEMPTS = 3
ATTEMPT_TIMEOUT_S = 5.0
# After a drop, batches within this time drop their dead letters at once instead of waiting again.
OPEN_SECONDS = 30.0


class Producer(Protocol):
    async def start(self) -> None: ...
    async def stop(self) -> None: ...
    async def send(self, topic: str, value: bytes | None = ..., key: bytes | None = ..., headers: Any = ...) -> Any: ...


def headers_for(rejection: Rejection) -> list[tuple[str, bytes]]:
    rec = rejection.record
    size = 0 if rec.value is None else len(rec.value)
    return [
        ("ecomind.reason", rejection.reason.encode()),
        ("ecomind.source.topic", rejection.topic.encode()),
        ("ecomind.source.partition", str(rejection.partition).encode()),
        ("ecomind.source.offset", str(rec.offset).encode()),
        ("ecomind.source.timestamp_ms", str(rec.timestamp).encode()),
        ("ecomind.source.value_bytes", str(size).encode()),
    ]


def drop_reason(exc: BaseException) -> str:
    """A bounded label value for why dead letters were dropped."""
    if isinstance(exc, UnknownTopicOrPartitionError | KafkaTimeoutError | asyncio.TimeoutError):
        return "unavailable"  # topic missing (auto-creation off) or no broker answered in time
    if isinstance(exc, TopicAuthorizationFailedError):
        return "not_authorized"
    if isinstance(exc, MessageSizeTooLargeError):
        return "too_large"
    return "error"


class DeadLetters:
    def __init__(self, topic: str, producer: Producer, status: Status) -> None:
        self.topic = topic
        self.producer = producer
        self.status = status
        self._open_until = 0.0
        self._open_reason = ""

    async def start(self) -> None:
        await self.producer.start()

    async def stop(self) -> None:
        await self.producer.stop()

    async def send(self, rejections: list[Rejection]) -> None:
        """Deliver every rejection, or drop them counted by reason after bounded attempts."""
        if not rejections:
            return
        loop = asyncio.get_running_loop()
        if loop.time() < self._open_until:
            self._drop(rejections, self._open_reason)
            return

        def count(exc: BaseException) -> None:
            self.status.dead_letter_errors += 1

        try:
            await retry(
                lambda: asyncio.wait_for(self._send_once(rejections), ATTEMPT_TIMEOUT_S),
                (Exception,),
                what="dead-letter write",
                log=log,
                policy=Backoff(0.2, 1.0),
                on_error=count,
                attempts=ATTEMPTS,
            )
        except Exception as exc:
            self._open_until = loop.time() + OPEN_SECONDS
            self._open_reason = drop_reason(exc)
            self._drop(rejections, self._open_reason)
            return
        self.status.dead_letters += len(rejections)

    def _drop(self, rejections: list[Rejection], reason: str) -> None:
        self.status.dead_letters_dropped[reason] += len(rejections)
        first, last = rejections[0], rejections[-1]
        log.error(
            "dead letters dropped (%s): %d records, still in their topics, first %s/%d@%d, last %s/%d@%d",
            reason,
            len(rejections),
            first.topic,
            first.partition,
            first.record.offset,
            last.topic,
            last.partition,
            last.record.offset,
        )

    async def _send_once(self, rejections: list[Rejection]) -> None:
        pending = []
        for r in rejections:
            value = r.record.value
            if value is not None and len(value) > MAX_VALUE_BYTES:
                value = value[:MAX_VALUE_BYTES]
            key = getattr(r.record, "key", None)
            if key is None and value is None:
                key = b""  # a tombstone still gets its dead letter; Kafka needs a key or a value
            pending.append(await self.producer.send(self.topic, value, key=key, headers=headers_for(r)))
        await asyncio.gather(*pending)
