"""The first fetched record of many partitions in one pass over aiokafka's fetch buffer.

`AIOKafkaConsumer.getmany(*partitions)` walks every buffered partition and tests each against the
`partitions` tuple, so asking for the first record of each of n partitions, one call per partition as
the probe must (`max_records` counts records across partitions, not per partition), costs n^2: about
25 million comparisons per poll for 5,000 partitions, seconds during which the event loop, and
/metrics with it, waits. Here each partition's buffered result is looked up by key instead, with the
same bookkeeping as getmany (a result whose position moved is dropped, a drained one is removed and the
fetcher woken). aiokafka 0.14's private fetcher is used; a consumer without it (another version, the
tests' fake) gets `None` and the probe falls back to getmany.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from aiokafka import TopicPartition

try:
    from aiokafka.consumer.fetcher import FetchError, FetchResult
except ImportError:  # another aiokafka layout: getmany it is
    FetchError = FetchResult = None

# Partition -> its first buffered record, or None when the fetch of that partition failed.
Drained = dict[TopicPartition, Any]


def buffered_drain(consumer: Any) -> Callable[[Iterable[TopicPartition]], Drained] | None:
    fetcher: Any = getattr(consumer, "_fetcher", None)
    records = getattr(fetcher, "_records", None)
    if FetchResult is None or not isinstance(records, dict) or not hasattr(fetcher, "_notify"):
        return None

    def drain(partitions: Iterable[TopicPartition]) -> Drained:
        out: Drained = {}
        for tp in partitions:
            result = records.get(tp)
            if result is None:
                continue
            if type(result) is FetchError:
                del records[tp]  # as getmany does before raising it: fetch this partition again later
                fetcher._notify(fetcher._wait_consume_future)
                out[tp] = None
                continue
            if type(result) is not FetchResult:
                continue
            got = result.getall(1)  # checks the position and advances it, as getmany does
            if not result.has_more():
                del records[tp]
                fetcher._notify(fetcher._wait_consume_future)
            if got:
                out[tp] = got[0]
        return out

    return drain
