"""What each EcoMind dashboard shows: one Panel per panel, read by generate.py (which builds the JSON) and
by the tests (which run every query on a real Prometheus, with the variables set to "All"). The panels
of each board live in a sibling module (board_business.py, board_pipeline.py, board_services.py), built
with board_kit.py (Panel, P(), scope(), the runbook base); this module gathers them into boards.

Variables: $datasource, then $cluster, $namespace and $job (every board: which release, when several
share one Prometheus; a label a setup lacks matches All), $org_id (Business), $instance (replica or service
instance), $kafka_cluster and $group (Pipeline), $streams_job (Worker: the sidecar release whose lag figures
it shows); all but $datasource multi, with All. Every metric selector of every query is scoped to the release variables
by scope(). Tables, top-k, pies and stats are instant queries; "today"
panels read the sidecar's today-gauges; panels an alert watches link to its runbook section.

SIDECAR_BOARDS are fed by EcoMind Streams; SERVICE_BOARDS by the gateway, API and worker, which a
deployment may not scrape: they are separate so that they can be left out.
"""

import sys
from pathlib import Path

# The tests load this file by its path, not as a module on sys.path: its siblings must still import.
sys.path.insert(0, str(Path(__file__).resolve().parent))

from board_business import BUSINESS
from board_kit import Panel, RightAxis, Thresholds, runbook
from board_pipeline import PIPELINE
from board_services import API, GATEWAY, WORKER

__all__ = [
    "BOARDS",
    "SERVICE_BOARDS",
    "SIDECAR_BOARDS",
    "Panel",
    "RightAxis",
    "Thresholds",
    "expand",
    "panel_queries",
    "runbook",
]

Board = tuple[str, list[Panel], tuple[str, ...], str]
# uid: (title, panels, variables beyond $datasource and the release's, the metric whose targets the
# release and $instance variables list)
SIDECAR_BOARDS: dict[str, Board] = {
    "ecomind-business": ("EcoMind Business", BUSINESS, ("org_id",), "ecomind_streams_build_info"),
    "ecomind-pipeline": (
        "EcoMind Pipeline",
        PIPELINE,
        ("instance", "kafka_cluster", "group"),
        "ecomind_streams_build_info",
    ),
}
SERVICE_BOARDS: dict[str, Board] = {
    "ecomind-gateway": ("EcoMind Gateway", GATEWAY, ("instance",), 'up{ecomind_component="gateway"}'),
    "ecomind-api": ("EcoMind API", API, ("instance",), 'up{ecomind_component="api"}'),
    "ecomind-worker": ("EcoMind Worker", WORKER, ("instance", "streams_job"), 'up{ecomind_component="worker"}'),
}
BOARDS: dict[str, Board] = {**SIDECAR_BOARDS, **SERVICE_BOARDS}

VARIABLES = ("cluster", "namespace", "job", "org_id", "instance", "kafka_cluster", "group", "streams_job")


def expand(expr: str, range_: str = "1h", **values: str) -> str:
    """A panel's query as Grafana sends it for the given time range, each variable at its regex in
    values (one release: job="prod-ecomind-streams") or at "All" (.*) when not given."""
    unknown = set(values) - set(VARIABLES)
    if unknown:
        raise ValueError(f"no such dashboard variable: {', '.join(sorted(unknown))}")
    for name in VARIABLES:
        expr = expr.replace(f'"${name}"', f'"{values.get(name, ".*")}"')
    return expr.replace("$__range", range_)


def panel_queries(*uids: str, **values: str) -> list[tuple[str, str]]:
    """(panel title, PromQL with the variables expanded) of every panel on the given boards."""
    return [(p.title, expand(q, **values)) for uid in uids for p in BOARDS[uid][1] for q, _ in p.queries]
