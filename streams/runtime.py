"""Interpreter tuning for the hot path: the cyclic garbage collector.

Each batch allocates hundreds of thousands of short-lived containers (a ConsumerRecord and a parsed
dict per record), which Python's default thresholds (gen0 every 700 allocations) answer with
thousands of collections per second that also walk the long-lived objects the worker imported.
The gain on the benchmark workload is in docs/performance.md. Those containers are
freed by reference counting; the collector only matters for cycles, which the fold does not make.
"""

from __future__ import annotations

import gc

GEN0_THRESHOLD = 50_000
GEN1_THRESHOLD = 20
GEN2_THRESHOLD = 100


def tune_gc() -> None:
    """Collect less often, and never walk what was loaded before the worker started (gc.freeze)."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(GEN0_THRESHOLD, GEN1_THRESHOLD, GEN2_THRESHOLD)
