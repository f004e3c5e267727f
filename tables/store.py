"""The Redis-backed tables: one atomic write per batch, state and input offsets together.

Each write carries, per input partition, the offset the batch started from; Redis applies the
batch only if that is still the stored offset. A replayed or stale batch (a zombie after a
rebalance, a retry after a lost reply) is refused as a whole, so nothing is counted twice.
"""

from __future__ import annotations

import enum
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

import orjson
import redis.asyncio as aioredis

from tables.delta import Delta, unpair
from tables.keys import (
    AMOUNT_BASE,
    DAY_CO2,
    DAY_KWH,
    DAY_ORGS,
    DAY_TOTALS,
    DAY_USERS,
    DELAY,
    DELAY_SUM,
    DROPPED_LATE,
    INVALID,
    LAST_TS,
    MODEL_FIELD,
    PROCESSED,
    PROVIDER_FIELD,
    REMAINDER_SUFFIX,
    TOTAL_CO2,
    TOTAL_KWH,
    Keys,
    delay_bucket_field,
    offset_field,
    split_amount,
)
from tables.labels import OTHER

# The shebang makes Redis (7.0 and later) refuse the script whole when it is over maxmemory, instead of
# failing at a write halfway. Redis never rolls a script back, so every other check that can fail
# (offsets, key types) comes before the first write, no stored total can overflow (amounts carry their
# remainder into whole units), and the offsets are written last.
_APPLY_LUA = """#!lua
local p = cjson.decode(ARGV[1])
for _, o in ipairs(p.off) do
  local cur = redis.call('HGET', KEYS[1], o[1])
  if o[2] == '' then
    if cur then return {0, o[1]} end
  elseif cur ~= o[2] then
    return {0, o[1]}
  end
end
local seen = {}
local function is(key, kind)
  if seen[key] == nil then
    local t = redis.call('TYPE', key)['ok']
    seen[key] = (t == 'none' or t == kind)
  end
  return seen[key]
end
if not is(KEYS[1], 'hash') then return {2, KEYS[1]} end
for _, h in ipairs(p.hincr) do if not is(h[1], 'hash') then return {2, h[1]} end end
for _, a in ipairs(p.amount) do
  if not (is(a[1], 'hash') and is(a[1] .. p.lo, 'hash')) then return {2, a[1]} end
end
for _, s in ipairs(p.sadd) do if not is(s[1], 'set') then return {2, s[1]} end end
for _, m in ipairs(p.hmax) do if not is(m[1], 'hash') then return {2, m[1]} end end
for _, e in ipairs(p.expire) do if not is(e[1], e[3]) then return {2, e[1]} end end
for _, a in ipairs(p.admit) do if not is(a[1], 'set') then return {2, a[1]} end end
for _, h in ipairs(p.hincr) do redis.call('HINCRBY', h[1], h[2], h[3]) end
for _, a in ipairs(p.amount) do
  if a[3] ~= '0' then redis.call('HINCRBY', a[1], a[2], a[3]) end
  local rest = redis.call('HINCRBY', a[1] .. p.lo, a[2], a[4])
  if rest >= p.base then
    redis.call('HINCRBY', a[1], a[2], 1)
    redis.call('HINCRBY', a[1] .. p.lo, a[2], -p.base)
  end
end
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
for _, e in ipairs(p.expire) do redis.call('EXPIRE', e[1], e[2]) end
for _, a in ipairs(p.admit) do
  local room = tonumber(a[2]) - redis.call('SCARD', a[1])
  for _, v in ipairs(a[3]) do
    if room <= 0 then break end
    if v ~= p.other then room = room - redis.call('SADD', a[1], v) end
  end
end
for _, o in ipairs(p.off) do redis.call('HSET', KEYS[1], o[1], o[3]) end
return {1, ''}
"""

