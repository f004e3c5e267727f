"""The payload sections of the second set of business metrics that need more than a sum: the rolling
windows' active days per subject, and a day's users grouped by org. Pure: tested on plain data.

The script that applies them is tables/script.py; docs/business-metrics.md says why they are exact.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date

from tables.delta import Delta, unpair
from tables.keys import ACTIVE_BUCKETS, NO_NEXT_DAY, ORGS, USERS, WINDOW_DAYS, Keys, active_bucket_of
from tables.seen import SeenCache


def users_by_org(members: Iterable[str]) -> tuple[list[str], list[list[object]]]:
    """The members (pair(org, user)) sorted, and the runs [org, how many] that cover them in that order:
    the script counts, per org, the members new to the day's set."""
    ordered = sorted(members)
    runs: list[list[object]] = []
    for member in ordered:
        org = unpair(member)[0]
        if runs and runs[-1][0] == org:
            runs[-1][1] += 1  # type: ignore[operator]
        else:
            runs.append([org, 1])
    return ordered, runs


def horizon(today: int) -> int:
    """The oldest day (ordinal) the rolling windows still reach."""
    return today - (WINDOW_DAYS - 1)


def active_days(delta: Delta, subject: str, seen: SeenCache | None = None) -> dict[str, list[int]]:
    """Each subject's active days in this batch, within the windows' reach, as sorted ordinals; without
    the days `seen` knows are in the subject's list already (inserting them again changes nothing)."""
    found: dict[str, set[int]] = {}
    oldest = horizon(delta.today_index)
    per_day = [delta.users, delta.window_only_users] if subject == USERS else [delta.orgs, delta.window_only_orgs]
    for days in per_day:
        for name, members in days.items():
            index = date.fromisoformat(name).toordinal()
            if index < oldest:
                continue
            if seen is not None and days is per_day[0]:
                members = members - (seen.users(name) if subject == USERS else seen.orgs(name))
            for member in members:
                found.setdefault(member, set()).add(index)
    return {member: sorted(days) for member, days in found.items()}


def window_section(keys: Keys, delta: Delta, seen: SeenCache | None = None) -> dict[str, object] | None:
    """The `win` section of a batch's payload; None when the batch folded no raw record."""
    if not delta.today_index:
        return None
    subjects = []
    for subject in (USERS, ORGS):
        found = sorted(active_days(delta, subject, seen).items())
        entries = [[active_bucket_of(member), member, days] for member, days in found]
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
