"""The clusters' stale judgements (streams/lag/scope.py) kept in Redis, so that they outlive the replica.

Only the exporter probes, and a group is judged only at a Stable cycle with readable assignments. A
replica that takes the exporter lease over (a rollout, a crash) would otherwise start with no judgement:
the topics an Empty group left would be measured again, their "lag" growing and paging, until the
group's next Stable cycle, which for a group whose consumers are gone may be days away.

So the exporter writes each cluster's judgements, when they change, to one hash beside the state (the
state's hash tag: the same slot in a Redis Cluster; no layout version: the lag probe's, not the
tables'), and a probe reads them before its first cycle after a gap, the memory it had then being
older than what the last exporter wrote. Redis failing costs only this: logged, and the probe goes on
with what it has. The probe's own thread and loop do both, on a client of their own per call (writes
happen when a judgement changes, reads after a gap: rare).
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable
from typing import Any

import orjson
from redis.exceptions import RedisError

from streams.lag.scope import StaleMemory

log = logging.getLogger(__name__)
# Judgements nobody wrote for a week are dropped with the key: Kafka's default offsets.retention.minutes,
# after which a group that emptied has no commits left to judge.
TTL_S = 7 * 86_400


def stale_key(app_id: str) -> str:
    return "{" + app_id + "}:lag:stale"


def encode(memory: StaleMemory) -> bytes:
    return orjson.dumps({group: sorted(topics) for group, topics in sorted(memory.items()) if topics})


def decode(text: str | bytes) -> StaleMemory:
    """A stored memory; anything else than {group: [topic, ...]} is no memory at all."""
    try:
        found = orjson.loads(text)
    except orjson.JSONDecodeError:
        return {}
    if not isinstance(found, dict):
        return {}
    return {g: frozenset(t) for g, t in found.items() if isinstance(t, list) and all(isinstance(x, str) for x in t)}


class StaleStore:
    """`client()` builds a Redis client (streams/clients.py `redis_client`) on the calling loop."""

    def __init__(self, client: Callable[[], Any], app_id: str, gap_s: float) -> None:
        self.client = client
        self.key = stale_key(app_id)
        self.gap_s = gap_s  # a probe that has not measured for this long may have missed another's writes
        self._last_measure_s: dict[str, float] = {}
        self._saved: dict[str, bytes] = {}

    async def before(self, cluster: str, memory: StaleMemory) -> None:
        """Before a cycle of `cluster`: after a gap, what the last exporter wrote replaces the memory."""
        now = time.monotonic()
        last = self._last_measure_s.get(cluster)
        self._last_measure_s[cluster] = now
        if last is not None and now - last < self.gap_s:
            return
        stored = await self._call(lambda r: r.hget(self.key, cluster), "reading")
        if stored is None:
            return
        memory.clear()
        memory.update(decode(stored))
        self._saved[cluster] = encode(memory)

    async def after(self, cluster: str, memory: StaleMemory) -> None:
        """After a cycle: written when the judgements changed (the TTL renewed with them)."""
        text = encode(memory)
        if self._saved.get(cluster) == text:
            return

        async def write(r: Any) -> bool:
            await r.hset(self.key, cluster, text)
            await r.expire(self.key, TTL_S)
            return True

        if await self._call(write, "writing"):
            self._saved[cluster] = text

    async def _call(self, op: Callable[[Any], Any], what: str) -> Any:
        """What `op` returns on a client of its own, or None when Redis failed (logged)."""
        r = self.client()
        try:
            return await op(r)
        except (RedisError, OSError) as exc:
            log.warning("%s the lag probe's stale judgements in Redis failed: %s", what, exc)
            return None
        finally:
            with contextlib.suppress(RedisError, OSError):
                await r.aclose()
