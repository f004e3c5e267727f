"""Which key layout an app's state is in, the start-up check against it, and removing an older layout.

A layout change (tables/keys.py, LAYOUT_VERSION) puts every state key under a new prefix. A replica that
simply wrote there would re-read its topics from their start beside the replicas of the older layout,
exporting half-rebuilt figures, and leave the older keys (no TTL) in Redis for good. So one key outside
any layout, `{app}:layout`, names the layout the app's state is kept in, and a replica runs its tap and
its exporter only when that layout is its own:

- no marker: the state of releases before 0.2.0 is recognised by its offsets hash; with none of an older
  layout (or with this layout's own, which then is the one in use) the replica claims the marker;
- the marker names another layout, or only an older layout's offsets exist: refused, checked again every
  few seconds; the operator either removes the older layout (`purge`, below) or opts in to rebuild
  from the topics (STREAMS_LAYOUT_UPGRADE=reread), which moves the marker to this layout;
- even when opted in, a replica waits while an exporter of an older layout that had its own lease key
  (layouts 1 and 2) is alive: layout 3 and later share one lease (tables/lease.py), so two exporters of
  different layouts never run at once.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tables.keys import LAYOUT_VERSION, state_prefix
from tables.lease import lease_key, legacy_lease_key

REFUSED, OK, TOOK_OVER, WAITING = 0, 1, 2, 3

# KEYS: the marker, the shared lease hash, this layout's offsets, then per older layout (newest first) its
# offsets and its own lease key. ARGV: this layout, "1" to take the state over, the older layouts' numbers
# (as KEYS). HGETALL tells a hash's existence: the offsets hash holds two fields per partition, and the
# check runs at start and every few seconds while refused, never per batch.
CHECK_LUA = """
local want = ARGV[1]
local marked = redis.call('GET', KEYS[1])
local found, at = marked, nil
if not found and #redis.call('HGETALL', KEYS[3]) == 0 then
  for i = 4, #KEYS, 2 do
    if #redis.call('HGETALL', KEYS[i]) > 0 then found, at = ARGV[i / 2 + 1], i; break end
  end
end
if found and found ~= want then
  if ARGV[2] ~= '1' then return {0, found} end
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


def marker_key(app_id: str) -> str:
    return "{" + app_id + "}:layout"


def offsets_key(app_id: str, layout: int) -> str:
    """Where a layout kept its input offsets: a layout with state has this hash."""
    return ("{" + app_id + "}" if layout == 1 else state_prefix(app_id, layout)) + ":offsets"


def own_lease_key(app_id: str, layout: int) -> str:
    """The lease key of the releases that wrote `layout` (layout 3's is still held beside the shared lease)."""
    return ("{" + app_id + "}" if layout == 1 else state_prefix(app_id, layout)) + ":leader"


@dataclass(frozen=True)
class Check:
    outcome: int  # REFUSED, OK, TOOK_OVER or WAITING
    found: int  # the layout the state was found in (this one's when OK)
    layout: int = LAYOUT_VERSION

    @property
    def runs(self) -> bool:
        return self.outcome in (OK, TOOK_OVER)

    @property
    def reason(self) -> str:
        """For /ready, the status page and the log: why the tap and the exporter wait."""
        if self.outcome == REFUSED:
            side = "an older" if self.found < self.layout else "a newer"
            return f"state in {side} key layout ({self.found}, this release writes {self.layout})"
        if self.outcome == WAITING:
            return f"an exporter of key layout {self.found} is still running"
        return ""


class LayoutStore:
    def __init__(self, client: Any, app_id: str, layout: int = LAYOUT_VERSION) -> None:
        self.app_id, self.layout = app_id, layout
        older = list(range(layout - 1, 0, -1))
        self.keys = [marker_key(app_id), lease_key(app_id), offsets_key(app_id, layout)]
        for old in older:
            self.keys += [offsets_key(app_id, old), own_lease_key(app_id, old)]
        self.args = [str(layout), "0", *(str(old) for old in older)]
        self._check = client.register_script(CHECK_LUA)

    async def check(self, take_over: bool) -> Check:
        args = [self.args[0], "1" if take_over else "0", *self.args[2:]]
        outcome, found = await self._check(keys=self.keys, args=args)
        return Check(int(outcome), int(found), self.layout)


class PurgeRefused(Exception):
    """The layout asked for must not be deleted; the message says why."""


@dataclass(frozen=True)
class Purge:
    keys: int  # deleted, or that would be with a dry run
    in_use: int | None  # the layout the marker names


def scan_pattern(app_id: str, layout: int) -> str:
    """Every key of one layout: its prefix and a ':' (so layout 3 never matches layout 30's keys)."""
    literal = state_prefix(app_id, layout) + ":"
    return "".join("\\" + c if c in "*?[]\\" else c for c in literal) + "*"


async def purge(client: Any, app_id: str, layout: int, dry_run: bool = False, batch: int = 500) -> Purge:
    """Delete every key of `layout` (SCAN by its prefix, UNLINK in batches). Refused for the layout in use,
    for layout 1 (its keys carry no version to tell them apart) and while a release of it exports."""
    marked = await client.get(marker_key(app_id))
    in_use = int(marked) if marked is not None else None
    if layout < 2:
        raise PurgeRefused("layout 1 keys carry no version to tell them from other layouts' keys")
    if layout == (in_use if in_use is not None else LAYOUT_VERSION):
        named = "the marker" if in_use is not None else "no marker yet: this release"
        raise PurgeRefused(f"layout {layout} is the one in use ({named} says so)")
    lease = own_lease_key(app_id, layout)
    # Layout 3's lease key is also held by newer releases beside the shared lease: it is not that layout's.
    shared = lease == legacy_lease_key(app_id)
    if not shared and await client.exists(lease):
        raise PurgeRefused(f"a replica of layout {layout} holds its exporter lease ({lease}): stop it first")
    count, pending, cursor = 0, [], 0
    while True:
        cursor, found = await client.scan(cursor, match=scan_pattern(app_id, layout), count=batch)
        pending += [k for k in found if not (shared and _text(k) == lease)]
        while len(pending) >= batch or (cursor == 0 and pending):
            chunk, pending = pending[:batch], pending[batch:]
            count += len(chunk) if dry_run else await client.unlink(*chunk)
        if cursor == 0:
            return Purge(count, in_use)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
