"""A throwaway redis-server on loopback (Debian package redis-server)."""

from __future__ import annotations

import shutil
from pathlib import Path

from streams.local.proc import Server, free_port, wait_port


class LocalRedis:
    def __init__(
        self,
        workdir: Path,
        port: int | None = None,
        password: str | None = None,
        tls: tuple[Path, Path] | None = None,
    ) -> None:
        self.workdir = workdir
        self.port = port or free_port()
        self.password = password
        self.tls = tls  # (certificate, key): serve TLS only
        self.server: Server | None = None

    @property
    def url(self) -> str:
        auth = f":{self.password}@" if self.password else ""
        if self.tls:
            return f"rediss://{auth}127.0.0.1:{self.port}/0?ssl_ca_certs={self.tls[0]}"
        return f"redis://{auth}127.0.0.1:{self.port}/0"

    def start(self, keep_data: bool = True) -> LocalRedis:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server not found: run scripts/setup (apt-get install redis-server)")
        self.workdir.mkdir(parents=True, exist_ok=True)
        argv = [
            binary,
            "--bind",
            "127.0.0.1",
            *self._listener(),
            "--dir",
            str(self.workdir),
            "--save",
            "",
            "--appendonly",
            "yes" if keep_data else "no",
            "--appendfsync",
            "everysec",
            "--protected-mode",
            "yes",
            *(["--requirepass", self.password] if self.password else []),
        ]
        self.server = Server("redis", argv, self.workdir / "redis.log").start()
        wait_port(self.port, self.server.proc, 15, self.server.log_path)
        return self

    def _listener(self) -> list[str]:
        if not self.tls:
            return ["--port", str(self.port)]
        cert, key = (str(p) for p in self.tls)
        tls = ["--tls-port", str(self.port), "--tls-cert-file", cert, "--tls-key-file", key]
        return ["--port", "0", *tls, "--tls-ca-cert-file", cert, "--tls-auth-clients", "no"]

    def stop(self) -> None:
        if self.server:
            self.server.stop()

    def wipe(self) -> None:
        """Delete the data files of a stopped server, as a lost volume would."""
        for path in self.workdir.iterdir():
            if path.name != "redis.log":
                shutil.rmtree(path) if path.is_dir() else path.unlink()
