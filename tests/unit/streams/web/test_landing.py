"""The landing page's renderer: escaping, the same figures as /metrics, lag against the SLO, the chart,
and gzip on /metrics."""

from __future__ import annotations

import asyncio
import gzip
import html
import itertools
from dataclasses import replace
from html.parser import HTMLParser

import pytest
from redis.exceptions import ConnectionError as RedisConnectionError

from core.status import Status
from streams.lag.model import GroupLag, LagSnapshot, PartitionLag
from streams.local.scrape import parse, value
from streams.settings import Settings, SettingsError
from streams.web.history import SAMPLE_EVERY_SECONDS, History
from streams.web.landing import PAGE_HEADERS, render_live, render_page, runbook_url_from_env
from streams.web.server import accepts_gzip, encode_metrics, metrics_from
from streams.web.view import View, gather_view
from tables.delta import DELAY_BUCKETS_SECONDS
from tables.snapshot import Snapshot

HOSTILE = [
    "<script>window.__pwned=1</script>",
    '"><img src=x onerror="window.__pwned=1">',
    "a&amp;b & <b>bold</b> 'quoted'",
    "</td></tr></table><iframe src=//x>",
]


def snapshot(kwh: dict[str, float]) -> Snapshot:
    return Snapshot(
        ingested={(org, "openai"): i + 1 for i, org in enumerate(kwh)},
        calls={(org, "gpt-4o"): 1 for org in kwh},
        processed={"raw": 7, "enriched": 3},
        invalid={("raw", "not_json"): 2},
        dropped_late={},
        last_ts_ms={"raw": 1_700_000_000_000},
        delay_buckets=[0] * (len(DELAY_BUCKETS_SECONDS) + 1),
        delay_sum_ms=0,
        active_orgs=len(kwh),
        active_users=41,
        kwh=kwh,
        co2_kg={org: v / 2 for org, v in kwh.items()},
    )


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def make_view(kwh: dict[str, float], lag: list[PartitionLag] | None = None, leader: bool = True) -> View:
    status = Status(
        replica_id='host:6066<"&>', recovering=False, broker_ok=True, redis_ok=True, leader=leader, exporting=leader
    )
    group = GroupLag("worker", "Stable", 1, tuple(lag or []))
    clock = Clock(1_000.0)
    history = History(status, clock)
    clock.now = 1_030.0
    status.records_folded = 90
    history.tick()
    settings = Settings(raw_topic="raw", enriched_topic="enriched", watch_group="worker")
    snap = snapshot(kwh) if leader else None
    lag_snapshot = LagSnapshot({"worker": group}, "worker", 1_000.0)
    return View(status, snap, None, settings, history, now_s=1_031.0, lag=lag_snapshot)


class Tags(HTMLParser):
    """Start tags, and the text of every element with a given class."""

    def __init__(self, text_of_class: str = "") -> None:
        super().__init__()
        self.tags: list[str] = []
        self.cls = text_of_class
        self.texts: list[str] = []
        self._open = False
        self.data: dict[str, str] = {}

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        a = dict(attrs)
        if tag == "data" and a.get("id"):
            self.data[str(a["id"])] = str(a["value"])
        if self.cls and self.cls in (a.get("class") or "").split():
            self._open = True
            self.texts.append("")

    def handle_endtag(self, tag: str) -> None:
        if tag == "td":
            self._open = False

    def handle_data(self, data: str) -> None:
        if self._open:
            self.texts[-1] += data


def parsed(page: str, cls: str = "") -> Tags:
    tags = Tags(cls)
    tags.feed(page)
    tags.close()
    return tags


def test_hostile_org_ids_are_text_never_markup() -> None:
    view = make_view({org: 1.0 + i for i, org in enumerate(HOSTILE)})
    page = render_page(view, None)
    tags = parsed(page, "org")
    assert tags.tags.count("script") == 1  # the page's own refresh script, nothing injected
    assert not {"img", "iframe", "b"} & set(tags.tags)
    assert sorted(tags.texts) == sorted(HOSTILE)  # each id reads back exactly as it was sent
    assert "window.__pwned=1</script>" not in page
    assert "host:6066&lt;&quot;&amp;&gt;" in page


