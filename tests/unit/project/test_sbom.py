"""`./scripts/sbom` writes a CycloneDX SBOM of the runtime environment that lists every package of
requirements/runtime.txt at its locked version, and nothing else, under the project as root component;
with EXTRAS=msk-iam, the same for the msk-iam image's lock."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.unit.project.supply_chain import PYPROJECT, ROOT, canonical, lock


def _run_sbom(out: Path, extras: str = "") -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "EXTRAS": extras}
    return subprocess.run(
        [str(ROOT / "scripts" / "sbom"), str(out)], capture_output=True, text=True, timeout=600, check=False, env=env
    )


@pytest.fixture(scope="module")
def sbom(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    out = tmp_path_factory.mktemp("sbom") / "ecomind-streams.cdx.json"
    result = _run_sbom(out)
    assert result.returncode == 0, result.stdout + result.stderr
    document: dict[str, Any] = json.loads(out.read_text())
    return document


def test_it_is_a_cyclonedx_document_about_the_sidecar(sbom: dict[str, Any]) -> None:
    assert sbom["bomFormat"] == "CycloneDX" and sbom["specVersion"] == "1.6"
    root = sbom["metadata"]["component"]
    assert (root["name"], root["version"], root["type"]) == (
        "ecomind-streams",
        PYPROJECT["project"]["version"],
        "application",
    )
    assert root["licenses"][0]["license"]["id"] == "Apache-2.0"


def test_it_lists_every_locked_runtime_package_at_its_locked_version_and_nothing_else(sbom: dict[str, Any]) -> None:
    listed = {canonical(c["name"]): c["version"] for c in sbom["components"]}
    locked = {name: entry.version for name, entry in lock("runtime").items()}
    assert len(locked) > 20
    assert listed == locked


def test_the_msk_iam_images_sbom_lists_its_own_lock(tmp_path: Path) -> None:
    out = tmp_path / "msk-iam.cdx.json"
    result = _run_sbom(out, "msk-iam")
    assert result.returncode == 0, result.stdout + result.stderr
    listed = {canonical(c["name"]): c["version"] for c in json.loads(out.read_text())["components"]}
    assert listed == {name: entry.version for name, entry in lock("msk-iam").items()}
    assert {"aws-msk-iam-sasl-signer-python", "botocore"} <= set(listed)
    refused = _run_sbom(tmp_path / "x.json", "dev")
    assert refused.returncode == 1 and "EXTRAS=dev: expected msk-iam or nothing" in refused.stderr


def test_every_component_has_a_package_url_and_a_declared_licence(sbom: dict[str, Any]) -> None:
    for component in sbom["components"]:
        name, version = canonical(component["name"]), component["version"]
        assert component["purl"] == f"pkg:pypi/{name}@{version}"
        assert component["licenses"], f"{name} has no licence in the SBOM"


def test_the_dependency_graph_reaches_faust_dependencies(sbom: dict[str, Any]) -> None:
    graph = {d["ref"]: set(d.get("dependsOn", [])) for d in sbom["dependencies"]}
    refs = {canonical(c["name"]): c["bom-ref"] for c in sbom["components"]}
    assert refs["aiokafka"] in graph[refs["faust-streaming"]]


def test_the_default_output_is_outside_git() -> None:
    ignored = subprocess.run(
        ["git", "check-ignore", "-q", "build/sbom/ecomind-streams.cdx.json"], cwd=ROOT, check=False
    ).returncode
    assert ignored == 0
    assert "build/sbom/ecomind-streams.cdx.json" in (ROOT / "scripts" / "sbom").read_text()
