"""The payload sections of the second set of business metrics that need more than a sum: the rolling
windows' active days per subject, and a day's users grouped by org. Pure: tested on plain data.

The script that applies them is tables/script.py; docs/business-metrics.md says why they are exact.
"""

from __future__ import annotations

from bisect import bisect_left
from collections import deque
from collections.abc import Iterable
from datetime import date
from itertools import filterfalse, repeat
from operator import methodcaller
from zlib import crc32

from tables.delta import Delta
from tables.keys import ACTIVE_BUCKETS, NO_NEXT_DAY, ORGS, USERS, WINDOW_DAYS, Keys
from tables.seen import SeenCache

_TOP = chr(0x10FFFF)  # the highest code point a str can hold
_UTF8 = methodcaller("encode", "utf-8", "surrogatepass")  # as active_bucket_of encodes a member


def _drain(items: Iterable[object]) -> None:
    """Run an iterator (a map of calls) to its end in C, keeping nothing."""
    deque(items, maxlen=0)


def users_by_org(members: Iterable[str]) -> tuple[list[str], list[list[object]]]:
    """The members (pair(org, user)) sorted, and the runs [org, how many] that cover them in that order:
    the script counts, per org, the members new to the day's set."""
    ordered = sorted(members)
    runs: list[list[object]] = []
    # pair()'s "length:org" prefix is prefix-free, so an org's members are one run of the sorted list,
    # and the run ends where the first string above every string with that prefix would go: a bisection
    # per org, not a look at every member (that loop was a tenth of the payload's instructions).
    start, size = 0, len(ordered)
    while start < size:
        member = ordered[start]
        colon = member.index(":")  # unpair(member), inlined: the prefix is what the run is cut by
        cut = colon + 1 + int(member[:colon])
        last = member[cut - 1]
        above = member[: cut - 1] + chr(ord(last) + 1) if last != _TOP else _above(member[:cut])
        end = bisect_left(ordered, above, start + 1)
        runs.append([member[colon + 1 : cut], end - start])
        start = end
    return ordered, runs


def _above(prefix: str) -> str:
    """The least string greater than every string that starts with `prefix` (which starts with a digit):
    its last character below the highest code point, one up, and what follows it dropped."""
    kept = prefix.rstrip(_TOP)
    return kept[:-1] + chr(ord(kept[-1]) + 1)


def _buckets(members: list[str]) -> list[int]:
    """active_bucket_of of each member. Strict UTF-8 gives the same bytes as "surrogatepass" for every
    string it encodes, and costs a quarter as much per call; a lone surrogate makes it fail, and the
    list is made again the slow way."""
    try:
        return list(map(ACTIVE_BUCKETS.__rmod__, map(crc32, map(str.encode, members))))
    except UnicodeEncodeError:
        return list(map(ACTIVE_BUCKETS.__rmod__, map(crc32, map(_UTF8, members))))


def horizon(today: int) -> int:
    """The oldest day (ordinal) the rolling windows still reach."""
    return today - (WINDOW_DAYS - 1)


def active_days(
    delta: Delta, subject: str, seen: SeenCache | None = None, sorted_kept: dict[str, list[str]] | None = None
) -> tuple[list[str], list[list[int]]]:
    """The subjects active in this batch within the windows' reach, sorted, and each one's active days as
    sorted ordinals; without the days `seen` knows are in the subject's list already (inserting them
    again changes nothing). `sorted_kept`: per kept day, its members new to `seen`, sorted, when the
    caller has them already (the usersadd section's)."""
    oldest = horizon(delta.today_index)
    per_day = [delta.users, delta.window_only_users] if subject == USERS else [delta.orgs, delta.window_only_orgs]
    days: dict[int, list[str]] = {}
    for kept, found_days in ((True, per_day[0]), (False, per_day[1])):
        for name, members in found_days.items():
            index = date.fromisoformat(name).toordinal()
            if index < oldest:
                continue
            if kept and sorted_kept is not None:
                listed = sorted_kept.get(name, [])
            else:
                if seen is not None and kept:
                    members = members - (seen.users(name) if subject == USERS else seen.orgs(name))
                listed = sorted(members)
            if index in days:  # a day both kept and not, by folds of two days' contexts: one list entry
                listed = sorted(set(days[index]).union(listed))
            days[index] = listed
    # Per member, only C loops (map, zip, set operations): a Python loop per member here and in
    # window_section was a fifth of the payload's instructions. The days go in ascending, so each
    # member's list comes out sorted; a member's first day makes its list, a later one appends to it.
    found: dict[str, list[int]] = {}
    for index in sorted(days):
        listed = days[index]
        if found:
            again = found.keys() & listed
            _drain(map(list.append, map(found.__getitem__, again), repeat(index)))
            listed = list(filterfalse(again.__contains__, listed))
        found.update(zip(listed, map(list, repeat((index,))), strict=False))
    # The keys are each day's sorted members one run after another, which sorted() merges in about one
    # comparison per member rather than the dozen a shuffled set takes.
    ordered = sorted(found)
    return ordered, list(map(found.__getitem__, ordered))


def window_section(
    keys: Keys, delta: Delta, seen: SeenCache | None = None, sorted_users: dict[str, list[str]] | None = None
) -> dict[str, object] | None:
    """The `win` section of a batch's payload; None when the batch folded no raw record. `sorted_users`:
    per kept day, its users new to `seen`, sorted (active_days' `sorted_kept`)."""
    if not delta.today_index:
        return None
    subjects = []
    for subject in (USERS, ORGS):
        members, days = active_days(delta, subject, seen, sorted_users if subject == USERS else None)
        # Entries [bucket, member, days], built in C loops.
        entries = list(map(list, zip(_buckets(members), members, days, strict=True)))
        subjects.append([keys.active_prefix(subject), keys.window_pairs_prefix(subject), entries])
    return {
        "state": keys.window_state,
        "subjects": subjects,
        "today": delta.today_index,
        "horizon": horizon(delta.today_index),
        "none": NO_NEXT_DAY,
        "buckets": ACTIVE_BUCKETS,
        "reach_days": WINDOW_DAYS + 2,
    }
