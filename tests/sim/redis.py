"""In-memory Redis for the simulator, behind the client calls RedisStore makes.

The batch script is carried out in Python with the Lua script's semantics (offsets checked, then the
writes, the offsets last); the real script is exercised against a real redis-server by the integration
tests. Every call is a point the simulator schedules, and each can fail before it runs, or run and lose
its reply. Redis can restart empty or from an older snapshot.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import orjson
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

if TYPE_CHECKING:
    from tests.sim.world import World

# Write outcomes the simulator picks among.
OK, FAIL_BEFORE, LOST_REPLY = "ok", "fail_before", "lost_reply"


class SimRedis:
    def __init__(self, world: World) -> None:
        self.world = world
        self.data: dict[str, Any] = {}
        self.snapshots: list[dict[str, Any]] = []
        self.down = False

    # What RedisStore calls ---------------------------------------------------------------------------
    def register_script(self, lua: str) -> Callable[..., Any]:
        async def run(keys: list[str], args: list[Any]) -> Any:
            return await self._script(keys, args)

        return run

    async def hmget(self, key: str, fields: list[str]) -> list[str | None]:
        outcome = await self.world.point("redis.read", None)
        self._fail_if(outcome.redis, before=True)
        found = self.data.get(key, {})
        return [found.get(f) for f in fields]

    async def _script(self, keys: list[str], args: list[Any]) -> Any:
        payload = orjson.loads(args[0])
        outcome = await self.world.point("redis.write", None, (keys[0], payload))
        self._fail_if(outcome.redis, before=True)
        result = self.apply_payload(keys[0], payload)
        self._fail_if(outcome.redis, before=False)
        return result

    def _fail_if(self, outcome: str, before: bool) -> None:
        if self.down:
            raise RedisConnectionError("simulated: Redis is down")
        if before and outcome == FAIL_BEFORE:
            raise RedisConnectionError("simulated: connection reset before the request ran")
        if not before and outcome == LOST_REPLY:
            raise RedisTimeoutError("simulated: the request ran, its reply was lost")

    # The batch script, in Python -----------------------------------------------------------------------
    def apply_payload(self, offkey: str, p: dict[str, Any]) -> list[Any]:
        offsets = self.data.setdefault(offkey, {})
        for field, expected, _ in p["off"]:
            cur = offsets.get(field)
            if (expected == "" and cur is not None) or (expected != "" and cur != expected):
                return [0, field]
        lineage = p.get("lineage")
        if lineage and lineage[1] and self.data.get(lineage[0]) != lineage[1]:
            return [3, lineage[0]]
        self.world.check_write(p)
        for key, field, n in p["hincr"]:
            h = self.data.setdefault(key, {})
            h[field] = str(int(h.get(field, 0)) + int(n))
        for key, field, whole, rest in p["amount"]:
            h, lo = self.data.setdefault(key, {}), self.data.setdefault(key + p["lo"], {})
            total_lo = int(lo.get(field, 0)) + int(rest)
            carry, total_lo = divmod(total_lo, p["base"])
            h[field] = str(int(h.get(field, 0)) + int(whole) + carry)
            lo[field] = str(total_lo)
        for key, members in p["sadd"]:
            self.data.setdefault(key, set()).update(members)
        # The users each day's set held before this write: the script's windows skip them (tables/script.py).
        present: dict[int, set[str]] = {}
        for key, _, members, _, index in p["usersadd"]:
            present.setdefault(index, set()).update(m for m in members if m in self.data.get(key, set()))
        for key, org_key, members, runs, _ in p["usersadd"]:
            day_set, per_org = self.data.setdefault(key, set()), self.data.setdefault(org_key, {})
            fresh = [m not in day_set for m in members]
            day_set.update(members)
            pos = 0
            for org, n in runs:
                new = sum(fresh[pos : pos + n])
                pos += n
                if new:
                    per_org[org] = str(int(per_org.get(org, 0)) + new)
        if p["win"] is not None:
            apply_windows(self.data, p["win"], present)
        if lineage:
            self.data[lineage[0]] = lineage[2]
        for field, _, new in p["off"]:
            offsets[field] = new
        return [1, ""]

    # Faults --------------------------------------------------------------------------------------------
    def take_snapshot(self) -> None:
        self.snapshots.append(copy.deepcopy(self.data))

    def restart(self, from_snapshot: bool) -> None:
        self.data = copy.deepcopy(self.snapshots[-1]) if from_snapshot and self.snapshots else {}


def apply_windows(data: dict[str, Any], w: dict[str, Any], in_day_sets: dict[int, set[str]] | None = None) -> None:
    """The script's rolling-window section (tables/script.py), in Python: sweep one bucket per subject,
    insert each subject's days into its compacted list, move the pair counts. A user already in a day's
    set (`in_day_sets`, by day) has that day in its list: the script does not look at it."""
    known = in_day_sets or {}
    state = data.setdefault(w["state"], {})
    cursor = int(state.get("sweep", 0))
    lists: list[tuple[str, str, str]] = []
    bumps: dict[str, dict[int, int]] = {}
    for subject_index, (bucket_prefix, pair_prefix, entries) in enumerate(w["subjects"]):
        swept = data.get(bucket_prefix + str(cursor), {})
        for member in [m for m, v in swept.items() if int(v.split(",")[-1]) < w["horizon"]]:
            del swept[member]
        for bucket, member, all_days in entries:
            key = bucket_prefix + str(bucket)
            new_days = [d for d in all_days if not (subject_index == 0 and member in known.get(d, ()))]
            if not new_days:
                continue
            cur = data.get(key, {}).get(member)
            days = [int(x) for x in cur.split(",")] if cur else []
            if days and days[-1] < w["horizon"]:
                days = []
            for d in new_days:
                pos = next((i for i, x in enumerate(days) if x >= d), len(days))
                present = pos < len(days) and days[pos] == d
                if present or (pos == 0 and days and days[0] <= w["today"]):
                    continue
                succ = days[pos] if pos < len(days) else w["none"]
                if pos > 0 and days[pos - 1] >= w["horizon"]:
                    pred = bumps.setdefault(pair_prefix + str(days[pos - 1]), {})
                    pred[succ] = pred.get(succ, 0) - 1
                    pred[d] = pred.get(d, 0) + 1
                own = bumps.setdefault(pair_prefix + str(d), {})
                own[succ] = own.get(succ, 0) + 1
                days.insert(pos, d)
            keep = max((i for i, x in enumerate(days) if x <= w["today"]), default=0)
            lists.append((key, member, ",".join(str(x) for x in days[keep:])))
    state["sweep"] = str((cursor + 1) % w["buckets"])
    for key, member, value in lists:
        data.setdefault(key, {})[member] = value
    for key, changes in bumps.items():
        h = data.setdefault(key, {})
        for b, n in changes.items():
            if n:
                h[str(b)] = str(int(h.get(str(b), 0)) + n)


def window_insert_is_noop(data: dict[str, Any], w: dict[str, Any], key: str, member: str, day: int) -> bool:
    """Whether inserting `day` into the member's stored list would change nothing (apply_windows' rule)."""
    cur = data.get(key, {}).get(member)
    days = [int(x) for x in cur.split(",")] if cur else []
    if days and days[-1] < w["horizon"]:
        return False
    pos = next((i for i, x in enumerate(days) if x >= day), len(days))
    return (pos < len(days) and days[pos] == day) or (pos == 0 and bool(days) and days[0] <= w["today"])
