"""Throwaway Redis topologies on loopback (Debian's redis-server): a Sentinel-managed primary and a Redis
Cluster, each with a `.url` in REDIS_URL's form (streams/redis_settings.py) and `.env` for the sidecar."""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path
from typing import Any, Self

import redis

from streams.local.proc import Server, free_port, wait_port

SERVICE = "streams"


class _Node:
    """One redis-server (or sentinel) in a directory of its own; TLS-only when given a certificate."""

    def __init__(self, workdir: Path, name: str, tls: tuple[Path, Path] | None, extra: list[str]) -> None:
        self.dir, self.name, self.tls, self.extra = workdir / name, name, tls, extra
        self.port = free_port()
        self.server: Server | None = None

    def start(self, sentinel: bool = False) -> _Node:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server not found: run scripts/setup (apt-get install redis-server)")
        self.dir.mkdir(parents=True, exist_ok=True)
        lines = ["bind 127.0.0.1", f"dir {self.dir}", 'save ""', "appendonly no", *self._listener(), *self.extra]
        conf = self.dir / ("sentinel.conf" if sentinel else "redis.conf")
        conf.write_text("\n".join(lines) + "\n")  # a sentinel rewrites its file: it must be one of its own
        argv = [binary, str(conf), *(["--sentinel"] if sentinel else [])]
        self.server = Server(self.name, argv, self.dir / "redis.log").start()
        wait_port(self.port, self.server.proc, 15, self.server.log_path)
        return self

    def _listener(self) -> list[str]:
        if not self.tls:
            return [f"port {self.port}"]
        cert, key = self.tls
        tls = [f"tls-port {self.port}", f"tls-cert-file {cert}", f"tls-key-file {key}", f"tls-ca-cert-file {cert}"]
        return ["port 0", *tls, "tls-auth-clients no", "tls-replication yes"]

    def client(self, password: str | None) -> redis.Redis:
        tls: dict[str, Any] = {"ssl": True, "ssl_ca_certs": str(self.tls[0])} if self.tls else {}
        return redis.Redis("127.0.0.1", self.port, password=password, decode_responses=True, socket_timeout=5, **tls)

    def kill(self) -> None:
        """SIGKILL, as a crash would: nothing flushed, replicas left with what they had received."""
        if self.server:
            self.server.kill()

    def stop(self) -> None:
        if self.server:
            self.server.stop()


class _Topology:
    scheme = ""

    def __init__(self, workdir: Path, password: str | None = None, tls: tuple[Path, Path] | None = None) -> None:
        self.workdir, self.password, self.tls = workdir, password, tls
        self.nodes: list[_Node] = []

    def _node(self, name: str, extra: list[str]) -> _Node:
        auth = [f"requirepass {self.password}", f"masterauth {self.password}"] if self.password else []
        node = _Node(self.workdir, name, self.tls, auth + extra)
        self.nodes.append(node)
        return node

    def _seeds(self) -> list[_Node]:
        return self.nodes

    @property
    def url(self) -> str:
        auth = f":{self.password}@" if self.password else ""
        hosts = ",".join(f"127.0.0.1:{n.port}" for n in self._seeds())
        return f"{'rediss' if self.tls else 'redis'}+{self.scheme}://{auth}{hosts}{self._path}"

    _path = ""

    @property
    def env(self) -> dict[str, str]:
        """REDIS_URL and the TLS CA for the sidecar."""
        return {"REDIS_URL": self.url, **({"REDIS_TLS_CA_FILE": str(self.tls[0])} if self.tls else {})}

    def start(self) -> Self:
        try:
            self._start()
        except BaseException:
            self.stop()  # a setup that did not settle leaves no server behind
            raise
        return self

    def _start(self) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()


