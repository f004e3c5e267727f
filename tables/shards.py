"""Sharded state (STREAMS_REDIS_SHARDS): which shard holds what, the shards' keys, and the count recorded
in the layout marker. Pure: no Redis, no Faust.

Sums (counters, amounts) belong to the shard of the partition their event came from, with that
partition's offsets; distinct members (a day's orgs and users, the windows' day lists) belong to the
shard of their own hash, whichever partition brought them, so that a distinct count is a sum over shards.
docs/design.md, "Sharded state", says why this is exact and what each failure leaves.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cached_property

from tables.keys import LAYOUT_VERSION, Keys, active_bucket_of

# Each batch sends one member write per shard and each scrape reads every shard: the count bounds both.
# 64 primaries for one app's state is far past what one Redis per shard needs for the worst case measured
# (docs/performance.md: 70,000-100,000 events/s per Redis when every event brings a new user).
MAX_SHARDS = 64
# The shard that holds what must be one set for the whole app: the admitted label values, and every value
# ever seen (the folded count is their difference).
GLOBAL_SHARD = 0
WATERMARKS = "watermarks"  # per member shard: partition -> offset below which its members are all there
LABEL_VALUES = "values"  # in the global shard, + ":" + label: every value ever seen, for the folded count

# The layout marker's value: the layout alone for one shard (what releases before sharding write and read),
# "<layout>:s<count>" for more. Releases before sharding read the second as no layout number and refuse.
_MARKER = re.compile(r"([1-9][0-9]*)(?::s([1-9][0-9]*))?")


def shard_tag(app_id: str, shard: int) -> str:
    """The hash tag of one shard: `{app:s<k>}`. App ids hold no ':' (streams/env_reader.py, check_name),
    so no other app's tag `{app}` can be a shard's."""
    return "{" + f"{app_id}:s{shard}" + "}"


@dataclass(frozen=True)
class ShardKeys(Keys):
    """The keys of one shard: the same names as the one-shard layout's, under the shard's own hash tag."""

    shard: int = 0

    @cached_property
    def prefix(self) -> str:
        return f"{shard_tag(self.app_id, self.shard)}:v{LAYOUT_VERSION}"

    @property
    def watermarks(self) -> str:
        return self.key(WATERMARKS)

    def label_values(self, label: str) -> str:
        return self.key(f"{LABEL_VALUES}:{label}")


def shard_keys(app_id: str, shards: int) -> list[Keys]:
    """Every shard's keys, in shard order; for one shard the one-shard layout's own keys (`{app}:v3`)."""
    if shards == 1:
        return [Keys(app_id)]
    return [ShardKeys(app_id, shard) for shard in range(shards)]


def partition_shard(partition: int, shards: int) -> int:
    """The shard holding a partition's offsets and the sums of its events (the same for both topics)."""
    return partition % shards


def member_shard(member: str, shards: int) -> int:
    """The shard holding a distinct member (an org id, or pair(org, user)): its windows bucket's, so that
    a bucket hash of the windows lies wholly in the shard whose day sets its script checks."""
    return active_bucket_of(member) % shards


def marker_value(layout: int, shards: int) -> str:
    return str(layout) if shards == 1 else f"{layout}:s{shards}"


def parse_marker(value: str) -> tuple[int, int] | None:
    """(layout, shard count) of a marker's value; None when it is neither form."""
    found = _MARKER.fullmatch(value)
    if found is None:
        return None
    return int(found[1]), int(found[2] or 1)


def shards_refusal(found: int, shards: int) -> str:
    """Why a replica set to `shards` refuses state kept in `found` shards, and what the operator can do."""
    return (
        f"state kept in {found} shard{'s' if found > 1 else ''} (STREAMS_REDIS_SHARDS={found}); this replica is "
        f"set to {shards}: set STREAMS_REDIS_SHARDS={found} again. The shard count of existing state cannot "
        "change in place: to change it, stop every replica, delete the app's state and start again, which "
        "re-reads the topics (docs/design.md, Sharded state)"
    )
