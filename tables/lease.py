"""The exporter lease in Redis: who exports the business series, and how the last holder's term ended.

One hash per app, outside the layout-versioned prefix, so replicas of two layout versions share one lease
and never export side by side. It records how the last term ended: still held (until `until_ms`),
released (its exports visible in Prometheus until `visible_ms`), or lapsed (a crash or a cut: visible
until `until_ms + grace_ms`). A replica that takes the lease learns how long to wait before its own
series may appear, so `sum()` over replicas never counts two exporters at once:

- never held, or the holder's own id again (same Prometheus series): at once;
- released: until the releaser's last exported samples are stale (often already);
- lapsed: until the lease's end plus the holder's grace (one scrape interval and a margin).

Times are Redis's own clock (TIME), so replicas' clocks never meet; a caller turns the reply's wait into
its own clock by adding it to the moment the reply arrived.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any

# ARGV: replica id, ttl ms, grace ms (how long this holder's exports stay visible after its last scrape).
# KEYS: the lease hash, and the lease key of layout 3's releases (a string with PX), held alongside so
# that replicas of that release see the lease taken and never export beside this one.
HOLD_LUA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local id, ttl, grace = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local legacy = redis.call('GET', KEYS[2])
if legacy and legacy ~= id then return {0, 0} end
local h = redis.call('HMGET', KEYS[1], 'holder', 'until_ms', 'state', 'visible_ms', 'grace_ms')
local holder, untl, state = h[1], tonumber(h[2]) or 0, h[3]
local live = state == 'held' and untl > now
local kind, wait = 1, 0
if holder == id then
  if live then kind = 2 end
elseif holder then
  if live then return {0, 0} end
  local visible
  if state == 'released' then visible = tonumber(h[4]) or 0 else visible = untl + (tonumber(h[5]) or 0) end
  if visible > now then wait = visible - now end
end
redis.call('HSET', KEYS[1], 'holder', id, 'until_ms', now + ttl, 'state', 'held', 'grace_ms', grace)
redis.call('PEXPIRE', KEYS[1], ttl + grace + 60000)
redis.call('SET', KEYS[2], id, 'PX', ttl)
return {kind, wait}
"""

# ARGV: replica id, ms from now until this holder's exports are stale everywhere. Records outlive what
# they protect by a minute, then go: a taker after that finds no record, which is then as safe as it is fast.
RELEASE_LUA = """
if redis.call('HGET', KEYS[1], 'holder') ~= ARGV[1] then return 0 end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local visible = tonumber(ARGV[2])
redis.call('HSET', KEYS[1], 'state', 'released', 'visible_ms', now + visible)
redis.call('PEXPIRE', KEYS[1], visible + 60000)
if redis.call('GET', KEYS[2]) == ARGV[1] then redis.call('DEL', KEYS[2]) end
return 1
"""


class Lease(enum.IntEnum):
    LOST = 0  # another replica holds it
    TAKEN = 1  # it was free (never held, released or lapsed) and is now this replica's
    KEPT = 2  # this replica id held it and still did


@dataclass(frozen=True)
class Hold:
    lease: Lease
    wait_s: float  # before this replica's series may appear (0 unless the lease came from another)


def lease_key(app_id: str) -> str:
    return "{" + app_id + "}:exporter"


def legacy_lease_key(app_id: str) -> str:
    """Layout 3's lease key: its releases hold this one and read nothing else."""
    return "{" + app_id + "}:v3:leader"


class LeaseStore:
    def __init__(self, client: Any, app_id: str) -> None:
        self.client = client
        self.keys = [lease_key(app_id), legacy_lease_key(app_id)]
        self._hold = client.register_script(HOLD_LUA)
        self._release = client.register_script(RELEASE_LUA)

    async def hold(self, replica_id: str, ttl_ms: int, grace_ms: int) -> Hold:
        kind, wait_ms = await self._hold(keys=self.keys, args=[replica_id, str(ttl_ms), str(grace_ms)])
        return Hold(Lease(int(kind)), int(wait_ms) / 1000)

    async def holder(self) -> str | None:
        """The id of the replica whose term is current, or None when the lease is released or unknown."""
        holder, state = await self.client.hmget(self.keys[0], ["holder", "state"])
        return None if holder is None or _text(state) != "held" else _text(holder)

    async def release(self, replica_id: str, visible_ms: int) -> bool:
        return bool(await self._release(keys=self.keys, args=[replica_id, str(max(0, visible_ms))]))


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
