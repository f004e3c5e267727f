"""EcoMind Streams: Kafka topics in, Prometheus metrics out. Run with `faust -A streams worker`.

The app is built on first access (`streams.app`), so that importing a module of the package (the tap,
the fold, the simulator's targets) does not build a Faust app and its whole import graph first.
"""

from __future__ import annotations

from typing import Any

__all__ = ["app", "create_app"]


def __getattr__(name: str) -> Any:
    if name == "create_app":
        from streams.app import create_app

        return create_app
    if name == "app":
        from streams.app import create_app

        globals()["app"] = built = create_app()
        return built
    raise AttributeError(name)
