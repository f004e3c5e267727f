"""What one request sees: the replica's status and, on the exporter, the tables' snapshot, read once.

/metrics and the landing page are both rendered from a View, so the figures a person reads on the
page are the same numbers a scrape at that moment exports: one read of the tables, two renderings.
The page's words about the replica's state are worked out here too, as plain text the page escapes.
"""

from __future__ import annotations

import copy
import logging
import time
from dataclasses import dataclass
from typing import Protocol

from redis.exceptions import RedisError

from core.ratelog import RateLimitedLog
from core.status import Status
from streams.deflated import Deflated
from streams.lag.model import LagSnapshot, slo_seconds
from streams.settings import Settings, lag_slo_rules
from streams.web.history import History
from tables.snapshot import Snapshot

log = logging.getLogger(__name__)
_unread = RateLimitedLog(log)


class Source(Protocol):
    """What a request reads of the running sidecar: declared here so that the web side never imports the
    composition root (streams/sidecar.py), which builds it and hands itself down."""

    status: Status
    settings: Settings
    history: History

    @property
    def lag(self) -> LagSnapshot | None: ...

    @property
    def lag_exposition(self) -> bytes | None: ...

    async def exporting_snapshot(self, scraper: str | None = None) -> Snapshot | None: ...


@dataclass(frozen=True)
class View:
    status: Status  # a copy taken when the view was gathered
    snapshot: Snapshot | None  # None when this replica is not the exporter, or the tables were unreadable
    tables_error: str | None
    settings: Settings
    history: History | None
    now_s: float
    lag: LagSnapshot | None = None  # the last probe cycle's; None until one has run
    lag_exposition: bytes | None = None  # every cluster's lag families, merged (streams/lag/clusters.py)
    lag_deflated: Deflated | None = None  # the same with its gzip blocks (streams/deflated.py)

    def exporter_state(self) -> str:
        """Whether this replica exports the business figures and, when not, why."""
        st = self.status
        if st.exporting:
            return "yes: exports the fleet's business figures"
        if self.tables_error is not None:
            return "holds the exporter lease, but the tables could not be read (see Today)"
        if not st.redis_ok:
            return "no: this replica cannot reach Redis, where the exporter lease and the figures live"
        if st.leader:
            return "holds the exporter lease: exports once the last exporter's figures are stale in Prometheus"
        return "no: another replica holds the exporter lease"

    def no_figures_reason(self) -> str:
        """Why the page shows no business figures (the snapshot is None), and what to check."""
        st = self.status
        if self.tables_error is not None:
            return (
                f"The tables could not be read: {self.tables_error}. They live in Redis: check that it answers "
                "(REDIS_URL, the server, its password) and this replica's log."
            )
        if not st.redis_ok:
            # Not "another replica exports them": with Redis out of reach nothing here says one does.
            return (
                "Redis is unreachable from this replica, so the figures kept there cannot be read. Check "
                "REDIS_URL, the Redis server and its password; /ready names the failing check."
            )
        if st.leader:
            return (
                "This replica holds the exporter lease and shows the fleet's figures once the last exporter's "
                "are stale in Prometheus (about one scrape interval)."
            )
        return (
            "This replica is not the exporter: another replica holds the exporter lease, and its page shows "
            "the fleet's figures."
        )

    def caveats(self) -> list[str]:
        """What keeps the figures shown behind the topics, as far as this replica's own partitions go."""
        st, notes = self.status, []
        if st.rewound_partitions:
            notes.append(
                f"{st.rewound_partitions} of this replica's partitions re-read records Redis lost: the figures "
                "are short until they catch up."
            )
        if st.recovering:
            notes.append("This replica is positioning its partitions: their new records are counted once it reads.")
        if not st.broker_ok:
            notes.append("Kafka does not answer this replica: its partitions' new records are not counted meanwhile.")
        if st.stalled:
            notes.append(
                f"{len(st.stalled)} of this replica's partitions are stalled (see Health): their events are not "
                "counted until they read again."
            )
        return notes

    def lag_slo(self) -> tuple[float, str]:
        """The watched group's lag SLO, the value /metrics exports as ecomind_consumergroup_lag_slo_seconds,
        and the setting it comes from."""
        s = self.settings
        rules = lag_slo_rules(s.lag_slo_seconds)
        matched = any(pattern.fullmatch(s.watch_group) for pattern, _ in rules)
        seconds = slo_seconds(s.watch_group, rules, s.lag_slo_default_seconds)
        return seconds, "STREAMS_LAG_SLO_SECONDS" if matched else "STREAMS_LAG_SLO_DEFAULT_SECONDS"


async def gather_view(sidecar: Source, scraper: str | None = None) -> View:
    """`scraper`: the remote address of a Prometheus scrape of /metrics (the hand-over counts those)."""
    error = None
    try:
        snap = await sidecar.exporting_snapshot(scraper)
    except (RedisError, OSError) as exc:
        # Reported, not recorded: the sidecar's own Redis loops own `redis_ok`, a scrape only reads.
        _unread.warning("tables", "could not read the tables: %s", exc)  # once per 10 s, not per scrape
        snap, error = None, f"{type(exc).__name__}: {exc}"
    status = copy.copy(sidecar.status)
    # Read once: its text and its blocks are one merge's, whatever a probe thread publishes next.
    deflated = getattr(sidecar, "lag_deflated", None)
    status.exporting = snap is not None  # on the copy: what this very response carries
    return View(
        status=status,
        snapshot=snap,
        tables_error=error,
        settings=sidecar.settings,
        history=sidecar.history,
        now_s=time.time(),
        lag=sidecar.lag,
        lag_exposition=deflated.text if deflated is not None else sidecar.lag_exposition,
        lag_deflated=deflated,
    )
