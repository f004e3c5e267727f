"""Settings read from the environment when the worker starts, validated with clear errors."""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from zoneinfo import ZoneInfo

from streams.cluster_settings import LagClusterSettings, lag_cluster_settings
from streams.env_reader import (
    EnvReader,
    check_file,
    check_name,
    check_nonempty,
    check_servers,
    check_topic,
    check_zone,
)
from streams.env_reader import (
    SettingsError as SettingsError,
)
from streams.kafka_settings import (
    DEFAULT_BOOTSTRAP_SERVERS,
    SASL_MECHANISMS,
    KafkaSecurity,
    check_regex,
    check_sasl,
    msk_iam_settings,
    oauth_client_settings,
)
from streams.redis_settings import RedisSettings, redis_settings
from tables.shards import MAX_SHARDS

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Settings:
    bootstrap_servers: str = DEFAULT_BOOTSTRAP_SERVERS
    app_id: str = "ecomind-streams"
    raw_topic: str = "events.raw"
    enriched_topic: str = "events.enriched"
    watch_group: str = "ecomind-worker"
    timezone: str = "UTC"
    web_port: int = 6066
    web_bind: str = "0.0.0.0"
    redis: RedisSettings = field(default_factory=RedisSettings)
    days_kept: int = 2
    # Members (org, user) already written to today's or yesterday's sets, left out of later writes
    # (tables/seen.py); about 100 bytes each. 0 sends every member every time.
    seen_cache_entries: int = 200_000
    max_future_seconds: int = 86_400
    max_payload_bytes: int = 65_536
    batch_max_records: int = 20_000
    # An idle replica wakes once per batch timeout; getmany returns as soon as records arrive, so a longer
    # wait costs no freshness (docs/performance.md, "Idle and low-rate cost", has the figures).
    batch_timeout_ms: int = 1_000
    # The broker holds a fetch until this many bytes or this wait: at low rates, a few fetches a second
    # carry many records instead of one fetch per record (same section of docs/performance.md).
    fetch_min_bytes: int = 16_384
    fetch_max_wait_ms: int = 500
    lag_interval_seconds: float = 5.0
    leader_lease_seconds: float = 10.0
    session_timeout_ms: int = 6_000
    max_org_series: int = 500
    max_label_values: int = 100
    dead_letter_topic: str | None = None
    web_config_file: str | None = None
    shutdown_timeout_seconds: float = 20.0
    # A partition whose records fail to read this many times at one position is paused alone and
    # tried again after a back-off that doubles up to the maximum (agents/stalls.py).
    stall_after_failures: int = 3
    stall_max_backoff_seconds: float = 60.0
    redis_policy_check: bool = True
    # Hash tags the state is spread over (docs/design.md, "Sharded state"); 1 is the one-tag layout. Fixed
    # when the state is created: a replica set to another count refuses to run (tables/layout.py).
    redis_shards: int = 1
    # Beside another key layout's state: "refuse" waits, "reread" rebuilds this layout from the topics
    # (tables/layout.py, UPGRADING.md).
    layout_upgrade: str = "refuse"
    # The longest interval at which a Prometheus scrapes the sidecar: the hand-over's bound until the
    # exporter has seen two scrapes and measured it (streams/exporter.py). Prometheus's own default.
    scrape_interval_seconds: float = 60.0
    kafka: KafkaSecurity = field(default_factory=KafkaSecurity)
    # Lag of every consumer group (docs/lag.md): which groups, how fine, how long a fetch may take, SLOs.
    lag_groups: str | None = None  # regex; None: only the watched group
    lag_groups_ignore: str | None = None
    lag_granularity: str = "partition"
    lag_fetch_timeout_ms: int = 2_000
    lag_slo_seconds: str = ""  # "regex=seconds,regex=seconds": first full match wins
    lag_slo_default_seconds: float = 60.0
    lag_rate_window_seconds: float = 60.0  # consumption rate window, for the time to catch up
    lag_retention_refresh_seconds: float = 300.0  # how often topic retention configs are read again
    lag_catch_up_cap_seconds: float = 7 * 86_400.0
    # Which topics get lag series, what becomes of commits no member owns, per-client lag (docs/lag.md).
    lag_topics: str | None = None  # regex; None: every topic
    lag_topics_ignore: str | None = None
    lag_stale: str = "drop"
    lag_members: bool = False
    lag_members_per_group: int = 20
    lag_members_total: int = 2_000  # labelled clients over all groups of one Kafka cluster
    # Clusters probed for lag only, and the tapped one's kafka_cluster label (streams/cluster_settings.py).
    lag_clusters: LagClusterSettings = field(default_factory=lambda: _lag_clusters(EnvReader({})))

    @property
    def redis_url(self) -> str:
        return self.redis.url

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if environ is None else environ
        r = EnvReader(env)
        settings = cls(
            bootstrap_servers=r.text("KAFKA_BOOTSTRAP_SERVERS", cls.bootstrap_servers, check_servers),
            app_id=r.text("STREAMS_APP_ID", cls.app_id, check_name),
            raw_topic=r.text("STREAMS_RAW_TOPIC", cls.raw_topic, check_topic),
            enriched_topic=r.text("STREAMS_ENRICHED_TOPIC", cls.enriched_topic, check_topic),
            watch_group=r.text("STREAMS_WATCH_GROUP", cls.watch_group, check_name),
            timezone=r.text("STREAMS_TIMEZONE", cls.timezone, check_zone),
            web_port=r.integer("STREAMS_WEB_PORT", cls.web_port, 1, 65535),
            web_bind=r.text("STREAMS_WEB_BIND", cls.web_bind, check_nonempty),
            redis=redis_settings(r),
            days_kept=r.integer("STREAMS_DAYS_KEPT", cls.days_kept, 1, 366),
            seen_cache_entries=r.integer("STREAMS_SEEN_CACHE_ENTRIES", cls.seen_cache_entries, 0, 50_000_000),
            max_future_seconds=r.integer("STREAMS_MAX_FUTURE_SECONDS", cls.max_future_seconds, 0, 31 * 86_400),
            max_payload_bytes=r.integer("STREAMS_MAX_PAYLOAD_BYTES", cls.max_payload_bytes, 256, 16 * 1024 * 1024),
            batch_max_records=r.integer("STREAMS_BATCH_MAX_RECORDS", cls.batch_max_records, 1, 1_000_000),
            batch_timeout_ms=r.integer("STREAMS_BATCH_TIMEOUT_MS", cls.batch_timeout_ms, 1, 60_000),
            fetch_min_bytes=r.integer("STREAMS_FETCH_MIN_BYTES", cls.fetch_min_bytes, 1, 16 * 1024 * 1024),
            fetch_max_wait_ms=r.integer("STREAMS_FETCH_MAX_WAIT_MS", cls.fetch_max_wait_ms, 0, 10_000),
            lag_interval_seconds=r.number("STREAMS_LAG_INTERVAL_SECONDS", cls.lag_interval_seconds, 0.1, 3600),
            leader_lease_seconds=r.number("STREAMS_LEADER_LEASE_SECONDS", cls.leader_lease_seconds, 1, 600),
            session_timeout_ms=r.integer("STREAMS_SESSION_TIMEOUT_MS", cls.session_timeout_ms, 1000, 300_000),
            max_org_series=r.integer("STREAMS_MAX_ORG_SERIES", cls.max_org_series, 1, 100_000),
            max_label_values=r.integer("STREAMS_MAX_LABEL_VALUES", cls.max_label_values, 1, 10_000),
            dead_letter_topic=r.optional_text("STREAMS_DEAD_LETTER_TOPIC", check_topic),
            web_config_file=r.optional_text("STREAMS_WEB_CONFIG_FILE", check_file),
            shutdown_timeout_seconds=r.number(
                "STREAMS_SHUTDOWN_TIMEOUT_SECONDS", cls.shutdown_timeout_seconds, 1, 3600
            ),
            stall_after_failures=r.integer("STREAMS_STALL_AFTER_FAILURES", cls.stall_after_failures, 1, 1000),
            stall_max_backoff_seconds=r.number(
                "STREAMS_STALL_MAX_BACKOFF_SECONDS", cls.stall_max_backoff_seconds, 1, 3600
            ),
            redis_policy_check=r.flag("STREAMS_REDIS_POLICY_CHECK", cls.redis_policy_check),
            redis_shards=r.integer("STREAMS_REDIS_SHARDS", cls.redis_shards, 1, MAX_SHARDS),
            layout_upgrade=r.choice("STREAMS_LAYOUT_UPGRADE", "REFUSE", ("REFUSE", "REREAD")).lower(),
            scrape_interval_seconds=r.number("STREAMS_SCRAPE_INTERVAL_SECONDS", cls.scrape_interval_seconds, 1, 3600),
            kafka=KafkaSecurity(
                security_protocol=r.choice(
                    "KAFKA_SECURITY_PROTOCOL", "PLAINTEXT", ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
                ),
                sasl_mechanism=r.optional_choice("KAFKA_SASL_MECHANISM", SASL_MECHANISMS),
                sasl_username=env.get("KAFKA_SASL_USERNAME") or None,
                sasl_password=r.secret("KAFKA_SASL_PASSWORD", check_nonempty),
                ssl_cafile=r.optional_text("KAFKA_SSL_CAFILE", check_file),
                ssl_certfile=r.optional_text("KAFKA_SSL_CERTFILE", check_file),
                ssl_keyfile=r.optional_text("KAFKA_SSL_KEYFILE", check_file),
                oauth=oauth_client_settings(r),
                msk_iam=msk_iam_settings(r),
            ),
            **_lag_settings(r),
        )
        if "STREAMS_EXPORTER_HANDOVER_SECONDS" in env:
            # Retired, not refused: a rollout that still sets it must not crash-loop its new pods.
            log.warning(
                "STREAMS_EXPORTER_HANDOVER_SECONDS is ignored: the hand-over now ends when the last exporter's "
                "series are stale (docs/design.md); STREAMS_SCRAPE_INTERVAL_SECONDS bounds it until scrapes are seen"
            )
        if settings.raw_topic == settings.enriched_topic:
            raise SettingsError("STREAMS_RAW_TOPIC and STREAMS_ENRICHED_TOPIC must name different topics")
        if settings.dead_letter_topic in (settings.raw_topic, settings.enriched_topic):
            raise SettingsError("STREAMS_DEAD_LETTER_TOPIC must differ from the input topics")
        check_sasl(settings.kafka)
        return settings


