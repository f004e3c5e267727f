"""The Pipeline board: replicas, broker and Redis, worker and consumer-group lag and what it means ahead
(retention margin, time to catch up, stale commits, lag per client), enrichment delay, events, dead
letters, label folding and the process."""

from board_kit import INST, SIDECAR, P, RightAxis, Thresholds

_DELAY = "sum by (le) (rate(ecomind_streams_enrichment_delay_seconds_bucket[5m]))"
# The consumer groups chosen on the board, within the Kafka clusters chosen (kafka_cluster: STREAMS_LAG_CLUSTERS).
GROUPS = '{kafka_cluster=~"$kafka_cluster",group=~"$group"}'

PIPELINE = [
    P(
        "Replicas up, ready, exporting",
        "stat",
        "short",
        [
            ("count(ecomind_streams_build_info)", "up"),
            ("sum(ecomind_streams_ready)", "ready"),
            ("sum(ecomind_streams_exporter_leader)", "exporting"),
        ],
        "Replicas answering scrapes, replicas ready (/ready), and the one holding the exporter lease (must be 1).",
        "ServiceDown",
        "EcoMindStreamsNotReady",
        "EcoMindStreamsNoExporter",
    ),
    P(
        "Broker and Redis up, per replica",
        "timeseries",
        "short",
        [
            (f"min by (instance) (ecomind_streams_broker_up{{{INST}}})", "broker {{instance}}"),
            (f"min by (instance) (ecomind_streams_redis_up{{{INST}}})", "redis {{instance}}"),
            (f"max by (instance) (ecomind_streams_brokers_unreachable{{{INST}}})", "brokers unreachable {{instance}}"),
        ],
        "1 when Kafka metadata answers and every listed broker accepts a connection, and when the last Redis "
        "request succeeded; brokers that refused a connection at the last check.",
        "EcoMindStreamsNotReady",
        "TablesStuckRecovering",
    ),
    P(
        "Worker lag (messages)",
        "timeseries",
        "short",
        [("sum by (topic, partition) (ecomind_worker_kafka_lag)", "{{topic}}/{{partition}}")],
        "Messages between the enrichment worker's committed offset and the partition end.",
        "HighKafkaLag",
    ),
    P(
        "Worker lag (age of oldest unconsumed record)",
        "timeseries",
        "s",
        [("max by (topic, partition) (ecomind_worker_kafka_lag_seconds)", "{{topic}}/{{partition}}")],
        "How old the oldest record the worker has not consumed is; the SLO is 10 s, the SLA 60 s.",
        "WorkerLagAboveSLO",
        "WorkerLagAboveSLA",
    ),
    P(
        "Consumer-group lag (messages)",
        "timeseries",
        "short",
        [
            (
                "sum by (kafka_cluster, group, topic) (ecomind_consumergroup_lag" + GROUPS + ")",
                "{{kafka_cluster}} {{group}} {{topic}}",
            )
        ],
        "Messages each selected group has not consumed, up to the last stable offset, by topic.",
        "ConsumerGroupLagGrowing",
    ),
    P(
        "Consumer-group lag (age of oldest unconsumed record)",
        "timeseries",
        "s",
        [
            (
                "max by (kafka_cluster, group, topic) (ecomind_consumergroup_lag_seconds" + GROUPS + ")",
                "{{kafka_cluster}} {{group}} {{topic}}",
            ),
            (
                "max by (kafka_cluster, group) (ecomind_consumergroup_lag_slo_seconds" + GROUPS + ")",
                "{{kafka_cluster}} {{group}} SLO",
            ),
        ],
        "Age of the oldest record each group has not consumed, against the group's SLO.",
        "ConsumerGroupLagAboveSLO",
    ),
    P(
        "Consumer groups: members and unknown ages",
        "timeseries",
        "short",
        [
            (
                "max by (kafka_cluster, group) (ecomind_consumergroup_members" + GROUPS + ")",
                "{{kafka_cluster}} {{group}} members",
            ),
            (
                "max by (kafka_cluster, group) (ecomind_consumergroup_lag_seconds_unknown" + GROUPS + ")",
                "{{kafka_cluster}} {{group}} age unknown",
            ),
        ],
        "Members per group, and 1 where records wait but their age could not be read in time.",
        "ConsumerGroupMembersNoCommits",
        "LagProbeStale",
    ),
    P(
        "Retention margin (oldest unread record)",
        "timeseries",
        "s",
        [
            (
                "min by (kafka_cluster, group, topic) (ecomind_consumergroup_retention_margin_seconds" + GROUPS + ")",
                "{{kafka_cluster}} {{group}} {{topic}}",
            )
        ],
        "Time until retention may delete the oldest record each group has not read, on the topic's closest "
        "partition and either basis (retention.ms, or the retention.bytes estimate). Absent where nothing "
        "unread can expire: nothing waits, no commit yet, or a compacted topic. A falling line is a group "
        "losing ground.",
        "ConsumerGroupRetentionMarginLow",
    ),
    P(
        "Time to catch up",
        "stat",
        "s",
        [
            (
                "max by (kafka_cluster, group, topic) (ecomind_consumergroup_catch_up_seconds" + GROUPS + ")",
                "{{kafka_cluster}} {{group}} {{topic}}",
            )
        ],
        "Lag over the group's consumption rate of the last STREAMS_LAG_RATE_WINDOW_SECONDS: 0 when caught up, "
        "capped at STREAMS_LAG_CATCH_UP_CAP_SECONDS, and +Inf (shown as not consuming) when messages wait and "
        "the group commits nothing. Orange from 1 hour, red from 6 hours (the retention alert's window). "
        "Taken as a max, never summed or averaged: one +Inf would hide every other figure.",
        "ConsumerGroupRetentionMarginLow",
        thresholds=Thresholds(((3600, "orange"), (6 * 3600, "red")), infinite="not consuming"),
    ),
    P(
        "Stale partitions per group (top 20)",
        "bargauge",
        "short",
        [
            (
                "topk(20, max by (kafka_cluster, group) (ecomind_consumergroup_stale_partitions" + GROUPS + "))",
                "{{kafka_cluster}} {{group}}",
            )
        ],
        "Partitions a group has commits on in topics none of its members owns, as when it left a topic: with "
        'STREAMS_LAG_STALE=drop (the default) they get no lag series, with flag they carry stale="true" '
        "and the lag alerts skip them. Above 0 while the group's old offsets remain on the broker.",
        thresholds=Thresholds(((1, "orange"),)),
    ),
    P(
        "Lag per client (messages)",
        "timeseries",
        "short",
        [
            (
                "sum by (kafka_cluster, group, client_id) (ecomind_consumergroup_member_lag" + GROUPS + ")",
                "{{kafka_cluster}} {{group}} {{client_id}}",
            )
        ],
        "Messages waiting on the partitions each client of a group owns, over all its hosts (opt-in: "
        "STREAMS_LAG_MEMBERS=true). Beyond STREAMS_LAG_MEMBERS_PER_GROUP clients per group, or "
        "STREAMS_LAG_MEMBERS_TOTAL over all groups, the least lagging add up in __other__, so a group's "
        "clients sum to the lag of the partitions its members own.",
    ),
    P(
        "Per client: oldest unread record and partitions owned",
        "timeseries",
        "short",
        [
            (
                "max by (kafka_cluster, group, client_id) (ecomind_consumergroup_member_lag_seconds" + GROUPS + ")",
                "{{kafka_cluster}} {{group}} {{client_id}} age (s)",
            ),
            (
                "sum by (kafka_cluster, group, client_id) (ecomind_consumergroup_member_partitions" + GROUPS + ")",
                "{{kafka_cluster}} {{group}} {{client_id}} partitions",
            ),
        ],
        "Per client of a group (opt-in: STREAMS_LAG_MEMBERS=true): the age in seconds of the oldest record "
        "waiting on the partitions it owns, and how many measured partitions it owns (0: a member that owns "
        "nothing, as while a group rebalances or when it has more members than partitions).",
    ),
    P(
        "Records lost before they were read",
        "timeseries",
        "short",
        [
            (
                "sum by (kafka_cluster, group, topic) (ecomind_consumergroup_lost_messages" + GROUPS + ")",
                "{{kafka_cluster}} {{group}} {{topic}}",
            )
        ],
        "Offsets between a group's commit and the log start: records retention deleted before the group read "
        "them, which it will skip when it resumes. Above 0 for a group that stopped longer than its topic's "
        "retention (an abandoned group shows here until its offsets expire); ConsumerGroupRetentionMarginLow "
        "is the alert that comes before.",
        "ConsumerGroupRetentionMarginLow",
    ),
    P(
        "Enrichment delay",
        "timeseries",
        "s",
        [(f"histogram_quantile({q}, {_DELAY})", f"p{int(q * 100)}") for q in (0.5, 0.95, 0.99)],
        "Enriched record's broker time minus the raw event's ts: the SLI of the 99 % within 10 s SLO.",
        "EnrichmentDelaySLOFastBurn",
        "EnrichmentDelaySLOSlowBurn",
    ),
    P(
        "Events/s per topic",
        "timeseries",
        "ops",
        [("sum by (topic) (rate(ecomind_streams_events_processed_total[5m]))", "{{topic}}")],
        "Valid events folded into the tables per second.",
        "EcoMindNoEventsIngested",
    ),
    P(
        "Invalid events by reason",
        "timeseries",
        "ops",
        [("sum by (topic, reason) (rate(ecomind_streams_events_invalid_total[5m]))", "{{topic}} {{reason}}")],
        "Records rejected per second, by topic and reason.",
        "InvalidEventsSpike",
    ),
    P(
        "Dead letters",
        "timeseries",
        "ops",
        [
            (f"sum by (instance) (rate(ecomind_streams_dead_letters_total{{{INST}}}[5m]))", "written {{instance}}"),
            (
                f"sum by (instance) (rate(ecomind_streams_dead_letter_errors_total{{{INST}}}[5m]))",
                "failed {{instance}}",
            ),
        ],
        "Invalid records forwarded to the dead-letter topic per second, and failed (retried) writes, which "
        "stall the replica's partitions.",
        "DeadLetterWritesFailing",
    ),
    P(
        "Label values folded into __other__",
        "bargauge",
        "short",
        [("max by (label) (ecomind_streams_label_values_folded_total) or on () vector(0)", "{{label}}")],
        "Distinct org, provider or model values beyond the series cap (0 while nothing is folded); sums stay exact.",
        "LabelCapReached",
    ),
    P(
        "Process CPU",
        "timeseries",
        "percentunit",
        [(f"rate(process_cpu_seconds_total{{{INST}}}[5m]) {SIDECAR}", "{{instance}}")],
        "CPU of each replica's process, in cores.",
    ),
    P(
        "Process memory",
        "timeseries",
        "bytes",
        [(f"process_resident_memory_bytes{{{INST}}} {SIDECAR}", "{{instance}}")],
        "Resident memory of each replica's process.",
    ),
    P(
        "Lag probe per Kafka cluster",
        "timeseries",
        "s",
        [
            (
                "time() - max by (kafka_cluster) (ecomind_streams_lag_cluster_last_success_timestamp_seconds"
                '{kafka_cluster=~"$kafka_cluster"})',
                "{{kafka_cluster}} since last cycle",
            ),
            (
                'max by (kafka_cluster) (ecomind_streams_lag_probe_duration_seconds{kafka_cluster=~"$kafka_cluster"})',
                "{{kafka_cluster}} cycle duration",
            ),
            (
                'max by (kafka_cluster) (ecomind_streams_lag_cluster_up{kafka_cluster=~"$kafka_cluster"})',
                "{{kafka_cluster}} up",
            ),
        ],
        "Per Kafka cluster the lag probe measures (the tapped one and STREAMS_LAG_CLUSTERS): the time since its "
        "last completed cycle, how long the last cycle took, and, on the right axis, whether its last cycle "
        "completed in time (up: yes, or no when it failed, timed out, or none ran yet). A line that keeps "
        "rising, or up at no, is a cluster whose probe fails: its lag series above hold their last values.",
        "LagProbeClusterDown",
        "LagProbeStale",
        right=RightAxis(2, "bool_yes_no", 0, 1),
    ),
]
