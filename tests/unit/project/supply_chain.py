"""Readers shared by the supply-chain tests: the hash-pinned locks, pyproject's pins, and the licence a
distribution declares, judged against requirements/licenses.toml."""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from importlib.metadata import Distribution
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
REQUIREMENTS = ROOT / "requirements"
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
POLICY = tomllib.loads((REQUIREMENTS / "licenses.toml").read_text())


def canonical(name: str) -> str:
    """PEP 503 name: what pip, the lock and the SBOM's purls compare by."""
    return re.sub(r"[-_.]+", "-", name).lower()


@dataclass(frozen=True)
class Locked:
    version: str
    hashes: tuple[str, ...]


def read_lock(text: str) -> dict[str, Locked]:
    """`name==version \\` lines, each followed by its `--hash=sha256:...` lines; comments ignored."""
    entries: dict[str, Locked] = {}
    current: tuple[str, str] | None = None
    hashes: list[str] = []
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].strip().rstrip("\\").strip()
        if not line:
            continue
        if line.startswith("--hash="):
            assert current is not None, f"hash before any requirement: {raw!r}"
            hashes.append(line.removeprefix("--hash="))
            continue
        if current is not None:
            entries[current[0]] = Locked(current[1], tuple(hashes))
        match = re.fullmatch(r"([A-Za-z0-9][A-Za-z0-9._-]*)==(\S+)", line)
        assert match, f"not an exact pin: {raw!r}"
        current, hashes = (canonical(match[1]), match[2]), []
    if current is not None:
        entries[current[0]] = Locked(current[1], tuple(hashes))
    return entries


def lock(name: str) -> dict[str, Locked]:
    return read_lock((REQUIREMENTS / f"{name}.txt").read_text())


def exact_pins(requirements: list[str]) -> dict[str, str]:
    """pyproject's `name==version` requirements; anything looser is refused (the brief of the locks is
    that pyproject names the versions and the lock only adds their hashes and what they pull in)."""
    pins = {}
    for requirement in requirements:
        match = re.fullmatch(r"([A-Za-z0-9][A-Za-z0-9._-]*)==([^;\s]+)", requirement.strip())
        assert match, f"pyproject requirement is not an exact pin: {requirement!r}"
        pins[canonical(match[1])] = match[2]
    return pins


def pin_mismatches(pins: dict[str, str], locked: dict[str, Locked]) -> list[str]:
    return [
        f"{name}: pyproject {version}, lock {locked[name].version if name in locked else 'missing'}"
        for name, version in sorted(pins.items())
        if name not in locked or locked[name].version != version
    ]


# Licences ------------------------------------------------------------------------------------------


def spdx_acceptable(expression: str, accepted: set[str]) -> bool:
    """Whether an SPDX licence expression can be met using accepted licences alone: AND needs both
    sides, OR either; `X WITH Y` only if that whole phrase is accepted."""
    tokens = re.findall(r"\(|\)|[^\s()]+", expression)
    position = 0

    def peek() -> str | None:
        return tokens[position] if position < len(tokens) else None

    def take() -> str:
        nonlocal position
        position += 1
        token: str = tokens[position - 1]
        return token

    def atom() -> bool:
        token = take()
        if token == "(":
            value = any_of()
            assert take() == ")", f"unbalanced licence expression {expression!r}"
            return value
        if peek() == "WITH":
            take()
            return f"{token} WITH {take()}" in accepted
        return token in accepted

    def all_of() -> bool:
        value = atom()
        while peek() == "AND":
            take()
            value = atom() and value
        return value

    def any_of() -> bool:
        value = all_of()
        while peek() == "OR":
            take()
            value = all_of() or value
        return value

    result = any_of()
    assert position == len(tokens), f"cannot read licence expression {expression!r}"
    return result


def licence_verdict(dist: Distribution) -> tuple[bool, str]:
    """(shippable, why) for one installed distribution, from its own metadata: License-Expression if
    it has one, else its licence classifiers, else a bare SPDX id in License, else a reviewed exception."""
    metadata = dist.metadata
    name, version = canonical(metadata["Name"]), metadata["Version"]
    accepted = set(POLICY["accepted"])
    expression = next(iter(metadata.get_all("License-Expression") or []), None)
    free_text = next(iter(metadata.get_all("License") or []), "")
    classifiers = [c for c in metadata.get_all("Classifier") or [] if c.startswith("License ::")]
    # A person read this version's licence text (which may well mention the GPL, as faust's does).
    exception = POLICY.get("exceptions", {}).get(name)
    if exception is not None:
        return reviewed_exception(dist, exception)
    # An SPDX expression is judged exactly below ("MIT OR GPL-2.0-only" can be met with MIT); free text
    # and classifiers cannot be, so any refused name in them is enough to refuse.
    declared = " ".join([free_text, *classifiers])
    if not expression and re.search(POLICY["refused_pattern"], declared):
        return False, f"declares a refused licence: {declared.strip()[:200]!r}"
    if expression:
        return spdx_acceptable(expression, accepted), f"License-Expression {expression!r}"
    if classifiers:
        mapped = [POLICY["classifiers"].get(c) for c in classifiers]
        ok = all(spdx is not None and spdx in accepted for spdx in mapped)
        return ok, f"classifiers {classifiers} -> {mapped}"
    if free_text.strip() in accepted:
        return True, f"License {free_text.strip()!r}"
    return False, f"{name} {version}: no licence metadata this policy can read; review it and add an exception"


def reviewed_exception(dist: Distribution, exception: dict[str, str]) -> tuple[bool, str]:
    version = dist.metadata["Version"]
    if exception["version"] != version:
        return False, f"exception reviewed for {exception['version']}, installed {version}: read the licence again"
    texts = [
        (Path(str(dist.locate_file(f)))).read_text(errors="replace")
        for f in dist.files or []
        if re.search(r"(LICEN[CS]E|COPYING)", f.name, re.IGNORECASE)
    ]
    if not any(exception["evidence"] in text for text in texts):
        return False, f"reviewed exception's evidence {exception['evidence']!r} is in none of its licence files"
    return True, f"reviewed exception: {exception['license']} ({exception['reason']})"