def _lag_settings(r: EnvReader) -> dict[str, Any]:
    return {
        "lag_groups": r.optional_text("STREAMS_LAG_GROUPS", check_regex),
        "lag_groups_ignore": r.optional_text("STREAMS_LAG_GROUPS_IGNORE", check_regex),
        "lag_granularity": r.choice("STREAMS_LAG_GRANULARITY", "PARTITION", ("PARTITION", "TOPIC")).lower(),
        "lag_fetch_timeout_ms": r.integer("STREAMS_LAG_FETCH_TIMEOUT_MS", Settings.lag_fetch_timeout_ms, 100, 600_000),
        "lag_slo_seconds": r.text("STREAMS_LAG_SLO_SECONDS", "", _check_slo),
        "lag_slo_default_seconds": r.number("STREAMS_LAG_SLO_DEFAULT_SECONDS", 60.0, 0.001, 31 * 86_400),
        "lag_rate_window_seconds": r.number("STREAMS_LAG_RATE_WINDOW_SECONDS", 60.0, 1, 86_400),
        "lag_retention_refresh_seconds": r.number("STREAMS_LAG_RETENTION_REFRESH_SECONDS", 300.0, 1, 86_400),
        "lag_catch_up_cap_seconds": r.number("STREAMS_LAG_CATCH_UP_CAP_SECONDS", 7 * 86_400.0, 1, 366 * 86_400),
        "lag_topics": r.optional_text("STREAMS_LAG_TOPICS", check_regex),
        "lag_topics_ignore": r.optional_text("STREAMS_LAG_TOPICS_IGNORE", check_regex),
        "lag_stale": r.choice("STREAMS_LAG_STALE", "DROP", ("DROP", "FLAG", "KEEP")).lower(),
        "lag_members": r.flag("STREAMS_LAG_MEMBERS", False),
        "lag_members_per_group": r.integer("STREAMS_LAG_MEMBERS_PER_GROUP", 20, 1, 10_000),
        "lag_members_total": r.integer("STREAMS_LAG_MEMBERS_TOTAL", 2_000, 1, 1_000_000),
        "lag_clusters": _lag_clusters(r),
    }


def _lag_clusters(r: EnvReader) -> LagClusterSettings:
    return lag_cluster_settings(r)


def lag_slo_rules(value: str) -> tuple[tuple[re.Pattern[str], float], ...]:
    """STREAMS_LAG_SLO_SECONDS parsed: "regex=seconds" pairs, comma-separated (validated at start)."""
    rules = []
    for item in filter(None, (part.strip() for part in value.split(","))):
        pattern, _, seconds = item.rpartition("=")
        rules.append((re.compile(pattern), float(seconds)))
    return tuple(rules)


def _check_slo(value: str) -> str | None:
    expected = "comma-separated group-regex=seconds pairs, e.g. 'ecomind-worker=10,sink-.*=300'"
    for item in filter(None, (part.strip() for part in value.split(","))):
        pattern, sep, seconds = item.rpartition("=")
        try:
            ok = bool(sep and pattern) and float(seconds) > 0
            re.compile(pattern)
        except (ValueError, re.error):
            ok = False
        if not ok:
            return expected
    return None
