"""Members this replica has already written to a recent day's sets: the batch write leaves them out.

A day's user and org sets, the per-org counts of users new to the day, and the rolling windows' day lists
only ever change the first time a member shows up on a day: adding it again is a no-op in the script.
Sending it anyway made Redis's cost per raw event grow with the distinct users of every batch; with this
cache it grows with the distinct users of the day, once per replica (docs/performance.md, capacity).

Leaving a member out is exact only while Redis still holds every write this replica made since it
learned the member. The store proves that on each write with a lineage counter (tables/store.py): the
script refuses the batch whole when the counter is not the one this replica last wrote (Redis restarted
empty, or from an older snapshot, or the key expired), and the store then forgets everything here and
sends the batch in full.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date

# The cache holds days up to today, learnt from a write made on or after the day began, so that a day's
# keys, which expire STREAMS_DAYS_KEPT + 1 days after their last write (48 hours at least), outlive their
# use here: today only when one day is kept (a day is at most 25 hours), today and yesterday otherwise.
MAX_DAYS_CACHED = 2


class SeenCache:
    def __init__(self, max_entries: int, days_kept: int = MAX_DAYS_CACHED) -> None:
        self.max_entries = max_entries
        self.days_cached = min(MAX_DAYS_CACHED, days_kept)
        self.size = 0
        self._days: dict[str, tuple[set[str], set[str]]] = {}  # day -> (users, orgs)

    def clear(self) -> None:
        self._days.clear()
        self.size = 0

    def users(self, day: str) -> set[str] | frozenset[str]:
        found = self._days.get(day)
        return found[0] if found else frozenset()

    def orgs(self, day: str) -> set[str] | frozenset[str]:
        found = self._days.get(day)
        return found[1] if found else frozenset()

    def prune(self, today_index: int) -> None:
        """Forget the days that left the cached range (see MAX_DAYS_CACHED)."""
        if not today_index:
            return
        for day in [d for d in self._days if not self._cached(date.fromisoformat(d).toordinal(), today_index)]:
            users, orgs = self._days.pop(day)
            self.size -= len(users) + len(orgs)

    def learn(self, today_index: int, users: dict[str, set[str]], orgs: dict[str, set[str]]) -> None:
        """Remember the members a write that Redis accepted has put into the recent days' sets (the store
        prunes before it builds the write, so days out of range are only skipped here)."""
        if not today_index or self.max_entries <= 0:
            return
        for day in users.keys() | orgs.keys():
            if not self._cached(date.fromisoformat(day).toordinal(), today_index):
                continue
            known = self._days.setdefault(day, (set(), set()))
            self._add(known[0], users.get(day, ()))
            self._add(known[1], orgs.get(day, ()))

    def _cached(self, day_index: int, today_index: int) -> bool:
        # A future day is not learnt: its keys may have been written, and started expiring, before it began.
        return today_index - self.days_cached < day_index <= today_index

    def _add(self, into: set[str], members: Iterable[str]) -> None:
        # Full: stop learning. Members already known stay; the rest are simply sent, which is always exact.
        before = len(into)
        room = self.max_entries - self.size
        if room <= 0:
            return
        new = set(members) - into
        if len(new) > room:
            new = set(list(new)[:room])
        into |= new
        self.size += len(into) - before