def test_page_figures_are_the_metrics_figures() -> None:
    view = make_view({"org_a": 0.1 + 0.2, "org_b": 1.5, "__other__": 0.25})
    m = parse(metrics_from(view).decode())
    data = parsed(render_page(view, None)).data
    assert float(data["active-orgs"]) == value(m, "ecomind_daily_active_orgs") == 3.0
    assert float(data["active-users"]) == value(m, "ecomind_daily_active_users") == 41.0
    kwh = sum(v for (n, _), v in m.items() if n == "ecomind_total_kwh_today")
    co2 = sum(v for (n, _), v in m.items() if n == "ecomind_total_co2_kg_today")
    assert float(data["kwh-today"]) == pytest.approx(kwh) and kwh == pytest.approx(2.05)
    assert float(data["co2-today"]) == pytest.approx(co2) and co2 == pytest.approx(1.025)
    ingested = sum(v for (n, _), v in m.items() if n == "ecomind_events_ingested_total")
    assert float(data["events-ingested"]) == ingested == 6.0


def test_top_ten_orgs_by_energy_leave_out_the_folded_rest() -> None:
    kwh = {f"org_{i:02d}": float(i) for i in range(15)} | {"__other__": 99.0}
    tags = parsed(render_page(make_view(kwh), None), "org")
    assert tags.texts == [f"org_{i:02d}" for i in range(14, 4, -1)]


@pytest.mark.parametrize(
    ("slo_env", "default", "slo", "source"),
    [
        ("worker=10", 60.0, 10.0, "STREAMS_LAG_SLO_SECONDS"),
        ("sink-.*=300,work.*=12.5", 60.0, 12.5, "STREAMS_LAG_SLO_SECONDS"),  # first full match wins
        ("work=5", 11.0, 11.0, "STREAMS_LAG_SLO_DEFAULT_SECONDS"),  # a partial match is no match
    ],
)
def test_lag_above_the_watched_group_slo_is_highlighted(slo_env: str, default: float, slo: float, source: str) -> None:
    parts = [
        PartitionLag("raw", 0, True, 5, slo + 0.5),
        PartitionLag("raw", 1, True, 1, slo),  # at the SLO is within it, as the alert's `>`
        PartitionLag("raw", 2, False, 0, 0.0),
        PartitionLag("raw", 3, True, 4, None),  # an unknown age with records waiting counts as above
    ]
    view = make_view({"o": 1.0}, parts)
    view = replace(view, settings=replace(view.settings, lag_slo_seconds=slo_env, lag_slo_default_seconds=default))
    live = render_live(view)
    assert live.count('class="over"') == 2
    assert 'class="over" data-topic="raw" data-partition="0"' in live
    assert 'class="over" data-topic="raw" data-partition="3"' in live
    assert live.count(">above<") == 2 and live.count(">within<") == 2
    assert float(parsed(live).data["lag-slo"]) == slo and f"s, {source})" in live
    # The same SLO /metrics exports for the group, so the page and the alerts agree.
    exported = value(parse(metrics_from(view).decode()), "ecomind_consumergroup_lag_slo_seconds", group="worker")
    assert exported == slo


def test_lag_figures_of_an_unreachable_broker_are_marked_old() -> None:
    view = make_view({"o": 1.0}, [PartitionLag("raw", 0, True, 5, 1.0)])
    view.status.broker_ok = False
    live = render_live(view)
    assert "Kafka does not answer: these figures are from the last measurement, 31 s ago" in live
    assert "Not measured yet: Kafka does not answer this replica." in render_live(replace(view, lag=None))


def test_a_replica_that_is_not_the_exporter_shows_no_business_figures() -> None:
    live = render_live(make_view({}, leader=False))
    assert "not the exporter" in live and 'id="kwh-today"' not in live and 'id="lag"' not in live


@pytest.mark.parametrize(
    ("leader", "exporting", "redis_ok", "says", "today"),
    [
        (True, True, True, "yes: exports the fleet", None),
        (
            True,
            False,
            True,
            "holds the exporter lease: exports once the last exporter",
            "holds the exporter lease and shows the fleet's figures once",
        ),
        (False, False, True, "no: another replica holds the exporter lease", "another replica holds the exporter"),
        # Redis down: never "another replica exports them"; the figures cannot be read, and what to check.
        (
            False,
            False,
            False,
            "no: this replica cannot reach Redis, where the exporter lease and the figures live",
            "Redis is unreachable from this replica, so the figures kept there cannot be read. Check REDIS_URL",
        ),
    ],
)
def test_the_page_says_why_this_replica_exports_or_not(
    leader: bool, exporting: bool, redis_ok: bool, says: str, today: str | None
) -> None:
    view = make_view({"acme": 1.0}, leader=leader)
    if not exporting:
        view = replace(view, snapshot=None)
    view.status.leader, view.status.exporting, view.status.redis_ok = leader, exporting, redis_ok
    page = html.unescape(render_page(view, None))
    assert says in page
    if today is None:
        assert 'id="kwh-today"' in page and 'id="no-figures"' not in page
    else:
        assert today in page and 'id="kwh-today"' not in page and 'id="lag"' not in page
        assert "another replica" not in page or redis_ok


