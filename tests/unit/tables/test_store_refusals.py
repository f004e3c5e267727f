"""How RedisStore.apply reads the script's refusals: a stored value that is not a number (reply 4) and a
script's runtime error become WriteRefused (not retried by the tap); errors with which Redis refuses a
script before running it stay Redis errors (retried)."""

from __future__ import annotations

from asyncio import CancelledError
from typing import Any

import orjson
import pytest
from redis.asyncio.cluster import RedisCluster
from redis.crc import key_slot
from redis.exceptions import (
    AskError,
    ClusterDownError,
    ConnectionError,
    MovedError,
    OutOfMemoryError,
    ReadOnlyError,
    RedisError,
    ResponseError,
    TimeoutError,
    TryAgainError,
)

from tables.delta import Delta
from tables.store import RedisStore
from tables.writes import (
    ClusterStateHidden,
    InvalidStoredValue,
    OffsetMove,
    ScriptFailed,
    SlotMoving,
    WriteRefused,
    WrongKeyType,
)


class _Client:
    def __init__(self, reply: Any) -> None:
        self.reply = reply
        self.args: list[list[Any]] = []

    def register_script(self, source: str) -> Any:
        async def run(keys: list[str], args: list[Any]) -> Any:
            self.args.append(args)
            if isinstance(self.reply, BaseException):
                raise self.reply
            return self.reply

        return run


async def _apply(reply: Any) -> None:
    store = RedisStore(_Client(reply), "s", days_kept=2)  # type: ignore[arg-type]
    delta = Delta()
    delta.processed["raw"] += 1
    await store.apply(delta, [OffsetMove("raw", 0, 2, 3)])


async def test_a_value_that_is_not_a_number_names_its_key_and_field() -> None:
    with pytest.raises(InvalidStoredValue) as refused:
        await _apply([4, "{s}:v3:processed", "raw"])
    found = refused.value
    assert (found.key, found.field, found.reason) == ("{s}:v3:processed", "raw", "invalid_value")
    assert str(refused.value) == "{s}:v3:processed field 'raw'"


async def test_a_key_of_another_type_is_a_refusal() -> None:
    with pytest.raises(WrongKeyType) as refused:
        await _apply([2, "{s}:v3:processed"])
    assert (refused.value.key, refused.value.reason) == ("{s}:v3:processed", "wrong_type")


async def test_a_runtime_error_is_a_refusal_with_redis_text() -> None:
    error = ResponseError("user_script:150: attempt to compare nil with number script: 93c8, on @user_script:150.")
    with pytest.raises(ScriptFailed) as refused:
        await _apply(error)
    assert refused.value.reason == "script_error"
    assert refused.value.key == "{s}:v3:offsets"
    assert "attempt to compare nil with number" in refused.value.detail
    assert refused.value.__cause__ is error


@pytest.mark.parametrize(
    "error",
    [
        OutOfMemoryError("command not allowed when used memory > 'maxmemory'."),
        ReadOnlyError("You can't write against a read only replica."),
        ResponseError("BUSY Redis is busy running a script."),
        ResponseError("NOREPLICAS Not enough good replicas to write."),
        ClusterDownError("CLUSTERDOWN The cluster is down"),
        TryAgainError("TRYAGAIN Multiple keys request during rehashing of slot"),
        MovedError("3999 127.0.0.1:6381"),
        AskError("3999 127.0.0.1:6381"),
        # Met at the script's type checks, before its first write: a key of a slot half moved, a cluster down.
        ResponseError("Script attempted to access a non local key in a cluster node script: de32, on @user_script:14."),
        ResponseError(
            "Script attempted to execute a command while the cluster is down script: de32, on @user_script:4."
        ),
        ResponseError("Script attempted to execute a write command while the cluster is down and readonly"),
    ],
    ids=[
        "oom",
        "readonly",
        "busy",
        "noreplicas",
        "clusterdown",
        "tryagain",
        "moved",
        "ask",
        "nonlocal",
        "down",
        "down-ro",
    ],
)
async def test_a_script_refused_before_it_ran_stays_a_redis_error(error: ResponseError) -> None:
    with pytest.raises(type(error)) as raised:
        await _apply(error)
    assert raised.value is error


@pytest.mark.parametrize(
    "error",
    [ConnectionError("Connection reset by peer"), TimeoutError("Timeout reading from socket"), CancelledError()],
    ids=["connection", "timeout", "cancelled"],
)
async def test_an_error_that_is_no_script_reply_is_raised_as_it_came(error: BaseException) -> None:
    # The write may have landed or not: retried (or the task stopped), never read as the script's refusal.
    with pytest.raises(type(error)) as raised:
        await _apply(error)
    assert raised.value is error


async def test_a_slot_moving_is_a_retried_redis_error_not_a_refusal() -> None:
    with pytest.raises(SlotMoving) as raised:
        await _apply([5, "3999"])
    assert isinstance(raised.value, TryAgainError) and isinstance(raised.value, RedisError)
    assert "slot 3999 of {s}:v3:offsets is moving" in str(raised.value)


class _Cluster(RedisCluster):
    """A cluster client that only records the script's payload."""

    def __init__(self) -> None:
        self.payloads: list[dict[str, Any]] = []

    def register_script(self, source: Any) -> Any:
        async def run(keys: list[str], args: list[Any]) -> Any:
            self.payloads.append({"args": args[1:], **orjson.loads(args[0])})
            return [1, ""]

        return run


async def test_the_script_is_told_the_state_slot_on_a_cluster_only() -> None:
    cluster, plain_client = _Cluster(), _Client([1, ""])
    store = RedisStore(cluster, "s", days_kept=2)  # type: ignore[arg-type]
    plain = RedisStore(plain_client, "s", days_kept=2)  # type: ignore[arg-type]
    delta = Delta()
    delta.processed["raw"] += 1
    await store.apply(delta, [OffsetMove("raw", 0, 2, 3)])
    await plain.apply(delta, [OffsetMove("raw", 0, 2, 3)])
    # A second argument, read before the payload is decoded (a retry while the slot moves costs no decode).
    assert cluster.payloads[0]["args"] == [str(key_slot(b"{s}:v3:offsets"))] == ["3828"]
    assert len(plain_client.args[0]) == 1


async def test_a_user_that_may_not_run_cluster_nodes_is_a_named_refusal_not_a_skipped_check() -> None:
    with pytest.raises(ClusterStateHidden) as raised:
        await _apply([6, "NOPERM this user has no permissions to run the 'cluster|nodes' command"])
    assert raised.value.reason == "cluster_nodes_refused" and isinstance(raised.value, WriteRefused)
    assert raised.value.key == "{s}:v3:offsets"
    assert "cluster|nodes" in raised.value.detail
