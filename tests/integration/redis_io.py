"""Small synchronous helpers that write a batch to Redis the way the tap does: through the batch script."""

from __future__ import annotations

import asyncio

import redis.asyncio as aioredis

from tables.delta import Delta
from tables.store import RedisStore
from tables.writes import OffsetMove


def apply_batch(url: str, delta: Delta, moves: list[OffsetMove]) -> None:
    """One `RedisStore.apply` of app "s" (two days kept) on a client of its own; a refusal is raised."""

    async def run() -> None:
        client = aioredis.from_url(url, decode_responses=True)
        try:
            await RedisStore(client, "s", days_kept=2).apply(delta, moves)
        finally:
            await client.aclose()

    asyncio.run(run())
