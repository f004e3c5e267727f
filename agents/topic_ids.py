"""Topic IDs (KIP-516) from Metadata v12, so a deleted and re-created topic is told from the one it replaced.

A name alone cannot tell them apart: the new topic's offsets start again at 0, and a stored offset of the
old one would skip as many of its records. Kafka gives every topic a random 16-byte ID at creation
(Metadata v10 and later carry it); aiokafka 0.14 speaks Metadata v5 at most, so this module sends v12
itself. IDs are kept as Kafka's own text form (URL-safe base64 without padding, as `kafka-topics.sh
--describe` prints them). A broker that does not answer v12, or answers the all-zero ID (no IDs), gives
None: the tap then keeps its rule for brokers without IDs.
"""

from __future__ import annotations

import base64
import logging
from collections.abc import Iterable
from typing import Any

from aiokafka.client import ConnectionGroup
from aiokafka.errors import IncompatibleBrokerVersion
from aiokafka.protocol.api import Request, RequestStruct, Response
from aiokafka.protocol.types import Boolean, CompactArray, CompactString, Int16, Int32, Schema, TaggedFields

from core.kafka_wire import Uuid

log = logging.getLogger(__name__)


METADATA = 3
ZERO_ID = bytes(16)
_STR = CompactString("utf-8")


class MetadataResponse_v12(Response):  # type: ignore[misc]  # aiokafka ships no type hints
    API_KEY = METADATA
    API_VERSION = 12
    SCHEMA = Schema(
        ("throttle_time_ms", Int32),
        (
            "brokers",
            CompactArray(("node_id", Int32), ("host", _STR), ("port", Int32), ("rack", _STR), ("tags", TaggedFields)),
        ),
        ("cluster_id", _STR),
        ("controller_id", Int32),
        (
            "topics",
            CompactArray(
                ("error_code", Int16),
                ("name", _STR),
                ("topic_id", Uuid),
                ("is_internal", Boolean),
                (
                    "partitions",
                    CompactArray(
                        ("error_code", Int16),
                        ("partition_index", Int32),
                        ("leader_id", Int32),
                        ("leader_epoch", Int32),
                        ("replica_nodes", CompactArray(Int32)),
                        ("isr_nodes", CompactArray(Int32)),
                        ("offline_replicas", CompactArray(Int32)),
                        ("tags", TaggedFields),
                    ),
                ),
                ("topic_authorized_operations", Int32),
                ("tags", TaggedFields),
            ),
        ),
        ("tags", TaggedFields),
    )


class MetadataRequest_v12(RequestStruct):  # type: ignore[misc]  # aiokafka ships no type hints
    FLEXIBLE_VERSION = True  # v9 and later
    API_KEY = METADATA
    API_VERSION = 12
    RESPONSE_TYPE = MetadataResponse_v12
    SCHEMA = Schema(
        ("topics", CompactArray(("topic_id", Uuid), ("name", _STR), ("tags", TaggedFields))),
        ("allow_auto_topic_creation", Boolean),
        ("include_topic_authorized_operations", Boolean),
        ("tags", TaggedFields),
    )


class TopicMetadata(Request[MetadataRequest_v12]):  # type: ignore[misc]  # aiokafka ships no type hints
    """Metadata of named topics, never creating one (the tap only reads topics that exist)."""

    API_KEY = METADATA

    def __init__(self, topics: list[str]) -> None:
        self.topics = topics

    def build(self, request_struct_class: type[MetadataRequest_v12]) -> MetadataRequest_v12:
        return request_struct_class([(ZERO_ID, name, {}) for name in self.topics], False, False, {})


def id_text(raw: bytes) -> str | None:
    """Kafka's text form of a topic ID; None for the all-zero ID a broker without IDs answers."""
    if raw == ZERO_ID:
        return None
    return base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")


def topic_ids_of(response: Any) -> dict[str, str | None]:
    """Each topic the answer names without an error, with its ID (None: the broker has none)."""
    found: dict[str, str | None] = {}
    for error_code, name, raw_id, *_ in response.topics:
        if error_code == 0 and name:
            found[name] = id_text(raw_id)
    return found


async def fetch_topic_ids(client: Any, topics: Iterable[str]) -> dict[str, str | None]:
    """The current ID of each topic; None for a topic the broker gave no ID (or that it did not name).

    Raises what the request raises (connection errors): the caller decides whether to retry.
    """
    wanted = sorted(set(topics))
    if not wanted:
        return {}
    node = client.get_random_node()
    try:
        # Not on the fetcher's connection: a broker answers a connection's requests in order, so there it
        # would wait behind a long-polling fetch (up to fetch_max_wait_ms) while the batch that asked
        # waits for it. The coordination connections carry heartbeats and commits, answered at once.
        response = await client.send(node, TopicMetadata(wanted), group=ConnectionGroup.COORDINATION)
    except (IncompatibleBrokerVersion, NotImplementedError):
        log.info("the broker does not answer Metadata v12: topics are known by name only")
        return dict.fromkeys(wanted)
    found = topic_ids_of(response)
    return {name: found[name] for name in wanted if name in found}
