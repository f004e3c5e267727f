"""Text exposition (format 0.0.4) of the families our collectors yield, several times faster than
prometheus_client's generate_latest, which escapes every label name and re-checks every metric name
per sample. The output is byte-for-byte the same (tests/unit/streams/test_exposition.py holds it to that).

Large families are `RowsFamily`: label names once, then rows of label values. They render without a
Sample or a labels dict per series, and without sorting each series' labels; they are still Metrics,
so generate_latest and any other prometheus_client consumer read them as usual.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector
from prometheus_client.samples import Sample
from prometheus_client.utils import floatToGoString

_TYPE_NAMES = {"counter": "counter", "gauge": "gauge", "histogram": "histogram", "summary": "summary"}


class RowsFamily(Metric):
    """A counter or gauge family: one series per row of label values, in `labelnames`' order."""

    def __init__(
        self,
        name: str,
        documentation: str,
        typ: str,
        labelnames: Sequence[str],
        rows: Sequence[tuple[tuple[str, ...], float]],
    ) -> None:
        if typ not in ("counter", "gauge"):
            raise ValueError(f"RowsFamily holds counters and gauges, not {typ}")
        if typ == "counter" and name.endswith("_total"):
            raise ValueError(f"counter {name}: give the name without _total, as CounterMetricFamily stores it")
        super().__init__(name, documentation, typ)
        self.labelnames = tuple(labelnames)
        self.rows = rows
        self.sample_name = name + "_total" if typ == "counter" else name

    @property
    def samples(self) -> list[Sample]:
        """The rows as prometheus_client Samples, built on demand for readers other than `render`."""
        names = self.labelnames
        return [Sample(self.sample_name, dict(zip(names, values, strict=True)), value) for values, value in self.rows]

    @samples.setter
    def samples(self, value: list[Sample]) -> None:
        if value:  # Metric.__init__ sets an empty list; samples come only from the rows
            raise AttributeError("a RowsFamily's samples are its rows")


def _escape_value(value: str) -> str:
    if "\\" in value or '"' in value or "\n" in value:
        return value.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")
    return value


def go_float(value: float) -> str:
    """floatToGoString, with a shortcut for the small whole numbers most series carry (same text)."""
    if type(value) is int and 0 <= value < 1_000_000:  # floatToGoString switches to exponents at 1e6
        return f"{value}.0"
    return floatToGoString(value)  # type: ignore[no-untyped-call,no-any-return]


def _render_rows(family: RowsFamily, append: Callable[[str], None]) -> None:
    names = family.labelnames
    order = sorted(range(len(names)), key=names.__getitem__)  # the exposition sorts labels by name
    esc, fmt = _escape_value, go_float
    if not names:
        for _, value in family.rows:
            append(f"{family.sample_name} {fmt(value)}\n")
    elif len(names) == 1:
        head = f'{family.sample_name}{{{names[0]}="'
        for (v0,), value in family.rows:
            append(f'{head}{esc(v0)}"}} {fmt(value)}\n')
    elif len(names) == 2:
        a, b = order
        head, mid = f'{family.sample_name}{{{names[a]}="', f'",{names[b]}="'
        for values, value in family.rows:
            append(f'{head}{esc(values[a])}{mid}{esc(values[b])}"}} {fmt(value)}\n')
    else:
        heads = [("{" if i == 0 else '",') + f'{names[n]}="' for i, n in enumerate(order)]
        for values, value in family.rows:
            labels = "".join(h + esc(values[n]) for h, n in zip(heads, order, strict=True))
            append(f'{family.sample_name}{labels}"}} {fmt(value)}\n')


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
            if isinstance(metric, RowsFamily):
                _render_rows(metric, append)
                continue
            for s in metric.samples:
                text = go_float(s.value)
                if s.labels:
                    labels = ",".join(f'{k}="{_escape_value(v)}"' for k, v in sorted(s.labels.items()))
                    append(f"{s.name}{{{labels}}} {text}\n")
                else:
                    append(f"{s.name} {text}\n")
    return "".join(out).encode("utf-8")
