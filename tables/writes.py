"""What a batch write moves and how it can be refused: the offsets a batch claims, the conflict of an
offset that moved, and the refusals that sending the batch again would not cure."""

from __future__ import annotations

from dataclasses import dataclass

from redis.exceptions import (
    AskError,
    ClusterDownError,
    MasterDownError,
    MovedError,
    NoPermissionError,
    NoScriptError,
    OutOfMemoryError,
    ReadOnlyError,
    ResponseError,
    TryAgainError,
)


@dataclass(frozen=True)
class OffsetMove:
    """A batch moves a partition from `expected` (None: never written) to `next_offset`.

    With `topic_id`, the stored topic ID moves from `expected_topic_id` (None: none stored) to it, in the
    same write: an offset is never stored under the ID of another topic.
    """

    topic: str
    partition: int
    expected: int | None
    next_offset: int
    topic_id: str | None = None
    expected_topic_id: str | None = None


class Conflict(Exception):
    """The stored offset of a partition is not the one the batch started from."""

    def __init__(self, field: str) -> None:
        super().__init__(field)
        self.field = field


class MembersBehind(Exception):
    """A member shard of sharded state lacks members of a partition's records below where the write starts
    (the script's reply 8): it went back (a failover, an older snapshot). `watermark` is where its members
    of that partition end (None: it has none); the records from there on are read again for their members.
    Nothing was written."""

    def __init__(self, field: str, watermark: int | None) -> None:
        super().__init__(f"{field} at {watermark}")
        self.field = field
        self.watermark = watermark


class WriteRefused(Exception):
    """The batch cannot be written as the tables stand: sending it again would fail again. `reason` is a
    bounded label value, `key` (and `field`) what an operator has to look at."""

    reason = "refused"
    advice = "repair or delete the key"  # what the log tells an operator

    def __init__(self, key: str, field: str | None = None, detail: str = "") -> None:
        super().__init__(key if field is None else f"{key} field {field!r}")
        self.key = key
        self.field = field
        self.detail = detail


class WrongKeyType(WriteRefused):
    """A key the batch writes holds another type: something else wrote it. Nothing was written."""

    reason = "wrong_type"


class InvalidStoredValue(WriteRefused):
    """A stored value the batch increments or compares is not a number: something else wrote it. Nothing
    was written (the script checks every such value before its first write)."""

    reason = "invalid_value"


class ScriptFailed(WriteRefused):
    """The script stopped with a runtime error. Before its first write, nothing was written; after it,
    what it wrote stays (Redis never rolls a script back) and so does its marker, which refuses every
    later batch (PartialWrite) until an operator has repaired the state."""

    reason = "script_error"


class PartialWrite(WriteRefused):
    """A batch stopped halfway before this one (its marker is still there, `detail` names its offset
    moves): the tables hold part of it and its offsets never moved, so writing any batch would count that
    part again. Nothing was written; refused until an operator repairs (RUNBOOK.md, StateWritesRefused)."""

    reason = "partial_write"
    advice = "repair as RUNBOOK.md (StateWritesRefused) says: deleting this key alone can count part of a batch twice"


class ClusterStateHidden(WriteRefused):
    """In a Redis Cluster, the Redis user may not run CLUSTER NODES, so the script cannot tell whether the
    state's slot is moving, where writing could split the state across two primaries. Nothing was written;
    the fix is a permission (`+cluster|nodes`, docs/operations.md)."""

    reason = "cluster_nodes_refused"


class SlotMoving(TryAgainError):
    """The state's Redis Cluster slot is moving between primaries (the script's reply 5): nothing was
    written, and the batch is sent again, whole, as after Redis's own TRYAGAIN, once the slot has moved."""


# Errors with which Redis refuses a script before running it (nothing written) and that pass by
# themselves or once an operator frees memory, promotes a primary (READONLY from a demoted one), grants
# a permission, or a cluster settles (CLUSTERDOWN, TRYAGAIN, and a MOVED or ASK the client did not
# follow): retried, never counted as refused.
_REFUSED_WHOLE = (
    AskError,
    ClusterDownError,
    MasterDownError,
    MovedError,
    NoPermissionError,
    NoScriptError,
    OutOfMemoryError,
    ReadOnlyError,
    TryAgainError,
)
# A script's own command refused by a cluster node (a key not served here, the cluster down) is met at
# the first command touching that key, or at the first command (write) of all: the script reads or
# checks the type of every key it writes before its first write, and neither the cluster's state nor
# where a key lives changes while a script runs. Nothing written, so retried whole.
_REFUSED_WHOLE_PREFIXES = (
    "BUSY",
    "NOREPLICAS",
    "Script attempted to access a non local key",
    "Script attempted to execute a command while the cluster is down",
    "Script attempted to execute a write command while the cluster is down",
)


def script_failed(exc: ResponseError, key: str) -> ScriptFailed | None:
    """The refusal a script's error reply amounts to, or None when it is one Redis gives before running it."""
    if isinstance(exc, _REFUSED_WHOLE) or str(exc).startswith(_REFUSED_WHOLE_PREFIXES):
        return None
    return ScriptFailed(key, detail=str(exc)[:300])
