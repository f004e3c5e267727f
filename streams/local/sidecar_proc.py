"""Sidecar replicas as real `faust -A streams worker` processes, for tests, benchmarks and the demo."""

from __future__ import annotations

import base64
import os
import ssl
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from streams.local.proc import Server, free_port
from streams.local.scrape import Samples, parse

T = TypeVar("T")
FAUST = str(Path(sys.executable).parent / "faust")
CHECKOUT = Path(__file__).resolve().parents[2]  # the tree whose `streams` this module is


def _with_tree(pythonpath: str, tree: Path) -> str:
    """PYTHONPATH with `tree` on it (after what is there already). `faust -A streams` has the working
    directory on sys.path only while importing `streams`: the packages it imports later (tables, agents,
    core) would come from wherever the venv's editable install points, another checkout than a worktree's
    or an older release's tree. PYTHONPATH is searched before that install's finder."""
    entries = [entry for entry in pythonpath.split(os.pathsep) if entry]
    return os.pathsep.join(entries if str(tree) in entries else [*entries, str(tree)])


def wait_until(check: Callable[[], T | None], timeout_s: float = 60.0, interval_s: float = 0.2, what: str = "") -> T:
    """Poll `check` until it returns a truthy value; fail with its last answer after the deadline."""
    deadline = time.monotonic() + timeout_s
    last: Any = None
    while time.monotonic() < deadline:
        try:
            value = check()
            if value:
                return value
            last = value
        except (AssertionError, OSError, urllib.error.URLError) as exc:
            last = exc
        time.sleep(interval_s)
    raise AssertionError(f"timed out after {timeout_s}s waiting for {what or check}: last={last!r}")


class SidecarProc:
    def __init__(
        self,
        workdir: Path,
        env: dict[str, str],
        name: str = "sidecar",
        port: int | None = None,
        tls: ssl.SSLContext | None = None,
        auth: tuple[str, str] | None = None,
        cwd: Path | None = None,
    ) -> None:
        self.port = port or free_port()
        # `faust -A streams` imports the app from its working directory first, ahead of PYTHONPATH: code
        # other than this checkout's (an older release's tree) runs only with that tree as `cwd`.
        self.cwd = cwd
        self.tls = tls  # client context when the sidecar serves HTTPS
        self.auth = auth  # basic-auth credentials sent with every request
        self.workdir = workdir
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.name = name
        self.env = {
            **os.environ,
            **env,
            "STREAMS_WEB_PORT": str(self.port),
            "STREAMS_WEB_BIND": "127.0.0.1",
        }
        self.env["PYTHONPATH"] = _with_tree(self.env.get("PYTHONPATH", ""), cwd or CHECKOUT)
        self.server: Server | None = None

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}"

    def start(self) -> SidecarProc:
        argv = [FAUST, "-A", "streams", "--datadir", str(self.workdir / "faust"), "worker", "-l", "info"]
        self.server = Server(self.name, argv, self.workdir / f"{self.name}.log", env=self.env, cwd=self.cwd).start()
        return self

    def wait_ready(self, timeout_s: float = 90.0, interval_s: float = 0.2) -> None:
        wait_until(lambda: self.get("/ready")[0] == 200, timeout_s, interval_s, what=f"{self.name} ready")

    def wait_until_serving(self, timeout_s: float = 90.0) -> None:
        """Until the web server answers, ready or not."""
        wait_until(lambda: self.get("/health")[0] == 200, timeout_s, what=f"{self.name} serving")

    def get(self, path: str, auth: tuple[str, str] | None = None) -> tuple[int, bytes]:
        request = urllib.request.Request(self.url + path)
        user, password = auth or self.auth or (None, None)
        if user is not None:
            token = base64.b64encode(f"{user}:{password}".encode()).decode()
            request.add_header("Authorization", f"Basic {token}")
        try:
            with urllib.request.urlopen(request, timeout=5, context=self.tls) as resp:
                return resp.status, resp.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read()

    def scrape(self) -> Samples:
        status, body = self.get("/metrics")
        assert status == 200, body
        return parse(body.decode())

    def running(self) -> bool:
        return self.server is not None and self.server.running()

    def kill(self) -> None:
        assert self.server is not None
        self.server.kill()

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()

    def log_tail(self, chars: int = 4000) -> str:
        path = self.workdir / f"{self.name}.log"
        return path.read_text(errors="replace")[-chars:] if path.exists() else ""
