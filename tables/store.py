"""The Redis-backed tables: one atomic write per batch, state and input offsets together.

Each write carries, per input partition, the offset the batch started from; Redis applies the
batch only if that is still the stored offset. A replayed or stale batch (a zombie after a
rebalance, a retry after a lost reply) is refused as a whole, so nothing is counted twice.
"""

from __future__ import annotations

import secrets
from collections import Counter, deque
from collections.abc import Callable, Iterable
from datetime import date
from itertools import repeat
from operator import itemgetter

import orjson
import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster
from redis.crc import key_slot
from redis.exceptions import ResponseError

from tables.delta import Delta
from tables.eviction import eviction_policy
from tables.keys import (
    AMOUNT_BASE,
    CO2_FIELD,
    DAY_CO2,
    DAY_KWH,
    DAY_MODEL_ENERGY,
    DAY_ORG_USERS,
    DAY_ORGS,
    DAY_TOKENS,
    DAY_TOTALS,
    DAY_USERS,
    DELAY,
    DELAY_SUM,
    DROPPED_LATE,
    DROPPED_LATE_WINDOWS,
    INVALID,
    KWH_FIELD,
    LAST_TS,
    MODEL_FIELD,
    PROCESSED,
    PROVIDER_FIELD,
    REMAINDER_SUFFIX,
    TOKENS_IN,
    TOKENS_OUT,
    TOTAL_CO2,
    TOTAL_KWH,
    TOTAL_TOKENS_IN,
    TOTAL_TOKENS_OUT,
    Keys,
    delay_bucket_field,
    offset_field,
    split_amount,
    topic_id_field,
)
from tables.labels import OTHER
from tables.script import APPLY_LUA
from tables.seen import SeenCache
from tables.windows import users_by_org, window_section
from tables.writes import (
    ClusterStateHidden,
    Conflict,
    InvalidStoredValue,
    MembersBehind,
    OffsetMove,
    PartialWrite,
    SlotMoving,
    WrongKeyType,
    script_failed,
)

# A lineage key per process start: expiry only costs one refused write and a full resend, so it need not
# live as long as the day keys (up to a year), and keys of stopped processes go soon.
LINEAGE_TTL_SECONDS = 3 * 86_400

# Script replies other than 1 (written): refused for an offset, for a key's type, for the lineage, for a
# stored value that is not a number, for the state's cluster slot moving.
_CONFLICT, _WRONG_TYPE, _LINEAGE, _INVALID_VALUE, _SLOT_MOVING, _CLUSTER_UNSEEN, _PARTIAL = 0, 2, 3, 4, 5, 6, 7
_MEMBERS_BEHIND = 8  # sharded state only: a member shard went back (tables/script.py)

_SECOND = itemgetter(1)


def _drain(items: Iterable[object]) -> None:
    """Run an iterator (a map of calls) to its end in C, keeping nothing."""
    deque(items, maxlen=0)


