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
