"""The pod in a namespace that has other Services: no service links (a Service named `web` would give
the container WEB_PORT=tcp://..., which Faust reads as its web port and crashes on), nothing in the env
that Faust reads as its own setting, and the `helm test` pod's check run against a local server."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import faust.types._env as faust_env
import pytest
from faust.types.settings import Settings as FaustSettings

from tests.unit.deploy.helm import VALUES, one, render


def service_link_env(name: str, ip: str, port: int) -> dict[str, str]:
    """What the kubelet puts into a container's env for a Service of the namespace when service links
    are on (Docker's link variables)."""
    prefix = name.upper().replace("-", "_")
    url = f"tcp://{ip}:{port}"
    return {
        f"{prefix}_SERVICE_HOST": ip,
        f"{prefix}_SERVICE_PORT": str(port),
        f"{prefix}_PORT": url,
        f"{prefix}_PORT_{port}_TCP": url,
        f"{prefix}_PORT_{port}_TCP_PROTO": "tcp",
        f"{prefix}_PORT_{port}_TCP_PORT": str(port),
        f"{prefix}_PORT_{port}_TCP_ADDR": ip,
    }


def faust_env_names() -> set[str]:
    """Every variable the pinned Faust reads as a setting, from Faust itself."""
    names = {p.env_name for p in FaustSettings.SETTINGS.values() if p.env_name}
    return names | {f"{prefix}{n}" for prefix in faust_env.PREFICES for n in faust_env.__all__}


def _pods(which: str) -> list[dict[str, Any]]:
    docs = render(which)
    return [one(docs, "Deployment")["spec"]["template"]["spec"], one(docs, "Pod")["spec"]]


def _plain_env(pod: dict[str, Any]) -> dict[str, str]:
    return {e["name"]: e["value"] for c in pod["containers"] for e in c.get("env", []) if "value" in e}


def test_a_service_named_web_would_crash_faust_through_service_links() -> None:
    # The defect the chart avoids, shown on the pinned Faust: the link variable is read as WEB_PORT.
    with pytest.raises(ValueError, match=re.escape("tcp://10.96.0.7:80")):
        FaustSettings("ecomind-streams", env=service_link_env("web", "10.96.0.7", 80))
    assert "WEB_PORT" in faust_env_names()


@pytest.mark.parametrize("which", VALUES)
def test_pods_have_no_service_links_and_faust_accepts_their_env(which: str) -> None:
    for pod in _pods(which):
        assert pod["enableServiceLinks"] is False
        # Without links the container's env is the pod's own: Faust reads its defaults from it.
        assert FaustSettings("ecomind-streams", env=_plain_env(pod)).web_port == 6066


@pytest.mark.parametrize("which", VALUES)
def test_no_env_name_of_the_chart_is_a_faust_setting(which: str) -> None:
    for pod in _pods(which):
        names = {e["name"] for c in pod["containers"] for e in c.get("env", [])}
        assert names and not names & faust_env_names(), names & faust_env_names()


# --- `helm test` --------------------------------------------------------------------------------------


class _Sidecar(BaseHTTPRequestHandler):
    ready = True

    def do_GET(self) -> None:
        if self.path == "/ready":
            body, status = json.dumps({"ready": self.ready}).encode(), 200 if self.ready else 503
        elif self.path == "/metrics":
            body, status = b'ecomind_streams_build_info{version="0.2.0"} 1\n', 200
        else:
            body, status = b"not found\n", 404
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def sidecar() -> Iterator[tuple[str, type[_Sidecar]]]:
    handler = type("Handler", (_Sidecar,), {})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", handler
    server.shutdown()
    server.server_close()


def _run_test_pod(which: str, target: str, wait_s: str = "0") -> subprocess.CompletedProcess[str]:
    (container,) = one(render(which), "Pod")["spec"]["containers"]
    assert container["command"][:2] == ["python", "-c"]
    env = {e["name"]: e["value"] for e in container["env"]} | {"TARGET": target, "WAIT_SECONDS": wait_s}
    return subprocess.run([sys.executable, *container["command"][1:]], env=env, capture_output=True, text=True,
                          timeout=60)  # fmt: skip


def test_the_test_pod_targets_the_release_s_service() -> None:
    pod = one(render("default"), "Pod")
    assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    env = {e["name"]: e["value"] for e in pod["spec"]["containers"][0]["env"]}
    assert env["TARGET"] == "http://prod-ecomind-streams.monitoring.svc:6066" and env["CHECK_METRICS"] == "1"
    deployment = one(render("default"), "Deployment")
    assert pod["spec"]["containers"][0]["image"] == deployment["spec"]["template"]["spec"]["containers"][0]["image"]
    # Not selected by the Service, so never a metrics target nor counted by the budget.
    selector = one(render("default"), "Service")["spec"]["selector"]
    assert not selector.items() <= pod["metadata"]["labels"].items()
    secured = {e["name"]: e["value"] for e in one(render("all-options"), "Pod")["spec"]["containers"][0]["env"]}
    assert secured["TARGET"] == "https://prod-ecomind-streams.monitoring.svc:8443"
    assert secured["CHECK_METRICS"] == "0"  # /metrics asks for basic auth there


@pytest.mark.parametrize("which", VALUES)
def test_the_test_pod_passes_on_a_ready_release(which: str, sidecar: tuple[str, type[_Sidecar]]) -> None:
    url, _ = sidecar
    done = _run_test_pod(which, url)
    assert done.returncode == 0, done.stderr
    assert f"{url}/ready: ready" in done.stdout
    assert ("ecomind_streams_build_info found" in done.stdout) is (which == "default")


def test_the_test_pod_fails_on_an_unready_or_absent_release(sidecar: tuple[str, type[_Sidecar]]) -> None:
    url, handler = sidecar
    handler.ready = False
    done = _run_test_pod("default", url)
    assert done.returncode == 1 and 'not ready: /ready answered 503: {"ready": false}' in done.stderr, done.stderr
    done = _run_test_pod("default", "http://127.0.0.1:9")  # nothing listens on the discard port
    assert done.returncode == 1 and "not ready: http://127.0.0.1:9/ready:" in done.stderr, done.stderr
