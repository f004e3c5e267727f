"""Process-local health of one replica, read by the scrape.

Each field has one writer, named beside it, so that no two loops fight over a flag (last writer wins
is a bug that hides outages); the scrape only reads.

`Status.checks()` is the one list of readiness conditions: `ready` is their conjunction, and /ready's
body and the status page's health table are both rendered from it, so neither can report "all fine"
while the other says not ready.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field


@dataclass(frozen=True)
class StalledPartition:
    """A partition the tap paused because its records cannot be read (agents/stalls.py)."""

    offset: int | None  # first offset not read
    reason: str
    detail: str
    since_unix_s: float


@dataclass(frozen=True)
class Check:
    """One readiness condition: `name` is its key in /ready's body, `label` its row on the status page."""

    name: str
    label: str
    ok: bool
    shown: str  # what the page shows when it holds: a word or the value read
    reason: str | None  # when it fails: what is wrong and what to check, in words


def _check(name: str, label: str, ok: bool, shown: str, reason: str) -> Check:
    return Check(name, label, ok, shown, None if ok else reason)


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
    # reason -> batch writes refused (tables/store.py WriteRefused): their partitions are paused, not retried.
    writes_refused: Counter[str] = field(default_factory=Counter)
    assignment_failures: int = 0  # on_assigned could not position the partitions (retried with back-off)
    assignment_error: str | None = None  # why the last try failed, until one succeeds
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
    # Why the tap and the lease wait beside another key layout's state, and what to do (tables/layout.py).
    layout_refusal: str | None = None
    # Set per request on the view's copy (streams/web/view.py): whether that response carries business series.
    exporting: bool = False
    # Lag probe loop.
    broker_ok: bool = False
    brokers_unreachable: int = 0

    @property
    def ready(self) -> bool:
        return all(check.ok for check in self.checks())

    def checks(self) -> tuple[Check, ...]:
        """Every condition readiness needs, in the order a person would look into them.

        Stalled partitions are not among them (docs/operations.md says why); /ready lists them apart.
        """
        rewound = self.rewound_partitions
        return (
            _check("layout_ok", "Key layout", self.layout_refusal is None, "in use", self.layout_refusal or ""),
            _check(
                "tables_recovered",
                "Tables",
                not self.recovering,
                "recovered",
                "recovering: the tap is positioning its partitions at the offsets stored in Redis, or holds "
                "none yet (starting, rebalancing, or Redis did not answer at start)"
                if self.assignment_error is None
                else "recovering: the assigned partitions cannot be positioned at their stored offsets "
                f"(tried again with back-off): {self.assignment_error}",
            ),
            _check(
                "tables_caught_up",
                "Rewound partitions",
                rewound == 0,
                "none",
                f"{rewound} partition{'s' if rewound != 1 else ''} re-reading records Redis lost (it came back "
                "empty or from an older snapshot): ready once they reach the offsets written before; "
                "check Redis's persistence and failover history",
            ),
            _check("broker_reachable", "Broker", self.broker_ok, "reachable", self._broker_reason()),
            _check(
                "redis_reachable",
                "Redis",
                self.redis_ok,
                "reachable",
                "unreachable: the last Redis request failed, or none has answered yet; check REDIS_URL, "
                "the Redis server and its password",
            ),
            _check(
                "redis_eviction_policy_ok",
                "Redis eviction policy",
                self.redis_policy_ok,
                self.redis_policy or "not read (the check is off, or Redis has not answered yet)",
                self._policy_reason(),
            ),
        )

    def _broker_reason(self) -> str:
        if self.brokers_unreachable:
            n = self.brokers_unreachable
            return (
                f"unreachable: {n} broker{'s' if n != 1 else ''} in the cluster metadata "
                f"refuse{'' if n != 1 else 's'} connections; "
                "check those brokers and the network to them"
            )
        return (
            "unreachable: Kafka's metadata did not answer, or has not been asked yet; check "
            "KAFKA_BOOTSTRAP_SERVERS, the brokers, the network and the credentials"
        )

    def _policy_reason(self) -> str:
        if self.redis_policy == "unknown":
            return (
                "unknown: Redis refused CONFIG GET maxmemory-policy; allow CONFIG to the sidecar's user, or set "
                "STREAMS_REDIS_POLICY_CHECK=false where eviction is known to be off"
            )
        return (
            f"maxmemory-policy is {self.redis_policy or 'not noeviction'}: Redis may evict the tables or their "
            "offsets; set it to noeviction (docs/operations.md#managed-redis-the-eviction-policy: each cloud's setting)"
        )
