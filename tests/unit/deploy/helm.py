"""Rendering the Helm chart for the deploy tests: the cached helm, the values, the manifests as objects,
and the checks of CRD schemas and of the settings the pod would start with."""

from __future__ import annotations

import json
import shutil
import subprocess
from functools import cache
from pathlib import Path
from typing import Any

import yaml

from streams.settings import Settings
from streams.web.config import WebConfig
from streams.web.server import install_routes
from tests.unit.deploy.strict_yaml import load_all_strict

ROOT = Path(__file__).resolve().parents[3]


CHART = ROOT / "deploy" / "helm" / "ecomind-streams"


ALL_ON = CHART / "ci" / "all-options-values.yaml"


KUBERNETES_VERSION = "1.31.0"


OPERATOR_KINDS = {"ServiceMonitor", "PodMonitor", "PrometheusRule"}


VALUES = {"default": [], "all-options": ["-f", str(ALL_ON)]}


# A cluster that serves the Prometheus Operator's kinds: monitors and rules render by default there.
OPERATOR_APIS = [a for kind in sorted(OPERATOR_KINDS) for a in ("--api-versions", f"monitoring.coreos.com/v1/{kind}")]


def tool_path(script: str) -> str:
    """Path of a tool scripts/setup builds and caches (the script only prints it when it is cached)."""
    done = subprocess.run([str(ROOT / "deploy" / "tools" / script)], capture_output=True, text=True, timeout=1800)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


@cache
def helm_binary() -> str:
    return tool_path("install-helm")


def run_helm(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([helm_binary(), *args], capture_output=True, text=True, timeout=120)


@cache
def render_text(which: str, *extra: str) -> str:
    done = run_helm("template", "prod", str(CHART), "--namespace", "monitoring", "--kube-version", KUBERNETES_VERSION,
                     *OPERATOR_APIS, *VALUES[which], *extra)  # fmt: skip
    assert done.returncode == 0, done.stderr
    return done.stdout


def render(which: str, *extra: str) -> list[dict[str, Any]]:
    return load_all_strict(render_text(which, *extra))


def one(docs: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    (found,) = [d for d in docs if d["kind"] == kind]
    return found


def crdcheck(text: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([tool_path("install-crdcheck")], input=text, capture_output=True, text=True, timeout=60)


def crdschemas(docs: list[dict[str, Any]]) -> subprocess.CompletedProcess[str]:
    node = shutil.which("node")
    assert node, "node comes with Debian's nodejs package (scripts/setup installs it)"
    validator = tool_path("install-crdschemas")
    return subprocess.run([node, validator], input=json.dumps(docs), capture_output=True, text=True, timeout=60)


def ops_groups(base: str | None = None) -> list[dict[str, Any]]:
    groups: list[dict[str, Any]] = []
    for path in sorted((ROOT / "ops" / "prometheus" / "rules").glob("*.yml")):
        text = path.read_text()
        if base is not None:
            text = text.replace("https://github.com/ecomind/ecomind-streams/blob/main/RUNBOOK.md#", f"{base}#")
        groups += yaml.safe_load(text)["groups"]
    return groups


class Recording(dict[str, str]):
    """An environment that records every variable Settings.from_env asks for."""

    def __init__(self, values: dict[str, str]) -> None:
        super().__init__(values)
        self.asked: set[str] = set()

    def get(self, key: str, default: Any = None) -> Any:
        self.asked.add(key)
        return super().get(key, default)

    def __getitem__(self, key: str) -> str:
        self.asked.add(key)
        return super().__getitem__(key)


def settings_env_names() -> set[str]:
    """Every variable the sidecar's settings code reads, found by running it (no list kept by hand)."""
    env = Recording({})
    Settings.from_env(env)
    return env.asked


def web_routes() -> set[str]:
    paths: set[str] = set()

    class App:
        def page(self, path: str) -> Any:
            paths.add(path)
            return lambda handler: handler

    install_routes(App(), lambda: None, WebConfig, lambda: None)
    return paths


def pod_container(docs: list[dict[str, Any]]) -> tuple[dict[str, Any], dict[str, Any]]:
    pod = one(docs, "Deployment")["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    return pod, container


def materialise_mounts(pod: dict[str, Any], container: dict[str, Any], root: Path) -> dict[str, Path]:
    """Create, under `root`, the files each Secret (or ConfigMap) volume would put at its mount path."""
    volumes = {v["name"]: v for v in pod["volumes"]}
    made: dict[str, Path] = {}
    for mount in container["volumeMounts"]:
        secret = volumes[mount["name"]].get("secret") or volumes[mount["name"]].get("configMap")
        if secret is None:
            continue
        assert mount["readOnly"] is True, mount
        target = root / mount["mountPath"].lstrip("/")
        target.mkdir(parents=True)
        keys = [item["path"] for item in secret.get("items", [])] or ["web-config.yml"]
        for key in keys:
            (target / key).write_text("secret-value\n")
        made[mount["mountPath"]] = target
    return made