class LocalSentinel(_Topology):
    """A primary, a replica and three sentinels (quorum 2) watching them under the name SERVICE."""

    scheme = "sentinel"
    _path = f"/{SERVICE}/0"

    def __init__(
        self,
        workdir: Path,
        password: str | None = None,
        sentinel_password: str | None = None,
        tls: tuple[Path, Path] | None = None,
        down_after_ms: int = 2000,
    ) -> None:
        super().__init__(workdir, password, tls)
        self.sentinel_password = sentinel_password
        self.down_after_ms = down_after_ms  # how long a primary stays silent before the sentinels fail over
        self.sentinels: list[_Node] = []

    def _seeds(self) -> list[_Node]:
        return self.sentinels

    @property
    def env(self) -> dict[str, str]:
        extra = {"REDIS_SENTINEL_PASSWORD": self.sentinel_password} if self.sentinel_password else {}
        return {**super().env, **extra}

    def _start(self) -> None:
        self.primary = self._node("primary", []).start()
        self.replica = self._node("replica", [f"replicaof 127.0.0.1 {self.primary.port}"]).start()
        for i in range(3):
            watch = [
                f"sentinel monitor {SERVICE} 127.0.0.1 {self.primary.port} 2",
                f"sentinel down-after-milliseconds {SERVICE} {self.down_after_ms}",
                f"sentinel failover-timeout {SERVICE} {max(5000, 5 * self.down_after_ms)}",
                *([f"sentinel auth-pass {SERVICE} {self.password}"] if self.password else []),
                *([f"requirepass {self.sentinel_password}"] if self.sentinel_password else []),
            ]
            sentinel = _Node(self.workdir, f"sentinel{i}", self.tls, watch).start(sentinel=True)
            self.sentinels.append(sentinel)
            self.nodes.append(sentinel)
        self._wait_ready()

    def _wait_ready(self, timeout_s: float = 30.0) -> None:
        """The replica in sync, and every sentinel knowing it and the other sentinels."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            linked = self.replica.client(self.password).info("replication").get("master_link_status") == "up"
            known = all(self._sentinel_sees(s) for s in self.sentinels)
            if linked and known:
                return
            time.sleep(0.2)
        raise RuntimeError(f"the Sentinel setup in {self.workdir} did not settle within {timeout_s}s")

    def _sentinel_sees(self, sentinel: _Node) -> bool:
        state: dict[str, Any] = sentinel.client(self.sentinel_password).sentinel_master(SERVICE)  # type: ignore[assignment]
        return int(state["num-slaves"]) >= 1 and int(state["num-other-sentinels"]) >= 2


class LocalCluster(_Topology):
    """A Redis Cluster of three primaries with one replica each, made by `redis-cli --cluster create`."""

    scheme = "cluster"

    def _start(self) -> None:
        for i in range(6):
            bus = free_port()  # the default bus port (port + 10000) may not exist for a high free port
            extra = ["cluster-enabled yes", "cluster-config-file nodes.conf", "cluster-node-timeout 2000"]
            extra += [f"cluster-port {bus}", *(["tls-cluster yes"] if self.tls else [])]
            self._node(f"node{i}", extra).start()
        argv = ["redis-cli", *self._cli_options(), "--cluster", "create"]
        argv += [f"127.0.0.1:{n.port}" for n in self.nodes] + ["--cluster-replicas", "1", "--cluster-yes"]
        done = subprocess.run(argv, capture_output=True, text=True, timeout=60)
        if done.returncode != 0:
            raise RuntimeError(f"redis-cli --cluster create failed: {done.stdout[-2000:]} {done.stderr[-2000:]}")
        self._wait_ready()

    def _cli_options(self) -> list[str]:
        tls = ["--tls", "--cacert", str(self.tls[0])] if self.tls else []
        return tls + (["-a", self.password, "--no-auth-warning"] if self.password else [])

    def _wait_ready(self, timeout_s: float = 30.0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            infos = [n.client(self.password).cluster("info") for n in self.nodes]
            if all(i["cluster_state"] == "ok" and int(i["cluster_known_nodes"]) == 6 for i in infos):
                return
            time.sleep(0.2)
        raise RuntimeError(f"the Redis Cluster in {self.workdir} did not settle within {timeout_s}s")

    def _alive(self) -> redis.Redis:
        """A client of a node still running (a test may have killed some)."""
        return next(n for n in self.nodes if n.server and n.server.running()).client(self.password)

    def primaries(self) -> list[_Node]:
        """The nodes serving slots now."""
        slots = self._alive().execute_command("CLUSTER SLOTS")  # type: ignore[no-untyped-call]
        ports = {int(primary[1]) for _, _, primary, *_ in slots}
        return [n for n in self.nodes if n.port in ports]

    def primary_of(self, key: str) -> _Node:
        """The node that serves `key`'s slot now."""
        any_node = self._alive()
        slot = int(any_node.cluster("keyslot", key))
        slots = any_node.execute_command("CLUSTER SLOTS")  # type: ignore[no-untyped-call]
        for low, high, primary, *_ in slots:
            if int(low) <= slot <= int(high):
                return next(n for n in self.nodes if n.port == int(primary[1]))
        raise RuntimeError(f"no node serves slot {slot}")

    def replica_of(self, primary: _Node) -> _Node:
        """A node replicating `primary` now."""
        linked = primary.client(self.password).info("replication")
        ports = {int(v["port"]) for k, v in linked.items() if k.startswith("slave") and isinstance(v, dict)}
        return next(n for n in self.nodes if n.port in ports)

    def move_slot(self, first: str, target: _Node, steps: int = 30) -> None:
        """Moves `first`'s slot to `target` as `redis-cli --cluster reshard` does, a few keys at a time over
        about `steps` tenths of a second, so that writes meet the slot half moved. `first` goes first: the
        one key a script declares (a state's offsets hash), from then on the source answers that script with
        ASK. An empty slot moves at once, as an operator places a slot before any key exists."""
        source = self.primary_of(first)
        src, dst = source.client(self.password), target.client(self.password)
        slot = int(src.cluster("keyslot", first))
        src_id, dst_id = _run(src, "CLUSTER MYID"), _run(dst, "CLUSTER MYID")
        _run(dst, "CLUSTER SETSLOT", slot, "IMPORTING", src_id)
        _run(src, "CLUSTER SETSLOT", slot, "MIGRATING", dst_id)
        per_step = max(1, int(_run(src, "CLUSTER COUNTKEYSINSLOT", slot)) // steps)
        auth = ["AUTH", self.password] if self.password else []
        migrate = ["MIGRATE", "127.0.0.1", target.port, "", 0, 5000, *auth, "KEYS"]
        _run(src, *migrate, first)  # NOKEY when it does not exist yet
        while keys := _run(src, "CLUSTER GETKEYSINSLOT", slot, per_step):
            _run(src, *migrate, *keys)
            time.sleep(0.1)
        for node in (target, source, *self.primaries()):
            _run(node.client(self.password), "CLUSTER SETSLOT", slot, "NODE", dst_id)


def _run(client: redis.Redis, *command: Any) -> Any:
    return client.execute_command(*command)  # type: ignore[no-untyped-call]
