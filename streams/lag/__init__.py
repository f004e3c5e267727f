"""The lag probe: how far behind every watched consumer group is, in records and in seconds.

`model` holds the pure arithmetic, `groups` the group-listing wire requests, `fetch` the first-record reads,
`probe` the cycle that asks the brokers, and `metrics` the collector that exports a finished cycle.
"""
