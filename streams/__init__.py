"""EcoMind Streams: Kafka topics in, Prometheus metrics out. Run with `faust -A streams worker`."""

from streams.app import create_app

app = create_app()

__all__ = ["app", "create_app"]
