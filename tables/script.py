"""The batch write as one Lua script: the payload `RedisStore.build_payload` makes, applied atomically.

Replies: {1, ''} written; {0, field} an offset is not the expected one; {2, key} a key holds another
type; {3, key} the writer's lineage count is not the one it expects; {4, key, field} a stored value the
batch increments or compares is not a number; {5, slot} the state's slot is moving between cluster
primaries; {6, error} the Redis user may not run CLUSTER NODES, so a moving slot cannot be
told; {7, key, moves} a batch before this one stopped halfway (see below); {8, field, watermark} a member
shard of sharded state lacks members below where this write starts (below). Nothing is written unless 1.

The shebang makes Redis (7.0 and later) refuse the script whole when it is over maxmemory, instead of
failing at a write halfway. Redis never rolls a script back, so every other check that can fail
(offsets, key types, every stored value it increments or compares) comes before the first write, no
stored total can overflow (amounts carry their remainder into whole units), and the offsets are written
last. What no check can foresee (a Redis user allowed the checks' commands but not a later write's: Redis
7.0 answers `ERR The user executing the script can't run this command` there, after the writes before it)
still stops a script halfway. So the first write sets a marker, `<offsets key>:writing` (same hash tag),
naming the batch's offset moves, and the last deletes it: a marker found at the start means the tables
hold part of a batch whose offsets never moved, and every batch is refused (reply 7) until an operator
has chosen how to repair (RUNBOOK.md, StateWritesRefused), instead of that part counting again at every
retry. The simulator runs this same text in Lua over its simulated keyspace (tests/sim/lua_redis.py); it
is no cluster, so reply 5 (a moving slot) never comes there.

Rolling windows (`act`): each subject (a user, an org) keeps its active local days as a sorted list,
compacted to the last day up to today and the days after it (a future-dated event's day). For every two
consecutive days (a, b) of a subject, or (a, none) for its last, the hash of day a counts it in field b:
a subject is active in the window [t - n + 1, t] exactly when its pair (a, b) has a in the window and
b > t, so a scrape sums the fields b > t of at most n small hashes, whatever the number of subjects.
Days dropped by compaction are only ever the first of a pair whose second is not after today: no later
scrape counts them. A subject whose last day left the 30-day reach is forgotten (and pruned by the
sweep, one bucket per write).

Sharded state (tables/shards.py, docs/design.md "Sharded state") runs this same script for both of its
writes: a partition shard's payload is a one-shard payload without members; a member shard's has no sums
and no offset moves but a `wm` section, [field, from, to, topic ID, reset] per partition of the batch, in
its KEYS[1] (the shard's watermarks hash). A watermark claims that every member of the partition's records
below it is in the shard: a write of the records [from, to) keeps that true only when from is '' (never
written) or the watermark is at least from, and then moves it to the larger of the two; otherwise the
shard went back (a failover, an older snapshot) and the write is refused (reply 8) so that the range is
read again. The topic ID (when the broker gives one) is kept beside it (field + ':id'): a watermark of
another ID is of a topic since deleted, and holds nothing of this one (reply 8, from its start). The move
to a re-created topic ('1' in reset), and a write from the log start over a watermark of another ID, set
the watermark and its ID whatever they were: nothing of the new topic lies below where they start.
One-shard payloads have no `wm` section.
"""

from __future__ import annotations

