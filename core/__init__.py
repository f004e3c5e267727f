"""What every layer shares and nothing of the project's own is imported by: the event contract (schema,
decode, ISO-8601, the day calendar), the replica's status record, retry and rate-limited logging."""
