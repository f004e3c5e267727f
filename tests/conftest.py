"""Session-wide: no test runs against a compiled hot path older than its sources (core/compiled.py)."""

from __future__ import annotations

import pytest

from core.compiled import stale_reason


def pytest_sessionstart(session: pytest.Session) -> None:
    stale = stale_reason()
    if stale:
        pytest.exit(stale, returncode=2)
