"""The payload sections of the second set of business metrics that need more than a sum: the rolling
windows' active days per subject, and a day's users grouped by org. Pure: tested on plain data.

The script that applies them is tables/script.py; docs/business-metrics.md says why they are exact.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date
from operator import itemgetter
from zlib import crc32

from tables.delta import Delta, unpair
from tables.keys import ACTIVE_BUCKETS, NO_NEXT_DAY, ORGS, USERS, WINDOW_DAYS, Keys
from tables.seen import SeenCache


def users_by_org(members: Iterable[str]) -> tuple[list[str], list[list[object]]]:
    """The members (pair(org, user)) sorted, and the runs [org, how many] that cover them in that order:
    the script counts, per org, the members new to the day's set."""
    ordered = sorted(members)
    runs: list[list[object]] = []
    # pair()'s "length:org" prefix is prefix-free, so an org's members are one run of the sorted list:
    # a member is split only where a run begins (startswith is far cheaper than unpair per member).
    prefix, run = "", list[object]()
    for member in ordered:
        if prefix and member.startswith(prefix):
            run[1] += 1  # type: ignore[operator]
        else:
            org = unpair(member)[0]
            prefix, run = f"{len(org)}:{org}", list[object]([org, 1])
            runs.append(run)
    return ordered, runs


def horizon(today: int) -> int:
    """The oldest day (ordinal) the rolling windows still reach."""
    return today - (WINDOW_DAYS - 1)


def active_days(delta: Delta, subject: str, seen: SeenCache | None = None) -> dict[str, list[int]]:
    """Each subject's active days in this batch, within the windows' reach, as sorted ordinals; without
    the days `seen` knows are in the subject's list already (inserting them again changes nothing)."""
    oldest = horizon(delta.today_index)
    per_day = [delta.users, delta.window_only_users] if subject == USERS else [delta.orgs, delta.window_only_orgs]
    days: list[tuple[int, set[str]]] = []
    for kept, found_days in ((True, per_day[0]), (False, per_day[1])):
        for name, members in found_days.items():
            index = date.fromisoformat(name).toordinal()
            if index < oldest:
                continue
            if seen is not None and kept:
                members = members - (seen.users(name) if subject == USERS else seen.orgs(name))
            days.append((index, members))
    days.sort(key=itemgetter(0))
    if len(days) == 1:  # most batches: one list per member, built in one pass
        index, members = days[0]
        return {member: [index] for member in members}
    found: dict[str, list[int]] = {}
    for index, members in days:  # ascending, so each member's days come out sorted
        for member in members:
            indices = found.get(member)
            if indices is None:
                found[member] = [index]
            elif indices[-1] != index:
                indices.append(index)
    return found


def window_section(keys: Keys, delta: Delta, seen: SeenCache | None = None) -> dict[str, object] | None:
    """The `win` section of a batch's payload; None when the batch folded no raw record."""
    if not delta.today_index:
        return None
    subjects = []
    for subject in (USERS, ORGS):
        found = sorted(active_days(delta, subject, seen).items())
        # active_bucket_of, inlined: a call per member showed in the payload's profile.
        entries = [
            [crc32(member.encode("utf-8", "surrogatepass")) % ACTIVE_BUCKETS, member, days] for member, days in found
        ]
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
