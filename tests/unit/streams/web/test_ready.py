"""/ready and the status page's health table: every reason that makes a replica unready is a failing check
with its reason, in /ready's body and on the page alike (one list, Status.checks), and in the ready gauge."""

from __future__ import annotations

import asyncio
import html
from collections.abc import Callable
from html.parser import HTMLParser
from typing import Any

import pytest

from core.status import StalledPartition, Status
from streams.local.scrape import parse, value
from streams.settings import Settings
from streams.web.config import WebConfig
from streams.web.landing import render_live
from streams.web.server import install_routes, metrics_from
from streams.web.view import View

CHECKS = [
    "layout_ok",
    "tables_recovered",
    "tables_caught_up",
    "broker_reachable",
    "redis_reachable",
    "redis_eviction_policy_ok",
]


def healthy() -> Status:
    return Status(
        replica_id="host:6066", recovering=False, broker_ok=True, redis_ok=True, redis_policy="noeviction", leader=True
    )


class _App:
    """Faust's app as install_routes uses it: `app.page(path)(handler)`."""

    def __init__(self) -> None:
        self.routes: dict[str, Callable[..., Any]] = {}

    def page(self, path: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        def mount(handler: Callable[..., Any]) -> Callable[..., Any]:
            self.routes[path] = handler
            return handler

        return mount


class _Web:
    def json(self, body: dict[str, Any], status: int = 200) -> tuple[int, dict[str, Any]]:
        return status, body


class _Request:
    def __init__(self) -> None:
        self.headers: dict[str, str] = {}
        self.remote = "127.0.0.1"


class _Sidecar:
    def __init__(self, status: Status) -> None:
        self.status = status


def get_ready(status: Status | None) -> tuple[int, dict[str, Any]]:
    """/ready through the route install_routes mounts, for a sidecar with this status (None: starting)."""
    app = _App()
    sidecar = _Sidecar(status) if status is not None else None
    install_routes(app, lambda: sidecar, WebConfig)  # type: ignore[arg-type, return-value]
    status_code, body = asyncio.run(app.routes["/ready"](_Web(), _Request()))
    return int(status_code), body


class _HealthRows(HTMLParser):
    """The health table's check rows: name -> (ok, the row's text)."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: dict[str, tuple[bool, str]] = {}
        self._row: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "tr" and a.get("data-check"):
            self._row = str(a["data-check"])
            self.rows[self._row] = (a.get("data-ok") == "1", "")

    def handle_endtag(self, tag: str) -> None:
        if tag == "tr":
            self._row = None

    def handle_data(self, data: str) -> None:
        if self._row is not None:
            ok, text = self.rows[self._row]
            self.rows[self._row] = (ok, text + data)


def page_checks(status: Status) -> dict[str, tuple[bool, str]]:
    view = View(status=status, snapshot=None, tables_error=None, settings=Settings(), history=None, now_s=1_000.0)
    parser = _HealthRows()
    parser.feed(render_live(view))
    parser.close()
    return parser.rows


def ready_gauge(status: Status) -> float | None:
    view = View(status=status, snapshot=None, tables_error=None, settings=Settings(), history=None, now_s=1_000.0)
    return value(parse(metrics_from(view).decode()), "ecomind_streams_ready")


def _set(**fields: object) -> Callable[[Status], None]:
    def apply(st: Status) -> None:
        for name, v in fields.items():
            setattr(st, name, v)

    return apply


# One row per reason /ready can be 503 for: the check it fails, and words its reason must hold.
REASONS = [
    ("tables_recovered", _set(recovering=True), "positioning its partitions at the offsets stored in Redis"),
    ("tables_caught_up", _set(rewound_partitions=2), "2 partitions re-reading records Redis lost"),
    ("tables_caught_up", _set(rewound_partitions=1), "1 partition re-reading records Redis lost"),
    ("broker_reachable", _set(broker_ok=False), "Kafka's metadata did not answer"),
    ("broker_reachable", _set(broker_ok=False, brokers_unreachable=2), "2 brokers in the cluster metadata refuse "),
    ("broker_reachable", _set(broker_ok=False, brokers_unreachable=1), "1 broker in the cluster metadata refuses "),
    ("redis_reachable", _set(redis_ok=False), "check REDIS_URL"),
    (
        "redis_eviction_policy_ok",
        _set(redis_policy="allkeys-lru", redis_policy_ok=False),
        "maxmemory-policy is allkeys-lru: Redis may evict the tables or their offsets; set it to noeviction",
    ),
    (
        "redis_eviction_policy_ok",
        _set(redis_policy="unknown", redis_policy_ok=False),
        "Redis refused CONFIG GET maxmemory-policy",
    ),
]


@pytest.mark.parametrize(("check", "breaks", "says"), REASONS)
def test_each_reason_alone_is_a_failing_check_with_its_reason(
    check: str, breaks: Callable[[Status], None], says: str
) -> None:
    st = healthy()
    breaks(st)
    status, body = get_ready(st)
    assert status == 503 and body["ready"] is False and st.ready is False
    failing = [c for c in body["checks"] if not c["ok"]]
    assert [c["name"] for c in failing] == [check]
    assert says in failing[0]["reason"]
    assert all(c["reason"] is None for c in body["checks"] if c["ok"])
    # The flat flags agree with the list: only that one is false.
    assert {name: body[name] for name in CHECKS} == {name: name != check for name in CHECKS}
    # The page's health table shows the same list, the same check failing, with the same reason.
    rows = page_checks(st)
    assert [name for name, (ok, _) in rows.items() if not ok] == ["ready", check]
    assert says in html.unescape(rows[check][1]) and rows["ready"][1].startswith("Ready")
    assert ready_gauge(st) == 0.0


def test_all_fine_is_200_and_every_check_true() -> None:
    st = healthy()
    status, body = get_ready(st)
    assert status == 200 and body["ready"] is True
    assert [c["name"] for c in body["checks"]] == CHECKS
    assert all(c["ok"] is True and c["reason"] is None for c in body["checks"])
    assert all(body[name] is True for name in CHECKS)
    assert body["exporter_leader"] is True and body["replica_id"] == "host:6066" and body["stalled_partitions"] == []
    rows = page_checks(st)
    assert list(rows) == ["ready", *CHECKS] and all(ok for ok, _ in rows.values())
    assert "noeviction" in rows["redis_eviction_policy_ok"][1]
    assert ready_gauge(st) == 1.0


def test_several_reasons_are_all_named() -> None:
    st = healthy()
    st.redis_ok, st.rewound_partitions, st.redis_policy, st.redis_policy_ok = False, 3, "volatile-lru", False
    status, body = get_ready(st)
    assert status == 503
    failing = {c["name"] for c in body["checks"] if not c["ok"]}
    assert failing == {"redis_reachable", "tables_caught_up", "redis_eviction_policy_ok"}
    rows = page_checks(st)
    assert {name for name, (ok, _) in rows.items() if not ok} == failing | {"ready"}
    assert "Rewound partitions, Redis, Redis eviction policy" in rows["ready"][1]


def test_a_stalled_partition_is_named_but_keeps_the_replica_ready() -> None:
    st = healthy()
    st.stalled[("events.raw", 3)] = StalledPartition(41, "corrupt_batch", "CRC mismatch", 900.0)
    status, body = get_ready(st)
    assert status == 200 and all(c["ok"] for c in body["checks"])
    assert body["stalled_partitions"] == [
        {"topic": "events.raw", "partition": 3, "offset": 41, "reason": "corrupt_batch", "error": "CRC mismatch"}
    ]
    view = View(status=st, snapshot=None, tables_error=None, settings=Settings(), history=None, now_s=1_000.0)
    assert "stalled at offset 41 for 1 min 40 s: corrupt_batch (CRC mismatch)" in render_live(view)


def test_a_replica_refused_beside_another_key_layout_says_why_everywhere() -> None:
    """The lease loop's refusal (tables/layout.py) is the reason in /ready, the page and the gauges; the
    tap waits with it, so the tables are not recovered either."""
    st = healthy()
    st.layout_refusal = "state in an older key layout (2, this release writes 3): once layout 2's replicas stop"
    st.recovering = True
    status, body = get_ready(st)
    failing = {c["name"]: c["reason"] for c in body["checks"] if not c["ok"]}
    assert status == 503 and list(failing) == ["layout_ok", "tables_recovered"]
    assert failing["layout_ok"] == st.layout_refusal
    rows = page_checks(st)
    assert rows["layout_ok"][0] is False and st.layout_refusal in html.unescape(rows["layout_ok"][1])
    assert rows["ready"][1].startswith("Ready") and "Key layout" in rows["ready"][1]
    samples = parse(metrics_from(View(st, None, None, Settings(), None, 1_000.0)).decode())
    assert (value(samples, "ecomind_streams_ready"), value(samples, "ecomind_streams_layout_refused")) == (0.0, 1.0)
    st.layout_refusal, st.recovering = None, False
    samples = parse(metrics_from(View(st, None, None, Settings(), None, 1_000.0)).decode())
    assert (value(samples, "ecomind_streams_ready"), value(samples, "ecomind_streams_layout_refused")) == (1.0, 0.0)


def test_a_starting_sidecar_is_not_ready() -> None:
    assert get_ready(None) == (503, {"ready": False, "reason": "starting"})
