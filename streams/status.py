"""Process-local health of one replica, read by the scrape.

Each field has one writer, named beside it, so that no two loops fight over a flag (last writer wins
is a bug that hides outages); the scrape only reads.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from streams.lag import LagSnapshot


@dataclass(frozen=True)
class StalledPartition:
    """A partition the tap paused because its records cannot be read (agents/stalls.py)."""

    offset: int | None  # first offset not read
    reason: str
    detail: str
    since_unix_s: float


@dataclass
class Status:
    replica_id: str
    # Tap agent.
    assigned: dict[str, int] = field(default_factory=dict)  # topic -> partitions held
    recovering: bool = True
    rewound_partitions: int = 0  # partitions re-reading what a Redis that went back in time lost
    batches: int = 0
    records_folded: int = 0
    batch_conflicts: int = 0
    fetch_errors: int = 0  # getmany raised: positions put back to what the tables hold, read again
    redis_errors: int = 0
    state_rewinds: int = 0
    wrong_key_type: int = 0
    offset_resets: Counter[tuple[str, str]] = field(default_factory=Counter)  # (topic, reason)
    records_skipped: Counter[str] = field(default_factory=Counter)  # topic -> records lost to the log's start
    topics_recreated: Counter[str] = field(default_factory=Counter)  # topic -> re-creations found by topic ID
    last_batch_at_s: float | None = None
    # (topic, partition) -> why it is paused; not a readiness condition (docs/operations.md says why).
    stalled: dict[tuple[str, int], StalledPartition] = field(default_factory=dict)
    # Dead letters (inside the tap's write path).
    dead_letters: int = 0
    dead_letter_errors: int = 0
    dead_letters_dropped: Counter[str] = field(default_factory=Counter)  # reason -> records not forwarded
    # Lease loop: the exporter lease and Redis's health.
    redis_ok: bool = False
    redis_policy: str = ""  # maxmemory-policy as last read; "" when unknown or the check is off
    redis_policy_ok: bool = True
    leader: bool = False  # holds the exporter lease (its series may still wait for the last holder's)
    # Set per request on the view's copy (streams/view.py): whether that response carries business series.
    exporting: bool = False
    # Lag probe loop.
    broker_ok: bool = False
    brokers_unreachable: int = 0
    lag: LagSnapshot | None = None

    @property
    def ready(self) -> bool:
        return (
            not self.recovering
            and self.rewound_partitions == 0
            and self.broker_ok
            and self.redis_ok
            and self.redis_policy_ok
        )
