"""Which of Faust's services the worker starts: the web server and the sidecar, not what the sidecar
does not use (idle cost, docs/performance.md)."""

from __future__ import annotations

from streams.app import create_app
from streams.settings import Settings


def test_the_monitor_sensor_does_not_run_but_the_web_server_does() -> None:
    app = create_app(Settings())
    started = list(app.on_init_dependencies())
    names = sorted(type(service).__name__ for service in started)
    # Faust's Monitor would wake every second to sample rates of Faust streams this app does not run; no
    # Kafka consumer, producer or table manager of Faust's either: the tap owns the input consumer.
    assert names == ["AgentManager", "CacheBackend", "Web"]
    assert any(service is app.web for service in started)  # /metrics, /ready and the landing page
    assert not any(service is app.monitor for service in started)
