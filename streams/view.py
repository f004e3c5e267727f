"""What one request sees: the replica's status and, on the exporter, the tables' snapshot, read once.

/metrics and the landing page are both rendered from a View, so the figures a person reads on the
page are the same numbers a scrape at that moment exports: one read of the tables, two renderings.
"""

from __future__ import annotations

import copy
import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from redis.exceptions import RedisError

from streams.history import History
from streams.settings import Settings
from streams.status import Status
from tables.snapshot import Snapshot

if TYPE_CHECKING:
    from streams.sidecar import Sidecar

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class View:
    status: Status  # a copy taken when the view was gathered
    snapshot: Snapshot | None  # None when this replica is not the exporter, or the tables were unreadable
    tables_error: str | None
    settings: Settings
    history: History | None
    now_s: float


async def gather_view(sidecar: Sidecar, scraper: str | None = None) -> View:
    """`scraper`: the remote address of a Prometheus scrape of /metrics (the hand-over counts those)."""
    error = None
    try:
        snap = await sidecar.exporting_snapshot(scraper)
    except (RedisError, OSError) as exc:
        # Reported, not recorded: the sidecar's own Redis loops own `redis_ok`, a scrape only reads.
        log.warning("could not read the tables: %s", exc)
        snap, error = None, f"{type(exc).__name__}: {exc}"
    status = copy.copy(sidecar.status)
    status.exporting = snap is not None  # on the copy: what this very response carries
    return View(
        status=status,
        snapshot=snap,
        tables_error=error,
        settings=sidecar.settings,
        history=sidecar.history,
        now_s=time.time(),
    )
