"""Dead letters: every rejected record goes to a topic of its own, with why and where it came from.

Delivery is at least once: the records are acknowledged before the batch that rejected them is
applied, so a crash in between sends them again on replay. Readers deduplicate by the source headers.
"""

from __future__ import annotations

import asyncio
import logging

from aiokafka import AIOKafkaProducer

from streams.fold import Rejection
from streams.settings import Settings
from streams.status import Status

log = logging.getLogger(__name__)

# Below Kafka's default message.max.bytes (1 MiB), so a dead letter fits a topic with default limits;
# the source offset in the headers points at the full record.
MAX_VALUE_BYTES = 900_000


def headers_for(rejection: Rejection) -> list[tuple[str, bytes]]:
    rec = rejection.record
    size = 0 if rec.value is None else len(rec.value)
    return [
        ("ecomind.reason", rejection.reason.encode()),
        ("ecomind.source.topic", rejection.topic.encode()),
        ("ecomind.source.partition", str(rec.partition).encode()),
        ("ecomind.source.offset", str(rec.offset).encode()),
        ("ecomind.source.timestamp_ms", str(rec.timestamp).encode()),
        ("ecomind.source.value_bytes", str(size).encode()),
    ]


class DeadLetters:
    def __init__(self, settings: Settings, status: Status) -> None:
        assert settings.dead_letter_topic is not None
        self.topic = settings.dead_letter_topic
        self.status = status
        self.producer = AIOKafkaProducer(
            bootstrap_servers=settings.bootstrap_servers,
            client_id=f"{settings.app_id}-dead-letters",
            acks="all",
            linger_ms=5,
            max_request_size=2 * 1024 * 1024,
            **settings.kafka.client_kwargs(),
        )

    async def start(self) -> None:
        await self.producer.start()

    async def stop(self) -> None:
        await self.producer.stop()

    async def send(self, rejections: list[Rejection]) -> None:
        """Deliver every rejection, retrying until the broker acknowledges all of them."""
        backoff = 0.2
        while rejections:
            try:
                await self._send_once(rejections)
                self.status.dead_letters += len(rejections)
                return
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.status.dead_letter_errors += 1
                log.warning("dead-letter write failed, retrying in %.1fs: %s", backoff, exc)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)

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
