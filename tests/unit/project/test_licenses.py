"""Every package the image ships carries a licence requirements/licenses.toml accepts, read from the
installed distribution's own metadata (the dev environment holds the runtime lock's exact versions, and
the msk-iam lock's, which an image built with --build-arg EXTRAS=msk-iam ships)."""

from __future__ import annotations

from importlib.metadata import distribution
from pathlib import Path

import pytest

from tests.unit.project.supply_chain import (
    POLICY,
    PYPROJECT,
    ROOT,
    canonical,
    licence_verdict,
    lock,
    reviewed_exception,
    spdx_acceptable,
)

SHIPPED = {**lock("runtime"), **lock("msk-iam")}
ACCEPTED = set(POLICY["accepted"])


@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_each_shipped_package_has_a_licence_we_can_ship(name: str) -> None:
    dist = distribution(name)
    assert dist.version == SHIPPED[name].version, "the installed metadata is not of the locked version"
    shippable, why = licence_verdict(dist)
    assert shippable, f"{name} {dist.version}: {why}"


@pytest.mark.parametrize(
    ("change", "refusal"),
    [
        ({"version": "0.0.1"}, "read the licence again"),
        ({"evidence": "licensed under the GNU GPL"}, "in none of its licence files"),
    ],
)
def test_areviewed_exception_exception_lapses_with_a_new_version_or_other_licence_text(
    change: dict[str, str], refusal: str
) -> None:
    exception = {**POLICY["exceptions"]["venusian"], **change}
    shippable, why = reviewed_exception(distribution("venusian"), exception)
    assert not shippable and refusal in why


def test_everyreviewed_exception_exception_names_a_locked_runtime_package() -> None:
    stale = {canonical(name) for name in POLICY["exceptions"]} - set(SHIPPED)
    assert stale == set(), "exceptions for packages no longer shipped: remove them"


@pytest.mark.parametrize(
    ("expression", "shippable"),
    [
        ("MIT", True),
        ("MPL-2.0 AND (Apache-2.0 OR MIT)", True),
        ("Apache-2.0 OR GPL-2.0-only", True),
        ("Apache-2.0 AND GPL-2.0-only", False),
        ("(GPL-3.0-only OR AGPL-3.0-only) AND MIT", False),
        ("GPL-2.0-only WITH Classpath-exception-2.0", False),
        ("SSPL-1.0", False),
    ],
)
def test_licence_expressions_are_judged_by_and_and_or(expression: str, shippable: bool) -> None:
    assert spdx_acceptable(expression, ACCEPTED) is shippable


class _Metadata:
    """Just enough of a distribution for licence_verdict: what a wheel's METADATA would declare."""

    def __init__(self, fields: dict[str, list[str]]) -> None:
        self.metadata = _Fields({"Name": ["example"], "Version": ["1.0"], **fields})
        self.files: list[Path] = []


class _Fields(dict[str, list[str]]):
    def __getitem__(self, key: str) -> str:  # type: ignore[override]
        return super().__getitem__(key)[0]

    def get_all(self, key: str) -> list[str] | None:
        return super().get(key)


@pytest.mark.parametrize(
    ("fields", "shippable"),
    [
        ({"Classifier": ["License :: OSI Approved :: MIT License"]}, True),
        (
            {"License": ["GPL-compatible BSD"], "Classifier": ["License :: OSI Approved :: Apache Software License"]},
            True,
        ),
        ({"Classifier": ["License :: OSI Approved :: GNU General Public License v3 (GPLv3)"]}, False),
        (
            {"License": ["MIT"], "Classifier": ["License :: OSI Approved :: GNU Affero General Public License v3"]},
            False,
        ),
        ({"Classifier": ["License :: OSI Approved :: BSD License"]}, False),  # which BSD? needs a review
        ({"License": ["Apache-2.0"]}, True),
        ({"License": ["Proprietary, all rights reserved"]}, False),
        ({}, False),
    ],
)
def test_metadata_without_an_expression_is_judged_conservatively(fields: dict[str, list[str]], shippable: bool) -> None:
    verdict, why = licence_verdict(_Metadata(fields))  # type: ignore[arg-type]
    assert verdict is shippable, why


def test_the_sidecar_itself_is_apache_2_licensed() -> None:
    assert PYPROJECT["project"]["license"] == "Apache-2.0"
    assert PYPROJECT["project"]["license-files"] == ["LICENSE"]
    text = (ROOT / "LICENSE").read_text()
    assert "Apache License\n                           Version 2.0, January 2004" in text
    assert "END OF TERMS AND CONDITIONS" in text
