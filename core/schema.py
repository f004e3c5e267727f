"""The event contract as msgspec schemas: the hot path decodes and checks a record in one C call.

Decoding with orjson and then checking seven fields in Python cost about three times what this does
(docs/performance.md). These schemas only ever accept: whatever they refuse, for any reason, goes to
the checks in core/events.py, which decide and name the reason. So a value they let through must be
one those checks accept with the same result; tests/unit/core/test_schema_decode.py searches for a
counterexample. The bounds are the contract's (core/events.py imports them from here).
"""

from __future__ import annotations

from typing import Annotated

from msgspec import Meta, Struct
from msgspec.json import Decoder

MAX_LABEL_CHARS = 256
MAX_TOKENS = 10_000_000_000
MAX_KWH = 1_000.0
MAX_CO2_KG = 1_000.0

Label = Annotated[str, Meta(min_length=1, max_length=MAX_LABEL_CHARS)]
Tokens = Annotated[int, Meta(ge=0, le=MAX_TOKENS)]
EpochInt = Annotated[int, Meta(ge=-(2**63), le=2**63 - 1)]


# gc=False: a batch holds tens of thousands of these at once, and they can hold no cycle.
# forbid_unknown_fields: msgspec skips an unknown field's value without checking its UTF-8 or its
# numbers' range, which orjson refuses; an event with extra fields takes the orjson tier instead.
class RawShape(Struct, gc=False, forbid_unknown_fields=True):
    org_id: Label
    user_id: Label
    provider: Label
    model: Label
    tokens_in: Tokens
    tokens_out: Tokens
    # ISO-8601 text or epoch seconds/milliseconds: core.events.parse_ts_ms reads and bounds it. An
    # integer past 64 bits is refused here: orjson reads one as a float (infinite past 1.8e308), so the
    # orjson tier must be the one to answer for it.
    ts: EpochInt | float | str


class EnrichedShape(RawShape, gc=False, forbid_unknown_fields=True):
    kwh: Annotated[float, Meta(ge=0, le=MAX_KWH)]
    co2_kg: Annotated[float, Meta(ge=0, le=MAX_CO2_KG)]


RAW_DECODER = Decoder(RawShape)
ENRICHED_DECODER = Decoder(EnrichedShape)