def test_rate_history_over_the_last_hour() -> None:
    status = Status(replica_id="r")
    clock = Clock(0.0)
    history = History(status, clock)
    for step in range(1, 400):  # 400 s of 10 records/s, then a burst
        clock.now = step * 1.0
        status.records_folded = step * 10
        history.tick()
    rates = history.rates(clock.now)
    assert all(r == pytest.approx(10.0) for _, _, r in rates)
    assert rates[0][0] == 0.0 and all(a[1] == b[0] for a, b in itertools.pairwise(rates))
    clock.now += 5
    status.records_folded += 500
    # The live tail runs from the last sample (390 s, 3,900 records) to now.
    start, end, rate = history.rates(clock.now)[-1]
    assert (start, end) == (390.0, 404.0) and rate == pytest.approx((3990 + 500 - 3900) / 14)
    assert history.records_in_window(clock.now) == status.records_folded
    # An hour later the first samples have left the window.
    clock.now += 3600
    history.tick()
    assert history.records_in_window(clock.now) == 0
    assert len(history._samples) <= 3600 / SAMPLE_EVERY_SECONDS + 1


def test_last_batch_time_is_the_taps() -> None:
    status = Status(replica_id="r")
    history = History(status, Clock(100.0))
    assert history.last_batch_at_s is None
    status.last_batch_at_s = 103.0  # written by the tap when Redis acknowledges a batch
    assert history.last_batch_at_s == 103.0


def test_csp_allows_only_the_page_own_script_and_style() -> None:
    csp = PAGE_HEADERS["Content-Security-Policy"]
    assert "default-src 'none'" in csp and "'unsafe-inline'" not in csp and "script-src 'sha256-" in csp


def test_runbook_url_must_be_http() -> None:
    assert runbook_url_from_env({}) is None
    assert runbook_url_from_env({"STREAMS_RUNBOOK_URL": "https://wiki/x"}) == "https://wiki/x"
    with pytest.raises(SettingsError, match="STREAMS_RUNBOOK_URL"):
        runbook_url_from_env({"STREAMS_RUNBOOK_URL": "javascript:alert(1)"})


@pytest.mark.parametrize(
    ("header", "gzipped"),
    [
        (None, False),
        ("", False),
        ("gzip", True),
        ("deflate, gzip;q=0.5", True),
        ("gzip;q=0", False),
        ("GZIP", True),
        ("identity", False),
        ("*", True),
        ("*;q=1, gzip;q=0", False),
        ("x-gzip", True),
    ],
)
def test_accept_encoding(header: str | None, gzipped: bool) -> None:
    assert accepts_gzip(header) is gzipped


def test_gzip_body_decompresses_to_the_same_exposition() -> None:
    body = metrics_from(make_view({f"org_{i}": i / 3 for i in range(10_000)}))
    zipped, headers = encode_metrics(body, "gzip")
    assert headers["Content-Encoding"] == "gzip" and headers["Vary"] == "Accept-Encoding"
    assert gzip.decompress(zipped) == body
    assert len(zipped) < len(body) / 4
    plain, headers = encode_metrics(body, None)
    assert plain == body and "Content-Encoding" not in headers


class _FailingSidecar:
    def __init__(self) -> None:
        self.status = Status(replica_id="r", redis_ok=True, leader=True)
        self.settings = Settings()
        self.history = History(self.status)
        self.lag = None
        self.lag_exposition = None

    async def exporting_snapshot(self, scraper: str | None = None) -> Snapshot | None:
        raise RedisConnectionError("connection refused")


def test_a_failed_read_is_reported_and_leaves_the_status_alone() -> None:
    sidecar = _FailingSidecar()
    view = asyncio.run(gather_view(sidecar))  # type: ignore[arg-type]
    assert sidecar.status.redis_ok is True  # the sidecar's own Redis loops own redis_ok
    assert view.snapshot is None and view.tables_error is not None and "connection refused" in view.tables_error
    live = render_live(view)
    assert "The tables could not be read: ConnectionError: connection refused" in live
    assert "holds the exporter lease, but the tables could not be read" in live
