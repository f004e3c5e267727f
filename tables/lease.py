"""The exporter lease in Redis: who exports the business series, and how the last holder's term ended.

One hash per app, outside the layout-versioned prefix, so replicas of two layout versions share one lease
and never export side by side (tables/layout.py keeps a replica of another layout out of it altogether,
unless the operator chose to rebuild). It records how the last term ended: still held (until `until_ms`),
released (its exports visible in Prometheus until `visible_ms`), or lapsed (a crash or a cut: visible
until `until_ms + grace_ms`). A term's holder may export from `start_ms`: the lease says so on every
renewal, so a reply lost on the way never shortens the wait. So `sum()` over replicas never counts two
exporters at once:

- never held (no record, no state of layout 3): at once; the holder's own id again (same Prometheus
  series): from its term's start;
- unknown, with state: no record (the term of a build before the shared lease, or a record lost), or a
  record whose holder no longer holds layout 3's key (such a build may have held it since): as after
  such a build's lapse, two graces;
- released: until the releaser's last exported samples are stale (often already);
- lapsed: until the lease's end plus the holder's grace (one scrape interval and a margin).

Times are Redis's own clock (TIME), so replicas' clocks never meet; a caller turns the reply's wait into
its own clock by adding it to the moment the reply arrived.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any

# ARGV: replica id, ttl ms, grace ms (how long this holder's exports stay visible after its last scrape),
# poll ms (how often replicas without the lease look for it), the scrape interval ms this replica measured
# (0: none yet). The reply: Lease, ms to wait, 1 if the lease was in this id's name, the interval last
# measured by any holder (0: none), 1 if there was no record at all.
# KEYS: the lease hash; the lease key of layout 3's releases (a string with PX), held alongside so that
# replicas of that release see the lease taken and never export beside this one; the members hash
# (replica id -> "first seen ms:last seen ms"), whose newest member is offered a freed lease first; the
# offsets hash of layout 3 (only read: is there state); then the lease keys of older layouts' builds
# (never held by a release with this lease), ARGV[6...] their tags: one held means such a build exports
# (it came back after a rebuild took over its state), so the lease is recorded as its own, as for
# layout 3's key.
HOLD_LUA = """#!lua flags=allow-oom
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local id, ttl, grace, poll = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local learned = tonumber(ARGV[5]) or 0
local mine = redis.call('HGET', KEYS[3], id)
local first = mine and tonumber(string.match(mine, '^(%d+)')) or now
redis.call('HSET', KEYS[3], id, first .. ':' .. now)
redis.call('PEXPIRE', KEYS[3], 3 * ttl)
local newer = false
local members = redis.call('HGETALL', KEYS[3])
for i = 1, #members, 2 do
  local m_first, m_seen = string.match(members[i + 1], '^(%d+):(%d+)$')
  m_first, m_seen = tonumber(m_first) or 0, tonumber(m_seen) or 0
  if m_seen < now - 3 * ttl then redis.call('HDEL', KEYS[3], members[i])
  elseif members[i] ~= id and m_seen >= now - 2 * poll and m_first > first then newer = true end
