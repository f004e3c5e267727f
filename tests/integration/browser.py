"""Headless Chromium driven over the DevTools protocol (aiohttp's websocket client, no extra package).

`--dump-dom` alone cannot set a phone-sized viewport (headless windows have a minimum width) nor send
credentials, so the tests talk to the browser the way Puppeteer does, with only the calls they need.
"""

from __future__ import annotations

import asyncio
import base64
import json
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import aiohttp


def chromium_path() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    assert found, "chromium is installed by scripts/setup (Debian package chromium)"
    return found


class Browser:
    def __init__(self, home: Path) -> None:
        self.home = home
        self.loop = asyncio.new_event_loop()
        self.proc: subprocess.Popen[bytes] | None = None
        self.session: aiohttp.ClientSession | None = None
        self.ws: aiohttp.ClientWebSocketResponse | None = None
        self.events: list[dict[str, Any]] = []
        self._next_id = 0

    def start(self) -> Browser:
        profile = self.home / "profile"
        profile.mkdir(parents=True, exist_ok=True)
        argv = [
            chromium_path(),
            "--headless",
            "--no-sandbox",  # CI runs as root, where Chromium's sandbox cannot start
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            "--no-default-browser-check",
            "--disable-extensions",
            "--disable-background-networking",
            "--ignore-certificate-errors",  # the test's self-signed certificate
            "--remote-debugging-address=127.0.0.1",
            "--remote-debugging-port=0",
            f"--user-data-dir={profile}",
            "about:blank",
        ]
        log = open(self.home / "chromium.log", "ab")  # noqa: SIM115 - the child keeps writing to it
        self.proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        port_file = profile / "DevToolsActivePort"
        deadline = time.monotonic() + 30
        while not (port_file.exists() and port_file.read_text().strip()):
            assert time.monotonic() < deadline, (self.home / "chromium.log").read_text(errors="replace")[-2000:]
            assert self.proc.poll() is None, (self.home / "chromium.log").read_text(errors="replace")[-2000:]
            time.sleep(0.1)
        port = int(port_file.read_text().split()[0])
        self.loop.run_until_complete(self._connect(port))
        self.send("Page.enable")
        self.send("Network.enable")
        return self

    async def _connect(self, port: int) -> None:
        self.session = aiohttp.ClientSession()
        deadline = time.monotonic() + 30
        while True:
            try:
                async with self.session.get(f"http://127.0.0.1:{port}/json/list") as resp:
                    targets = await resp.json()
                page = next(t for t in targets if t["type"] == "page")
                break
            except (aiohttp.ClientError, StopIteration):
                assert time.monotonic() < deadline, "Chromium's DevTools endpoint did not answer"
                await asyncio.sleep(0.2)
        self.ws = await self.session.ws_connect(page["webSocketDebuggerUrl"], max_msg_size=0)

    async def _send(self, method: str, params: dict[str, Any], timeout_s: float) -> dict[str, Any]:
        assert self.ws is not None
        self._next_id += 1
        ident = self._next_id
        await self.ws.send_str(json.dumps({"id": ident, "method": method, "params": params}))
        async with asyncio.timeout(timeout_s):
            while True:
                msg = json.loads(await self.ws.receive_str())
                if msg.get("id") == ident:
                    assert "error" not in msg, f"{method}: {msg['error']}"
                    return dict(msg.get("result", {}))
                if "method" in msg:
                    self.events.append(msg)

    def send(self, method: str, timeout_s: float = 30.0, **params: Any) -> dict[str, Any]:
        return self.loop.run_until_complete(self._send(method, params, timeout_s))

    async def _wait_event(self, name: str, since: int, timeout_s: float) -> dict[str, Any]:
        assert self.ws is not None
        async with asyncio.timeout(timeout_s):
            while True:
                for event in self.events[since:]:
                    if event["method"] == name:
                        return event
                since = len(self.events)
                msg = json.loads(await self.ws.receive_str())
                if "method" in msg:
                    self.events.append(msg)

    def navigate(self, url: str, timeout_s: float = 30.0) -> int:
        """Load a page and wait for its load event; the HTTP status of the document."""
        since = len(self.events)
        self.send("Page.navigate", url=url)
        self.loop.run_until_complete(self._wait_event("Page.loadEventFired", since, timeout_s))
        statuses = [
            e["params"]["response"]["status"]
            for e in self.events[since:]
            if e["method"] == "Network.responseReceived" and e["params"].get("type") == "Document"
        ]
        assert statuses, f"no document response for {url}"
        return int(statuses[-1])

    def evaluate(self, expression: str) -> Any:
        result = self.send("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        assert "exceptionDetails" not in result, result["exceptionDetails"]
        return result["result"].get("value")

    def viewport(self, width: int, height: int, mobile: bool) -> None:
        self.send("Emulation.setDeviceMetricsOverride", width=width, height=height, deviceScaleFactor=1, mobile=mobile)

    def credentials(self, user: str, password: str) -> None:
        token = base64.b64encode(f"{user}:{password}".encode()).decode()
        self.send("Network.setExtraHTTPHeaders", headers={"Authorization": f"Basic {token}"})

    def scripts(self, enabled: bool) -> None:
        self.send("Emulation.setScriptExecutionDisabled", value=not enabled)

    def screenshot(self, path: Path) -> Path:
        data = self.send("Page.captureScreenshot", format="png", captureBeyondViewport=True)["data"]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(data))
        return path

    def stop(self) -> None:
        async def close() -> None:
            if self.ws is not None:
                await self.ws.close()
            if self.session is not None:
                await self.session.close()

        self.loop.run_until_complete(close())
        self.loop.close()
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
