"""Which key layout an app's state is in, the start-up check against it, and removing an older layout.

A layout change (tables/keys.py, LAYOUT_VERSION) puts every state key under a new prefix. A replica that
simply wrote there would re-read its topics from their start beside the replicas of the older layout,
exporting half-rebuilt figures, and leave the older keys (no TTL) in Redis for good. So one key outside
any layout, `{app}:layout`, names the layout the app's state is kept in, and a replica runs its tap and
its exporter only when that layout is its own:

- no marker: the state of releases before 0.2.0 is recognised by its offsets hash; with none of an older
  layout (or with this layout's own, which then is the one in use) the replica claims the marker;
- the marker names another layout, or only an older layout's offsets exist: refused, checked again every
  few seconds; the operator either removes the other layout (`purge`, tables/purge.py) or opts in to rebuild
  from the topics (STREAMS_LAYOUT_UPGRADE=reread), which moves the marker to this layout;
- even when opted in, a replica waits while an exporter of an older layout that had its own lease key
  (layouts 1 and 2) is alive; once running, the lease itself keeps it from exporting beside one that
  comes back (tables/lease.py);
- each replica records its layout in `{app}:layout:members` (replica id -> "layout:live until ms"),
  so a purge never deletes the keys of a layout whose replicas still run.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from redis.exceptions import ResponseError

from tables.keys import LAYOUT_VERSION, state_prefix
from tables.lease import lease_key
from tables.shards import MAX_SHARDS, ShardKeys, marker_value, parse_marker, shards_refusal

REFUSED, OK, TOOK_OVER, WAITING, BROKEN = 0, 1, 2, 3, 4

# KEYS: the marker, the shared lease hash, this layout's offsets, then per older layout (newest first) its
# offsets and its own lease key. ARGV: this layout's marker value (with the shard count when over one:
# tables/shards.py), "1" to take the state over, the older layouts' numbers
# (as KEYS). HGETALL tells a hash's existence: the offsets hash holds two fields per partition, and the
# check runs at start and every few seconds while refused, never per batch. allow-oom: at maxmemory
# under noeviction the check must still pass (it writes one short key at most), or the replica never starts.
CHECK_LUA = """#!lua flags=allow-oom
local want = ARGV[1]
local plain = string.match(want, '^%d+')  -- the layout alone: one shard's marker (tables/shards.py)
local marked = redis.call('GET', KEYS[1])
if marked and not (string.match(marked, '^[1-9]%d*$') or string.match(marked, '^[1-9]%d*:s[1-9]%d*$')) then
  return {4, marked}
end
local found, at = marked, nil
if not found then
  if #redis.call('HGETALL', KEYS[3]) == 0 then
    for i = 4, #KEYS, 2 do
      if #redis.call('HGETALL', KEYS[i]) > 0 then found, at = ARGV[i / 2 + 1], i; break end
    end
  elseif plain ~= want then
    found = plain  -- this layout's state, in one shard, before the marker: not the count wanted
  end
end
if found and found ~= want then
  -- Another shard count of the same layout is never taken over: its shards' keys are this count's too.
  if ARGV[2] ~= '1' or string.match(found, '^%d+') == plain then return {0, found} end
  if at then
    -- An exporter of that layout's releases holds a lease this release does not share.
    local holder = redis.call('GET', KEYS[at + 1])
    if holder and holder ~= redis.call('HGET', KEYS[2], 'holder') then return {3, found} end
  end
  redis.call('SET', KEYS[1], want)
  return {2, found}
end
if not marked then redis.call('SET', KEYS[1], want) end
return {1, want}
"""

# KEYS: the members hash. ARGV: replica id, its layout, ms it counts as live from now ("0": it stopped).
# Entries whose time is over are pruned by any writer; the hash goes with its last writer.
SEEN_LUA = """#!lua flags=allow-oom
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local live = tonumber(ARGV[3])
if live > 0 then redis.call('HSET', KEYS[1], ARGV[1], ARGV[2] .. ':' .. (now + live))
else redis.call('HDEL', KEYS[1], ARGV[1]) end
local members = redis.call('HGETALL', KEYS[1])
local last = now
for i = 1, #members, 2 do
  local untl = tonumber(string.match(members[i + 1], ':(%d+)$')) or 0
  if untl <= now then redis.call('HDEL', KEYS[1], members[i]) elseif untl > last then last = untl end
end
if last > now then redis.call('PEXPIRE', KEYS[1], last - now) end
return 1
"""


def marker_key(app_id: str) -> str:
    return "{" + app_id + "}:layout"


def members_key(app_id: str) -> str:
    """Replica id -> "layout:ms since the epoch until which it counts as running", on Redis's clock."""
    return "{" + app_id + "}:layout:members"


def offsets_key(app_id: str, layout: int) -> str:
    """Where a layout kept its input offsets: a layout with state has this hash."""
    return ("{" + app_id + "}" if layout == 1 else state_prefix(app_id, layout)) + ":offsets"


def own_lease_key(app_id: str, layout: int) -> str:
    """The lease key of the releases that wrote `layout` (layout 3's is still held beside the shared lease)."""
    return ("{" + app_id + "}" if layout == 1 else state_prefix(app_id, layout)) + ":leader"


def _advice(outcome: int, found: int, layout: int) -> str:
    if outcome == WAITING:
        return f"this replica starts once it stops (its lease released or expired); stop the layout {found} replicas"
    if found > layout:
        return (
            f"a newer release's state: to roll back to layout {layout}, set STREAMS_LAYOUT_UPGRADE=reread (its "
            "keys resume where they stopped, if not purged); else deploy the newer release (UPGRADING.md)"
        )
    if found == 1:
        return (
            "set STREAMS_LAYOUT_UPGRADE=reread to rebuild from the topics; layout 1's keys carry no version, "
            "so no purge can tell them apart: delete them by hand once its replicas are stopped (UPGRADING.md)"
        )
    return (
        f"once layout {found}'s replicas are stopped, `python -m streams.tools.layout purge-layout --layout {found}`, "
        "or STREAMS_LAYOUT_UPGRADE=reread to rebuild this layout from the topics (UPGRADING.md)"
    )


