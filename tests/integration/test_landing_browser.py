"""The landing page in a real browser (headless Chromium) against a running sidecar with known events:
the figures equal the truth and /metrics, basic auth guards it, hostile org ids stay text, it refreshes
in place, reads with scripts off, and fits a laptop and a phone screen. Screenshots are kept on disk;
with STREAMS_SCREENSHOT set to a path (relative: to the repository root), the laptop-sized page is also
saved there (`STREAMS_SCREENSHOT=docs/status-page.png` refreshes the documentation's picture).
"""

from __future__ import annotations

import base64
import gzip
import json
import os
import re
import ssl
import time
import urllib.request
from pathlib import Path

import bcrypt
import orjson
import pytest

from streams.local.scrape import Samples, parse, series, value
from streams.local.sidecar_proc import SidecarProc, wait_until
from streams.local.topics import make_topics
from tests.integration.browser import Browser
from tests.integration.conftest import BROKER_KIND, Names, self_signed, sidecar_env
from tests.integration.kafka_io import Out, commit_group, produce

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = Path(os.environ.get("STREAMS_ARTIFACTS_DIR") or ROOT / "artifacts")
WATCHED_SLO_SECONDS = 30.0  # partition 0's oldest record is 2 minutes old: above it; partition 1's is new
HOSTILE = [
    "<script>window.__pwned=1</script>",
    '"><img src=x onerror="window.__pwned=1">',
    "a&amp;b & <b>bold</b> 'quoted'",
    "</td></tr></table><iframe src=about:blank></iframe>",
]
ORGS = [f"org_{i:02d}" for i in range(11)] + HOSTILE
KWH = {org: 0.5 + 0.25 * i for i, org in enumerate(ORGS)}  # the hostile ids use the most: all in the top 10
USER, PASSWORD = "prometheus", "page pass"
FIGURES_JS = "JSON.stringify(Object.fromEntries([...document.querySelectorAll('data[id]')].map(d => [d.id, d.value])))"


def _event(org: str, user: str, ts_ms: int) -> dict[str, object]:
    return {
        "org_id": org,
        "user_id": user,
        "provider": "openai",
        "model": "gpt-4o",
        "tokens_in": 1,
        "tokens_out": 2,
        "ts": ts_ms,
    }


def _produce_known_events(bootstrap: str, names: Names) -> tuple[int, int]:
    """Two users per org, then one enriched record per org; the first 3 raw records are 2 minutes old
    on partition 0 and left unconsumed by the watched group: that partition is above the lag SLO."""
    now = int(time.time() * 1000)
    raws: list[Out] = []
    for i, org in enumerate(ORGS):
        for user in ("u1", "u2"):
            n = len(raws)
            partition, broker_ts = (0, now - 120_000) if n < 3 else (1, now)
            raws.append(Out(orjson.dumps(_event(org, user, now - 1000 + i)), partition, broker_ts))
    enriched = [
        Out(orjson.dumps({**_event(org, "u1", now - 500), "kwh": KWH[org], "co2_kg": KWH[org] * 0.4})) for org in ORGS
    ]
    produce(bootstrap, names.raw, raws)
    produce(bootstrap, names.enriched, enriched)
    commit_group(bootstrap, names.watch_group, names.raw, {0: 0, 1: len(raws) - 3})
    return len(raws), len(enriched)


def _folded(proc: SidecarProc, names: Names, raw: int, enriched: int) -> Samples | None:
    m = proc.scrape()
    done = [value(m, "ecomind_streams_events_processed_total", topic=t) for t in (names.raw, names.enriched)]
    return m if done == [float(raw), float(enriched)] else None


def _lag_measured(proc: SidecarProc, names: Names) -> Samples | None:
    m = proc.scrape()
    seconds = value(m, "ecomind_worker_kafka_lag_seconds", topic=names.raw, partition="0") or 0.0
    return m if value(m, "ecomind_worker_kafka_lag", topic=names.raw, partition="0") == 3.0 and seconds > 60 else None