class RedisStore:
    def __init__(
        self,
        client: aioredis.Redis,
        app_id: str,
        days_kept: int,
        label_caps: dict[str, int] | None = None,
        seen_cache_entries: int = 0,
        keys: Keys | None = None,
    ) -> None:
        self.client = client
        # Label values get their own series first come, first served, in the batch that first carries
        # them: admission is part of the state write, so the scrape only reads and a value never moves
        # from "__other__" to a series of its own (which would make the "__other__" counter go down).
        self.label_caps = label_caps or {"org_id": 500, "provider": 100, "model": 100}
        self.keys = keys or Keys(app_id)  # one shard's of sharded state (tables/shards.py): its own hash tag
        self.day_ttl_seconds = (days_kept + 1) * 86_400
        self._apply = client.register_script(APPLY_LUA)
        # In a cluster the script checks that the state's slot is not moving (tables/script.py).
        self._slot: str | None = str(key_slot(self.keys.offsets.encode())) if isinstance(client, RedisCluster) else None
        # Members already written to a recent day are left out of later writes (tables/seen.py), as long
        # as every write this store made since is still in Redis: its lineage key counts them, and the
        # script refuses a write whose expected count is not there.
        self.seen = SeenCache(seen_cache_entries, days_kept)
        self._lineage_key = self.keys.key(f"seen:{secrets.token_hex(8)}")
        self._lineage_count = 0  # never repeats in this process, so an older snapshot cannot match it
        self._lineage_expected: str | None = None

    async def close(self) -> None:
        await self.client.aclose()

    async def ping(self) -> None:
        """Raises when Redis cannot be reached; PONG itself tells nothing more."""
        await self.client.ping()

    async def load_offsets(self, partitions: Iterable[tuple[str, int]]) -> dict[tuple[str, int], int | None]:
        wanted = list(partitions)
        if not wanted:
            return {}
        values = await self.client.hmget(self.keys.offsets, [offset_field(t, p) for t, p in wanted])
        return {tp: self._offset(tp, v) for tp, v in zip(wanted, values, strict=True)}

    async def load_stored(
        self, partitions: Iterable[tuple[str, int]]
    ) -> dict[tuple[str, int], tuple[int | None, str | None]]:
        """Each partition's stored offset and the topic ID stored with it (None: none stored, e.g. by an
        older version or from a broker without IDs), in one read."""
        wanted = list(partitions)
        if not wanted:
            return {}
        fields = [f(t, p) for t, p in wanted for f in (offset_field, topic_id_field)]
        values = await self.client.hmget(self.keys.offsets, fields)
        return {
            tp: (self._offset(tp, offset), str(tid) if tid is not None else None)
            for tp, offset, tid in zip(wanted, values[0::2], values[1::2], strict=True)
        }

    def _offset(self, tp: tuple[str, int], value: bytes | str | None) -> int | None:
        if value is None:
            return None
        try:
            return int(value)
        except ValueError:
            raise InvalidStoredValue(self.keys.offsets, offset_field(*tp), detail=f"holds {value!r}") from None

    async def eviction_policy(self) -> str:
        """maxmemory-policy where the state lives (tables/eviction.py)."""
        return await eviction_policy(self.client, self.keys.offsets)

    async def apply(
        self,
        delta: Delta,
        moves: list[OffsetMove],
        edit: Callable[[dict[str, object]], None] | None = None,
        target: str | None = None,
    ) -> None:
        """Write the batch and its offsets atomically, or raise: Conflict or WriteRefused having written
        nothing, ScriptFailed having maybe written part (never expected: every value is checked first).
        Sharded state's member writes (tables/sharded_store.py) change each payload (`edit`) and name the
        shard's watermarks hash as the script's first key (`target`) instead of the offsets."""
        first_key = target or self.keys.offsets
        self.seen.prune(delta.today_index)
        while True:
            trusted = self._lineage_expected is not None and self.seen.max_entries > 0
            payload_dict = self.build_payload(delta, moves, self.seen if trusted else None)
            self._lineage_count += 1
            written = str(self._lineage_count)
            payload_dict["lineage"] = [
                self._lineage_key,
                self._lineage_expected or "",
                written,
                str(min(self.day_ttl_seconds, LINEAGE_TTL_SECONDS)),
            ]
            if edit is not None:
                edit(payload_dict)
            args: list[bytes | str] = [orjson.dumps(payload_dict)]
            if self._slot is not None:
                args.append(self._slot)
            try:
                reply = await self._apply(keys=[first_key], args=args)
            except BaseException as exc:
                # The write may or may not have landed: nothing learnt since can be trusted.
                self._forget()
                failed = script_failed(exc, first_key) if isinstance(exc, ResponseError) else None
                if failed is not None:
                    raise failed from exc
                raise
            status, detail = int(reply[0]), str(reply[1])
            if status == _INVALID_VALUE:
                raise InvalidStoredValue(detail, str(reply[2]))
            if status == _LINEAGE:
                self._forget()  # Redis lost some of this store's writes: send everything again
                continue
            if status == _CONFLICT:
                raise Conflict(str(detail))
            if status == _WRONG_TYPE:
                raise WrongKeyType(str(detail))
            if status == _SLOT_MOVING:
                raise SlotMoving(f"TRYAGAIN slot {detail} of {first_key} is moving between primaries")
            if status == _CLUSTER_UNSEEN:
                raise ClusterStateHidden(first_key, detail=detail)
            if status == _PARTIAL:
                raise PartialWrite(detail, detail=f"the batch that stopped moved {reply[2]!s}")
            if status == _MEMBERS_BEHIND:
                self._forget()  # the shard went back: what this store knew it holds may be gone with it
                raise MembersBehind(detail, int(reply[2]) if str(reply[2]) else None)
            self._lineage_expected = written
            self.seen.learn(delta.today_index, delta.users, delta.orgs)
            return

    def _forget(self) -> None:
        self.seen.clear()
        self._lineage_expected = None

    def build_payload(self, delta: Delta, moves: list[OffsetMove], seen: SeenCache | None = None) -> dict[str, object]:
        """The script's payload; with `seen`, the members it knows are written already are left out."""
        k = self.keys
        hincr: list[list[str]] = []
        amount: list[list[str]] = []
        expire: list[list[str]] = []
        ttl = str(self.day_ttl_seconds)

        def add_amount(key: str, field: str, n: int) -> None:
            whole, remainder = split_amount(n)
            amount.append([key, field, str(whole), str(remainder)])

        def add_amounts(key: str, per_field: Iterable[tuple[str, int]], prefix: str = "") -> None:
            # split_amount inlined in one comprehension: a call per amount was a tenth of the payload.
            amount.extend([[key, prefix + f, str(n // AMOUNT_BASE), str(n % AMOUNT_BASE)] for f, n in per_field])

        for name, counter in (
            (PROCESSED, delta.processed),
            (INVALID, delta.invalid),
            (DROPPED_LATE, delta.dropped_late),
            (DROPPED_LATE_WINDOWS, delta.dropped_late_windows),
        ):
            hincr.extend([k.key(name), f, str(n)] for f, n in counter.items())
        # Plain dicts, not Counters: a Counter's += costs about three times a dict's (tables/delta.py).
        activity: dict[str, int] = {}
        org_key = k.org("")  # + org: k.org(org), without a call and a format per entry
        for prefix, label, counts in (
            (PROVIDER_FIELD, "provider", delta.ingested),
            (MODEL_FIELD, "model", delta.calls),
        ):
            hincr.extend([[org_key + org, prefix + value, str(n)] for (org, value), n in counts.items()])
            totals: dict[str, int] = {}
            for (org, value), n in counts.items():
                totals[value] = totals.get(value, 0) + n
                if prefix == PROVIDER_FIELD:
                    activity[org] = activity.get(org, 0) + n
            hincr.extend([k.activity(label), value, str(n)] for value, n in totals.items())
        for index, n in enumerate(delta.delay_buckets):
            if n:
                hincr.append([k.key(DELAY), delay_bucket_field(index), str(n)])
        if delta.delay_sum_ms:
            add_amount(k.key(DELAY), DELAY_SUM, delta.delay_sum_ms)
        for name, total_field, per_day in ((DAY_KWH, TOTAL_KWH, delta.kwh_nano), (DAY_CO2, TOTAL_CO2, delta.co2_nano)):
            for day, amounts in per_day.items():
                day_key = k.day(day, name)
                add_amounts(day_key, amounts.items())
                # Known to the label caps even without a raw event, in the order first met.
                _drain(map(activity.setdefault, amounts, repeat(0)))
                add_amount(k.day(day, DAY_TOTALS), total_field, sum(amounts.values()))
                for key in (day_key, k.day(day, DAY_TOTALS)):
                    expire += [[key, ttl, "hash"], [key + REMAINDER_SUFFIX, ttl, "hash"]]
        for day in delta.tokens_in.keys() | delta.tokens_out.keys():
            tokens: tuple[tuple[str, str, dict[str, int]], ...] = (
                (TOKENS_IN, TOTAL_TOKENS_IN, delta.tokens_in.get(day, {})),
                (TOKENS_OUT, TOTAL_TOKENS_OUT, delta.tokens_out.get(day, {})),
            )
            tokens_key = k.day(day, DAY_TOKENS)
            for prefix, total_field, per_org in tokens:
                add_amounts(tokens_key, per_org.items(), prefix)
                add_amount(k.day(day, DAY_TOTALS), total_field, sum(per_org.values()))
            expire += [[k.day(day, DAY_TOKENS), ttl, "hash"], [k.day(day, DAY_TOKENS) + REMAINDER_SUFFIX, ttl, "hash"]]
        enriched_labels: dict[str, set[str]] = {"provider": set(), "model": set()}
        for prefix, per_model_day in ((KWH_FIELD, delta.model_kwh_nano), (CO2_FIELD, delta.model_co2_nano)):
            for day, by_provider_model in per_model_day.items():
                by_model: Counter[str] = Counter()
                energy_keys = {k.day(day, DAY_MODEL_ENERGY)}
                for (provider, model), n in by_provider_model.items():
                    add_amount(k.provider_energy(day, provider), prefix + model, n)
                    by_model[model] += n
                    enriched_labels["provider"].add(provider)
                    enriched_labels["model"].add(model)
                    energy_keys.add(k.provider_energy(day, provider))
                for model, n in by_model.items():
                    add_amount(k.day(day, DAY_MODEL_ENERGY), prefix + model, n)
                for key in sorted(energy_keys):
                    expire += [[key, ttl, "hash"], [key + REMAINDER_SUFFIX, ttl, "hash"]]
        hincr.extend([k.activity("org_id"), org, str(n)] for org, n in activity.items())
        batch_labels = {
            "org_id": sorted(activity),
            "provider": sorted(set(map(_SECOND, delta.ingested)) | enriched_labels["provider"]),
            "model": sorted(set(map(_SECOND, delta.calls)) | enriched_labels["model"]),
        }
        admit = [
            [k.labels(label), str(self.label_caps[label]), values] for label, values in batch_labels.items() if values
        ]
        sadd: list[list[object]] = []
        # A day's keys get their expiry moved on even when every member is known, as without the cache.
        for day, members in delta.orgs.items():
            new_orgs = members - seen.orgs(day) if seen else members
            if new_orgs:
                sadd.append([k.day(day, DAY_ORGS), list(new_orgs)])
            expire.append([k.day(day, DAY_ORGS), ttl, "set"])
        usersadd: list[list[object]] = []
        sorted_users: dict[str, list[str]] = {}  # the windows take each day's sorted list from here
        for day, members in delta.users.items():
            new_users = members - seen.users(day) if seen else members
            if new_users:
                ordered, runs = users_by_org(new_users)
                sorted_users[day] = ordered
                index = date.fromisoformat(day).toordinal()  # the script skips the window days it proves
                usersadd.append([k.day(day, DAY_USERS), k.day(day, DAY_ORG_USERS), ordered, runs, index])
            expire += [[k.day(day, DAY_USERS), ttl, "set"], [k.day(day, DAY_ORG_USERS), ttl, "hash"]]
        return {
            "off": [
                [offset_field(m.topic, m.partition), "" if m.expected is None else str(m.expected), str(m.next_offset)]
                for m in moves
            ]
            + [
                [topic_id_field(m.topic, m.partition), m.expected_topic_id or "", m.topic_id]
                for m in moves
                if m.topic_id is not None and m.topic_id != m.expected_topic_id
            ],
            "hincr": hincr,
            "amount": amount,
            "lo": REMAINDER_SUFFIX,
            "base": AMOUNT_BASE,
            "sadd": sadd,
            "usersadd": usersadd,
            "win": window_section(k, delta, seen, sorted_users),
            "hmax": [[k.key(LAST_TS), t, str(ts)] for t, ts in delta.last_ts_ms.items()],
            "expire": expire,
            "admit": admit,
            "other": OTHER,
        }
