"""How long a group's oldest unread record has before retention deletes it: topic configs, partition
sizes and the margin rules (docs/lag.md, "Retention margin and time to catch up").

Kafka deletes whole segments, and only once a segment's newest timestamp is older than `retention.ms`
(or once the bytes after it exceed `retention.bytes`). Both margins here count from the unread record
itself, so they are lower bounds: the record is never deleted before the margin runs out, sometimes later.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from aiokafka import TopicPartition
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.protocol.api import Request, RequestStruct, Response
from aiokafka.protocol.types import Array, Boolean, Int16, Int32, Int64, Schema, String

CONFIGS = ("cleanup.policy", "retention.ms", "retention.bytes")
DESCRIBE_CONFIGS = 32
DESCRIBE_LOG_DIRS = 35
TOPIC_AUTHORIZATION_FAILED = 29


@dataclass(frozen=True)
class TopicRetention:
    retention_ms: int | None  # None: kept forever by time (-1)
    retention_bytes: int | None  # None: no size limit (-1, the default)
    deletes: bool = True  # False for cleanup.policy=compact alone: records are replaced, never aged out


def topic_retention(entries: Mapping[str, str | None]) -> TopicRetention:
    """A topic's effective settings from DescribeConfigs (the broker fills in its defaults)."""

    def limit(name: str) -> int | None:
        raw = entries.get(name)
        value = int(raw) if raw not in (None, "") else -1
        return value if value >= 0 else None

    policies = {p.strip() for p in (entries.get("cleanup.policy") or "delete").split(",")}
    return TopicRetention(limit("retention.ms"), limit("retention.bytes"), "delete" in policies)


def config_resources(topics: Iterable[str]) -> list[ConfigResource]:
    return [ConfigResource(ConfigResourceType.TOPIC, t, dict.fromkeys(CONFIGS)) for t in sorted(topics)]


def parse_configs(responses: Iterable[Any]) -> dict[str, TopicRetention]:
    """Topics answered without error; a topic deleted meanwhile is simply not there."""
    found: dict[str, TopicRetention] = {}
    for response in responses:
        for error_code, _message, _type, name, entries, *_ in response.resources:
            if not error_code:
                found[name] = topic_retention({e[0]: e[1] for e in entries})
    return found


def refused_topics(responses: Iterable[Any]) -> set[str]:
    """Topics DescribeConfigs refused for want of an ACL."""
    return {r[3] for response in responses for r in response.resources if r[0] == TOPIC_AUTHORIZATION_FAILED}


def time_margin(retention: TopicRetention, lag_messages: int, lag_seconds: float | None) -> float | None:
    """Seconds until the oldest unread record is older than retention.ms: its timestamp plus
    retention.ms minus now, that is retention minus the lag in seconds. 0 once it may go at any moment."""
    if not retention.deletes or retention.retention_ms is None or lag_messages <= 0 or lag_seconds is None:
        return None
    return max(0.0, retention.retention_ms / 1000 - lag_seconds)


def size_margin(
    retention: TopicRetention, lag_messages: int, record_bytes: float | None, produced_per_s: float | None
) -> float | None:
    """Estimated seconds until retention.bytes pushes out the oldest unread record: the partition keeps
    about retention.bytes / record_bytes records, lag_messages of them are unread, and the rest fills
    at the producers' rate. None when no size limit, nothing unread, no size or rate known, or no
    producer writes (nothing pushes the record out)."""
    if not retention.deletes or retention.retention_bytes is None or lag_messages <= 0:
        return None
    if not record_bytes or record_bytes <= 0 or produced_per_s is None or produced_per_s <= 0:
        return None
    room = retention.retention_bytes / record_bytes - lag_messages
    margin = max(0.0, room / produced_per_s)
    return margin if math.isfinite(margin) else None


def record_bytes(size: int | None, log_start: int, end: int) -> float | None:
    """Average bytes per record on disk (batch overhead and compression included)."""
    if size is None or end <= log_start:
        return None
    return size / (end - log_start)


# DescribeLogDirs: aiokafka has no such call. v1 is the oldest version Kafka 4 still answers (v0 was
# removed by KIP-896) and is not flexible, so its plain struct is enough; Kafka has it since 1.1.
_STR = String("utf-8")


class DescribeLogDirsResponse_v1(Response):  # type: ignore[misc]  # aiokafka ships no type hints
    API_KEY = DESCRIBE_LOG_DIRS
    API_VERSION = 1
    SCHEMA = Schema(
        ("throttle_time_ms", Int32),
        (
            "results",
            Array(
                ("error_code", Int16),
                ("log_dir", _STR),
                (
                    "topics",
                    Array(
                        ("name", _STR),
                        (
                            "partitions",
                            Array(
                                ("partition_index", Int32),
                                ("partition_size", Int64),
                                ("offset_lag", Int64),
                                ("is_future_key", Boolean),
                            ),
                        ),
                    ),
                ),
            ),
        ),
    )


class DescribeLogDirsRequest_v1(RequestStruct):  # type: ignore[misc]  # aiokafka ships no type hints
    API_KEY = DESCRIBE_LOG_DIRS
    API_VERSION = 1
    RESPONSE_TYPE = DescribeLogDirsResponse_v1
    SCHEMA = Schema(("topics", Array(("topic", _STR), ("partitions", Array(Int32)))))


class DescribeLogDirs(Request[DescribeLogDirsRequest_v1]):  # type: ignore[misc]  # aiokafka ships no type hints
    API_KEY = DESCRIBE_LOG_DIRS

    def __init__(self, partitions: Iterable[TopicPartition]) -> None:
        by_topic: dict[str, list[int]] = {}
        for tp in partitions:
            by_topic.setdefault(tp.topic, []).append(tp.partition)
        self.topics = sorted((t, sorted(ps)) for t, ps in by_topic.items())

    def build(self, request_struct_class: type[DescribeLogDirsRequest_v1]) -> DescribeLogDirsRequest_v1:
        return request_struct_class(self.topics)


def partition_sizes(responses: Iterable[Any]) -> dict[TopicPartition, int]:
    """Bytes per partition: the largest replica, as replicas of one log differ only by what they lag
    (future replicas of a move between log directories are left out)."""
    sizes: dict[TopicPartition, int] = {}
    for response in responses:
        for error_code, _dir, topics in response.results:
            if error_code:
                continue
            for name, partitions in topics:
                for index, size, _lag, future in partitions:
                    tp = TopicPartition(name, index)
                    if not future:
                        sizes[tp] = max(size, sizes.get(tp, 0))
    return sizes