_LEASE_LUA = """
local cur = redis.call('GET', KEYS[1])
if cur == ARGV[1] then redis.call('PEXPIRE', KEYS[1], ARGV[2]) return 2 end
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


class Lease(enum.IntEnum):
    LOST = 0  # another replica holds it
    TAKEN = 1  # it was free and is now this replica's
    KEPT = 2  # this replica id already held it (this process, or this replica before a restart)


class Conflict(Exception):
    """The stored offset of a partition is not the one the batch started from."""

    def __init__(self, field: str) -> None:
        super().__init__(field)
        self.field = field


class WrongKeyType(Exception):
    """A key the batch writes holds another type: something else wrote it. Nothing was written."""


class RedisStore:
    def __init__(
        self, client: aioredis.Redis, app_id: str, days_kept: int, label_caps: dict[str, int] | None = None
    ) -> None:
        self.client = client
        # Label values get their own series first come, first served, in the batch that first carries
        # them: admission is part of the state write, so the scrape only reads and a value never moves
        # from "__other__" to a series of its own (which would make the "__other__" counter go down).
        self.label_caps = label_caps or {"org_id": 500, "provider": 100, "model": 100}
        self.keys = Keys(app_id)
        self.day_ttl_seconds = (days_kept + 1) * 86_400
        self._apply = client.register_script(_APPLY_LUA)
        self._lease = client.register_script(_LEASE_LUA)
        self._release = client.register_script(_RELEASE_LUA)

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

    async def eviction_policy(self) -> str:
        found = await self.client.config_get("maxmemory-policy")
        return str(found.get("maxmemory-policy", ""))

    async def apply(self, delta: Delta, moves: list[OffsetMove]) -> None:
        """Write the batch and its offsets atomically, or raise (Conflict, WrongKeyType) having written nothing."""
        payload = orjson.dumps(self.build_payload(delta, moves))
        status, detail = await self._apply(keys=[self.keys.offsets], args=[payload])
        if int(status) == 0:
            raise Conflict(str(detail))
        if int(status) == 2:
            raise WrongKeyType(str(detail))

    def build_payload(self, delta: Delta, moves: list[OffsetMove]) -> dict[str, object]:
        k = self.keys
        hincr: list[list[str]] = []
        amount: list[list[str]] = []
        expire: list[list[str]] = []
        ttl = str(self.day_ttl_seconds)

        def add_amount(key: str, field: str, n: int) -> None:
            whole, remainder = split_amount(n)
            amount.append([key, field, str(whole), str(remainder)])

        for name, counter in (
            (PROCESSED, delta.processed),
            (INVALID, delta.invalid),
            (DROPPED_LATE, delta.dropped_late),
        ):
            hincr.extend([k.key(name), f, str(n)] for f, n in counter.items())
        activity: Counter[str] = Counter()
        for prefix, label, counter in (
            (PROVIDER_FIELD, "provider", delta.ingested),
            (MODEL_FIELD, "model", delta.calls),
        ):
            totals: Counter[str] = Counter()
            for field_name, n in counter.items():
                org, value = unpair(field_name)
                hincr.append([k.org(org), prefix + value, str(n)])
                totals[value] += n
                if prefix == PROVIDER_FIELD:
                    activity[org] += n
            hincr.extend([k.activity(label), value, str(n)] for value, n in totals.items())
        for index, n in enumerate(delta.delay_buckets):
            if n:
                hincr.append([k.key(DELAY), delay_bucket_field(index), str(n)])
        if delta.delay_sum_ms:
            add_amount(k.key(DELAY), DELAY_SUM, delta.delay_sum_ms)
        for name, total_field, per_day in ((DAY_KWH, TOTAL_KWH, delta.kwh_nano), (DAY_CO2, TOTAL_CO2, delta.co2_nano)):
            for day, amounts in per_day.items():
                for org, n in amounts.items():
                    add_amount(k.day(day, name), org, n)
                    activity[org] += 0  # known to the label caps even without a raw event
                add_amount(k.day(day, DAY_TOTALS), total_field, sum(amounts.values()))
                for key in (k.day(day, name), k.day(day, DAY_TOTALS)):
                    expire += [[key, ttl, "hash"], [key + REMAINDER_SUFFIX, ttl, "hash"]]
        hincr.extend([k.activity("org_id"), org, str(n)] for org, n in activity.items())
        seen = {
            "org_id": sorted(activity),
            "provider": sorted({unpair(f)[1] for f in delta.ingested}),
            "model": sorted({unpair(f)[1] for f in delta.calls}),
        }
        admit = [[k.labels(label), str(self.label_caps[label]), values] for label, values in seen.items() if values]
        sadd: list[list[object]] = []
        for name, per_day_set in ((DAY_ORGS, delta.orgs), (DAY_USERS, delta.users)):
            for day, members in per_day_set.items():
                sadd.append([k.day(day, name), list(members)])
                expire.append([k.day(day, name), ttl, "set"])
        return {
            "off": [
                [offset_field(m.topic, m.partition), "" if m.expected is None else str(m.expected), str(m.next_offset)]
                for m in moves
            ],
            "hincr": hincr,
            "amount": amount,
            "lo": REMAINDER_SUFFIX,
            "base": AMOUNT_BASE,
            "sadd": sadd,
            "hmax": [[k.key(LAST_TS), t, str(ts)] for t, ts in delta.last_ts_ms.items()],
            "expire": expire,
            "admit": admit,
            "other": OTHER,
        }

    async def hold_lease(self, replica_id: str, ttl_ms: int) -> Lease:
        return Lease(int(await self._lease(keys=[self.keys.leader], args=[replica_id, str(ttl_ms)])))

    async def lease_holder(self) -> str | None:
        value = await self.client.get(self.keys.leader)
        return None if value is None else str(value)

    async def release_lease(self, replica_id: str) -> None:
        await self._release(keys=[self.keys.leader], args=[replica_id])
