"""Kafka's own Java command-line clients: the broker's jars (streams.local.brokers.kafka_libs()) plus
the `org.apache.kafka:kafka-tools` jar, which holds the tools' classes and is not among the broker's
runtime dependencies; fetched once with Maven into the same cache.

- ConsoleConsumer: `org.apache.kafka.tools.consumer.ConsoleConsumer` in a group, classic or KIP-848
  (`group.protocol=consumer`). `freeze()` stops the JVM with SIGSTOP: from the broker's side it stays a
  member until its session times out (45 s by default for `group.protocol=consumer`, the broker's
  `group.consumer.session.timeout.ms`), consuming and committing nothing more, so its lag holds still.
- describe_groups() / parse_groups(): `kafka-consumer-groups --describe` (`ConsumerGroupCommand`), parsed, to compare
  with what the lag probe exports.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from streams.local.brokers import CACHE, KAFKA_VERSION, kafka_libs
from streams.local.proc import Server


def tools_jar(version: str = KAFKA_VERSION) -> Path:
    """The kafka-tools jar alone: everything it needs at run time is among the broker's jars."""
    jar = CACHE / f"kafka-tools-{version}" / f"kafka-tools-{version}.jar"
    if not jar.exists():
        artifact = f"-Dartifact=org.apache.kafka:kafka-tools:{version}"
        with tempfile.TemporaryDirectory() as tmp:  # no pom needed, but Maven wants a directory of its own
            subprocess.run(
                ["mvn", "-q", "-B", "dependency:copy", artifact, f"-DoutputDirectory={jar.parent}"], cwd=tmp, check=True
            )
    return jar


def _java(main: str, *args: str) -> list[str]:
    java = shutil.which("java") or "java"
    classpath = f"{tools_jar()}:{kafka_libs()}/*"
    return [java, "-Xmx128m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1", "-cp", classpath, main, *args]


class ConsoleConsumer:
    """A console consumer of one topic in `group`, from the beginning, committing every 100 ms."""

    def __init__(
        self,
        workdir: Path,
        bootstrap: str,
        topic: str,
        group: str,
        protocol: str = "consumer",
        commit: bool = True,
    ) -> None:
        self.group = group
        self.workdir = workdir
        props = {
            "group.protocol": protocol,
            "enable.auto.commit": str(commit).lower(),
            "auto.commit.interval.ms": "100",
        }
        if protocol == "classic":
            props["session.timeout.ms"] = "120000"  # a classic member sets its own: outlive a frozen test
        argv = ["--bootstrap-server", bootstrap, "--topic", topic, "--group", group, "--from-beginning"]
        for key, value in props.items():
            argv += ["--consumer-property", f"{key}={value}"]
        self.server = Server(
            f"console-consumer-{group}",
            _java("org.apache.kafka.tools.consumer.ConsoleConsumer", *argv),
            workdir / f"{group}.log",
        )

    def start(self) -> ConsoleConsumer:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.server.start()
        return self

    def freeze(self) -> None:
        """SIGSTOP: no more polls, commits or heartbeats; still a member until the session times out."""
        assert self.server.proc is not None and self.server.proc.poll() is None, self.log()[-3000:]
        os.kill(self.server.proc.pid, signal.SIGSTOP)

    def stop(self) -> None:
        self.server.kill()  # SIGKILL: a frozen JVM would not act on SIGTERM

    def log(self) -> str:
        path = self.server.log_path
        return path.read_text(errors="replace") if path.exists() else ""

    def printed(self, prefix: str) -> int:
        """Lines of its output (record values, one a line) that start with `prefix`."""
        return sum(1 for line in self.log().splitlines() if line.startswith(prefix))


@dataclass(frozen=True)
class OffsetRow:
    topic: str
    partition: int
    current: int | None  # None: "-", no commit
    log_end: int | None
    lag: int | None
    consumer_id: str  # "-" when no member owns the partition


@dataclass(frozen=True)
class GroupView:
    """One group as `kafka-consumer-groups --describe` shows it (offsets, --members and --state)."""

    state: str
    members: int  # rows of --members
    state_members: int  # #MEMBERS of --state
    offsets: tuple[OffsetRow, ...]


def describe_groups(bootstrap: str, *groups: str) -> dict[str, str]:
    """The output of `kafka-consumer-groups --describe` for `groups`: "offsets" (no option), "members"
    (--members) and "state" (--state); the three run at once, each a JVM start of seconds here."""
    base = ["--bootstrap-server", bootstrap, "--describe", "--timeout", "20000"]
    for g in groups:
        base += ["--group", g]
    main = "org.apache.kafka.tools.consumer.group.ConsumerGroupCommand"
    modes: dict[str, list[str]] = {"offsets": [], "members": ["--members"], "state": ["--state"]}
    running = {
        mode: subprocess.Popen(_java(main, *base, *extra), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for mode, extra in modes.items()
    }
    out = {}
    for mode, proc in running.items():
        stdout, stderr = proc.communicate(timeout=120)
        assert proc.returncode == 0, (mode, stdout, stderr)
        out[mode] = stdout
    return out


def parse_groups(out: dict[str, str], *groups: str) -> dict[str, GroupView]:
    # --state: GROUP COORDINATOR (ID) ASSIGNMENT-STRATEGY STATE #MEMBERS, where the coordinator cell
    # holds a space ("host:port (id)") and the strategy may be blank: read it from the end.
    states = {row[0]: (row[-2], int(row[-1])) for row in _rows(out["state"], groups)}
    members: dict[str, int] = {}
    for row in _rows(out["members"], groups):  # GROUP CONSUMER-ID HOST CLIENT-ID #PARTITIONS
        members[row[0]] = members.get(row[0], 0) + 1
    offsets: dict[str, list[OffsetRow]] = {}
    # GROUP TOPIC PARTITION CURRENT-OFFSET LOG-END-OFFSET LAG CONSUMER-ID HOST CLIENT-ID
    for group, topic, partition, current, log_end, lag, consumer_id, *_ in _rows(out["offsets"], groups):
        found = OffsetRow(topic, int(partition), _number(current), _number(log_end), _number(lag), consumer_id)
        offsets.setdefault(group, []).append(found)
    return {
        g: GroupView(
            states[g][0],
            members.get(g, 0),
            states[g][1],
            tuple(sorted(offsets.get(g, []), key=lambda r: (r.topic, r.partition))),
        )
        for g in groups
    }


def _rows(text: str, groups: tuple[str, ...]) -> list[list[str]]:
    """Whitespace-split rows of the named groups: headers, blank lines and notes such as "Consumer group
    'x' has no active members." are left out."""
    return [cells for cells in (line.split() for line in text.splitlines()) if cells and cells[0] in groups]


def _number(cell: str) -> int | None:
    return None if cell == "-" else int(cell)
