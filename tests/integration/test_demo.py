"""`./scripts/demo` as a newcomer runs it: on a clone without `.venv-demo`, it installs only what the demo
needs, prints its URLs within 90 s, serves business values on /metrics, and Ctrl-C stops everything."""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import threading
import time
import urllib.request
from pathlib import Path

import pytest

from streams.local.proc import free_port
from streams.local.scrape import parse, value

ROOT = Path(__file__).resolve().parents[2]
URLS_WITHIN_S = 90.0


def _lines_until(proc: subprocess.Popen[str], marker: str, timeout_s: float) -> list[str]:
    """The demo's output up to the first line holding `marker`, read by a thread so that the deadline holds
    while the demo prints nothing (a readline in this thread could wait for ever)."""
    lines: queue.Queue[str | None] = queue.Queue()

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.put(line.rstrip("\n"))
        lines.put(None)

    threading.Thread(target=read, daemon=True).start()
    seen: list[str] = []
    deadline = time.monotonic() + timeout_s
    while (left := deadline - time.monotonic()) > 0:
        try:
            line = lines.get(timeout=left)
        except queue.Empty:
            break
        if line is None:
            break  # the demo ended
        seen.append(line)
        if marker in line:
            return seen
    raise AssertionError(f"no {marker!r} within {timeout_s:g}s; output:\n" + "\n".join(seen))


@pytest.mark.demo
def test_the_demo_installs_what_it_needs_prints_its_urls_in_time_and_stops_cleanly() -> None:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("STREAMS_", "VIRTUAL_ENV"))}
    began = time.monotonic()
    proc = subprocess.Popen(
        ["./scripts/demo", "--port", str(port)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        lines = _lines_until(proc, "  metrics:", 300)
        took_s = time.monotonic() - began
        print(f"demo: URLs printed {took_s:.1f}s after ./scripts/demo started")
        steps = [line for line in lines if line.startswith("demo: ")]
        assert steps, "no progress lines"
        assert not [line for line in lines if "dev.txt" in line or "chromium" in line or "helm" in line], lines
        assert took_s <= URLS_WITHIN_S, f"{took_s:.1f}s > {URLS_WITHIN_S:g}s:\n" + "\n".join(lines)
        base = f"http://127.0.0.1:{port}"
        assert f"  status page: {base}/" in lines
        deadline, samples = time.monotonic() + 60, {}
        while time.monotonic() < deadline:
            with urllib.request.urlopen(f"{base}/metrics", timeout=5) as resp:
                samples = parse(resp.read().decode())
            if (value(samples, "ecomind_daily_active_orgs") or 0) > 0:
                break
            time.sleep(1)
        assert (value(samples, "ecomind_daily_active_orgs") or 0) > 0, "no business values from the demo's traffic"
        assert value(samples, "ecomind_streams_exporting") == 1.0
    finally:
        os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C reaches the whole foreground group
        rc = proc.wait(timeout=60)
    assert rc == 0

    with pytest.raises(OSError):
        urllib.request.urlopen(f"{base}/health", timeout=2)
