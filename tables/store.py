"""The Redis-backed tables: one atomic write per batch, state and input offsets together.

Each write carries, per input partition, the offset the batch started from; Redis applies the
batch only if that is still the stored offset. A replayed or stale batch (a zombie after a
rebalance, a retry after a lost reply) is refused as a whole, so nothing is counted twice.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

import orjson
import redis.asyncio as aioredis

from streams.fold import Delta, unpair
from tables.keys import Keys, offset_field

_APPLY_LUA = """
local p = cjson.decode(ARGV[1])
for _, o in ipairs(p.off) do
  local cur = redis.call('HGET', p.offkey, o[1])
  if o[2] == '' then
    if cur then return {0, o[1]} end
  elseif cur ~= o[2] then
    return {0, o[1]}
  end
end
for _, o in ipairs(p.off) do redis.call('HSET', p.offkey, o[1], o[3]) end
for _, h in ipairs(p.hincr) do redis.call('HINCRBY', h[1], h[2], h[3]) end
for _, s in ipairs(p.sadd) do
  local members = s[2]
  for i = 1, #members, 4000 do
    redis.call('SADD', s[1], unpack(members, i, math.min(i + 3999, #members)))
  end
end
for _, m in ipairs(p.hmax) do
  local cur = redis.call('HGET', m[1], m[2])
  if (not cur) or tonumber(cur) < tonumber(m[3]) then redis.call('HSET', m[1], m[2], m[3]) end
end
for _, c in ipairs(p.incr) do redis.call('INCRBY', c[1], c[2]) end
for _, e in ipairs(p.expire) do redis.call('EXPIRE', e[1], e[2]) end
return {1, ''}
"""

_LEASE_LUA = """
local cur = redis.call('GET', KEYS[1])
if cur == ARGV[1] then redis.call('PEXPIRE', KEYS[1], ARGV[2]) return 1 end
if not cur then redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2]) return 1 end
return 0
"""

_RELEASE_LUA = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


@dataclass(frozen=True)
class OffsetMove:
    """A batch moves a partition from `expected` (None: never written) to `next_offset`."""

    topic: str
    partition: int
    expected: int | None
    next_offset: int


class Conflict(Exception):
    """The stored offset of a partition is not the one the batch started from."""

    def __init__(self, field: str) -> None:
        super().__init__(field)
        self.field = field


class RedisStore:
    def __init__(self, client: aioredis.Redis, app_id: str, days_kept: int) -> None:
        self.client = client
        self.keys = Keys(app_id)
        self.day_ttl_seconds = (days_kept + 1) * 86_400
        self._apply = client.register_script(_APPLY_LUA)
        self._lease = client.register_script(_LEASE_LUA)
        self._release = client.register_script(_RELEASE_LUA)

    @classmethod
    def from_url(cls, url: str, app_id: str, days_kept: int) -> RedisStore:
        client = aioredis.from_url(url, decode_responses=True, socket_timeout=5, socket_connect_timeout=5)
        return cls(client, app_id, days_kept)

    async def close(self) -> None:
        await self.client.aclose()

    async def ping(self) -> bool:
        return bool(await self.client.ping())

    async def load_offsets(self, partitions: Iterable[tuple[str, int]]) -> dict[tuple[str, int], int | None]:
        wanted = list(partitions)
        if not wanted:
            return {}
        values = await self.client.hmget(self.keys.offsets, [offset_field(t, p) for t, p in wanted])
        return {tp: (int(v) if v is not None else None) for tp, v in zip(wanted, values, strict=True)}

    async def apply(self, delta: Delta, moves: list[OffsetMove]) -> None:
        """Write the batch and its offsets atomically, or raise Conflict and write nothing."""
        payload = orjson.dumps(self.build_payload(delta, moves))
        ok, field = await self._apply(keys=[self.keys.offsets], args=[payload])
        if not int(ok):
            raise Conflict(str(field))

    def build_payload(self, delta: Delta, moves: list[OffsetMove]) -> dict[str, object]:
        k = self.keys
        hincr: list[list[str]] = []
        for name, counter in (
            ("processed", delta.processed),
            ("invalid", delta.invalid),
            ("dropped_late", delta.dropped_late),
        ):
            hincr.extend([k.key(name), f, str(n)] for f, n in counter.items())
        activity: Counter[str] = Counter()
        # One hash per org holds both families ("p:" provider, "m:" model): a scrape reads it in one call.
        for prefix, totals_key, counter in (
            ("p:", "by_provider", delta.ingested),
            ("m:", "by_model", delta.calls),
        ):
            totals: Counter[str] = Counter()
            for field_name, n in counter.items():
                org, value = unpair(field_name)
                hincr.append([k.org(org), prefix + value, str(n)])
                totals[value] += n
                if prefix == "p:":
                    activity[org] += n
            hincr.extend([k.key(totals_key), value, str(n)] for value, n in totals.items())
        for index, n in enumerate(delta.delay_buckets):
            if n:
                hincr.append([k.key("delay"), f"b{index}", str(n)])
        if delta.delay_sum_ms:
            hincr.append([k.key("delay"), "sum_ms", str(delta.delay_sum_ms)])
        expire: list[list[str]] = []
        incr: list[list[str]] = []
        ttl = str(self.day_ttl_seconds)
        for name, per_day in (("kwh", delta.kwh_nano), ("co2", delta.co2_nano)):
            for day, amounts in per_day.items():
                hincr.extend([k.day(day, name), org, str(n)] for org, n in amounts.items())
                incr.append([k.day(day, f"{name}_total"), str(sum(amounts.values()))])
                expire += [[k.day(day, name), ttl], [k.day(day, f"{name}_total"), ttl]]
                for org in amounts:
                    activity[org] += 0  # known to the label caps even without a raw event
        hincr.extend([k.key("org_activity"), org, str(n)] for org, n in activity.items())
        sadd: list[list[object]] = []
        for name, per_day_set in (("orgs", delta.orgs), ("users", delta.users)):
            for day, members in per_day_set.items():
                sadd.append([k.day(day, name), list(members)])
                expire.append([k.day(day, name), ttl])
        return {
            "offkey": k.offsets,
            "off": [
                [offset_field(m.topic, m.partition), "" if m.expected is None else str(m.expected), str(m.next_offset)]
                for m in moves
            ],
            "hincr": hincr,
            "sadd": sadd,
            "hmax": [[k.key("last_ts"), t, str(ts)] for t, ts in delta.last_ts_ms.items()],
            "incr": incr,
            "expire": expire,
        }

    async def hold_lease(self, replica_id: str, ttl_ms: int) -> bool:
        return bool(int(await self._lease(keys=[self.keys.leader], args=[replica_id, str(ttl_ms)])))

    async def lease_holder(self) -> str | None:
        value = await self.client.get(self.keys.leader)
        return None if value is None else str(value)

    async def release_lease(self, replica_id: str) -> None:
        await self._release(keys=[self.keys.leader], args=[replica_id])
