"""`python -m streams.tools.layout`: what the command says of a layout problem, over the simulated keyspace."""

from __future__ import annotations

import pytest

from streams import clients
from streams.tools.layout import main as layout_cli
from tables.layout import (
    marker_key,
)
from tests.unit.tables.layout_redis import APP, fleet


@pytest.mark.parametrize(("command", "marker", "says"), [("status", "x3", "not a layout number"), ("purge", "", "")])
def test_the_command_line_names_a_layout_problem(monkeypatch, capsys, command: str, marker: str, says: str) -> None:  # type: ignore[no-untyped-def]
    redis = fleet(old=2, new=0)
    if marker:
        redis.keyspace.call("SET", marker_key(APP), marker)
    else:
        redis.keyspace.call("DEL", marker_key(APP))
        redis.keyspace.call("HSET", marker_key(APP), "layout", "3")  # WRONGTYPE for every GET of the marker
    monkeypatch.setattr(clients, "redis_client", lambda settings: redis)
    argv = ["status"] if command == "status" else ["purge-layout", "--layout", "2"]
    assert layout_cli([*argv, "--app-id", APP]) == 1
    err = capsys.readouterr().err
    assert (says or "{app}:layout is a hash, not a string") in err and "Traceback" not in err
    assert sum(1 for k in redis.data if k.startswith("{app}:v2:")) == 3
