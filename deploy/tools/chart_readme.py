"""The values table of the chart's README, generated from values.yaml the way helm-docs does it: a
`# -- description` comment right above a key documents it (continued on the `#` lines below it, and
`# -- (type) description` names the type when the default cannot, e.g. null). Keys without such a
comment take the plain comment block right above them, so that no key goes undocumented.

    .venv/bin/python deploy/tools/chart_readme.py          # rewrite the table in README.md
    .venv/bin/python deploy/tools/chart_readme.py --check  # exit 1 when README.md is stale

Block mappings are walked into (one row per key below them) unless they have a `# --` comment of their
own; scalars, lists, empty mappings and flow mappings (`{a: 1}`) are one row each, as helm-docs lists them."""

from __future__ import annotations

import argparse
import json
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

CHART = Path(__file__).resolve().parents[1] / "helm" / "ecomind-streams"
START, END = "<!-- values:start -->", "<!-- values:end -->"
_TYPED = re.compile(r"^\((?P<type>[a-z]+)\)\s*(?P<rest>.*)$")


@dataclass(frozen=True)
class Row:
    key: str
    type: str
    default: str
    description: str


def _comment_above(lines: list[str], line: int) -> tuple[str, bool]:
    """The description of the key on `line` (0-based), and whether it is a `# --` one (else the plain
    comment block above)."""
    block: list[str] = []
    i = line - 1
    while i >= 0 and lines[i].lstrip().startswith("#"):
        block.insert(0, lines[i].strip()[1:].strip())
        i -= 1
    starts = [n for n, text in enumerate(block) if text == "--" or text.startswith("-- ")]
    if starts:
        block = block[starts[-1] :]
        block[0] = block[0][2:].strip()
    return " ".join(text for text in block if text), bool(starts)


def _type_of(value: Any) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int"
    if isinstance(value, float):
        return "float"
    if isinstance(value, list):
        return "list"
    if isinstance(value, dict):
        return "object"
    return "string"


def _leaves(node: yaml.Node, prefix: str, lines: list[str]) -> list[Row]:
    rows: list[Row] = []
    assert isinstance(node, yaml.MappingNode)
    for key_node, value_node in node.value:
        key = f"{prefix}{key_node.value}"
        description, explicit = _comment_above(lines, key_node.start_mark.line)
        is_block_map = isinstance(value_node, yaml.MappingNode) and not value_node.flow_style and value_node.value
        if is_block_map and not explicit:  # a mapping documented as a whole is one row, as in helm-docs
            rows += _leaves(value_node, f"{key}.", lines)
            continue
        value = yaml.safe_load(yaml.serialize(value_node))
        kind = _type_of(value)
        typed = _TYPED.match(description)
        if typed:
            kind, description = typed["type"], typed["rest"]
        default = json.dumps(value, separators=(",", ":"), ensure_ascii=False)
        rows.append(Row(key, kind, default, description))
    return rows


def rows(values_text: str) -> list[Row]:
    root = yaml.compose(values_text)
    if root is None:
        raise ValueError("values.yaml is empty")
    return _leaves(root, "", values_text.splitlines())


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def table(values_text: str) -> str:
    out = ["| Key | Type | Default | Description |", "|-----|------|---------|-------------|"]
    for row in rows(values_text):
        out.append(f"| {row.key} | {row.type} | `{_cell(row.default)}` | {_cell(row.description)} |")
    return "\n".join(out)


def render(readme: str, values_text: str) -> str:
    """README.md with the table between its markers replaced."""
    if START not in readme or END not in readme:
        raise ValueError(f"README.md lacks the markers {START} and {END}")
    head, rest = readme.split(START, 1)
    _, tail = rest.split(END, 1)
    return f"{head}{START}\n{table(values_text)}\n{END}{tail}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 when README.md is stale, change nothing")
    parser.add_argument("--chart", type=Path, default=CHART)
    args = parser.parse_args(argv)
    readme_path = args.chart / "README.md"
    readme = readme_path.read_text()
    fresh = render(readme, (args.chart / "values.yaml").read_text())
    if fresh == readme:
        return 0
    if args.check:
        print(f"{readme_path} is stale: run .venv/bin/python deploy/tools/chart_readme.py", file=sys.stderr)
        return 1
    readme_path.write_text(fresh)
    return 0


if __name__ == "__main__":
    sys.exit(main())
