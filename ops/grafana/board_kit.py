"""What every board module builds on: Panel, P() (a panel whose queries are scoped to the release), the
release scoping itself, shared matchers and the runbook link of an alert. See boards.py for the boards."""

import re
from dataclasses import dataclass

# The documented default; the Helm chart's runbookBaseUrl replaces it in rules and dashboards alike.
RUNBOOK_BASE = "https://github.com/ecomind/ecomind-streams/blob/main/RUNBOOK.md"
ORG = 'org_id=~"$org_id"'
INST = 'instance=~"$instance"'
# Process metrics carry no EcoMind name: keep the series of targets that are sidecar replicas.
SIDECAR = "and on (cluster, namespace, job, instance) ecomind_streams_build_info"
# A metric name (not a label name inside braces, not a function) and its braces, if any.
_SELECTOR = re.compile(r"(?<![\w:{,])\b(ecomind_\w+|process_\w+|up)\b(?![\w(=!~])(\{[^}]*\})?")


def scope(expr: str, job: str = "$job") -> str:
    """The query with the release variables added to every metric selector: a panel never mixes releases.
    Selectors already scoped are left alone (a service board scopes the sidecar's metrics by $streams_job)."""
    release = f'cluster=~"$cluster",namespace=~"$namespace",job=~"{job}"'

    def add(match: re.Match[str]) -> str:
        inner = (match.group(2) or "{}")[1:-1]
        if 'cluster=~"$cluster"' in inner:
            return match.group(0)
        return f"{match.group(1)}{{{release}{',' + inner if inner else ''}}}"

    return _SELECTOR.sub(add, expr)


@dataclass(frozen=True)
class Thresholds:
    """Colours by value for stat and table panels: green below the first step."""

    steps: tuple[tuple[float, str], ...]  # (from this value up, colour), ascending
    # Text shown instead of +Inf (a figure that is infinite by design, e.g. a group that does not consume).
    infinite: str = ""


@dataclass(frozen=True)
class RightAxis:
    """One query of a time series panel drawn against a right-hand axis in a unit of its own (a cluster's
    0/1 state beside durations), as steps rather than slopes."""

    query: int  # its index in Panel.queries
    unit: str
    min: float
    max: float


@dataclass(frozen=True)
class Panel:
    title: str
    kind: str  # stat, timeseries, bargauge, piechart, table
    unit: str
    queries: tuple[tuple[str, str], ...]  # (PromQL, legend)
    description: str
    alerts: tuple[str, ...] = ()  # alerts that watch what the panel shows
    thresholds: Thresholds | None = None
    right: RightAxis | None = None

    @property
    def instant(self) -> bool:
        return self.kind != "timeseries"


def quantile(q: float, histogram: str, by: str = "") -> str:
    """The q-quantile of a histogram over the selected instances, by `by` (and le)."""
    return f"histogram_quantile({q}, sum by (le{by}) (rate({histogram}_bucket{{{INST}}}[5m])))"


def P(
    title: str,
    kind: str,
    unit: str,
    queries: list[tuple[str, str]],
    description: str,
    *alerts: str,
    thresholds: Thresholds | None = None,
    right: RightAxis | None = None,
) -> Panel:
    scoped = tuple((scope(q), legend) for q, legend in queries)
    return Panel(title, kind, unit, scoped, description, alerts, thresholds, right)


def runbook(alert: str) -> str:
    return f"{RUNBOOK_BASE}#{alert.lower()}"
