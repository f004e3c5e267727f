"""How RedisStore.apply reads the script's refusals: a stored value that is not a number (reply 4) and a
script's runtime error become WriteRefused (not retried by the tap); errors with which Redis refuses a
script before running it stay Redis errors (retried)."""

from __future__ import annotations

from typing import Any

import pytest
from redis.exceptions import OutOfMemoryError, ReadOnlyError, ResponseError

from tables.delta import Delta
from tables.store import RedisStore
from tables.writes import InvalidStoredValue, OffsetMove, ScriptFailed, WrongKeyType


class _Client:
    def __init__(self, reply: Any) -> None:
        self.reply = reply

    def register_script(self, source: str) -> Any:
        async def run(keys: list[str], args: list[Any]) -> Any:
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
    ],
    ids=["oom", "readonly", "busy", "noreplicas"],
)
async def test_a_script_refused_before_it_ran_stays_a_redis_error(error: ResponseError) -> None:
    with pytest.raises(type(error)) as raised:
        await _apply(error)
    assert raised.value is error
