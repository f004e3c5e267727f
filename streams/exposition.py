"""Text exposition (format 0.0.4) of the families our collectors yield, several times faster than
prometheus_client's generate_latest, which escapes every label name and re-checks every metric name
per sample. The output is byte-for-byte the same (tests/unit/test_exposition.py holds it to that).
"""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

_TYPE_NAMES = {"counter": "counter", "gauge": "gauge", "histogram": "histogram", "summary": "summary"}


def _escape_value(value: str) -> str:
    if "\\" in value or '"' in value or "\n" in value:
        return value.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")
    return value


def render(collectors: Iterable[Collector]) -> bytes:
    out: list[str] = []
    append = out.append
    for collector in collectors:
        for metric in collector.collect():
            if metric.type not in _TYPE_NAMES:
                raise ValueError(f"unsupported metric type {metric.type} for {metric.name}")
            name = metric.name + "_total" if metric.type == "counter" else metric.name
            doc = metric.documentation.replace("\\", r"\\").replace("\n", r"\n")
            append(f"# HELP {name} {doc}\n# TYPE {name} {metric.type}\n")
            for s in metric.samples:
                text = floatToGoString(s.value)  # type: ignore[no-untyped-call]
                if s.labels:
                    labels = ",".join(f'{k}="{_escape_value(v)}"' for k, v in sorted(s.labels.items()))
                    append(f"{s.name}{{{labels}}} {text}\n")
                else:
                    append(f"{s.name} {text}\n")
    return "".join(out).encode("utf-8")
