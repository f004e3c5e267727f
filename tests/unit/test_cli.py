import os
import subprocess
import sys
from pathlib import Path

import pytest

FAUST = str(Path(sys.executable).parent / "faust")


@pytest.mark.parametrize(
    ("name", "bad", "expected"),
    [
        ("STREAMS_TIMEZONE", "Mars/Base", "STREAMS_TIMEZONE='Mars/Base': expected an IANA time zone"),
        ("STREAMS_WEB_PORT", "-1", "STREAMS_WEB_PORT='-1': expected an integer from 1 to 65535"),
    ],
)
def test_worker_refuses_a_bad_setting_with_a_clear_error(name: str, bad: str, expected: str) -> None:
    env = {**os.environ, name: bad}
    done = subprocess.run([FAUST, "-A", "streams", "worker"], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert f"ecomind-streams: invalid setting: {expected}" in done.stderr
    assert "Traceback" not in done.stderr


def test_faust_web_port_flag_wins_and_ready_says_why_not(tmp_path: Path) -> None:
    import json
    import time
    import urllib.error
    import urllib.request

    from streams.local.proc import Server, free_port

    flag_port, env_port, dead_port = free_port(), free_port(), free_port()
    env = {
        **os.environ,
        "STREAMS_WEB_PORT": str(env_port),
        "STREAMS_WEB_BIND": "127.0.0.1",
        "KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{dead_port}",
        "REDIS_URL": f"redis://127.0.0.1:{dead_port}/0",
    }
    argv = [FAUST, "-A", "streams", "--datadir", str(tmp_path), "worker", "--web-port", str(flag_port)]
    server = Server("sidecar", argv, tmp_path / "log", env=env).start()
    try:
        deadline = time.monotonic() + 30
        body = None
        while time.monotonic() < deadline and body is None:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{flag_port}/ready", timeout=2)
            except urllib.error.HTTPError as exc:
                body = (exc.code, json.loads(exc.read()))
            except OSError:
                time.sleep(0.2)
        assert body is not None, (tmp_path / "log").read_text()[-2000:]
        assert body[0] == 503
        assert body[1]["ready"] is False and body[1]["redis_reachable"] is False
        with urllib.request.urlopen(f"http://127.0.0.1:{flag_port}/health", timeout=2) as resp:
            assert resp.status == 200
        synthetic = Path(__file__).resolve().parents[2] / "ops" / "synthetic" / "check_sidecar.py"
        check = subprocess.run(
            [sys.executable, str(synthetic), f"http://127.0.0.1:{flag_port}"],
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert check.returncode == 1 and "/ready: HTTP 503" in check.stderr
        assert server.proc is not None and server.proc.poll() is None
    finally:
        server.stop()
