"""What to do when the log no longer holds a partition's stored offset: one stated rule, pure."""

from __future__ import annotations

TRUNCATED = "truncated"  # retention (or DeleteRecords) removed records before they were read
BEYOND_END = "beyond_log_end"  # the topic was deleted and recreated, so its offsets start again


def out_of_range_rule(stored: int, log_start: int) -> tuple[str, int, int]:
    """(reason, offset to resume at, offsets skipped) for a stored offset the broker refused.

    Below the log start, the records in between are gone: resume at the log start and count the gap.
    Otherwise the stored offset is beyond the log's end, which a recreated topic does: every record the
    new log holds is new, so resume at its start and skip nothing.
    """
    if stored < log_start:
        return TRUNCATED, log_start, log_start - stored
    return BEYOND_END, log_start, 0
