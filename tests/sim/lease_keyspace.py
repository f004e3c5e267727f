"""The exporter simulator's Redis: the lease scripts' keys kept in Lua, so a lease round never leaves Lua.

A lease round (tables/lease.py's HOLD_LUA) makes a dozen `redis.call`s; through the Python keyspace
(tests/sim/keyspace.py) each crosses from Lua to Python and back, which made the script runs about half
of the exporter search's time. Here the keys live in Lua tables and `redis.call` is a Lua function, doing
what keyspace.py does for the commands and arguments the lease scripts use (and those of the build before the
shared lease, tests/sim/releases.py: GET, SET PX, PEXPIRE, DEL), on the same clock (one instant
per script, TIME as keyspace.py answers it): hashes keep their fields in insertion order, keys expire when
read at or after their time, a number argument becomes its integer text.

Anything else (another command or option, a wrong type, a count of arguments the scripts never send, a
number that is not an integer below 2^53, or below 10^15 where Redis reads one, redis.pcall) is not
modelled: it raises NotImplementedError, which no lease error handler catches, so the search stops rather
than go on with a Redis that answers differently. tests/unit/sim/test_lease_keyspace.py holds the two
keyspaces to the same replies and keys over random lease rounds; tests/sim/keyspace.py stays the model
differential tests hold to a real redis-server.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NoReturn

from tests.sim.lua_redis import Scripts, _shared

_KEYSPACE = r"""function(unmodeled)
  local type, floor, format, find, byte, tonumber, tostring, select, insert, remove =
    type, math.floor, string.format, string.find, string.byte, tonumber, tostring, select, table.insert, table.remove
  local data, expires = {}, {}  -- key -> string, or {order = {fields}, values = {field -> value}}
  local now_ms, time_s, time_us = 0, '0', '0'

  local function live(key)
    local at = expires[key]
    if at ~= nil and at <= now_ms then data[key], expires[key] = nil, nil end
    return data[key]
  end
  local function hash(key)  -- live(key), a hash or nil
    local at = expires[key]
    if at ~= nil and at <= now_ms then data[key], expires[key] = nil, nil end
    local found = data[key]
    if found ~= nil and type(found) ~= 'table' then unmodeled('a hash command on a string key') end
    return found
  end
  local function text(x)  -- keyspace.py's text of an argument
    if type(x) == 'string' then return x end
    if type(x) == 'number' and x == floor(x) and x > -2^53 and x < 2^53 then return format('%d', x) end
    return unmodeled('an argument that is neither text nor an integer below 2^53: ' .. tostring(x))
  end
  local function integer(x)  -- text(x) as keyspace.py's redis_int reads it, within what a double holds
    if type(x) == 'number' and x == floor(x) and x > -1e15 and x < 1e15 then return x end
    x = text(x)
    if x == '0' or (#x <= 16 and find(x, '^%-?[1-9]%d*$') and #x - (byte(x) == 45 and 1 or 0) <= 15) then
      return tonumber(x)
    end
    return unmodeled('an integer argument outside what the lease scripts send: ' .. x)
  end
  local function miscounted()
    return unmodeled('that count of arguments')
  end

  -- Commands of a fixed count of arguments see one more: an argument the lease scripts never pass (nil,
  -- which keyspace.py refuses too) or one too many ends the run as miscounted.
  local commands = {}
  function commands.TIME(extra)
    if extra ~= nil then miscounted() end
    return {time_s, time_us}
  end
  function commands.GET(key, extra)
    if key == nil or extra ~= nil then miscounted() end
    local found = live(type(key) == 'string' and key or text(key))
    if type(found) == 'table' then unmodeled('GET of a hash') end
    return found or false
  end
  function commands.SET(...)
    local n, key, value, option, ms = select('#', ...), ...
    key, value = text(key), text(value)
    local at = nil
    if n == 4 and text(option):upper() == 'PX' then
      local px = integer(ms)
      if px <= 0 then unmodeled('a SET whose expiry is not positive') end
      at = now_ms + px
    elseif n ~= 2 then
      unmodeled('SET with other options')
    end
    data[key], expires[key] = value, at
    return {ok = 'OK'}
  end
  function commands.DEL(...)
    local n = select('#', ...)
    if n < 1 then miscounted() end
    local keys, gone, seen = {...}, 0, {}
    for i = 1, n do
      local key = text(keys[i])
      if not seen[key] then
        seen[key] = true
        if live(key) ~= nil then data[key], expires[key] = nil, nil; gone = gone + 1 end
      end
    end
    return gone
  end
  function commands.PEXPIRE(key, ms, extra)
    if ms == nil or extra ~= nil then miscounted() end
    key = type(key) == 'string' and key or text(key)
    local at = now_ms + integer(ms)
    if live(key) == nil then return 0 end
    if at <= now_ms then data[key], expires[key] = nil, nil else expires[key] = at end
    return 1
  end
  function commands.PTTL(key, extra)
    if key == nil or extra ~= nil then miscounted() end
    key = text(key)
    if live(key) == nil then return -2 end
    local at = expires[key]
    if at == nil then return -1 end
    return at - now_ms
  end
  function commands.HGET(key, field, extra)
    if field == nil or extra ~= nil then miscounted() end
    local h = hash(type(key) == 'string' and key or text(key))
    if h == nil then return false end
    -- Only text is stored as a field: a field found is text; one not found may be a number to convert.
    return h.values[field] or h.values[text(field)] or false
  end
  function commands.HMGET(key, ...)
    local n = select('#', ...)
    if n < 1 then miscounted() end
    local h, fields, out = hash(text(key)), {...}, {}
    local values = h and h.values or {}
    for i = 1, n do
      local field = fields[i]
      out[i] = values[type(field) == 'string' and field or text(field)] or false
    end
    return out
  end
  function commands.HGETALL(key, extra)
    if key == nil or extra ~= nil then miscounted() end
    local h, out = hash(type(key) == 'string' and key or text(key)), {}
    if h ~= nil then
      local values = h.values
      for i, field in ipairs(h.order) do out[2 * i - 1], out[2 * i] = field, values[field] end
    end
    return out
  end
  function commands.HSET(key, ...)
    local n = select('#', ...)
    if n < 2 or n % 2 == 1 then miscounted() end
    key = type(key) == 'string' and key or text(key)
    local h = hash(key)
    if h == nil then h = {order = {}, values = {}}; data[key] = h end
    local pairs_, values, added = {...}, h.values, 0
    for i = 1, n, 2 do
      local field, value = pairs_[i], pairs_[i + 1]
      if type(field) ~= 'string' then field = text(field) end
      if type(value) ~= 'string' then value = text(value) end
      if values[field] == nil then insert(h.order, field); added = added + 1 end
      values[field] = value
    end
    return added
  end
  function commands.HDEL(key, ...)
    local n = select('#', ...)
    if n < 1 then miscounted() end
    key = text(key)
    local h = hash(key)
    if h == nil then return 0 end
    local fields, values, order, gone = {...}, h.values, h.order, 0
    for i = 1, n do
      local field = text(fields[i])
      if values[field] ~= nil then
        values[field] = nil
        for j = 1, #order do
          if order[j] == field then remove(order, j); break end
        end
        gone = gone + 1
      end
    end
    if #order == 0 then data[key], expires[key] = nil, nil end
    return gone
  end

  local keyspace = {}
  function keyspace.call(command, ...)
    local run = commands[command]
    if run == nil then unmodeled('the command ' .. tostring(command)) end
    return run(...)
  end
  function keyspace.pcall() unmodeled('redis.pcall') end
  function keyspace.at(ms, s, us) now_ms, time_s, time_us = ms, s, us end
  function keyspace.hmget(ms, key, ...)
    now_ms = ms
    return unpack(keyspace.call('HMGET', key, ...))
  end
  function keyspace.get(ms, key)
    now_ms = ms
    return commands.GET(key)
  end
  function keyspace.dump()  -- every key, expired ones too: key -> value or {field, value, ...}, key -> ms
    local out = {}
    for key, value in pairs(data) do
      if type(value) == 'table' then
        local flat = {}
        for i, field in ipairs(value.order) do flat[2 * i - 1], flat[2 * i] = field, value.values[field] end
        value = flat
      end
      out[key] = value
    end
    return out, expires
  end
  return keyspace
end"""


def _unmodeled(what: str) -> NoReturn:
    raise NotImplementedError(f"the lease keyspace does not model {what} (tests/sim/lease_keyspace.py)")


class LeaseKeyspace:
    """What Scripts and the exporter's client use of a keyspace, its keys in Lua (one per simulated Redis)."""

    over_maxmemory = False

    def __init__(self, clock_s: Callable[[], float]) -> None:
        self.clock_s = clock_s
        runtime, bodies = _shared()
        make = bodies.get(_KEYSPACE)
        if make is None:
            make = bodies[_KEYSPACE] = runtime.eval(_KEYSPACE)
        self.lua = make(_unmodeled)

    def begin(self, on_first_write: Callable[[], None] | None = None, **flags: bool) -> None:
        """A script run starts, at one instant: keyspace.py's clock, read once."""
        if on_first_write is not None or flags.get("read_only"):
            _unmodeled("a watched or read-only script run")
        now_s = self.clock_s()
        now_us = int(now_s * 1_000_000)
        self.lua.at(int(now_s * 1000), str(now_us // 1_000_000), str(now_us % 1_000_000))

    def end(self) -> None:
        pass

    def hmget(self, key: str, fields: list[str]) -> list[str | None]:
        found = self.lua.hmget(int(self.clock_s() * 1000), key, *fields)
        found = found if type(found) is tuple else (found,)
        return [None if value is False else value for value in found]

    def get(self, key: str) -> str | None:
        """GET, as the build before the shared lease reads its lease key on every scrape."""
        found = self.lua.get(int(self.clock_s() * 1000), key)
        return None if found is False else str(found)

    def dump(self) -> tuple[dict[str, Any], dict[str, int]]:
        """Every key as keyspace.py holds it (str, or dict in field order) and its expiry in ms."""
        data, expires = self.lua.dump()
        out: dict[str, Any] = {}
        for key, value in data.items():
            if type(value) is str:
                out[key] = value
            else:
                flat = [value[i] for i in range(1, len(value) + 1)]
                out[key] = dict(zip(flat[::2], flat[1::2], strict=True))
        return out, {key: int(ms) for key, ms in expires.items()}


class LeaseScripts(Scripts):
    """What LeaseStore calls of a redis-py client, over a LeaseKeyspace: `redis.call` is its Lua function."""

    def __init__(self, keyspace: LeaseKeyspace) -> None:
        super().__init__(keyspace, shared=True)  # type: ignore[arg-type]
        self.leases = keyspace
        self._redis.call, self._redis.pcall = keyspace.lua.call, keyspace.lua.pcall

    async def hmget(self, key: str, fields: list[str]) -> list[str | None]:
        return self.leases.hmget(key, fields)

    async def get(self, key: str) -> str | None:
        return self.leases.get(key)
