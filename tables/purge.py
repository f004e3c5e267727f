"""Removing one key layout's state (`python -m streams.tools.layout purge-layout`): every key of the layout,
one-shard (`{app}:v<N>:*`) and sharded (`{app:s<k>}:v<N>:*`, whatever the shard count), refused while a
replica of that layout runs. UPGRADING.md says when; RUNBOOK.md uses it to rebuild state from the topics.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from redis.asyncio.cluster import RedisCluster
from redis.exceptions import ResponseError

from tables.keys import LAYOUT_VERSION, state_prefix
from tables.layout import BROKEN, bad_marker, marker_key, members_key, own_lease_key, wrong_types
from tables.lease import legacy_lease_key
from tables.shards import MAX_SHARDS, parse_marker, shard_tag

# KEYS: the marker, the members hash, the layout's own lease key. ARGV: the layout to purge, the layout of
# the release running the purge, "1" for a dry run, "1" when that lease key is the one every holder takes
# (layout 3's). The reply: {0, marker} may go on; else {why, detail}. The marker is deleted here, when it
# names the layout (in one shard or several: tables/shards.py), so that no replica of another layout reads
# it between the check and the deletion.
PURGE_LUA = """#!lua flags=allow-oom
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local layout = ARGV[1]
local marked = redis.call('GET', KEYS[1])
if marked and not (string.match(marked, '^[1-9]%d*$') or string.match(marked, '^[1-9]%d*:s[1-9]%d*$')) then
  return {4, marked}
end
if not marked and layout == ARGV[2] then return {1, ''} end
local members = redis.call('HGETALL', KEYS[2])
for i = 1, #members, 2 do
  local l, untl = string.match(members[i + 1], '^(%d+):(%d+)$')
  if l == layout and tonumber(untl) > now then return {2, members[i] .. ':' .. (tonumber(untl) - now)} end
end
if ARGV[4] ~= '1' then
  local holder = redis.call('GET', KEYS[3])
  if holder then return {3, holder} end
end
if marked and string.match(marked, '^%d+') == layout and ARGV[3] ~= '1' then redis.call('DEL', KEYS[1]) end
return {0, marked or ''}
"""


class PurgeRefused(Exception):
    """The layout asked for must not be deleted; the message says why."""


@dataclass(frozen=True)
class Purge:
    keys: int  # deleted, or that would be with a dry run
    in_use: int | None  # the layout the marker named
    marker_cleared: bool = False  # the marker named the purged layout, and is gone with it
    in_use_shards: int = 1  # the shard count the marker named


def scan_pattern(app_id: str, layout: int) -> str:
    """Every one-shard key of one layout: its prefix and a ':' (so layout 3 never matches layout 30's keys)."""
    return _glob_literal(state_prefix(app_id, layout) + ":") + "*"


def layout_keys(app_id: str, layout: int) -> re.Pattern[str]:
    """Every key of one layout, one-shard or in any shard: `{app}:v<N>:` or `{app:s<k>}:v<N>:`. App ids hold
    no ':' (streams/env_reader.py), so no other app's keys match."""
    return re.compile(r"\{" + re.escape(app_id) + r"(?::s(?:0|[1-9][0-9]*))?\}:v" + str(layout) + ":")


async def purge(client: Any, app_id: str, layout: int, dry_run: bool = False, batch: int = 500) -> Purge:
    """Delete every key of `layout` (SCAN, UNLINK in batches). Refused while a replica of it runs, for
    layout 1 (its keys carry no version to tell them apart) and, with no marker yet, for the layout of the
    release running it. The marker goes too when it names `layout`."""
    if layout < 2:
        raise PurgeRefused("layout 1 keys carry no version to tell them from other layouts' keys")
    lease = own_lease_key(app_id, layout)
    # Layout 3's lease key is also held by newer releases beside the shared lease: it is not that layout's.
    shared = lease == legacy_lease_key(app_id)
    keys = [marker_key(app_id), members_key(app_id), lease]
    args = [str(layout), str(LAYOUT_VERSION), "1" if dry_run else "0", "1" if shared else "0"]
    try:
        why, detail = await client.register_script(PURGE_LUA)(keys=keys, args=args)
    except ResponseError as exc:
        if not str(exc).startswith("WRONGTYPE"):
            raise
        raise PurgeRefused(await wrong_types(client, keys)) from exc
    _refuse(int(why), _text(detail), app_id, layout, lease)
    in_use, in_use_shards = parse_marker(_text(detail)) or (None, 1)
    # One pass over the app's tags, filtered here: a SCAN per possible shard would walk the keyspace up
    # to MAX_SHARDS times, and the shards of a count no marker names any more must go too.
    wanted, count, pending = layout_keys(app_id, layout), 0, []
    for node in await _scan_nodes(client, app_id):
        cursor = 0
        while True:
            cursor, found = await _scan(client, node, cursor, _glob_literal("{" + app_id) + "*", batch)
            pending += [k for k in map(_text, found) if wanted.match(k) and not (shared and k == lease)]
            while len(pending) >= batch:
                chunk, pending = pending[:batch], pending[batch:]
                count += len(chunk) if dry_run else await client.unlink(*chunk)
            if cursor == 0:
                break
    if pending:
        count += len(pending) if dry_run else await client.unlink(*pending)
    return Purge(count, in_use, in_use == layout and not dry_run, in_use_shards)


async def _scan_nodes(client: Any, app_id: str) -> list[Any]:
    """Where the app's keys can be: in a Redis Cluster, the primaries of its tag's slot and of every shard
    tag's (each primary asked once); elsewhere the one server (None)."""
    if not isinstance(client, RedisCluster):
        return [None]
    await client.initialize()
    nodes: dict[str, Any] = {}
    for tag in ["{" + app_id + "}", *(shard_tag(app_id, k) for k in range(MAX_SHARDS))]:
        node = client.get_node_from_key(tag)
        assert node is not None  # after initialize, every slot has a primary (or initialize raised)
        nodes.setdefault(node.name, node)
    return list(nodes.values())


async def _scan(client: Any, node: Any, cursor: int, match: str, count: int) -> tuple[int, list[Any]]:
    if node is None:
        return await client.scan(cursor, match=match, count=count)  # type: ignore[no-any-return]
    # One node asked, yet a cluster client answers as for many: {node name: cursor}, keys.
    cursors: Any
    cursors, found = await client.scan(cursor, match=match, count=count, target_nodes=node)
    return int(cursors[node.name]), list(found)


def _glob_literal(text: str) -> str:
    return "".join("\\" + c if c in "*?[]\\" else c for c in text)


def _refuse(why: int, detail: str, app_id: str, layout: int, lease: str) -> None:
    if why == 1:
        raise PurgeRefused(f"layout {layout} is the one in use (no marker yet: this release says so)")
    if why == 2:
        replica, left_ms = detail.rsplit(":", 1)
        raise PurgeRefused(
            f"replica {replica} of layout {layout} is running (it counts as running for {int(left_ms) / 1000:.0f}s "
            "more unless it renews): stop every replica of that layout first"
        )
    if why == 3:
        raise PurgeRefused(f"a replica of layout {layout} holds its exporter lease ({lease}): stop it first")
    if why == BROKEN:
        raise PurgeRefused(bad_marker(app_id, detail))


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
