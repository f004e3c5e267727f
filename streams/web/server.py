"""HTTP routes on Faust's web server: the landing page (/ and its live part), /metrics, /health, /ready."""

from __future__ import annotations

import gzip
from collections.abc import Callable
from typing import Any

from prometheus_client import CONTENT_TYPE_PLAIN_0_0_4, ProcessCollector
from prometheus_client.registry import Collector

from core.status import Status
from streams.deflated import GZIP_LEVEL, Deflated, deflated, gzip_joined
from streams.exporter import SCRAPE_HEADER
from streams.exposition import render
from streams.lag.metrics import lag_exposition
from streams.web.collectors import BusinessCollector, ReplicaCollector
from streams.web.config import WebConfig
from streams.web.landing import PAGE_HEADERS, render_live, render_page, render_starting
from streams.web.view import Source, View, gather_view


def metrics_parts(view: View) -> tuple[bytes, bytes | Deflated]:
    """The scrape's own families, and the lag's: prerendered (and precompressed) once per probe cycle."""
    collectors: list[Collector] = [ReplicaCollector(view.status), ProcessCollector(registry=None)]
    lag: bytes | Deflated = b""
    if view.snapshot is not None:
        s = view.settings
        collectors.append(BusinessCollector(view.snapshot, (s.raw_topic, s.enriched_topic)))
        # Rendered after each probe cycle, not per scrape.
        merged = view.lag_deflated or view.lag_exposition
        lag = merged if merged is not None else lag_exposition(view.lag, s)
    return render(collectors), lag


def metrics_from(view: View) -> bytes:
    head, lag = metrics_parts(view)
    return head + (lag.text if isinstance(lag, Deflated) else lag)


async def render_metrics(sidecar: Source, scraper: str | None = None) -> bytes:
    return metrics_from(await gather_view(sidecar, scraper))


def scraper_of(request: Any) -> str | None:
    """A Prometheus scrape's remote address; None for a person or a script (they never sum replicas)."""
    if request.headers.get(SCRAPE_HEADER) is None:
        return None
    return str(request.remote or "unknown")


def accepts_gzip(accept_encoding: str | None) -> bool:
    """Whether an Accept-Encoding header allows gzip (RFC 9110: `q=0` refuses, `*` stands for the rest)."""
    if not accept_encoding:
        return False
    weights: dict[str, float] = {}
    for item in accept_encoding.split(","):
        coding, _, params = item.strip().partition(";")
        q = 1.0
        for param in params.split(";"):
            key, _, val = param.strip().partition("=")
            if key.strip().lower() == "q":
                try:
                    q = float(val)
                except ValueError:
                    q = 0.0
        weights[coding.strip().lower()] = q
    for name in ("gzip", "x-gzip"):
        if name in weights:
            return weights[name] > 0
    return weights.get("*", 0.0) > 0


def encode_metrics(body: bytes, accept_encoding: str | None) -> tuple[bytes, dict[str, str]]:
    headers = {"Content-Type": CONTENT_TYPE_PLAIN_0_0_4, "Vary": "Accept-Encoding"}
    if accepts_gzip(accept_encoding):
        headers["Content-Encoding"] = "gzip"
        return gzip.compress(body, compresslevel=GZIP_LEVEL), headers
    return body, headers


def encode_parts(head: bytes, lag: bytes | Deflated, accept_encoding: str | None) -> tuple[bytes, dict[str, str]]:
    """As encode_metrics(head + lag), compressing only `head` when the lag's blocks are ready."""
    if isinstance(lag, Deflated) and accepts_gzip(accept_encoding):
        headers = {"Content-Type": CONTENT_TYPE_PLAIN_0_0_4, "Vary": "Accept-Encoding", "Content-Encoding": "gzip"}
        return gzip_joined([deflated(head), lag]), headers
    return encode_metrics(head + (lag.text if isinstance(lag, Deflated) else lag), accept_encoding)


def ready_body(st: Status) -> dict[str, Any]:
    """/ready's JSON: every readiness check with its reason, from the list the status page shows too."""
    checks = st.checks()
    body: dict[str, Any] = {
        "ready": all(c.ok for c in checks),
        "checks": [{"name": c.name, "ok": c.ok, "reason": c.reason} for c in checks],
    }
    # Each check's verdict also as a top-level flag: probes and scripts read `redis_reachable` and the like.
    body |= {c.name: c.ok for c in checks}
    body |= {
        "exporter_leader": st.leader,
        "replica_id": st.replica_id,
        # Named, not counted against readiness: every replica would go unready on one bad batch and
        # block node drains, while its other partitions are read (docs/operations.md).
        "stalled_partitions": [
            {"topic": t, "partition": p, "offset": x.offset, "reason": x.reason, "error": x.detail}
            for (t, p), x in sorted(st.stalled.items())
        ],
    }
    return body


def install_routes(
    app: Any,
    get_sidecar: Callable[[], Source | None],
    get_web_config: Callable[[], WebConfig],
    get_runbook_url: Callable[[], str | None] = lambda: None,
) -> None:
    # Probes stay open (/health, /ready carry no data and kubelets rarely send credentials); the page
    # and /metrics carry the business figures and are the routes the web-config file guards.
    def refused(web: Any, request: Any) -> Any | None:
        if get_web_config().authorized(request.headers.get("Authorization")):
            return None
        return web.bytes(
            b"Unauthorized\n",
            content_type="text/plain",
            status=401,
            headers={"WWW-Authenticate": 'Basic realm="ecomind-streams"'},
        )

    async def index(web: Any, request: Any) -> Any:
        if (denied := refused(web, request)) is not None:
            return denied
        sidecar = get_sidecar()
        if sidecar is None:
            return web.html(render_starting(), status=503, headers=dict(PAGE_HEADERS))
        page = render_page(await gather_view(sidecar), get_runbook_url())
        return web.html(page, headers=dict(PAGE_HEADERS))

    async def live(web: Any, request: Any) -> Any:
        if (denied := refused(web, request)) is not None:
            return denied
        sidecar = get_sidecar()
        if sidecar is None:
            return web.html("<p>Starting…</p>", status=503, headers=dict(PAGE_HEADERS))
        return web.html(render_live(await gather_view(sidecar)), headers=dict(PAGE_HEADERS))

    async def metrics(web: Any, request: Any) -> Any:
        if (denied := refused(web, request)) is not None:
            return denied
        sidecar = get_sidecar()
        if sidecar is None:
            return web.bytes(b"# starting\n", content_type="text/plain", status=503)
        head, lag = metrics_parts(await gather_view(sidecar, scraper_of(request)))
        body, headers = encode_parts(head, lag, request.headers.get("Accept-Encoding"))
        return web.bytes(body, headers=headers)

    async def health(web: Any, request: Any) -> Any:
        return web.json({"status": "ok"})

    async def ready(web: Any, request: Any) -> Any:
        sidecar = get_sidecar()
        if sidecar is None:
            return web.json({"ready": False, "reason": "starting"}, status=503)
        body = ready_body(sidecar.status)
        return web.json(body, status=200 if body["ready"] else 503)

    # "/" first: Faust's own placeholder index at "/" is mounted later and never reached.
    app.page("/")(index)
    app.page("/live")(live)
    app.page("/metrics")(metrics)
    app.page("/health")(health)
    app.page("/ready")(ready)
