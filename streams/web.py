"""HTTP routes: /metrics, /health and /ready on Faust's web server."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from prometheus_client import CONTENT_TYPE_PLAIN_0_0_4, ProcessCollector
from prometheus_client.registry import Collector
from redis.exceptions import RedisError

from streams.exposition import render
from streams.lag_metrics import lag_exposition
from streams.metrics import BusinessCollector, ReplicaCollector
from streams.web_config import WebConfig

if TYPE_CHECKING:
    from streams.sidecar import Sidecar

log = logging.getLogger(__name__)


async def render_metrics(sidecar: Sidecar) -> bytes:
    collectors: list[Collector] = [ReplicaCollector(sidecar.status), ProcessCollector(registry=None)]
    try:
        snap = await sidecar.exporting_snapshot()
        sidecar.status.redis_ok = True
    except (RedisError, OSError) as exc:
        sidecar.status.redis_ok = False
        log.warning("scrape could not read the tables: %s", exc)
        snap = None
    lag = b""
    if snap is not None:
        s = sidecar.settings
        collectors.append(BusinessCollector(snap, (s.raw_topic, s.enriched_topic)))
        lag = lag_exposition(sidecar.status.lag, s)  # rendered after the probe cycle, not per scrape
    return render(collectors) + lag


def install_routes(app: Any, get_sidecar: Any, get_web_config: Any) -> None:
    # Probes stay open (/health, /ready carry no data and kubelets rarely send credentials); /metrics
    # carries the business figures and is the route the web-config file guards.
    async def metrics(web: Any, request: Any) -> Any:
        config: WebConfig = get_web_config()
        if not config.authorized(request.headers.get("Authorization")):
            return web.bytes(
                b"Unauthorized\n",
                content_type="text/plain",
                status=401,
                headers={"WWW-Authenticate": 'Basic realm="ecomind-streams"'},
            )
        sidecar = get_sidecar()
        if sidecar is None:
            return web.bytes(b"# starting\n", content_type="text/plain", status=503)
        body = await render_metrics(sidecar)
        return web.bytes(body, headers={"Content-Type": CONTENT_TYPE_PLAIN_0_0_4})

    async def health(web: Any, request: Any) -> Any:
        return web.json({"status": "ok"})

    async def ready(web: Any, request: Any) -> Any:
        sidecar = get_sidecar()
        if sidecar is None:
            return web.json({"ready": False, "reason": "starting"}, status=503)
        st = sidecar.status
        body = {
            "ready": st.ready,
            "tables_recovered": not st.recovering,
            "broker_reachable": st.broker_ok,
            "redis_reachable": st.redis_ok,
            "exporter_leader": st.leader,
            "replica_id": st.replica_id,
        }
        return web.json(body, status=200 if st.ready else 503)

    app.page("/metrics")(metrics)
    app.page("/health")(health)
    app.page("/ready")(ready)
