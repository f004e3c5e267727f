"""STREAMS_REDIS_SHARDS: its range, its default, and the refusal of a count over 1 while the tap writes one
shard only (docs/design.md, "Sharded state")."""

from __future__ import annotations

import pytest

from streams import settings as settings_module
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


def test_a_count_over_one_is_refused_until_the_tap_writes_shards() -> None:
    with pytest.raises(SettingsError) as raised:
        Settings.from_env({"STREAMS_REDIS_SHARDS": "3"})
    assert str(raised.value).startswith("STREAMS_REDIS_SHARDS=3: this build writes one shard only")


@pytest.mark.parametrize("value", ["2", str(MAX_SHARDS)])
def test_a_count_over_one_is_read_once_the_tap_writes_shards(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setattr(settings_module, "SHARDED_WRITES_WIRED", True)
    assert Settings.from_env({"STREAMS_REDIS_SHARDS": value}).redis_shards == int(value)
