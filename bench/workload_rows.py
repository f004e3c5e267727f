"""The workload rows shaped like production traffic, shared by the first-value benchmark and the
instruction gate (bench/first_value.py, bench/instructions.py), so that both speak of the same rows.

What the design document describes (docs/design.md, "Event contracts"): `ts` as the gateway's ISO-8601
text, epoch-second floats or epoch-millisecond integers; events arriving late, dated the day before;
topics of 4 to 16 partitions; a gateway producing in small batches; hundreds of orgs and tens of
thousands of users, each calling from one org.
"""

from __future__ import annotations

from dataclasses import dataclass

from streams.local.timestamps import EPOCH_MS, EPOCH_S, ISO
from streams.local.workload import Truth, build

SEED = 42
ORGS = 400  # under STREAMS_MAX_ORG_SERIES (500): every org keeps its own series, so the truth is exact
USERS = 40_000
LATE_FRACTION = 0.15  # dated the local day before, interleaved with today's
PRODUCER_LINGER_MS = 5  # the gateway's small producer batches

FORMAT_LABELS = {ISO: "ISO-8601 text", EPOCH_S: "epoch-second floats", EPOCH_MS: "epoch-ms integers"}


@dataclass(frozen=True)
class WorkloadRow:
    key: str  # what --rows names it by
    ts_format: str
    partitions: int
    late_fraction: float = LATE_FRACTION
    compression: str | None = None  # the producer's codec; None: batches sent plain

    @property
    def title(self) -> str:
        codec = f", {self.compression}-compressed" if self.compression else ""
        return (
            f"{self.key}: ts as {FORMAT_LABELS[self.ts_format]}, {self.late_fraction:.0%} late, "
            f"{self.partitions} partitions{codec}"
        )


ROWS = tuple(
    WorkloadRow(f"{name}-{partitions}", ts_format, partitions)
    for name, ts_format in (("iso", ISO), ("epoch-s", EPOCH_S), ("epoch-ms", EPOCH_MS))
    for partitions in (4, 16)
)
# The same events produced lz4- and zstd-compressed: what the sidecar (and the ceiling, reading the same
# topics) pay to decompress. First-value rows only: the instruction gate's corpus is the fold's input,
# which compression does not change.
COMPRESSED_ROWS = tuple(WorkloadRow(f"iso-4-{codec}", ISO, 4, compression=codec) for codec in ("lz4", "zstd"))
FIRST_VALUE_ROWS = ROWS + COMPRESSED_ROWS
SMOKE_ROWS = ("iso-4", "epoch-s-16")


def select(keys: str, rows: tuple[WorkloadRow, ...] = ROWS) -> list[WorkloadRow]:
    """The rows named in a comma-separated list ("all": every row), in the order of `rows`."""
    wanted = {k.strip() for k in keys.split(",") if k.strip()}
    if "all" in wanted:
        return list(rows)
    unknown = wanted - {r.key for r in rows}
    if unknown or not wanted:
        known = ", ".join(r.key for r in rows)
        raise ValueError(f"unknown rows {sorted(unknown)}; choose among: all, {known}")
    return [r for r in rows if r.key in wanted]


def workload(row: WorkloadRow, raw_events: int, now_ms: int | None = None) -> tuple[list[bytes], list[bytes], Truth]:
    """The row's events (as many enriched as raw) and their truth; the same seed for every row, so that
    rows of one format differ only in how they are laid out in partitions."""
    return build(
        seed=SEED,
        raw_events=raw_events,
        enriched_every=1,
        orgs=ORGS,
        users=USERS,
        home_org=True,
        ts_format=row.ts_format,
        late_fraction=row.late_fraction,
        now_ms=now_ms,
    )
