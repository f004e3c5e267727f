"""A throwaway Prometheus on loopback (Debian package prometheus), scraping given targets."""

from __future__ import annotations

import json
import os
import shutil
import time
import urllib.parse
import urllib.request
from pathlib import Path

import yaml

from streams.local.proc import Server, free_port, wait_port

# As docker-compose's static config and the chart's monitors label the sidecar's targets, which the rules match on.
TARGET_LABELS = {"ecomind_component": "streams"}


class LocalPrometheus:
    def __init__(
        self,
        workdir: Path,
        targets: list[str],
        rule_files: list[Path],
        interval_s: float = 1.0,
        alertmanager_port: int | None = None,
        evaluation_interval_s: float | None = None,
        file_sd: bool = False,
    ) -> None:
        """`interval_s` is the scrape interval, and the rules' too unless `evaluation_interval_s` is given.
        `file_sd`: the targets come from a file_sd file that set_targets() rewrites while Prometheus runs,
        as service discovery adds and drops pods."""
        self.alertmanager_port = alertmanager_port
        self.workdir = workdir
        self.targets = targets
        self.rule_files = rule_files
        self.interval_s = interval_s
        self.evaluation_interval_s = evaluation_interval_s or interval_s
        self.file_sd = file_sd
        self.port = free_port()
        self.server: Server | None = None

    def start(self) -> LocalPrometheus:
        binary = shutil.which("prometheus")
        if binary is None:
            raise RuntimeError("prometheus not found: run scripts/setup (apt-get install prometheus)")
        self.workdir.mkdir(parents=True, exist_ok=True)
        interval, evaluation = f"{self.interval_s:g}s", f"{self.evaluation_interval_s:g}s"
        scrape: dict[str, object] = {"job_name": "ecomind-streams"}
        if self.file_sd:
            self.set_targets(self.targets)
            scrape["file_sd_configs"] = [{"files": [str(self._targets_path)]}]
        else:
            scrape["static_configs"] = [{"targets": self.targets, "labels": TARGET_LABELS}]
        config = {
            "global": {"scrape_interval": interval, "evaluation_interval": evaluation},
            "rule_files": [str(p) for p in self.rule_files],
            "scrape_configs": [scrape],
        }
        if self.alertmanager_port:
            am = {"static_configs": [{"targets": [f"127.0.0.1:{self.alertmanager_port}"]}]}
            config["alerting"] = {"alertmanagers": [am]}
        path = self.workdir / "prometheus.yml"
        path.write_text(yaml.safe_dump(config))
        argv = [
            binary,
            f"--config.file={path}",
            f"--storage.tsdb.path={self.workdir / 'data'}",
            f"--web.listen-address=127.0.0.1:{self.port}",
        ]
        self.server = Server("prometheus", argv, self.workdir / "prometheus.log").start()
        wait_port(self.port, self.server.proc, 30, self.server.log_path)
        # The port opens before the TSDB is loaded; until /-/ready answers 200 the API answers 503.
        deadline = time.monotonic() + 60
        while not self.ready():
            if time.monotonic() > deadline:
                raise RuntimeError(f"Prometheus not ready after 60 s; see {self.server.log_path}")
            time.sleep(0.2)
        return self

    @property
    def _targets_path(self) -> Path:
        return self.workdir / "targets.json"

    def set_targets(self, targets: list[str]) -> None:
        """Replace the file_sd targets. Prometheus watches the file; it applies a change within about 5 s
        (its discovery manager batches updates)."""
        if not self.file_sd:
            raise RuntimeError("set_targets needs LocalPrometheus(..., file_sd=True)")
        self.targets = list(targets)
        self.workdir.mkdir(parents=True, exist_ok=True)
        staging = self._targets_path.with_suffix(".tmp")
        staging.write_text(json.dumps([{"targets": self.targets, "labels": TARGET_LABELS}]))
        os.replace(staging, self._targets_path)  # atomic: Prometheus never reads half a file

    def ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/-/ready", timeout=5) as resp:
                return bool(resp.status == 200)
        except OSError:  # refused, or an HTTP 503 (urllib's HTTPError is an OSError)
            return False

    def query(self, expr: str) -> list[dict[str, object]]:
        url = f"http://127.0.0.1:{self.port}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
        with urllib.request.urlopen(url, timeout=10) as resp:
            body = json.loads(resp.read())
        assert body["status"] == "success", body
        return list(body["data"]["result"])

    def query_range(self, expr: str, start_s: float, end_s: float, step_s: float) -> list[dict[str, object]]:
        params = {"query": expr, "start": f"{start_s:.3f}", "end": f"{end_s:.3f}", "step": f"{step_s:g}"}
        url = f"http://127.0.0.1:{self.port}/api/v1/query_range?" + urllib.parse.urlencode(params)
        with urllib.request.urlopen(url, timeout=10) as resp:
            body = json.loads(resp.read())
        assert body["status"] == "success", body
        return list(body["data"]["result"])

    def stop(self) -> None:
        if self.server:
            self.server.stop()
