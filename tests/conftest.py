"""Session-wide: no test runs against a compiled hot path older than its sources (core/compiled.py)."""

from __future__ import annotations

import pytest

from core.compiled import stale, stale_message


def pytest_sessionstart(session: pytest.Session) -> None:
    modules = stale()
    if modules:
        pytest.exit(stale_message(modules), returncode=2)
