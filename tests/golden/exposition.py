"""The golden exposition: a fixed Snapshot, LagSnapshot and Status rendered through the real collectors.

`tests/golden/metrics.prom` holds the result. Any change to a metric's name, HELP text, labels or
number format shows up as one reviewed diff of that file. Regenerate it with
`.venv/bin/python -m tests.golden.regenerate` after adding fields or metrics.
"""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

from prometheus_client.registry import Collector

from core.status import StalledPartition, Status
from streams.exposition import render
from streams.lag.metrics import LagCollector
from streams.lag.model import GroupLag, LagSnapshot, PartitionLag
from streams.web.collectors import BusinessCollector, ReplicaCollector
from tables.snapshot import Snapshot

GOLDEN_FILE = Path(__file__).with_name("metrics.prom")
REGENERATE = ".venv/bin/python -m tests.golden.regenerate"
TOPICS = ("events.raw", "events.enriched")
WATCH_GROUP = "ecomind-worker"
# org_id values an event may carry: every character the text format must escape, non-ASCII text, and
# the name the label cap folds the rest into.
HOSTILE_ORGS = ('org "quoted"', "back\\slash", "new\nline", "ünïcødé 組織 🌱", "__other__")
# build_info reports the installed versions, which differ between machines and upgrades; the golden
# file pins them to this placeholder (the unit test checks the real values separately).
PINNED_VERSION = "pinned-in-golden-file"
_BUILD_INFO = re.compile(rb"^(ecomind_streams_build_info\{)(.*)(\} 1\.0)$", re.MULTILINE)
_LABEL_VALUE = re.compile(rb'="[^"]*"')


def snapshot() -> Snapshot:
    orgs = ["org_a", *HOSTILE_ORGS]
    return Snapshot(
        ingested={(org, "openai"): 10 * (i + 1) for i, org in enumerate(orgs)} | {("org_a", 'pro"vider'): 1},
        calls={(org, "gpt-4o"): 10 * (i + 1) for i, org in enumerate(orgs)} | {("org_a", "mod\\el"): 10**12},
        processed={"events.raw": 211, "events.enriched": 150},
        unreadable={"last_ts": 1},
        invalid={("events.raw", "not_json"): 3, ("events.enriched", "missing_field"): 2},
        dropped_late={"events.raw": 4},
        last_ts_ms={"events.raw": 1_795_780_800_123},  # none yet on the enriched topic: no sample
        delay_buckets=[5, 10, 20, 30, 40, 25, 10, 5, 2, 1, 1, 1],
        delay_sum_ms=123_456,
        active_orgs=len(orgs),
        active_users=4_242,
        kwh={org: (i + 1) / 4 for i, org in enumerate(orgs)},
        co2_kg={"org_a": 1e-9, "__other__": 12345.678},
        folded={"model": 0, "org_id": 17, "provider": 2},
        weekly_active_users=9_001,
        monthly_active_users=31_337,
        weekly_active_orgs=len(orgs) + 3,
        monthly_active_orgs=len(orgs) + 11,
        org_active_users={"org_a": 4_000, 'org "quoted"': 200, "__other__": 42},
        tokens={("org_a", "in"): 10**15, ("org_a", "out"): 7, ("__other__", "in"): 0, ("__other__", "out"): 3},
        model_kwh={("openai", "gpt-4o"): 1.25, ("openai", "__other__"): 0.5, ("__other__", "__other__"): 0.0},
        model_co2_kg={("anthropic", 'mod"el'): 1e-9, ("__other__", "__other__"): 12345.678},
        dropped_late_windows={"events.raw": 2},
    )


def lag() -> LagSnapshot:
    partitions = (
        PartitionLag("events.raw", 0, True, 120, 3.5),
        PartitionLag("events.raw", 1, True, 0, 0.0),
        PartitionLag("events.raw", 2, False, 7, 61.25),
        PartitionLag("events.raw", 3, True, 5, None),  # messages wait, their age could not be read
    )
    return LagSnapshot(
        {"ecomind-worker": GroupLag("ecomind-worker", "Stable", 2, partitions)},
        watched_group="ecomind-worker",
        taken_at_s=1_795_780_805.5,
    )


def status() -> Status:
    return Status(
        replica_id="host-a:6066",
        assigned={"events.raw": 3, "events.enriched": 3},
        recovering=False,
        broker_ok=True,
        brokers_unreachable=1,
        redis_ok=True,
        leader=True,
        exporting=True,
        batches=42,
        records_folded=361,
        batch_conflicts=1,
        redis_errors=2,
        dead_letters=5,
        dead_letter_errors=0,
        stalled={("events.raw", 2): StalledPartition(1200, "unsupported_codec", "UnsupportedCodecError: lz4", 0.0)},
        writes_refused=Counter({"invalid_value": 3, "wrong_type": 0, "script_error": 0}),
        assignment_failures=1,
    )


def collectors() -> list[Collector]:
    """The exporter replica's collectors in the order /metrics renders them, without ProcessCollector
    (its CPU, memory and file-descriptor figures belong to whichever process runs the test)."""
    return [
        ReplicaCollector(status()),
        BusinessCollector(snapshot(), TOPICS),
        LagCollector(lag(), WATCH_GROUP),
    ]


def pin_build_info(body: bytes) -> bytes:
    """The exposition with build_info's label values replaced by PINNED_VERSION."""

    def pin(match: re.Match[bytes]) -> bytes:
        pinned = _LABEL_VALUE.sub(b'="' + PINNED_VERSION.encode() + b'"', match.group(2))
        return match.group(1) + pinned + match.group(3)

    pinned, count = _BUILD_INFO.subn(pin, body)
    if count != 1:
        raise ValueError(f"expected one ecomind_streams_build_info sample, found {count}")
    return pinned


def golden() -> bytes:
    return pin_build_info(render(collectors()))
