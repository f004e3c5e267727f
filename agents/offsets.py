"""Where to resume when the log no longer matches a partition's stored offset: the stated rules, pure.

Topic IDs (agents/topic_ids.py) tell the cases apart that a name and an offset cannot: a topic deleted and
created again (a new ID) from a log cut below the stored offset under the same ID (an unclean leader
election). Brokers without IDs, and offsets stored before IDs were (an older version of the sidecar),
keep the rule that only looks at offsets.
"""

from __future__ import annotations

TRUNCATED = "truncated"  # retention (or DeleteRecords) removed records before they were read
BEYOND_END = "beyond_log_end"  # past the log's end, no ID to tell why: taken for a recreated topic
LOG_CUT = "log_cut"  # the same topic's log now ends below the stored offset
RECREATED = "recreated"  # another topic of the same name: its offsets start again
IN_RANGE = "in_range"  # the log holds the stored offset after all (it moved between the fetch and the look)
RESET_REASONS = (TRUNCATED, BEYOND_END, LOG_CUT)  # the offset_resets counter's reasons


def recreated(stored_id: str | None, current_id: str | None) -> bool:
    """A stored offset belongs to another topic of the same name: both IDs known, and they differ."""
    return stored_id is not None and current_id is not None and stored_id != current_id


def out_of_range_rule(
    stored: int,
    log_start: int,
    log_end: int | None = None,
    stored_id: str | None = None,
    current_id: str | None = None,
) -> tuple[str, int, int]:
    """(reason, offset to resume at, offsets skipped) for a stored offset the broker refused.

    Another topic of the same name is read from its start (what retention already took of it, unread,
    is counted as skipped). Below the log start, the
    records in between are gone: resume at the log start and count the gap. Beyond the end of the same
    topic's log, the log was cut: the records up to the stored offset were counted already, and the
    cut removed them, so resume at the log's end (records written there from now on are new). Without
    IDs, beyond the end is taken for a recreated topic: every record the new log holds is new.
    """
    if recreated(stored_id, current_id):
        return RECREATED, log_start, log_start  # the new topic's offsets began at 0: below its start, deleted
    if stored < log_start:
        return TRUNCATED, log_start, log_start - stored
    if stored_id is not None and stored_id == current_id and log_end is not None:
        if stored > log_end:
            return LOG_CUT, log_end, 0
        return IN_RANGE, stored, 0
    return BEYOND_END, log_start, 0
