"""STREAMS_REDIS_SHARDS: its range and its default (docs/design.md, "Sharded state")."""

from __future__ import annotations

import pytest

from streams.env_reader import SettingsError
from streams.settings import Settings
from tables.shards import MAX_SHARDS


def test_one_shard_by_default() -> None:
    assert Settings.from_env({}).redis_shards == 1
    assert Settings.from_env({"STREAMS_REDIS_SHARDS": "1"}).redis_shards == 1


@pytest.mark.parametrize("value", ["0", "-1", str(MAX_SHARDS + 1), "two", "1.5"])
def test_a_count_out_of_range_names_the_setting_and_the_range(value: str) -> None:
    with pytest.raises(SettingsError) as raised:
        Settings.from_env({"STREAMS_REDIS_SHARDS": value})
    assert str(raised.value) == f"STREAMS_REDIS_SHARDS={value!r}: expected an integer from 1 to {MAX_SHARDS}"


@pytest.mark.parametrize("value", ["2", "3", str(MAX_SHARDS)])
def test_a_count_over_one_is_read(value: str) -> None:
    assert Settings.from_env({"STREAMS_REDIS_SHARDS": value}).redis_shards == int(value)
