"""The figures of the sharded rows (bench/cluster.py), pure: Redis CPU per event per primary, the busiest
primary against one Redis, where it saturates, and where an app's shard tags land on a cluster.

The question the rows answer: with S shards on S primaries, does the busiest primary do about 1/S of what
one Redis does per event? A machine of two cores cannot run S primaries saturated side by side, so the
events/s at which the busiest one would saturate comes from its CPU per event, as the fleet rows' do.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from redis.crc import key_slot

from tables.shards import shard_tag

# Slack over 1/S before the busiest primary counts as carrying more than its share: members spread by
# hash, never exactly evenly, and each shard pays its own script call per batch; CPU per event also moves
# by ±15 % between runs on the shared machine (docs/performance.md).
SHARE_SLACK = 1.25

SlotRange = tuple[int, int, str]  # first slot, last slot, the primary serving them


@dataclass
class ShardRow:
    name: str
    primaries: int
    shards: int
    events: int
    seconds: float
    sidecar_cpu_s: float
    primary_cpu_s: list[float] = field(default_factory=list)  # one per primary, busiest or not
    note: str = ""

    @property
    def sidecar_us_per_event(self) -> float:
        return 1e6 * self.sidecar_cpu_s / self.events if self.events else 0.0

    @property
    def us_per_event(self) -> list[float]:
        """Redis CPU per event of each primary."""
        return [1e6 * s / self.events if self.events else 0.0 for s in self.primary_cpu_s]

    @property
    def busiest_us(self) -> float:
        return max(self.us_per_event, default=0.0)

    @property
    def total_us(self) -> float:
        return sum(self.us_per_event)

    @property
    def saturates_at(self) -> float:
        """Events/s at which the busiest primary's command thread would be busy all the time."""
        return 1e6 / self.busiest_us if self.busiest_us else 0.0


def busiest_share(row: ShardRow, one_redis: ShardRow) -> float:
    """The busiest primary's CPU per event over one Redis's (target: about 1/S)."""
    return row.busiest_us / one_redis.busiest_us if one_redis.busiest_us else 0.0


def share_verdict(share: float, shards: int) -> str:
    """Whether the busiest primary carries about 1/S of one Redis's work per event."""
    if shards == 1:
        return ""
    goal = SHARE_SLACK / shards
    return f"{'met' if 0 < share <= goal else 'MISSED'} (≤ {goal:.2f})"


def owner(ranges: Sequence[SlotRange], slot: int) -> str:
    for low, high, node in ranges:
        if low <= slot <= high:
            return node
    raise ValueError(f"no primary serves slot {slot}")


def tag_owners(ranges: Sequence[SlotRange], app_id: str, shards: int) -> list[str]:
    """The primary of each shard's hash tag, in shard order."""
    return [owner(ranges, key_slot(shard_tag(app_id, k).encode())) for k in range(shards)]


def spread_app_id(ranges: Sequence[SlotRange], shards: int, base: str, tries: int = 1000) -> str:
    """The first of `base`-0, `base`-1, ... whose shard tags lie on as many primaries as there are (up to
    S): the rows measure S shards on S primaries, not two shards sharing one. Choosing the name instead
    of moving slots leaves the cluster as `redis-cli --cluster create` made it."""
    wanted = min(shards, len({node for _, _, node in ranges}))
    for i in range(tries):
        app_id = f"{base}-{i}"
        if len(set(tag_owners(ranges, app_id, shards))) == wanted:
            return app_id
    raise ValueError(f"no app id of {tries} tried spreads {shards} shards over {wanted} primaries")


def table(rows: list[ShardRow]) -> str:
    """The rows, each set against the first (one Redis, one shard) of the same run."""
    lines = [
        "| run | primaries | S | events | wall s | sidecar CPU µs/event | Redis CPU µs/event, each primary "
        "| busiest | all primaries | busiest vs one Redis (goal ≈ 1/S) | busiest primary saturates at events/s "
        "| values |",
        "|---|---:|---:|---:|---:|---:|---|---:|---:|---|---:|---|",
    ]
    base = rows[0] if rows else None
    for r in rows:
        each = " / ".join(f"{us:.2f}" for us in r.us_per_event)
        share = busiest_share(r, base) if base else 0.0
        # Only shards on primaries of their own can split the work: one Redis holding S shards has no goal.
        against = f"{share:.2f} {share_verdict(share, min(r.shards, r.primaries))}".strip()
        lines.append(
            f"| {r.name} | {r.primaries} | {r.shards} | {r.events:,} | {r.seconds:.1f} | {r.sidecar_us_per_event:.2f} "
            f"| {each} | {r.busiest_us:.2f} | {r.total_us:.2f} | {against} | {r.saturates_at:,.0f} | {r.note} |"
        )
    return "\n".join(lines)