APPLY_LUA = """#!lua
-- In a Redis Cluster (ARGV[2] names the state's slot): never while that slot moves between primaries.
-- Only KEYS[1] is declared, so Redis routes on it alone: the keys a batch writes may be on either side,
-- and run here under ASKING, a key still on the source reads as missing. Refused whole (reply 5), the
-- batch is sent again once the slot has moved. CLUSTER NODES shows this node's own [slot->-id] (moving
-- out) or [slot-<-id] (moving in). Checked before the payload is decoded: a retry costs no decode. A
-- Redis user that may not run CLUSTER NODES cannot tell, so nothing is written (reply 6): skipping the
-- check could split the state across two primaries without a sign.
if ARGV[2] then
  local nodes = redis.pcall('CLUSTER', 'NODES')
  if type(nodes) ~= 'string' then return {6, tostring(nodes['err'] or nodes)} end
  if string.find(nodes, '[' .. ARGV[2] .. '-', 1, true) then return {5, ARGV[2]} end
end
local p = cjson.decode(ARGV[1])
local seen = {}
local function is(key, kind)
  if seen[key] == nil then
    local t = redis.call('TYPE', key)['ok']
    seen[key] = (t == 'none' or t == kind)
  end
  return seen[key]
end
-- Left by a batch that stopped after its first write (the module's doc): refused, whatever the offsets.
local writing = KEYS[1] .. ':writing'
if not is(writing, 'string') then return {2, writing} end
local left = redis.call('GET', writing)
if left then return {7, writing, left} end
-- Before the offsets' HGETs, which Redis would answer with WRONGTYPE: refused by name (reply 2).
if not is(KEYS[1], 'hash') then return {2, KEYS[1]} end
for _, o in ipairs(p.off) do
  local cur = redis.call('HGET', KEYS[1], o[1])
  if o[2] == '' then
    if cur then return {0, o[1]} end
  elseif cur ~= o[2] then
    return {0, o[1]}
  end
end
-- A member shard's watermarks (the module's doc): refused unless nothing is missing below the write.
local wm = p.wm
if wm == cjson.null then wm = nil end
for _, m in ipairs(wm or {}) do
  local at = redis.call('HGET', KEYS[1], m[1])
  if at and not string.find(at, '^%d+$') then return {4, KEYS[1], m[1]} end
  if m[5] ~= '1' and m[2] ~= '' then
    local id = redis.call('HGET', KEYS[1], m[1] .. ':id')
    if m[4] ~= '' and id and id ~= m[4] then return {8, m[1], ''} end
    if not (at and tonumber(at) >= tonumber(m[2])) then return {8, m[1], at or ''} end
  end
end
-- The writer's lineage (tables/seen.py): it left out members it wrote before, so every write it made
-- since must still be here. A missing or older count means Redis lost some: refuse, it sends in full.
local lin = p.lineage
if lin == nil or lin == cjson.null then lin = nil end
if lin then
  if not is(lin[1], 'string') then return {2, lin[1]} end
  if lin[2] ~= '' and redis.call('GET', lin[1]) ~= lin[2] then return {3, lin[1]} end
end
for _, h in ipairs(p.hincr) do if not is(h[1], 'hash') then return {2, h[1]} end end
for _, a in ipairs(p.amount) do
  if not (is(a[1], 'hash') and is(a[1] .. p.lo, 'hash')) then return {2, a[1]} end
end
for _, s in ipairs(p.sadd) do if not is(s[1], 'set') then return {2, s[1]} end end
for _, u in ipairs(p.usersadd) do
  if not (is(u[1], 'set') and is(u[2], 'hash')) then return {2, u[1]} end
end
for _, m in ipairs(p.hmax) do if not is(m[1], 'hash') then return {2, m[1]} end end
for _, e in ipairs(p.expire) do if not is(e[1], e[3]) then return {2, e[1]} end end
for _, a in ipairs(p.admit) do if not is(a[1], 'set') then return {2, a[1]} end end
-- Which of the batch's users each day's set holds already (a read, before any write). A user in a kept
-- day's set had that day put into its window list by the write that added it, so the windows skip it.
local flags_of, present = {}, {}
for n, u in ipairs(p.usersadd) do
  local members, flags, day = u[3], {}, present[u[5]] or {}
  present[u[5]] = day
  for i = 1, #members, 4000 do
    local found = redis.call('SMISMEMBER', u[1], unpack(members, i, math.min(i + 3999, #members)))
    for j = 1, #found do
      flags[i + j - 1] = found[j]
      if found[j] == 1 then day[members[i + j - 1]] = true end
    end
  end
  flags_of[n] = flags
end
-- Rolling windows, computed before any write: new day lists, pair-count changes, the sweep's deletions.
local w = p.win
if w == cjson.null then w = nil end  -- a batch without raw records has no windows section
local lists, pairs_by_key, pair_keys, sweep, cursor = {}, {}, {}, {}, nil
local function bump(key, b, n)
  local h = pairs_by_key[key]
  if not h then h = {}; pairs_by_key[key] = h; pair_keys[#pair_keys + 1] = key end
  h[b] = (h[b] or 0) + n
end
if w then
  if not is(w.state, 'hash') then return {2, w.state} end
  local at = redis.call('HGET', w.state, 'sweep') or '0'
  if not string.find(at, '^%d+$') then return {4, w.state, 'sweep'} end
  cursor = tonumber(at)
  for si, s in ipairs(w.subjects) do
    local bk = s[1] .. cursor
    if not is(bk, 'hash') then return {2, bk} end
    local found = redis.call('HGETALL', bk)
    local stale = {}
    for i = 1, #found, 2 do
      local last = tonumber(string.match(found[i + 1], '(%d+)$'))
      if not last then return {4, bk, found[i]} end
      if last < w.horizon then stale[#stale + 1] = found[i] end
    end
    if #stale > 0 then sweep[#sweep + 1] = {bk, stale} end
    for _, e in ipairs(s[3]) do
      local key, member, todo = s[1] .. e[1], e[2], e[3]
      if si == 1 then  -- the first subject is users, whose members are the day sets' members
        todo = {}
        for _, d in ipairs(e[3]) do
          if not (present[d] and present[d][member]) then todo[#todo + 1] = d end
        end
      end
      if #todo > 0 then
        if not is(key, 'hash') then return {2, key} end
        local cur = redis.call('HGET', key, member)
        local days = {}
        if cur then for x in string.gmatch(cur, '%d+') do days[#days + 1] = tonumber(x) end end
        if #days > 0 and days[#days] < w.horizon then days = {} end
        for _, d in ipairs(todo) do
          local pos, found = #days + 1, false
          for i = 1, #days do
            if days[i] == d then found = true; break end
            if days[i] > d then pos = i; break end
          end
          local skip = found or (pos == 1 and #days > 0 and days[1] <= w.today)
          if not skip then
            local pred, succ = days[pos - 1], days[pos] or w.none
            if pred and pred >= w.horizon then
              bump(s[2] .. pred, succ, -1)
              bump(s[2] .. pred, d, 1)
            end
            bump(s[2] .. d, succ, 1)
            table.insert(days, pos, d)
          end
        end
        local keep = 1
        for i = 1, #days do if days[i] <= w.today then keep = i end end
        local out = {}
        for i = keep, #days do out[#out + 1] = days[i] end
        local value = table.concat(out, ',')
        if value ~= cur then lists[#lists + 1] = {key, member, value} end
      end
    end
  end
  for _, key in ipairs(pair_keys) do if not is(key, 'hash') then return {2, key} end end
end
-- Every stored value the batch increments or compares must be a number, checked here, before the first
-- write: Redis keeps what a script wrote before a runtime error, so a batch failing halfway would count
-- its first part again on every retry. HINCRBY takes a decimal integer without '+' or leading zeros;
-- at most 18 characters here, so that no increment can overflow either. Once per field and batch.
local function bad_int(key, field)
  local v = redis.call('HGET', key, field)
  return v and not (v == '0' or (#v <= 18 and string.find(v, '^%-?[1-9]%d*$')))
end
for _, h in ipairs(p.hincr) do if bad_int(h[1], h[2]) then return {4, h[1], h[2]} end end
for _, a in ipairs(p.amount) do
  if bad_int(a[1], a[2]) then return {4, a[1], a[2]} end
  if bad_int(a[1] .. p.lo, a[2]) then return {4, a[1] .. p.lo, a[2]} end
end
for _, u in ipairs(p.usersadd) do
  for _, r in ipairs(u[4]) do if bad_int(u[2], r[1]) then return {4, u[2], r[1]} end end
end
for _, m in ipairs(p.hmax) do
  local cur = redis.call('HGET', m[1], m[2])
  if cur and not tonumber(cur) then return {4, m[1], m[2]} end
end
for _, key in ipairs(pair_keys) do
  for b, n in pairs(pairs_by_key[key]) do
    if n ~= 0 and bad_int(key, b) then return {4, key, tostring(b)} end
  end
end
-- The first write: the marker, naming the offsets this batch moves (field from>to), deleted by the last.
local moves = {}
for _, o in ipairs(p.off) do moves[#moves + 1] = o[1] .. ' ' .. o[2] .. '>' .. o[3] end
for _, m in ipairs(wm or {}) do moves[#moves + 1] = m[1] .. ' members ' .. m[2] .. '>' .. m[3] end
redis.call('SET', writing, table.concat(moves, ', '))
if w then redis.call('HSET', w.state, 'sweep', (cursor + 1) % w.buckets) end
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
-- A day's users, and per org the users new to the day: the runs give each org's members, in order.
for n, u in ipairs(p.usersadd) do
  local members, flags = u[3], flags_of[n]
  for i = 1, #members, 4000 do
    redis.call('SADD', u[1], unpack(members, i, math.min(i + 3999, #members)))
  end
  local pos = 1
  for _, r in ipairs(u[4]) do
    local new = 0
    for j = pos, pos + r[2] - 1 do if flags[j] == 0 then new = new + 1 end end
    pos = pos + r[2]
    if new > 0 then redis.call('HINCRBY', u[2], r[1], new) end
  end
end
for _, m in ipairs(p.hmax) do
  local cur = redis.call('HGET', m[1], m[2])
  if (not cur) or tonumber(cur) < tonumber(m[3]) then redis.call('HSET', m[1], m[2], m[3]) end
end
-- The new day lists before the sweep, which leaves alone the members they rewrite (the same result as
-- deleting and setting again): a sweep emptying a bucket deletes the key, and a write to a key deleted
-- in this script is refused by a cluster node whose slot is moving, which would stop the script halfway.
local rewritten = {}
for _, l in ipairs(lists) do
  redis.call('HSET', l[1], l[2], l[3])
  rewritten[l[1]] = rewritten[l[1]] or {}
  rewritten[l[1]][l[2]] = true
end
for _, s in ipairs(sweep) do
  local fields, kept = {}, rewritten[s[1]] or {}
  for _, f in ipairs(s[2]) do if not kept[f] then fields[#fields + 1] = f end end
  for i = 1, #fields, 4000 do
    redis.call('HDEL', s[1], unpack(fields, i, math.min(i + 3999, #fields)))
  end
end
for _, key in ipairs(pair_keys) do
  local day = tonumber(string.match(key, '(%d+)$'))
  for b, n in pairs(pairs_by_key[key]) do
    if n ~= 0 then redis.call('HINCRBY', key, b, n) end
  end
  redis.call('EXPIRE', key, (day - w.today + w.reach_days) * 86400)
end
for _, e in ipairs(p.expire) do redis.call('EXPIRE', e[1], e[2]) end
for _, a in ipairs(p.admit) do
  local room = tonumber(a[2]) - redis.call('SCARD', a[1])
  for _, v in ipairs(a[3]) do
    if room <= 0 then break end
    if v ~= p.other then room = room - redis.call('SADD', a[1], v) end
  end
end
if lin then redis.call('SET', lin[1], lin[3], 'EX', lin[4]) end
for _, m in ipairs(wm or {}) do
  local id = redis.call('HGET', KEYS[1], m[1] .. ':id')
  local other = m[4] ~= '' and id and id ~= m[4]  -- from '' here (else refused above): from the log start
  if m[5] == '1' or other or tonumber(m[3]) > tonumber(redis.call('HGET', KEYS[1], m[1]) or '-1') then
    redis.call('HSET', KEYS[1], m[1], m[3])
  end
  if m[4] ~= '' then redis.call('HSET', KEYS[1], m[1] .. ':id', m[4]) end
end
for _, o in ipairs(p.off) do redis.call('HSET', KEYS[1], o[1], o[3]) end
-- Last, after the offsets: a DEL refused here leaves a whole batch marked, which refuses (safe), where a
-- marker deleted before an offsets write that failed would let the batch's first part count twice.
redis.call('DEL', writing)
return {1, ''}
"""
