"""`python -m streams.tools.redis_command`: usage and setting errors exit 2 with the reason; a refused
connection exits 1 saying Redis failed (the real command on a cluster: tests/integration/test_redis_cluster.py)."""

from __future__ import annotations

import pytest

from streams.local.proc import free_port
from streams.tools.redis_command import main


def test_no_command_prints_the_usage(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 2
    assert "python -m streams.tools.redis_command HGETALL" in capsys.readouterr().err


def test_a_bad_setting_is_named(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("REDIS_URL", "redis+sentinel://s1:26379")
    assert main(["PING"]) == 2
    assert "invalid setting: REDIS_URL: redis+sentinel:// needs the primary's service name" in capsys.readouterr().err


def test_an_unreachable_redis_exits_1(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("REDIS_URL", f"redis://127.0.0.1:{free_port()}/0")
    assert main(["PING"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("Redis failed:") and "Traceback" not in err
