"""Many reads of the tables in one atomic, read-only step: one Lua script call, one reply.

A scrape reads hundreds of keys (one hash per labelled org, plus the totals). Queued in a MULTI/EXEC
pipeline, the client packs and parses each command and its QUEUED reply apart; sent as one script call,
it packs one command and parses one nested reply. A script runs atomically as MULTI/EXEC does, so
totals and labelled parts still come from one instant, and `flags=no-writes` has Redis refuse any write.
"""

from __future__ import annotations

from typing import Any

import orjson
import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster

# The fields HMGET asks for travel as lists, each sent once however many keys use it, all in one JSON
# argument that Redis's cjson decodes in C: packing a command costs the client per argument, and a
# 10,000-org scrape asks thousands of fields. JSON carries any label value, NUL and newlines included.
# HMGET in chunks: Lua's unpack() is bounded by the C stack (about 8,000 values), and a label cap or a
# field list (tokens: two fields per org) can be larger than that.
READ_LUA = """#!lua flags=no-writes
if ARGV[4] then
  -- A cluster (ARGV[4] names the slot): only KEYS[1] is declared, so under ASKING on a slot's target the
  -- keys still on its source would read as empty. Never read a moving slot: TRYAGAIN, which the cluster
  -- client retries with its back-off, as it would a multi-key command on a slot half moved.
  local nodes = redis.pcall('CLUSTER', 'NODES')
  if type(nodes) ~= 'string' then
    return redis.error_reply('cluster state hidden (CLUSTER NODES): ' .. tostring(nodes['err']))
  end
  if string.find(nodes, '[' .. ARGV[4] .. '-', 1, true) then
    return redis.error_reply('TRYAGAIN slot ' .. ARGV[4] .. ' is moving')
  end
end
local lists = cjson.decode(ARGV[2])
local names = cjson.decode(ARGV[3])
local out, i = {}, 0
for op in string.gmatch(ARGV[1], '%S+') do
  i = i + 1
  local kind = string.sub(op, 1, 1)
  if kind == 'G' then
    out[i] = redis.call('HGETALL', names[i])
  elseif kind == 'S' then
    out[i] = redis.call('SCARD', names[i])
  elseif kind == 'L' then
    out[i] = redis.call('HLEN', names[i])
  elseif kind == 'M' then
    local fields, found = lists[tonumber(string.sub(op, 2))], {}
    if #fields > 0 and #fields <= 1000 then
      found = redis.call('HMGET', names[i], unpack(fields))
    else
      for first = 1, #fields, 1000 do
        local part = redis.call('HMGET', names[i], unpack(fields, first, math.min(#fields, first + 999)))
        for j = 1, #part do
          found[#found + 1] = part[j]
        end
      end
    end
    out[i] = found
  else
    return redis.error_reply('unknown read ' .. op)
  end
end
return out
"""


class Reads:
    """Reads queued in order, run in one script call; replies come back in the same order."""

    def __init__(self) -> None:
        self._keys: list[str] = []
        self._ops: list[str] = []
        self._lists: dict[int, tuple[int, list[str]]] = {}  # id of a field list -> (its number, the list)
        self.largest: set[int] = set()  # reads whose values merge across shards by their largest, not sum

    @property
    def ops(self) -> list[str]:
        """Each read's kind, in order: G (HGETALL), M<n> (HMGET of field list n), S (SCARD), L (HLEN)."""
        return self._ops

    def hgetall(self, key: str, largest: bool = False) -> None:
        if largest:
            self.largest.add(len(self._ops))
        self._keys.append(key)
        self._ops.append("G")

    def hmget(self, key: str, fields: list[str]) -> None:
        """Values of `fields` in order, None where absent. Pass the same list object for keys that ask the
        same fields: it is sent once."""
        number, _ = self._lists.setdefault(id(fields), (len(self._lists) + 1, fields))
        self._keys.append(key)
        self._ops.append(f"M{number}")

    def scard(self, key: str) -> None:
        self._keys.append(key)
        self._ops.append("S")

    def hlen(self, key: str) -> None:
        self._keys.append(key)
        self._ops.append("L")

    async def execute(self, client: aioredis.Redis) -> list[Any]:
        return self.as_read(await self.replies(client))

    def as_read(self, replies: list[Any]) -> list[Any]:
        """The script's replies as each command answers: HGETALL's flat list as a dict."""
        return [_as_dict(r) if op == "G" else r for r, op in zip(replies, self._ops, strict=True)]

    async def replies(self, client: aioredis.Redis) -> list[Any]:
        """The script's replies as sent: HGETALL's as flat lists of field, value."""
        if not self._keys:
            return []
        lists = [fields for _, fields in sorted(self._lists.values(), key=lambda entry: entry[0])]
        args: list[str | bytes] = [" ".join(self._ops), orjson.dumps(lists), orjson.dumps(self._keys)]
        # The keys travel as one JSON argument too, the first declared for routing: every key read at once
        # shares its hash tag (one shard's, or the app's), and a cluster client would else hash each of the
        # thousand keys to check their slot, per scrape. The script reads keys of that one slot only, as the
        # batch script does, and refuses while that slot moves.
        if isinstance(client, RedisCluster):
            args.append(str(client.keyslot(self._keys[0])))
        return list(await client.register_script(READ_LUA)(keys=self._keys[:1], args=args))


def _as_dict(flat: list[Any]) -> dict[Any, Any]:
    it = iter(flat)
    return dict(zip(it, it, strict=True))
