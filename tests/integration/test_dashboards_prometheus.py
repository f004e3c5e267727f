"""Every dashboard panel's query returns data from a real Prometheus that scrapes a real sidecar and
loads the shipped rules, with the release variables at All and at this sidecar's job, and returns none
for another release's job; and the business values in Prometheus equal the events' truth."""

from __future__ import annotations

import asyncio
import importlib.util
import math
import time
from functools import partial
from pathlib import Path

import orjson
import pytest
from aiokafka import TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, RecordsToDelete

from streams.local.prometheus_server import LocalPrometheus
from streams.local.sidecar_proc import SidecarProc, wait_until
from streams.local.topics import make_topics
from tests.integration.conftest import BROKER_KIND, Names, panel_queries, prom_equals, sidecar_env
from tests.integration.kafka_io import Out, commit_group, produce

pytestmark = pytest.mark.integration
# What Tansu cannot give: topic configs (it drops the connection on DescribeConfigs), so no retention margin;
# members' names and assignments (DescribeGroups answers them empty), so no per-client lag; lost records
# are not set up there (the test moves a log start with DeleteRecords).
TANSU_HAS_NO = ("retention_margin_seconds", "member_lag", "member_partitions", "lost_messages")
OPS = Path(__file__).resolve().parents[2] / "ops"
SIDECAR_BOARDS = ("ecomind-business", "ecomind-pipeline")


def _release_queries(job: str) -> list[tuple[str, str]]:
    """Every sidecar panel's query as Grafana sends it with $job at one release (the others at All)."""
    spec = importlib.util.spec_from_file_location("boards", OPS / "grafana" / "boards.py")
    assert spec and spec.loader
    boards = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(boards)
    queries: list[tuple[str, str]] = boards.panel_queries(*SIDECAR_BOARDS, job=job)
    return queries


def test_every_panel_query_returns_data_and_business_values_match(  # type: ignore[no-untyped-def]
    broker, redis_server, names: Names, workdir: Path
) -> None:
    make_topics(broker.bootstrap, [names.raw, names.enriched], partitions=2)
    now = int(time.time() * 1000)
    events = [
        {
            "org_id": f"org_{i % 3}",
            "user_id": f"u{i % 5}",
            "provider": ("openai", "google")[i % 2],
            "model": ("gpt-4o", "gemini")[i % 2],
            "tokens_in": 10,
            "tokens_out": 5,
            "ts": now - 20_000,
        }
        for i in range(30)
    ]
    produce(broker.bootstrap, names.raw, [Out(orjson.dumps(e)) for e in events] + [Out(b"{broken")])
    produce(
        broker.bootstrap,
        names.enriched,
        [Out(orjson.dumps({**e, "kwh": 0.25, "co2_kg": 0.125}), timestamp_ms=now - 19_000) for e in events],
    )
    commit_group(broker.bootstrap, names.watch_group, names.raw, {0: 1})
    lost_group = f"lost-{names.app_id}"
    if BROKER_KIND != "tansu":
        # A group whose unread records retention already deleted: 3 of them, for "Records lost before they
        # were read" (DeleteRecords moves the log start as retention would).
        lost_topic = f"{names.raw}-lost"
        make_topics(broker.bootstrap, [lost_topic], partitions=1)
        produce(broker.bootstrap, lost_topic, [Out(b"x") for _ in range(5)])
        commit_group(broker.bootstrap, lost_group, lost_topic, {0: 0})
        asyncio.run(_delete_records(broker.bootstrap, TopicPartition(lost_topic, 0), 3))
    # The sidecar's own tap group is a real member-holding group: measured with per-client lag, it feeds the
    # "Lag per client" panel (the watched group only has commits, no members).
    env = sidecar_env(
        broker,
        redis_server,
        names,
        STREAMS_LAG_GROUPS=f"{names.app_id}|{names.watch_group}|{lost_group}",
        STREAMS_LAG_MEMBERS="true",
    )
    proc = SidecarProc(workdir / names.app_id, env).start()
    prom = None
    try:
        proc.wait_ready()
        prom = LocalPrometheus(
            workdir / f"prom-{names.app_id}",
            [f"127.0.0.1:{proc.port}"],
            sorted((OPS / "prometheus" / "rules").glob("*.yml")),
        ).start()
        for title, expr in panel_queries():
            if BROKER_KIND == "tansu" and any(f in expr for f in TANSU_HAS_NO):
                continue
            wait_until(partial(prom.query, expr), 90, 0.5, what=f"data for panel {title!r}: {expr}")
        # The job LocalPrometheus scrapes the sidecar as: what a user picks in $job for this release.
        for title, expr in _release_queries("ecomind-streams"):
            if BROKER_KIND == "tansu" and any(f in expr for f in TANSU_HAS_NO):
                continue
            wait_until(partial(prom.query, expr), 30, 0.5, what=f"data for panel {title!r} of the release: {expr}")
        # Another release's job selects none of this one's series (a panel's `or vector(0)` aside).
        for title, expr in _release_queries("other-ecomind-streams"):
            if "vector(" not in expr:
                assert prom.query(expr) == [], (title, expr)
        truth = {
            "sum(ecomind_daily_active_orgs)": 3.0,
            "sum(ecomind_daily_active_users)": 15.0,  # (org, user) pairs: i % 3 and i % 5 over 30 events
            "sum(ecomind_events_ingested_total)": 30.0,
            "ecomind:kwh_today:sum": 7.5,
            "ecomind:co2_kg_today:sum": 3.75,
            'sum(ecomind_streams_events_invalid_total{reason="not_json"})': 1.0,
            # Records wait and the watched group's commit never moves: not consuming, +Inf, not a number.
            f'max(ecomind_consumergroup_catch_up_seconds{{group="{names.watch_group}",topic="{names.raw}"}})': math.inf,
        }
        if BROKER_KIND != "tansu":
            # The tap's one client owns both topics' two partitions, and once it has folded every record and
            # mirrored its offsets to Kafka, nothing waits on them.
            truth |= {
                f'sum(ecomind_consumergroup_lost_messages{{group="{lost_group}"}})': 3.0,
                f'count(ecomind_consumergroup_member_lag{{group="{names.app_id}"}})': 1.0,
                f'sum(ecomind_consumergroup_member_partitions{{group="{names.app_id}"}})': 4.0,
                f'sum(ecomind_consumergroup_member_lag{{group="{names.app_id}"}})': 0.0,
            }
        for expr, want in truth.items():
            wait_until(partial(prom_equals, prom, expr, want), 60, 0.5, what=f"{expr} == {want}")
        if BROKER_KIND != "tansu":
            # The oldest unread record was produced seconds ago under the broker's 7-day retention.ms.
            margin = f'min(ecomind_consumergroup_retention_margin_seconds{{group="{names.watch_group}",basis="time"}})'
            wait_until(partial(_within, prom, margin, 7 * 86_400 - 600, 7 * 86_400), 60, 0.5, what=f"{margin} ~ 7d")
    finally:
        if prom is not None:
            prom.stop()
        proc.stop()


def _within(prom: LocalPrometheus, expr: str, low: float, high: float) -> bool:
    result = prom.query(expr)
    return bool(result) and low <= float(result[0]["value"][1]) <= high  # type: ignore[index]


async def _delete_records(bootstrap: str, tp: TopicPartition, before: int) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.delete_records({tp: RecordsToDelete(before)})
    finally:
        await admin.close()