def _gzip_scrape(proc: SidecarProc, accept: str | None) -> tuple[str | None, bytes]:
    request = urllib.request.Request(proc.url + "/metrics")
    request.add_header("Authorization", "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode())
    if accept:
        request.add_header("Accept-Encoding", accept)
    with urllib.request.urlopen(request, timeout=5, context=proc.tls) as resp:
        return resp.headers.get("Content-Encoding"), resp.read()


def _business(m: Samples) -> Samples:
    prefixes = ("ecomind_daily_", "ecomind_total_", "ecomind_events_ingested", "ecomind_api_calls")
    return {k: v for k, v in m.items() if k[0].startswith(prefixes)}


def test_landing_page_in_a_real_browser(broker, redis_server, names: Names, workdir: Path) -> None:  # type: ignore[no-untyped-def]
    home = workdir / f"landing-{names.app_id}"
    home.mkdir()
    cert, _ = self_signed(home)
    hashed = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(rounds=4)).decode()
    config = home / "web-config.yml"
    config.write_text(
        "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n"
        f"basic_auth_users:\n  {USER}: '{hashed}'\n"
    )
    make_topics(broker.bootstrap, [names.raw, names.enriched], partitions=2)
    raw_n, enriched_n = _produce_known_events(broker.bootstrap, names)
    env = sidecar_env(
        broker,
        redis_server,
        names,
        STREAMS_WEB_CONFIG_FILE=str(config),
        STREAMS_LAG_SLO_SECONDS=f"{re.escape(names.watch_group)}={WATCHED_SLO_SECONDS:g}",
    )
    proc = SidecarProc(home, env, tls=ssl.create_default_context(cafile=str(cert)), auth=(USER, PASSWORD)).start()
    browser: Browser | None = None
    shots = ARTIFACTS / f"landing-{BROKER_KIND}"
    try:
        proc.wait_ready()
        wait_until(lambda: _folded(proc, names, raw_n, enriched_n), 60, what="all known events folded")
        wait_until(lambda: _lag_measured(proc, names), 30, what="lag of partition 0 measured")

        # gzip on /metrics: only when asked, and the same exposition once decompressed.
        encoding, zipped = _gzip_scrape(proc, "gzip")
        assert encoding == "gzip"
        plain_encoding, plain = _gzip_scrape(proc, None)
        assert plain_encoding is None and plain.startswith(b"# HELP")
        assert _business(parse(gzip.decompress(zipped).decode())) == _business(parse(plain.decode()))

        browser = Browser(home / "browser").start()
        page = proc.url + "/"
        # No credentials: 401, and none of the figures.
        assert browser.navigate(page) == 401
        assert browser.evaluate("document.getElementById('kwh-today') === null") is True
        assert proc.get("/", auth=(USER, "wrong"))[0] == 401
        assert proc.get("/live", auth=(USER, "wrong"))[0] == 401

        browser.credentials(USER, PASSWORD)
        browser.viewport(1280, 800, mobile=False)
        assert browser.navigate(page) == 200
        figures = json.loads(browser.evaluate(FIGURES_JS))
        m = proc.scrape()  # the business figures are quiet now: this scrape and the page saw the same
        truth = {
            "active-orgs": len(ORGS),
            "active-users": 2 * len(ORGS),
            "kwh-today": sum(KWH.values()),
            "co2-today": sum(KWH.values()) * 0.4,
            "events-ingested": raw_n,
            "records-window": raw_n + enriched_n,
        }
        for key, want in truth.items():
            assert float(figures[key]) == pytest.approx(want, rel=1e-9), key
        assert float(figures["active-orgs"]) == value(m, "ecomind_daily_active_orgs")
        assert float(figures["active-users"]) == value(m, "ecomind_daily_active_users")
        assert float(figures["kwh-today"]) == pytest.approx(sum(series(m, "ecomind_total_kwh_today").values()))
        assert float(figures["co2-today"]) == pytest.approx(sum(series(m, "ecomind_total_co2_kg_today").values()))
        assert float(figures["events-ingested"]) == sum(series(m, "ecomind_events_ingested_total").values())

        # Top 10 by energy, hostile ids included, read back as text; nothing of theirs became markup.
        top = browser.evaluate("[...document.querySelectorAll('#top-orgs td.org')].map(td => td.textContent)")
        assert top == sorted(ORGS, key=lambda o: -KWH[o])[:10]
        top_kwh = browser.evaluate(
            "[...document.querySelectorAll('#top-orgs tbody tr')].map(tr => tr.cells[2].firstChild.value)"
        )
        assert [float(v) for v in top_kwh] == [value(m, "ecomind_total_kwh_today", org_id=o) for o in top]
        assert browser.evaluate("document.querySelectorAll('script').length") == 1
        assert browser.evaluate("document.querySelectorAll('img, iframe, b').length") == 0
        assert browser.evaluate("window.__pwned === undefined") is True
        assert browser.evaluate("document.getElementById('exporter').dataset.leader") == "1"

        # Lag per partition against the watched group's SLO from the settings, as /metrics exports it;
        # partition 0 highlighted above it.
        slo = float(browser.evaluate("document.getElementById('lag-slo').value"))
        assert (
            slo
            == WATCHED_SLO_SECONDS
            == value(m, "ecomind_consumergroup_lag_slo_seconds", kafka_cluster="default", group=names.watch_group)
        )
        over = browser.evaluate("[...document.querySelectorAll('#lag tr.over')].map(tr => tr.dataset.partition)")
        assert over == ["0"]
        assert browser.evaluate("document.querySelectorAll('#lag tbody tr').length") == 2
        steps = browser.evaluate("document.querySelector('#rate svg polyline').points.numberOfItems")
        assert steps >= 2

        # The live part is swapped in place: same document (a marker survives), newer render time.
        before = browser.evaluate("window.__marker = 7; document.getElementById('rendered-at').dataset.at")
        wait_until(
            lambda: browser.evaluate("document.getElementById('rendered-at').dataset.at") != before,
            20,
            what="the live part refreshed",
        )
        assert browser.evaluate("window.__marker") == 7
        print(f"landing page screenshots: {browser.screenshot(shots / 'landing-1280x800.png')}")
        if wanted := os.environ.get("STREAMS_SCREENSHOT"):
            print(f"status page screenshot: {browser.screenshot(ROOT / wanted)}")  # an absolute path stays as is

        # The health table lists /ready's checks, in its order, all passing on this healthy replica.
        status, ready = proc.get("/ready")
        checks = json.loads(ready)["checks"]
        assert status == 200 and all(c["ok"] for c in checks), checks
        rows = browser.evaluate(
            "[...document.querySelectorAll('#health tr[data-check]')].map(tr => [tr.dataset.check, tr.dataset.ok])"
        )
        assert rows == [["ready", "1"]] + [[c["name"], "1"] for c in checks]

        # Readable on a phone: nothing wider than the screen, the figures inside it.
        browser.viewport(390, 844, mobile=True)
        assert browser.navigate(page) == 200
        widths = browser.evaluate(
            "[document.documentElement.scrollWidth, window.innerWidth,"
            " document.getElementById('kwh-today').getBoundingClientRect().right,"
            " parseFloat(getComputedStyle(document.body).fontSize)]"
        )
        assert widths[1] == 390 and widths[0] <= widths[1] and widths[2] <= widths[1] and widths[3] >= 14, widths
        browser.screenshot(shots / "landing-390x844.png")
        browser.viewport(1280, 800, mobile=False)
        assert browser.navigate(page) == 200
        wide = browser.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
        assert wide[1] == 1280 and wide[0] <= wide[1], wide

        # Scripts off: the page is complete, and reloads itself through <noscript>.
        browser.scripts(False)
        assert browser.navigate(page) == 200
        figures_off = json.loads(browser.evaluate(FIGURES_JS))
        assert float(figures_off["kwh-today"]) == pytest.approx(sum(KWH.values()))
        assert browser.evaluate("document.querySelector('meta[http-equiv=refresh]') !== null") is True
        browser.screenshot(shots / "landing-noscript.png")
    finally:
        if browser is not None:
            browser.stop()
        proc.stop()
