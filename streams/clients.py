"""The one place where the sidecar's Kafka and Redis clients are built from the settings.

Everything else takes its clients as arguments (the tap, the store, the lag probe, the dead-letter
sink), so the same code runs against in-memory fakes in the deterministic simulator.
"""

from __future__ import annotations

from typing import Any

import redis.asyncio as aioredis
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.sentinel import Sentinel

from agents.bulk_fetch import TapKafkaConsumer
from streams.redis_settings import CLUSTER, SENTINEL
from streams.settings import Settings

REDIS_TIMEOUT_S = 5
# aiokafka's fetcher wakes every consumer_timeout_ms (200 by default) even with nothing to do, and each
# wake walks every assigned partition: 5 wakes a second per consumer, a fifth of the idle sidecar's CPU
# (docs/performance.md). Fetch answers, seeks, pause/resume, consumed records and rebalances wake it
# anyway, so the timeout only bounds how late it notices what nothing signals (a leader moved by a
# metadata refresh without a fetch error).
FETCHER_WAKE_MS = 1000


TAP_METADATA_MAX_AGE_MS = 30_000


def redis_client(settings: Settings) -> aioredis.Redis:
    """The state's client for the topology REDIS_URL names (streams/redis_settings.py). Nothing connects
    here: the first command does, and fails within the timeouts rather than hanging.

    A Sentinel client asks the sentinels for the primary on every new connection, and drops its
    connections when the server it reached says it is a replica now, so a failover is followed. A
    cluster client follows MOVED and ASK redirections and refreshes its slot map when a node fails."""
    r = settings.redis
    timeouts: dict[str, Any] = {"socket_timeout": REDIS_TIMEOUT_S, "socket_connect_timeout": REDIS_TIMEOUT_S}
    if r.topology == SENTINEL:
        sentinel_auth = {"password": r.sentinel_password} if r.sentinel_password else {}
        sentinels = Sentinel(  # type: ignore[no-untyped-call]
            list(r.nodes),
            sentinel_kwargs={**timeouts, **r.tls_kwargs(), **sentinel_auth, "decode_responses": True},
            **timeouts,
        )
        primary = sentinels.master_for(
            r.service or "", db=r.db, decode_responses=True, **r.auth_kwargs(), **r.tls_kwargs(), **timeouts
        )
        return primary  # type: ignore[no-any-return]
    if r.topology == CLUSTER:
        cluster = RedisCluster(
            startup_nodes=[ClusterNode(host, port) for host, port in r.nodes],
            decode_responses=True,
            **r.auth_kwargs(),
            **r.tls_kwargs(),
            **timeouts,
        )
        return cluster  # type: ignore[return-value]
    return aioredis.from_url(r.url, decode_responses=True, **r.tls_files(), **timeouts)


def tap_consumer(settings: Settings, replica_id: str) -> AIOKafkaConsumer:
    return TapKafkaConsumer(
        bootstrap_servers=settings.bootstrap_servers,
        group_id=settings.app_id,
        client_id=f"{settings.app_id}-{replica_id}",
        enable_auto_commit=False,
        # The tap seeks every partition itself; a fetch out of the log must reach it, not be reset quietly.
        auto_offset_reset="none",
        # Records of aborted transactions are not events; markers are skipped.
        isolation_level="read_committed",
        session_timeout_ms=settings.session_timeout_ms,
        heartbeat_interval_ms=max(1000, settings.session_timeout_ms // 4),
        max_partition_fetch_bytes=4 * 1024 * 1024,
        fetch_max_bytes=32 * 1024 * 1024,
        fetch_min_bytes=settings.fetch_min_bytes,
        fetch_max_wait_ms=settings.fetch_max_wait_ms,
        consumer_timeout_ms=FETCHER_WAKE_MS,
        # A topic created again (or given more partitions) is only assigned once the consumer's metadata
        # shows it: every 30 s rather than aiokafka's 5 minutes, one small request each time.
        metadata_max_age_ms=TAP_METADATA_MAX_AGE_MS,
        **settings.kafka.client_kwargs(),
    )


def dead_letter_producer(settings: Settings) -> AIOKafkaProducer:
    return AIOKafkaProducer(
        bootstrap_servers=settings.bootstrap_servers,
        client_id=f"{settings.app_id}-dead-letters",
        acks="all",
        linger_ms=5,
        max_request_size=2 * 1024 * 1024,
        request_timeout_ms=5_000,
        **settings.kafka.client_kwargs(),
    )


def build_clients(
    bootstrap_servers: str, client_kwargs: dict[str, object]
) -> tuple[AIOKafkaAdminClient, AIOKafkaConsumer]:
    """The real clients: an admin client and a group-less read_committed consumer that fetches small."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers, **client_kwargs)
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap_servers,
        enable_auto_commit=False,
        isolation_level="read_committed",  # skips aborted records and gives the LSO
        auto_offset_reset="earliest",  # a position below the log start resumes at it, as the group would
        max_partition_fetch_bytes=64 * 1024,  # only the first record matters; larger batches come alone
        fetch_max_bytes=16 * 1024 * 1024,
        fetch_max_wait_ms=50,  # caught-up partitions answer empty quickly
        consumer_timeout_ms=FETCHER_WAKE_MS,  # paused between measurements: nothing to wake for
        **client_kwargs,
    )
    return admin, consumer
