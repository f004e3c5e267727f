"""The lag probe: how far behind every watched consumer group is, in records and in seconds.

`model` holds the pure arithmetic; `groups`, `batch` and `fetch` the wire requests (group listing and
describing, batched offset reads, first-record reads); `probe` the cycle that asks the brokers; `metrics`
the collector that exports a finished cycle. Around them: `retention`, `rates` and `outlook` (retention
margin, time to catch up), `scope` and `members` (topic filters, stale commits, per-member lag),
`clusters` and `cluster_label` (other Kafka clusters, each probed on its own, and their families merged);
`loops` and `own_loop` run each cluster's probe on a thread with its own event loop, off the web server's
and off the other clusters'.
"""
