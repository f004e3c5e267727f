"""Process-local health of one replica, written by its services and read by the scrape."""

from __future__ import annotations

from dataclasses import dataclass, field

from streams.lag import LagSnapshot


@dataclass
class Status:
    replica_id: str
    assigned: dict[str, int] = field(default_factory=dict)  # topic -> partitions held
    recovering: bool = True
    broker_ok: bool = False
    brokers_unreachable: int = 0
    redis_ok: bool = False
    leader: bool = False
    lag: LagSnapshot | None = None
    batches: int = 0
    records_folded: int = 0
    batch_conflicts: int = 0
    redis_errors: int = 0
    dead_letters: int = 0
    dead_letter_errors: int = 0

    @property
    def ready(self) -> bool:
        return not self.recovering and self.broker_ok and self.redis_ok