end
local current = redis.call('HGET', KEYS[1], 'holder')
local older = {}
for k = 5, #KEYS do older[#older + 1] = k end
older[#older + 1] = 2
for _, k in ipairs(older) do
  local legacy = redis.call('GET', KEYS[k])
  if legacy and legacy ~= id and legacy ~= current then
    -- An older release exports (this release's holders hold layout 3's key too, in their own name here):
    -- it releases by deleting its key and may show its series until its target's late staleness markers,
    -- so the record it cannot write is written for it.
    local left = redis.call('PTTL', KEYS[k])
    if left < 0 then left = ttl end
    local tag = 'v3:'
    if k > 4 then
      tag = ARGV[k + 1]
      -- The holder it displaces kept layout 3's key in its own name: that term is over too.
      if current and redis.call('GET', KEYS[2]) == current then redis.call('DEL', KEYS[2]) end
    end
    redis.call('HSET', KEYS[1], 'holder', tag .. legacy, 'until_ms', now + left, 'state', 'held', 'grace_ms', 2 * grace)
    redis.call('PEXPIRE', KEYS[1], left + 2 * grace + 60000)
    return {0, 0, 0, learned, 0}
  end
end
local h = redis.call('HMGET', KEYS[1], 'holder', 'until_ms', 'state', 'visible_ms', 'grace_ms', 'start_ms', 'freed_ms')
local holder, untl, state = h[1], tonumber(h[2]) or 0, h[3]
local live = state == 'held' and untl > now
local kind, start = 1, now
if holder == id then
  if live then kind = 2 end
  start = tonumber(h[6]) or now
  -- Same id, but not always the same series (a pinned id on a new pod): a release's bound still holds.
  if state == 'released' then start = math.max(start, tonumber(h[4]) or 0) end
elseif holder then
  if live then return {0, 0, 0, learned, 0} end
  -- A rollout replaces the oldest replicas first: a freed lease waits a few polls for the newest one.
  local freed = untl
  if state == 'released' then freed = tonumber(h[7]) or 0 end
  if newer and now - freed < 4 * poll then return {0, 0, 0, learned, 0} end
  -- A term that ended before its own start passes the wait it inherited on (start_ms).
  local visible = math.max(tonumber(h[6]) or 0, untl + (tonumber(h[5]) or 0))
  if state == 'released' then visible = tonumber(h[4]) or 0 end
  if visible > now then start = visible end
end
-- The build before the shared lease writes no record: between the record's term and now it may have held
-- layout 3's key and let it go (deleted at SIGTERM, or lapsed). Every term of this release keeps that key
-- in its holder's name until its series are stale, so while it is there no such build held the lease
-- since; once it is gone (or there is no record), only a fresh install (no state) is safe at once, and
-- otherwise the taker waits as after such a build's lapse, its late staleness markers included.
local witness = holder and redis.call('GET', KEYS[2]) == (string.match(holder, '^v%d+:(.*)$') or holder)
if holder ~= id and not witness and redis.call('PTTL', KEYS[4]) ~= -2 then start = math.max(start, now + 2 * grace) end
redis.call('HSET', KEYS[1], 'holder', id, 'until_ms', now + ttl, 'state', 'held', 'grace_ms', grace, 'start_ms', start)
redis.call('PEXPIRE', KEYS[1], math.max(ttl + grace, start - now) + 60000)
redis.call('SET', KEYS[2], id, 'PX', ttl + grace)
if learned > 0 then redis.call('HSET', KEYS[1], 'interval_ms', learned) end
local inherited, interval = 0, tonumber(redis.call('HGET', KEYS[1], 'interval_ms')) or 0
if holder == id then inherited = 1 end
local fresh = 0
if not holder then fresh = 1 end
if start > now then return {kind, start - now, inherited, interval, fresh} end
return {kind, 0, inherited, interval, fresh}
"""

# ARGV: replica id, ms from now until this holder's exports are stale everywhere. Records outlive what
# they protect by a minute, then go: a taker after that finds no record, and waits as for a record lost
# (two graces) unless there is no state at all (a fresh install).
RELEASE_LUA = """#!lua flags=allow-oom
if redis.call('HGET', KEYS[1], 'holder') ~= ARGV[1] then return 0 end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local visible = math.max(now + tonumber(ARGV[2]), tonumber(redis.call('HGET', KEYS[1], 'start_ms')) or 0)
redis.call('HSET', KEYS[1], 'state', 'released', 'visible_ms', visible, 'freed_ms', now)
redis.call('PEXPIRE', KEYS[1], visible - now + 60000)
-- Layout 3's key stays in this name until the series are stale and at least to its term's end: the build
-- before the shared lease takes it only then, so even a take whose reply it lost (it then sees the key
-- as kept, and exports without its wait) comes after them; and this release's takers meanwhile read it,
-- in the released holder's name, as this release's own (they wait for `visible_ms`, no more).
local legacy = redis.call('GET', KEYS[2])
if legacy == ARGV[1] then
  if visible - now > redis.call('PTTL', KEYS[2]) then redis.call('PEXPIRE', KEYS[2], visible - now) end
elseif not legacy and visible > now then
  redis.call('SET', KEYS[2], ARGV[1], 'PX', visible - now)
end
return 1
"""


class Lease(enum.IntEnum):
    LOST = 0  # another replica holds it
    TAKEN = 1  # it was free (never held, released or lapsed) and is now this replica's
    KEPT = 2  # this replica id held it and still did


@dataclass(frozen=True)
class Hold:
    lease: Lease
    wait_s: float  # until this term's series may appear: 0 unless the lease came from another lately
    inherited: bool = False  # the lease was in this id's name already: an earlier process of this replica
    fleet_interval_s: float = 0.0  # the scrape interval a holder measured last (0: none measured)
    # No record at all: never held, or Redis lost it (restarted, flushed, failed over). With layout 3's
    # state present the script already made the taker wait (`wait_s`); without, only the caller can tell.
    fresh: bool = False


def lease_key(app_id: str) -> str:
    return "{" + app_id + "}:exporter"


def members_key(app_id: str) -> str:
    return "{" + app_id + "}:exporter:members"


def legacy_lease_key(app_id: str) -> str:
    """The lease key of layout 3's builds before the shared lease: they hold this one and read nothing else.

    Held beside the shared lease by every release since, whatever its layout (tables/layout.py never
    deletes it)."""
    return "{" + app_id + "}:v3:leader"


def legacy_offsets_key(app_id: str) -> str:
    """The offsets hash of layout 3, which its builds before the shared lease write: state there means the
    lease may have been held, record or not."""
    return "{" + app_id + "}:v3:offsets"


# Builds of layouts 1 and 2 held a lease key of their own and read no other: tag, key after the hash tag.
OLDER_LEASES = (("v2:", ":v2:leader"), ("v1:", ":leader"))


class LeaseStore:
    def __init__(self, client: Any, app_id: str) -> None:
        self.client = client
        self.lease_key, self.legacy_key = lease_key(app_id), legacy_lease_key(app_id)
        self.keys = [self.lease_key, self.legacy_key, members_key(app_id), legacy_offsets_key(app_id)]
        self.keys += ["{" + app_id + "}" + suffix for _, suffix in OLDER_LEASES]
        self.tags = [tag for tag, _ in OLDER_LEASES]
        self._hold = client.register_script(HOLD_LUA)
        self._release = client.register_script(RELEASE_LUA)

    async def hold(self, replica_id: str, ttl_ms: int, grace_ms: int, poll_ms: int, interval_ms: int) -> Hold:
        args = [replica_id, str(ttl_ms), str(grace_ms), str(poll_ms), str(interval_ms), *self.tags]
        kind, wait_ms, inherited, fleet_ms, fresh = await self._hold(keys=self.keys, args=args)
        fleet_s = int(fleet_ms) / 1000
        return Hold(Lease(int(kind)), int(wait_ms) / 1000, bool(int(inherited)), fleet_s, bool(int(fresh)))

    async def holder(self) -> str | None:
        """The id of the replica whose term is current, or None when the lease is released or unknown."""
        holder, state = await self.client.hmget(self.lease_key, ["holder", "state"])
        return None if holder is None or _text(state) != "held" else _text(holder)

    async def release(self, replica_id: str, visible_ms: int) -> bool:
        keys = [self.lease_key, self.legacy_key]
        return bool(await self._release(keys=keys, args=[replica_id, str(max(0, visible_ms))]))


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
