"""The stale judgements' round trip through Redis (streams/lag/stale_store.py): what is written, when it
is read again, and that Redis failing costs nothing but the memory. The real-broker, real-Redis lease
move is in tests/integration/test_lag_scope.py."""

from __future__ import annotations

import pytest
from redis.exceptions import ConnectionError as RedisConnectionError

from streams.lag.scope import StaleMemory
from streams.lag.stale_store import TTL_S, StaleStore, decode, encode, stale_key


class Hashes:
    """The two hash commands and EXPIRE, over a dict; `down` refuses every command as a dead server."""

    def __init__(self) -> None:
        self.data: dict[str, dict[str, bytes]] = {}
        self.ttl: dict[str, int] = {}
        self.down = False
        self.calls: list[str] = []
        self.closed = 0

    def client(self) -> Hashes:
        return self

    async def hget(self, key: str, field: str) -> bytes | None:
        self._call("HGET")
        return self.data.get(key, {}).get(field)

    async def hset(self, key: str, field: str, value: bytes) -> None:
        self._call("HSET")
        self.data.setdefault(key, {})[field] = value

    async def expire(self, key: str, seconds: int) -> None:
        self._call("EXPIRE")
        self.ttl[key] = seconds

    async def aclose(self) -> None:
        self.closed += 1

    def _call(self, name: str) -> None:
        if self.down:
            raise RedisConnectionError("Error 111 connecting to 127.0.0.1:6379.")
        self.calls.append(name)


@pytest.mark.parametrize(
    ("stored", "memory"),
    [
        (b'{"g":["b","a"]}', {"g": frozenset({"a", "b"})}),
        (b'{"g":[]}', {"g": frozenset()}),
        (b"{}", {}),
        (b"not json", {}),
        (b'["g"]', {}),
        (b'{"g":"a"}', {}),
        (b'{"g":[1],"h":["t"]}', {"h": frozenset({"t"})}),
    ],
)
def test_decode(stored: bytes, memory: StaleMemory) -> None:
    assert decode(stored) == memory


def test_encode_is_sorted_and_leaves_out_groups_with_nothing_stale() -> None:
    assert encode({"h": frozenset({"z", "y"}), "g": frozenset(), "a": frozenset({"t"})}) == b'{"a":["t"],"h":["y","z"]}'


async def test_a_first_cycle_reads_and_a_change_is_written_once(monkeypatch: pytest.MonkeyPatch) -> None:
    redis, now = Hashes(), [1000.0]
    monkeypatch.setattr("streams.lag.stale_store.time.monotonic", lambda: now[0])
    key = stale_key("app")
    redis.data[key] = {"c": b'{"g":["t"]}'}
    store = StaleStore(redis.client, "app", gap_s=40.0)
    memory: StaleMemory = {"old": frozenset({"x"})}
    await store.before("c", memory)
    assert memory == {"g": frozenset({"t"})}  # what the last exporter wrote replaces an older memory
    await store.after("c", memory)
    assert redis.calls == ["HGET"]  # unchanged since read: nothing written
    memory["h"] = frozenset({"u"})
    now[0] += 15
    await store.before("c", memory)  # within the gap: not read again
    await store.after("c", memory)
    assert redis.calls == ["HGET", "HSET", "EXPIRE"]
    assert decode(redis.data[key]["c"]) == memory and redis.ttl[key] == TTL_S
    await store.after("c", memory)
    assert redis.calls == ["HGET", "HSET", "EXPIRE"]
    now[0] += 41  # a gap: the lease may have been elsewhere meanwhile
    redis.data[key]["c"] = b'{"g":["t","v"]}'
    await store.before("c", memory)
    assert memory == {"g": frozenset({"t", "v"})}
    assert redis.closed == 3  # a client per call, closed


async def test_nothing_stored_keeps_the_memory_and_redis_down_costs_only_a_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    redis = Hashes()
    store = StaleStore(redis.client, "app", gap_s=40.0)
    memory: StaleMemory = {"g": frozenset({"t"})}
    await store.before("c", memory)
    assert memory == {"g": frozenset({"t"})}
    redis.down = True
    await store.after("c", memory)
    assert "writing the lag probe's stale judgements in Redis failed" in caplog.text
    redis.down = False
    await store.after("c", memory)  # not written then: written now
    assert decode(redis.data[stale_key("app")]["c"]) == memory
