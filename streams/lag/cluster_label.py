"""Every Kafka cluster's lag families as one exposition: each sample given its cluster's `kafka_cluster`
label (the design document's series of the watched group excepted), each family once.

The label is `kafka_cluster`, not `cluster`: the rules group by a Kubernetes target label `cluster`,
and Prometheus would rename a scraped `cluster` to `exported_cluster` (honor_labels off).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

LABEL = "kafka_cluster"
# The design document's series of the watched group: the tapped cluster's only, with the labels the
# design document, the recording rules and the worker alerts name exactly.
UNLABELLED = frozenset(
    {
        "ecomind_worker_kafka_lag",
        "ecomind_worker_kafka_lag_seconds",
        "ecomind_streams_lag_seconds_unknown",
        "ecomind_streams_watch_group_committed",
    }
)


@dataclass
class Family:
    header: str  # its HELP and TYPE lines
    samples: list[str]  # blocks of sample lines, one per cluster, each ending with a newline


Families = dict[str, Family]
_METRIC_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
# The names a family's samples can have (prometheus_client's types): labelled with str.replace on
# "\n<sample name>{" and "\n<sample name> ", a few C passes over the block instead of a Python loop
# over 100,000 lines.
_SAMPLE_SUFFIXES = ("", "_total", "_created", "_bucket", "_sum", "_count", "_info", "_gsum", "_gcount")


def _label_pair(cluster: str) -> str:
    escaped = cluster.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'{LABEL}="{escaped}"'


def with_label(line: str, pair: str) -> str:
    """A sample line with `pair` as its first label; the others stay as written (already escaped)."""
    match = _METRIC_NAME.match(line)
    if match is None:
        return line
    end = match.end()
    if line[end : end + 1] == "{":
        rest = line[end + 1 :]
        return f"{line[: end + 1]}{pair}{'' if rest.startswith('}') else ','}{rest}"
    return f"{line[:end]}{{{pair}}}{line[end:]}"


def _family_with_label(name: str, lines: str, pair: str) -> str:
    """A family's sample lines (each ending with a newline), every one with `pair` as its first label."""
    out, wanted = "\n" + lines, lines.count("\n")
    for suffix in _SAMPLE_SUFFIXES:
        sample = f"\n{name}{suffix}"
        out = out.replace(sample + "{", f"{sample}{{{pair},").replace(sample + " ", f"{sample}{{{pair}}} ")
        if out.count(pair) == wanted:  # a gauge's lines are all done after the first suffix
            return out[1:].replace(f"{{{pair},}}", f"{{{pair}}}")
    # A sample name of no known type, or the pair's text inside a label value: line by line.
    return "".join(with_label(line, pair) + "\n" for line in lines.splitlines())


def labelled(text: str, cluster: str | None) -> Families:
    """An exposition split by family, every sample given the cluster's label (None: none) but UNLABELLED's."""
    pair = _label_pair(cluster) if cluster is not None else None
    families: Families = {}
    for rest in ("\n" + text).split("\n# HELP ")[1:]:  # [0]: what comes before the first family
        block = "# HELP " + rest + "\n"
        name = block.split(" ", 3)[2]
        cut = 0
        while block.startswith("#", cut):
            cut = block.find("\n", cut) + 1 or len(block)
        header, samples = block[:cut], block[cut:].rstrip("\n")
        samples = samples + "\n" if samples else ""
        if pair is not None and name not in UNLABELLED:
            samples = _family_with_label(name, samples, pair)
        family = families.setdefault(name, Family(header, []))
        if samples:
            family.samples.append(samples)
    return families


def merged(parts: Iterable[Families]) -> bytes:
    """Every cluster's families as one exposition: each family once (its first header), with the
    samples of all clusters, as the text format requires."""
    out: Families = {}
    for families in parts:
        for name, family in families.items():
            if name in out:
                out[name].samples.extend(family.samples)
            else:
                out[name] = Family(family.header, list(family.samples))
    return "".join(chunk for f in out.values() for chunk in (f.header, *f.samples)).encode()
