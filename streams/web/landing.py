"""The landing page at `/`: who this replica is, whether it is healthy, and today's figures.

Server-rendered HTML from the same View a scrape renders (streams/web/view.py), so the page and /metrics
agree. Every value from outside (org ids, replica id, error text) goes through `_e`. A few lines of
plain script swap in the live part (`/live`) every few seconds; with scripts off the page is complete
and a <noscript> refresh reloads it.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import html
import os
from collections.abc import Mapping
from importlib.metadata import PackageNotFoundError, version

from streams.settings import SettingsError
from streams.web.chart import rate_chart
from streams.web.history import WINDOW_SECONDS
from streams.web.view import View

NAME = "EcoMind Streams"
REFRESH_SECONDS = 5
TOP_ORGS = 10
OTHER = "__other__"  # the label value orgs beyond the series cap are folded into

_STYLE = """
body{font:16px/1.45 system-ui,sans-serif;margin:0 auto;max-width:64rem;padding:1rem;color:#1a1a1a;background:#fff}
h1{font-size:1.5rem;margin:.2rem 0}h1 small{font-size:.9rem;color:#555;font-weight:normal}
h2{font-size:1.15rem;margin:1.2rem 0 .4rem;border-bottom:1px solid #ddd}h3{font-size:1rem;margin:.6rem 0 .3rem}
nav a{margin-right:1rem;white-space:nowrap}
.grid{display:grid;grid-template-columns:repeat(auto-fit,minmax(17rem,1fr));gap:0 2rem;align-items:start}
dl{display:grid;grid-template-columns:max-content 1fr;gap:.2rem 1rem;margin:.6rem 0;align-content:start}
dt{color:#555}dd{margin:0}dd,.org,.topic,#health td{overflow-wrap:anywhere}
table{border-collapse:collapse;width:100%}
th,td{text-align:left;padding:.25rem .5rem;border-bottom:1px solid #eee}
.n{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}.slo{white-space:nowrap}
.ok{color:#1b7a1b}.bad{color:#b00020;font-weight:600}tr.over{background:#fde8ea}
.chart{width:100%;height:8rem;color:#2255aa;display:block;background:#f6f8fb}
.axis{display:flex;justify-content:space-between;color:#555;font-size:.85rem}
footer{margin-top:1.5rem;color:#555;font-size:.85rem}
@media (max-width:30rem){body{padding:.6rem}th,td{padding:.2rem .3rem}}
"""
_SCRIPT = (
    "(()=>{const live=document.getElementById('live');"
    f"setInterval(async()=>{{try{{const r=await fetch('live',{{cache:'no-store'}});"
    f"if(r.ok)live.innerHTML=await r.text();}}catch(e){{}}}},{REFRESH_SECONDS * 1000});}})();"
)


def _sha256(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode() + "'"


# Only our own script and style may run: markup that slipped through escaping could still do nothing.
PAGE_HEADERS = {
    "Content-Security-Policy": (
        f"default-src 'none'; script-src {_sha256(_SCRIPT)}; style-src {_sha256(_STYLE)}; "
        "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


def runbook_url_from_env(environ: Mapping[str, str] | None = None) -> str | None:
    """STREAMS_RUNBOOK_URL: where the page's runbook link points (RUNBOOK.md is not in the image)."""
    url = (os.environ if environ is None else environ).get("STREAMS_RUNBOOK_URL", "").strip()
    if not url:
        return None
    if not url.startswith(("https://", "http://")):
        raise SettingsError(f"STREAMS_RUNBOOK_URL={url!r}: expected an http:// or https:// URL")
    return url


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def _version() -> str:
    try:
        return version("ecomind-streams")
    except PackageNotFoundError:
        return "unknown"


def _data(ident: str, value: float, shown: str) -> str:
    """A figure as shown, with the exact value /metrics exports in its `value` attribute."""
    return f'<data id="{ident}" value="{value!r}">{shown}</data>'


def _duration(seconds: float) -> str:
    s = int(max(0.0, seconds))
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60} s"
    if s < 86_400:
        return f"{s // 3600} h {s % 3600 // 60} min"
    return f"{s // 86_400} d {s % 86_400 // 3600} h"


def _state(ok: bool, good: str, bad: str) -> str:
    return f'<span class="ok">{good}</span>' if ok else f'<span class="bad">{bad}</span>'


def _replica(view: View) -> str:
    st, hist = view.status, view.history
    uptime = _duration(view.now_s - hist.started_at_s) if hist else "unknown"
    rendered = dt.datetime.fromtimestamp(view.now_s, dt.UTC).strftime("%H:%M:%S UTC")
    return (
        "<section><h2>This replica</h2><dl>"
        f'<dt>Replica</dt><dd id="replica-id">{_e(st.replica_id)}</dd>'
        f'<dt>Exporter</dt><dd id="exporter" data-leader="{int(st.leader)}">{_e(view.exporter_state())}</dd>'
        f"<dt>Uptime</dt><dd>{uptime}</dd>"
        f'<dt>Shown at</dt><dd id="rendered-at" data-at="{view.now_s!r}">{rendered}</dd></dl></section>'
    )


def _health(view: View) -> str:
    st, hist = view.status, view.history
    if hist is None or hist.last_batch_at_s is None:
        last_batch = "none yet"
    else:
        last_batch = f"{_duration(view.now_s - hist.last_batch_at_s)} ago"
    checks = st.checks()
    failing = [c.label for c in checks if not c.ok]
    # The same list /ready answers with (Status.checks), one row each, with the reason when it fails.
    rows = [_check_row("ready", "Ready", not failing, "ready", "not ready: " + ", ".join(failing))]
    rows += [_check_row(c.name, c.label, c.ok, _e(c.shown), _e(c.reason)) for c in checks]
    rows += [
        _row("Last batch", f"{last_batch} ({st.batches:,} batches)"),
        _row("Dead letters", f'<data id="dead-letters" value="{st.dead_letters}">{st.dead_letters:,}</data>'),
        _row("Dead-letter errors", _state(st.dead_letter_errors == 0, "0", f"{st.dead_letter_errors:,}")),
        _row("Redis errors", _state(st.redis_errors == 0, "0", f"{st.redis_errors:,}")),
    ]
    for (topic, partition), stall in sorted(st.stalled.items()):
        since = _duration(view.now_s - stall.since_unix_s)
        at = "an unknown offset" if stall.offset is None else f"offset {stall.offset}"
        what = (
            f"stalled at {at} for {since}: {_e(stall.reason)} ({_e(stall.detail)}); its events are not counted "
            "until it reads again (retried with back-off), the other partitions go on"
        )
        rows.append(_row(f"Partition {_e(topic)}/{partition}", _state(False, "", what)))
    if view.tables_error is not None:
        rows.append(_row("Tables read", _state(False, "", _e(view.tables_error))))
    return f'<section><h2>Health</h2><table id="health">{"".join(rows)}</table></section>'


def _row(label: str, cell: str) -> str:
    return f"<tr><th>{label}</th><td>{cell}</td></tr>"


def _check_row(name: str, label: str, ok: bool, good: str, bad: str) -> str:
    return f'<tr data-check="{name}" data-ok="{int(ok)}"><th>{label}</th><td>{_state(ok, good, bad)}</td></tr>'


def _today(view: View) -> str:
    snap = view.snapshot
    day = dt.datetime.fromtimestamp(view.now_s, view.settings.zone).date().isoformat()
    head = f"<h2>Today ({day}, {_e(view.settings.timezone)})</h2>"
    if snap is None:
        return f'<section id="today">{head}<p id="no-figures">{_e(view.no_figures_reason())}</p></section>'
    kwh, co2 = sum(snap.kwh.values()), sum(snap.co2_kg.values())
    ingested = sum(snap.ingested.values())
    figures = (
        f"<dt>Active orgs</dt><dd>{_data('active-orgs', snap.active_orgs, f'{snap.active_orgs:,}')}</dd>"
        f"<dt>Active users</dt><dd>{_data('active-users', snap.active_users, f'{snap.active_users:,}')}</dd>"
        f"<dt>Energy</dt><dd>{_data('kwh-today', kwh, f'{kwh:,.3f}')} kWh</dd>"
        f"<dt>CO2</dt><dd>{_data('co2-today', co2, f'{co2:,.3f}')} kg</dd>"
        f"<dt>Events ingested</dt><dd>{_data('events-ingested', ingested, f'{ingested:,}')} "
        "(valid raw events, all days kept)</dd>"
    )
    notes = "".join(f'<p class="bad">{_e(note)}</p>' for note in view.caveats())
    return f'<section id="today">{head}{notes}<div class="grid"><dl>{figures}</dl>{_top_orgs(view)}</div></section>'


def _top_orgs(view: View) -> str:
    snap = view.snapshot
    assert snap is not None
    ranked = sorted(((v, org) for org, v in snap.kwh.items() if org != OTHER), key=lambda p: (-p[0], p[1]))
    rows = "".join(
        f'<tr><td class="n">{rank}</td><td class="org">{_e(org)}</td>'
        f'<td class="n"><data value="{kwh!r}">{kwh:,.3f}</data></td>'
        f'<td class="n"><data value="{snap.co2_kg.get(org, 0.0)!r}">{snap.co2_kg.get(org, 0.0):,.3f}</data></td></tr>'
        for rank, (kwh, org) in enumerate(ranked[:TOP_ORGS], start=1)
    )
    note = ""
    if OTHER in snap.kwh:
        note = f"<p>Orgs beyond the series cap are counted together as {OTHER}: {snap.kwh[OTHER]:,.3f} kWh.</p>"
    if not rows:
        rows = '<tr><td colspan="4">No energy reported today yet.</td></tr>'
    return (
        f"<div><h3>Top {TOP_ORGS} orgs by energy today</h3>"
        '<table id="top-orgs"><thead><tr><th class="n">#</th><th>Org</th><th class="n">kWh</th>'
        f'<th class="n">CO2 kg</th></tr></thead><tbody>{rows}</tbody></table>{note}</div>'
    )


def _lag(view: View) -> str:
    if view.snapshot is None:
        return ""  # as on /metrics: lag is measured and exported by the exporter only
    lag = view.lag
    slo, source = view.lag_slo()
    shown = _data("lag-slo", slo, f"{slo:g}")
    head = f"<h2>Lag of group {_e(view.settings.watch_group)} (SLO {shown} s, {source})</h2>"
    if lag is None:
        why = ": Kafka does not answer this replica" if not view.status.broker_ok else ""
        return f'<section id="lag">{head}<p>Not measured yet{why}.</p></section>'
    rows = []
    watched = lag.watched
    for p in watched.partitions if watched is not None else ():
        # An unknown age with messages waiting counts as above the SLO, as the alert does.
        over = p.lag_seconds is None or p.lag_seconds > slo
        seconds = "unknown" if p.lag_seconds is None else f"{p.lag_seconds:,.1f}"
        rows.append(
            f'<tr class="{"over" if over else ""}" data-topic="{_e(p.topic)}" data-partition="{p.partition}">'
            f'<td class="topic">{_e(p.topic)}</td><td class="n">{p.partition}</td>'
            f'<td class="n"><data value="{p.lag_messages}">{p.lag_messages:,}</data></td>'
            f'<td class="n"><data value="{p.lag_seconds!r}">{seconds}</data></td>'
            f'<td class="slo">{_state(not over, "within", "above")}</td></tr>'
        )
    body = "".join(rows) or '<tr><td colspan="5">No partitions.</td></tr>'
    age = _duration(view.now_s - lag.taken_at_s)
    measured = f"Measured {age} ago."
    if not view.status.broker_ok:
        measured = (
            f'<span class="bad">Kafka does not answer: these figures are from the last measurement, {age} ago.</span>'
        )
    return (
        f'<section id="lag">{head}<table><thead><tr><th>Topic</th><th class="n">Part.</th>'
        '<th class="n">Messages</th><th class="n">Seconds</th><th>SLO</th></tr></thead>'
        f"<tbody>{body}</tbody></table><p>{measured}</p></section>"
    )


def _rate(view: View) -> str:
    hist = view.history
    if hist is None:
        return ""
    rates = hist.rates(view.now_s)
    now = rates[-1][2] if rates else 0.0
    peak = max((r for _, _, r in rates), default=0.0)
    counted = hist.records_in_window(view.now_s)
    label = f"Records read per second by this replica over the last hour, peak {peak:,.1f}/s"
    return (
        '<section id="rate"><h2>Records read per second, last hour</h2>'
        f"{rate_chart(rates, view.now_s, WINDOW_SECONDS, label)}"
        '<div class="axis"><span>60 min ago</span><span>now</span></div>'
        f"<p>By this replica: now {now:,.1f}/s, peak {peak:,.1f}/s; "
        f"{_data('records-window', counted, f'{counted:,}')} records in the window, valid or not.</p></section>"
    )


def render_live(view: View) -> str:
    """The part of the page that changes: swapped in place by the page's script."""
    return f'<div class="grid">{_replica(view)}{_health(view)}</div>{_today(view)}{_lag(view)}{_rate(view)}'


def render_page(view: View, runbook_url: str | None) -> str:
    runbook = (
        f'<a href="{_e(runbook_url)}">runbook</a>'
        if runbook_url
        else "runbook: RUNBOOK.md in the repository (set STREAMS_RUNBOOK_URL to link it)"
    )
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{NAME} · {_e(view.status.replica_id)}</title>"
        f'<noscript><meta http-equiv="refresh" content="{REFRESH_SECONDS * 2}"></noscript>'
        f"<style>{_STYLE}</style></head><body>"
        f"<header><h1>{NAME} <small>{_e(_version())}</small></h1>"
        '<nav><a href="metrics">/metrics</a> <a href="health">/health</a> <a href="ready">/ready</a> '
        f"{runbook}</nav></header>"
        f'<main id="live">{render_live(view)}</main>'
        f"<footer>Updates every {REFRESH_SECONDS} s (every {REFRESH_SECONDS * 2} s by reloading with "
        "scripts off). Figures come from the same read of the tables as a scrape of /metrics.</footer>"
        f"<script>{_SCRIPT}</script></body></html>"
    )


def render_starting() -> str:
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8"><meta http-equiv="refresh" content="2">'
        f"<title>{NAME}: starting</title></head><body><p>{NAME} is starting…</p></body></html>"
    )
