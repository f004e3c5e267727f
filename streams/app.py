"""The Faust app: hosts the sidecar's services, its web routes and the `faust` command line.

Faust's own Kafka consumer is switched off: the tap agent owns the input consumer so that it can
read in batches and keep offsets with the tables (see agents/tap.py for the measured reason).
"""

from __future__ import annotations

import logging
import sys
from typing import Any

import faust
import mode
from faust.app.base import BootStrategy

from core.compiled import stale_reason
from streams.auth.sasl_token import TokenError, TokenRejected
from streams.runtime import tune_gc
from streams.settings import Settings, SettingsError
from streams.sidecar import Sidecar
from streams.web.config import WebConfig, WebConfigError, load_web_config
from streams.web.landing import runbook_url_from_env
from streams.web.server import install_routes

log = logging.getLogger(__name__)


class _Boot(BootStrategy):
    enable_kafka = False
    # Faust's Monitor sensor samples its event and message rates every second: rates of the Faust streams
    # this app does not run, shown nowhere; the sidecar's own figures are in /metrics.
    enable_sensors = False


class StreamsApp(faust.App):
    BootStrategy = _Boot
    streams_settings: Settings | None = None
    sidecar: Sidecar | None = None
    web_config: WebConfig = WebConfig()
    runbook_url: str | None = None


def create_app(settings: Settings | None = None) -> StreamsApp:
    app = StreamsApp("ecomind-streams", autodiscover=False, web_enabled=True)

    @app.on_configured.connect
    def _configure(sender: Any, /, *args: Any, **kwargs: Any) -> None:
        conf = args[0]
        stale = stale_reason()
        if stale:
            # Stale builds would run code that is not in the checkout, silently; refuse, as for a bad setting.
            print(f"ecomind-streams: {stale}", file=sys.stderr)
            raise SystemExit(2)
        try:
            chosen = settings if settings is not None else Settings.from_env()
            app.runbook_url = runbook_url_from_env()
        except SettingsError as exc:
            # A bad setting is an operator's typo, not a crash: say which one, without a traceback.
            print(f"ecomind-streams: invalid setting: {exc}", file=sys.stderr)
            raise SystemExit(2) from None
        app.streams_settings = chosen
        if chosen.web_config_file:
            try:
                app.web_config = load_web_config(chosen.web_config_file)
            except WebConfigError as exc:
                print(f"ecomind-streams: invalid STREAMS_WEB_CONFIG_FILE: {exc}", file=sys.stderr)
                raise SystemExit(2) from None
            conf.web_ssl_context = app.web_config.ssl_context
        conf.id = chosen.app_id
        conf.broker = f"kafka://{chosen.bootstrap_servers.split(',')[0]}"
        conf.web_port = chosen.web_port
        conf.web_bind = chosen.web_bind
        conf.web_host = chosen.web_bind if chosen.web_bind != "0.0.0.0" else "localhost"

    @app.service
    class SidecarService(mode.Service):
        async def on_start(self) -> None:
            tune_gc()
            web_port = app.conf.web_port  # reading conf runs _configure, which loads the settings
            chosen = app.streams_settings
            assert chosen is not None
            await _check_kafka_token(chosen)
            app.sidecar = Sidecar(chosen, web_port)
            await app.sidecar.start()
            scheme = "https" if app.web_config.ssl_context else "http"
            log.info("status page at %s://%s:%s/", scheme, app.conf.web_host, web_port)
            log.info("metrics at %s://%s:%s/metrics", scheme, app.conf.web_host, web_port)

        async def on_stop(self) -> None:
            if app.sidecar is not None:
                await app.sidecar.stop()

    install_routes(app, lambda: app.sidecar, lambda: app.web_config, lambda: app.runbook_url)
    return app


async def _check_kafka_token(settings: Settings) -> None:
    """A first token (OAuth, MSK IAM) before any Kafka client: refused or missing credentials stop the
    worker with exit code 2, as a bad setting does, instead of clients retrying what cannot succeed. An
    endpoint that does not answer yet is waited for like any other service: the clients ask again when
    they connect."""
    provider = settings.kafka.token_provider
    if provider is None:
        return
    try:
        await provider.token()
    except TokenRejected as exc:
        print(f"ecomind-streams: Kafka {provider.label}: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    except TokenError as exc:
        log.warning("no Kafka %s token yet (the Kafka clients keep asking): %s", provider.label, exc)
