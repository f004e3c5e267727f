"""Which of a group's topics get lag series: topic filters and stale offsets (docs/lag.md, "Topic filters
and stale offsets"). Pure rules, tested by tables (tests/unit/streams/lag/test_lag_scope.py).

- STREAMS_LAG_TOPICS / STREAMS_LAG_TOPICS_IGNORE: full-match regexes. A topic left out is not asked
  about at all (no Metadata, ListOffsets or fetch for it); only OffsetFetch, which answers with all of a
  group's offsets in one request, still names it.
- A topic is stale for a group when the group has commits on it and none of its members owns it: the
  group moved on (resubscribed, or its subscription regex stopped matching) and its old offsets stay until
  offsets.retention.minutes after the group empties, their "lag" growing with every record produced.
  Judged only when that is certain: the group is Stable (mid-rebalance, classic members own nothing yet),
  has members (an Empty group owns nothing, and its lag is what the alerts are for), and every member's
  assignment could be read (Connect, or a client's own encoding, leave ownership unknown; so does a
  Stable member's empty assignment, as Tansu sends: see members.py). Between such judgements the last
  one holds (remembered_stale), so rebalances and Empty spells do not flip a topic's status. That memory
  (StaleMemory) belongs to the cluster, not to one probe: a probe rebuilt after a failure keeps it, and
  the next exporter reads it from Redis (stale_store.py).
- The watched group is measured whole, whatever the filters or staleness: the design document's
  ecomind_worker_kafka_lag series and the worker's alerts are computed from it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from streams.settings import Settings

# Each group's last stale judgement on one cluster. Owned by what outlives that cluster's probes
# (streams/lag/loops.py, clusters.py) and handed to each probe it builds: a probe rebuilt after a failed
# cycle must not forget that an Empty group left a topic, or the topic's series would come back.
StaleMemory = dict[str, frozenset[str]]


@dataclass(frozen=True)
class LagScope:
    topics: re.Pattern[str] | None = None  # None: every topic
    topics_ignore: re.Pattern[str] | None = None
    stale: str = "drop"  # drop: not measured; flag: measured with stale="true"; keep: measured as any other
    members: bool = False  # per-client lag (streams/lag/members.py)

    def selects(self, topic: str) -> bool:
        if self.topics is not None and not self.topics.fullmatch(topic):
            return False
        return not (self.topics_ignore is not None and self.topics_ignore.fullmatch(topic))

    def measured(self, topics: Iterable[str], stale: frozenset[str]) -> set[str]:
        """The topics of a group (not the watched one) that get series."""
        chosen = {t for t in topics if self.selects(t)}
        return chosen - stale if self.stale == "drop" else chosen


def stale_topics(
    state: str, members: int, committed: Iterable[str], owned: frozenset[str], ownership_known: bool
) -> frozenset[str]:
    """Topics with commits that no member owns; none unless that is certain (see the module's doc)."""
    if state != "Stable" or members == 0 or not ownership_known:
        return frozenset()
    return frozenset(committed) - owned


def remembered_stale(
    state: str,
    members: int,
    committed: Iterable[str],
    owned: frozenset[str],
    ownership_known: bool,
    last: frozenset[str],
) -> frozenset[str]:
    """Stale topics judged afresh when that is certain, else the last judgement (still committed):
    a rebalance or an Empty spell (a restart) says nothing new about what the group reads, and
    re-judging there would flip the stale label, or bring a dropped series back, at every one."""
    committed = frozenset(committed)
    if state == "Stable" and members > 0 and ownership_known:
        return stale_topics(state, members, committed, owned, ownership_known)
    return last & committed


def lag_scope(s: Settings) -> LagScope:
    return LagScope(
        re.compile(s.lag_topics) if s.lag_topics else None,
        re.compile(s.lag_topics_ignore) if s.lag_topics_ignore else None,
        s.lag_stale,
        s.lag_members,
    )