@dataclass(frozen=True)
class Check:
    outcome: int  # REFUSED, OK, TOOK_OVER, WAITING or BROKEN
    found: int  # the layout the state was found in (this one's when OK; 0 when BROKEN)
    layout: int = LAYOUT_VERSION
    problem: str = ""  # BROKEN: what Redis holds that no release writes
    found_shards: int = 1  # the shard count the state was found in (STREAMS_REDIS_SHARDS)
    shards: int = 1  # this replica's

    @property
    def shard_change(self) -> bool:
        """Refused for the shard count alone: the same layout, kept in another number of shards."""
        return self.outcome == REFUSED and self.found == self.layout and self.found_shards != self.shards

    @property
    def runs(self) -> bool:
        return self.outcome in (OK, TOOK_OVER)

    @property
    def reason(self) -> str:
        """For the log: why the tap and the exporter wait."""
        if self.shard_change:
            return f"state kept in {self.found_shards} shard(s), this replica is set to {self.shards}"
        if self.outcome == REFUSED:
            side = "an older" if self.found < self.layout else "a newer"
            return f"state in {side} key layout ({self.found}, this release writes {self.layout})"
        if self.outcome == WAITING:
            return f"an exporter of key layout {self.found} is still running"
        return self.problem

    @property
    def refusal(self) -> str:
        """For /ready, the status page and the log: the reason and what the operator can do."""
        if self.outcome == BROKEN:
            return self.problem
        if self.shard_change:
            return shards_refusal(self.found_shards, self.shards)
        return "" if self.runs else f"{self.reason}: {_advice(self.outcome, self.found, self.layout)}"


class LayoutStore:
    def __init__(self, client: Any, app_id: str, layout: int = LAYOUT_VERSION, shards: int = 1) -> None:
        self.client, self.app_id, self.layout, self.shards = client, app_id, layout, shards
        older = list(range(layout - 1, 0, -1))
        self.keys = [marker_key(app_id), lease_key(app_id), offsets_key(app_id, layout)]
        for old in older:
            self.keys += [offsets_key(app_id, old), own_lease_key(app_id, old)]
        self.args = [marker_value(layout, shards), "0", *(str(old) for old in older)]
        self._check = client.register_script(CHECK_LUA)
        self._seen = client.register_script(SEEN_LUA)

    async def check(self, take_over: bool) -> Check:
        orphaned = await self._shards_without_marker()
        if orphaned and orphaned != self.shards:
            # The shards' keys sit in slots of their own, out of the script's reach: looked for here, so that
            # a marker deleted by hand (or by a purge cut short) is not claimed over them for another count.
            return Check(REFUSED, self.layout, self.layout, found_shards=orphaned, shards=self.shards)
        args = [self.args[0], "1" if take_over else "0", *self.args[2:]]
        try:
            outcome, found = await self._check(keys=self.keys, args=args)
        except ResponseError as exc:
            if not str(exc).startswith("WRONGTYPE"):
                raise
            return Check(BROKEN, 0, self.layout, await wrong_types(self.client, self.keys))
        parsed = parse_marker(_text(found))
        if int(outcome) == BROKEN or parsed is None:
            return Check(BROKEN, 0, self.layout, bad_marker(self.app_id, found))
        return Check(int(outcome), parsed[0], self.layout, found_shards=parsed[1], shards=self.shards)

    async def _shards_without_marker(self) -> int:
        """With no marker: how many shards this layout's sharded state was kept in (the highest shard holding
        offsets or watermarks, plus one), 0 if none. Read at start and while refused, never per batch."""
        if await self.client.get(self.keys[0]) is not None:
            return 0
        # Every shard is asked, shard 0 included: a purge cut short may have removed some shards' keys and
        # not others. Only without a marker: a new install, or state whose marker went.
        found = 0
        for shard in range(MAX_SHARDS):
            keys = ShardKeys(self.app_id, shard)
            if await self.client.exists(keys.offsets, keys.watermarks):
                found = shard + 1
        return found

    async def seen(self, replica_id: str, live_ms: int) -> None:
        """Records this replica as running this layout for `live_ms` from now; 0: it stopped."""
        await self._seen(keys=[members_key(self.app_id)], args=[replica_id, str(self.layout), str(live_ms)])


def bad_marker(app_id: str, value: Any) -> str:
    return (
        f"the layout marker {marker_key(app_id)} holds {_text(value)!r}, not a layout number: "
        f"`redis-cli SET '{marker_key(app_id)}' <layout>` with the layout the app's state is in (`<layout>:s<S>` "
        "if it is kept in S shards, STREAMS_REDIS_SHARDS; `python -m streams.tools.layout status` lists them), "
        "or delete it"
    )


async def wrong_types(client: Any, keys: list[str]) -> str:
    """Names the keys of the check whose type no release writes (a marker and lease keys are strings)."""
    wanted = {k: "string" if k.endswith((":layout", ":leader")) else "hash" for k in keys}
    found = {k: _text(await client.type(k)) for k in keys}
    wrong = [f"{k} is a {t}, not a {wanted[k]}" for k, t in found.items() if t not in ("none", wanted[k])]
    return f"keys no release writes: {'; '.join(wrong) or 'one of ' + ', '.join(keys)} (delete or rename them)"


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
