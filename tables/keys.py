"""Redis key layout and field names: the one definition the writer (store) and the reader (snapshot) share.

Every key shares one hash tag, so a batch's keys live in one cluster slot. The layout version is part
of the prefix, and a layout-independent marker (tables/layout.py) names the layout the app's state is in:
a sidecar meeting state of another layout refuses to run its tap and its exporter beside it, unless the
operator chose to rebuild from the topics (UPGRADING.md).
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from functools import cached_property

# 3: every write that adds a user to a kept day's set also puts that day in the user's window list; the
# batch script relies on it to skip users a day's set already holds. State of layout 2 may predate the
# windows, so it is left alone and the topics are read again.
LAYOUT_VERSION = 3

# An org's hash holds both labelled families, told apart by a field prefix: a scrape reads it in one call.
PROVIDER_FIELD = "p:"
MODEL_FIELD = "m:"
# Counters in hashes of their own, one field per topic (or pair(topic, reason)).
PROCESSED, INVALID, DROPPED_LATE, LAST_TS = "processed", "invalid", "dropped_late", "last_ts"
DROPPED_LATE_WINDOWS = "dropped_late_windows"  # valid raw events older than the rolling windows reach
# Activity per label value: what the label caps rank candidates by.
ACTIVITY = {"org_id": "org_activity", "provider": "by_provider", "model": "by_model"}
# Enrichment-delay histogram: bucket i in field DELAY_BUCKET.format(i), the sum (an amount) in DELAY_SUM.
DELAY, DELAY_SUM = "delay", "sum_ms"
DAY_KWH, DAY_CO2, DAY_TOTALS, DAY_ORGS, DAY_USERS = "kwh", "co2", "totals", "orgs", "users"
TOTAL_KWH, TOTAL_CO2 = "kwh", "co2"
# Business metrics of the second set (docs/business-metrics.md). Per day: distinct users per org (counted
# by the write that first adds a user to the day's set), tokens per org and direction, energy per model.
DAY_ORG_USERS, DAY_TOKENS, DAY_MODEL_ENERGY = "org_users", "tokens", "model_energy"
TOKENS_IN, TOKENS_OUT = "i:", "o:"  # field prefixes (+ org) in DAY_TOKENS
TOTAL_TOKENS_IN, TOTAL_TOKENS_OUT = "tokens_in", "tokens_out"  # fields of DAY_TOTALS
KWH_FIELD, CO2_FIELD = "k:", "c:"  # field prefixes in the per-model energy hashes
# Rolling windows: a subject's (user's or org's) compacted active days live in one of ACTIVE_BUCKETS small
# hashes (listpack-encoded, so a few dozen bytes per subject); the count of subjects whose consecutive
# active days are (a, b) lives in the hash of day a, field b (NO_NEXT_DAY when a is their last day).
ACTIVE_BUCKETS = 16_384
WINDOW_DAYS = 30
NO_NEXT_DAY = 99_999_999
USERS, ORGS = "u", "o"  # the two subjects of the windows
SWEEP_CURSOR = "sweep"  # field of the windows' state hash: the next bucket the writes prune
# Amounts are kept as whole units of 1e9 (in the key itself) plus a remainder below 1e9 (in the key
# with this suffix), so no total of accepted values can overflow Redis's 64-bit integers.
AMOUNT_BASE = 1_000_000_000
REMAINDER_SUFFIX = ":lo"


def state_prefix(app_id: str, layout: int = LAYOUT_VERSION) -> str:
    """The prefix of every state key of one layout (2 and later; layout 1 had no version in its keys)."""
    return "{" + app_id + "}" + f":v{layout}"


def delay_bucket_field(index: int) -> str:
    return f"b{index}"


@dataclass(frozen=True)
class Keys:
    app_id: str

    @cached_property
    def prefix(self) -> str:
        # Cached: a batch's payload names thousands of keys, and this was a visible share of building it.
        return state_prefix(self.app_id)

    def key(self, name: str) -> str:
        return f"{self.prefix}:{name}"

    @property
    def offsets(self) -> str:
        return self.key("offsets")

    @property
    def writing(self) -> str:
        """The marker of a batch write in progress, which the batch script names after its KEYS[1]
        (tables/script.py): present between two scripts only when one stopped halfway."""
        return self.offsets + ":writing"

    def org(self, org: str) -> str:
        return self.key(f"org:{org}")

    def day(self, day: str, name: str) -> str:
        return self.key(f"day:{day}:{name}")

    def labels(self, label: str) -> str:
        return self.key(f"labels:{label}")

    def activity(self, label: str) -> str:
        return self.key(ACTIVITY[label])

    def provider_energy(self, day: str, provider: str) -> str:
        """One provider's energy on a day, fields KWH_FIELD/CO2_FIELD + model: a scrape reads labelled ones."""
        return self.key(f"day:{day}:pm:{provider}")

    def active_bucket(self, subject: str, bucket: int) -> str:
        return self.key(f"act:{subject}:{bucket}")

    def active_prefix(self, subject: str) -> str:
        return self.key(f"act:{subject}:")

    def window_pairs(self, subject: str, day_index: int) -> str:
        return self.key(f"win:{subject}:{day_index}")

    def window_pairs_prefix(self, subject: str) -> str:
        return self.key(f"win:{subject}:")

    @property
    def window_state(self) -> str:
        return self.key("win:state")


def active_bucket_of(member: str) -> int:
    """The bucket a subject's active days live in: stable across processes (crc32, not hash())."""
    return zlib.crc32(member.encode("utf-8", "surrogatepass")) % ACTIVE_BUCKETS


def offset_field(topic: str, partition: int) -> str:
    return f"{topic}:{partition}"


def topic_id_field(topic: str, partition: int) -> str:
    """The ID of the topic a partition's stored offset belongs to (agents/topic_ids.py), beside the offset.

    Per partition, not per topic: each partition's owner moves it with that partition's offset, in the
    same script. Topic names cannot hold ':', so the field never collides with an offset field.
    """
    return f"{topic}:{partition}:id"


def split_amount(n: int) -> tuple[int, int]:
    """(whole units of AMOUNT_BASE, remainder): the two integers an amount is stored as."""
    return divmod(n, AMOUNT_BASE)


def join_amount(whole: str | int | None, remainder: str | int | None) -> int:
    return int(whole or 0) * AMOUNT_BASE + int(remainder or 0)
