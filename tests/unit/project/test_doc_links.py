"""Every relative link in the README and the docs names a file of the repository, and every `#anchor` on a
Markdown file names one of its headings (GitHub's slugs), so a moved section or file cannot leave a dead link."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
DOCS = sorted([ROOT / "README.md", ROOT / "RUNBOOK.md", ROOT / "MONITORING.md", ROOT / "UPGRADING.md",
               ROOT / "CHANGELOG.md", *(ROOT / "docs").glob("*.md")])  # fmt: skip
LINK = re.compile(r"\]\(([^)\s]+)\)")
FENCE = re.compile(r"^```.*?^```", re.S | re.M)


def slug(heading: str) -> str:
    text = re.sub(r"[`*]|\[|\]\([^)]*\)", "", heading.strip().lower())
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(path: Path) -> set[str]:
    text = FENCE.sub("", path.read_text())
    return {slug(m.group(1)) for m in re.finditer(r"^#+\s+(.*)$", text, re.M)}


def links(path: Path) -> list[str]:
    return [m.group(1) for m in LINK.finditer(FENCE.sub("", path.read_text()))]


@pytest.mark.parametrize("doc", [d for d in DOCS if d.exists()], ids=lambda d: str(d.relative_to(ROOT)))
def test_relative_links_and_anchors_resolve(doc: Path) -> None:
    dead = []
    for link in links(doc):
        if re.match(r"^[a-z]+:", link):
            continue  # http(s), mailto: not checked offline
        target, _, anchor = link.partition("#")
        path = (doc.parent / target).resolve() if target else doc
        if not path.exists() or (anchor and path.suffix == ".md" and anchor not in anchors(path)):
            dead.append(link)
    assert not dead, dead


def test_the_checker_finds_a_dead_link_and_a_dead_anchor(tmp_path: Path) -> None:
    (tmp_path / "a.md").write_text("# Top part\n[ok](#top-part) [file](b.md) [gone](c.md) [bad](#nope)\n")
    (tmp_path / "b.md").write_text("x\n")
    got = [link for link in links(tmp_path / "a.md")]
    assert got == ["#top-part", "b.md", "c.md", "#nope"]
    assert "top-part" in anchors(tmp_path / "a.md") and "nope" not in anchors(tmp_path / "a.md")


# A repository path in backticks: folders and a file with an extension the project uses (line anchors such as
# `::test_name` allowed). Checked from the root, or from the chart's folder for the chart's own files.
_EXT = r"py|md|yml|yaml|json|sh|toml|txt|prom|tpl|lua"
PATH = re.compile(r"`([\w.\-]+/(?:[\w.\-]+/)*(?:[\w.\-]+\.(?:" + _EXT + r"))?)(?:::[\w\[\]-]+)?`")
CHART = ROOT / "deploy" / "helm" / "ecomind-streams"


def named_paths(text: str) -> list[str]:
    return [m.group(1) for m in PATH.finditer(text)]


@pytest.mark.parametrize("doc", [d for d in DOCS if d.exists()], ids=lambda d: str(d.relative_to(ROOT)))
def test_every_repository_path_named_in_backticks_exists(doc: Path) -> None:
    missing = [p for p in named_paths(doc.read_text()) if not (ROOT / p).exists() and not (CHART / p).exists()]
    assert not missing, f"{doc.relative_to(ROOT)} names paths that are not in the repository: {missing}"


def test_the_path_check_reads_paths_and_skips_the_rest() -> None:
    text = "`agents/tap.py` `tests/unit/x.py::test_y` `docs/` `{app}:v2:offsets` `a/b` `/etc/x.yml` `KAFKA_X`"
    assert named_paths(text) == ["agents/tap.py", "tests/unit/x.py", "docs/"]
