"""A throwaway Alertmanager on loopback (Debian package prometheus-alertmanager), with a given config."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import yaml

from streams.local.proc import Server, free_port, wait_port


def start_alertmanager(workdir: Path, config: dict[str, Any]) -> tuple[Server, int]:
    """Alertmanager running `config` (one instance, no cluster peers), once its API port answers; the server
    and that port. Its data and log stay in `workdir`."""
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "alertmanager.yml").write_text(yaml.safe_dump(config))
    binary = shutil.which("prometheus-alertmanager") or shutil.which("alertmanager")
    if binary is None:
        raise RuntimeError(
            "Alertmanager comes with Debian's prometheus-alertmanager package (scripts/setup installs it)"
        )
    port = free_port()
    argv = [
        binary,
        f"--config.file={workdir / 'alertmanager.yml'}",
        f"--storage.path={workdir / 'data'}",
        f"--web.listen-address=127.0.0.1:{port}",
        "--cluster.listen-address=",
    ]
    server = Server("alertmanager", argv, workdir / "alertmanager.log").start()
    try:
        wait_port(port, server.proc, 30, server.log_path)
    except RuntimeError:
        server.stop()
        raise
    return server, port
