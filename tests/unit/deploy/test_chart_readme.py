"""The chart's README: its values table is what deploy/tools/chart_readme.py generates from values.yaml
(fails while stale), and every documented key is one the schema knows."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from deploy.tools import chart_readme
from tests.unit.deploy.helm import CHART, ROOT

# Keys whose comments values.yaml keeps in plain form (the generator falls back to them), not `# --`.
PLAIN_COMMENTED = ("webConfig.", "monitor.", "prometheusRule.", "dashboards.")


def test_the_readme_table_is_up_to_date() -> None:
    readme = (CHART / "README.md").read_text()
    fresh = chart_readme.render(readme, (CHART / "values.yaml").read_text())
    assert fresh == readme, "README.md is stale: run .venv/bin/python deploy/tools/chart_readme.py"
    assert ".venv/bin/python deploy/tools/chart_readme.py" in readme  # the regenerate command


def test_the_check_mode_fails_on_a_stale_readme_and_the_default_mode_fixes_it(tmp_path: Path) -> None:
    chart = tmp_path / "chart"
    chart.mkdir()
    values = (CHART / "values.yaml").read_text().replace("replicaCount: 2", "replicaCount: 3")
    (chart / "values.yaml").write_text(values)
    (chart / "README.md").write_text((CHART / "README.md").read_text())
    script = [sys.executable, str(ROOT / "deploy" / "tools" / "chart_readme.py"), "--chart", str(chart)]
    done = subprocess.run([*script, "--check"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 1 and "README.md is stale" in done.stderr
    assert subprocess.run(script, capture_output=True, text=True, timeout=60).returncode == 0
    assert "| replicaCount | int | `3` |" in (chart / "README.md").read_text()
    assert subprocess.run([*script, "--check"], capture_output=True, timeout=60).returncode == 0


def test_helm_docs_comments_types_and_defaults() -> None:
    text = """# Not documentation: a plain comment before the description.
# -- The first line,
# and its continuation.
a: 1
# -- (int) A type the null default cannot say.
b: null
c:
  # -- A flow mapping is one row.
  d: {x: 1}
  e:
    f: [1, "two"]
# -- A block mapping documented as a whole is one row.
g:
  h: true
"""
    rows = {r.key: r for r in chart_readme.rows(text)}
    assert list(rows) == ["a", "b", "c.d", "c.e.f", "g"]
    assert rows["a"].description == "The first line, and its continuation." and rows["a"].type == "int"
    assert (rows["b"].type, rows["b"].default) == ("int", "null")
    assert rows["c.d"].default == '{"x":1}' and rows["c.e.f"].default == '[1,"two"]'
    assert (rows["g"].type, rows["g"].default) == ("object", '{"h":true}')


def _schema_knows(schema: dict[str, Any], key: str) -> bool:
    node = schema
    for part in key.split("."):
        properties = node.get("properties", {})
        if part not in properties:
            # only a free-form map (labels, a security context) takes keys the schema does not name
            return node.get("additionalProperties") is not False
        node = properties[part]
    return True


def test_every_documented_key_is_in_the_schema_and_has_a_description() -> None:
    schema = json.loads((CHART / "values.schema.json").read_text())
    rows = chart_readme.rows((CHART / "values.yaml").read_text())
    assert len(rows) > 80
    unknown = [r.key for r in rows if not _schema_knows(schema, r.key)]
    assert not unknown, unknown
    missing = [r.key for r in rows if not r.description and not r.key.startswith(PLAIN_COMMENTED)]
    assert not missing, missing
