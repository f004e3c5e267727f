"""The worst case on one Redis and on a Redis Cluster of three primaries with sharded state, and the scrape.

python -m bench.cluster                   # 250,000 raw events, every one a user new to the day
python -m bench.cluster --events 50000 --orgs 1000

Rows (one sidecar each, 12 partitions so that every one of three shards holds four): one Redis with one
shard (today's layout, `redis://`), the same Redis with STREAMS_REDIS_SHARDS=3 (what sharding itself
costs, all shards on one thread), three primaries with S = 3, one shard tag on each, and the same cluster
with one shard (cluster mode's own cost: one primary does all the work). The cluster has
no replicas, as the one Redis has none: each primary's CPU is its own commands' only. CPU is utime + stime
of each primary's process from /proc, from the moment the stopped sidecar is let go on its backlog until
the tables hold every event (bench/fleet.py's method); /metrics is checked against the workload's truth.
Then the render time of /metrics with `--orgs` orgs in every labelled family, one shard on one Redis and
S = 3 on the cluster, with every org in every shard (producers that do not key events by org) and with
each org in one shard (producers keying by org).
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import redis as redis_sync

from bench.fleet import SESSION_TIMEOUT_MS, _balanced, _pid, _topics, _verdict
from bench.procstat import cpu_seconds
from bench.runners import sidecar_env
from bench.shard_rows import ShardRow, SlotRange, spread_app_id, table, tag_owners
from bench.targets import scrape_time
from streams.local.brokers import LocalKafka
from streams.local.proc import free_port
from streams.local.redis_server import LocalRedis
from streams.local.redis_topologies import LocalCluster
from streams.local.sidecar_proc import SidecarProc, wait_until
from streams.local.workload import BackgroundProducer, Truth, build
from tables.shards import shard_keys

PARTITIONS = 12  # a multiple of 3: each of three partition shards holds as many partitions
SHARDS = 3
Work = tuple[list[bytes], list[bytes], Truth]


class PrimariesOnly(LocalCluster):
    """Three primaries without replicas: the one Redis the cluster is set against has none either, and a
    primary feeding a replica spends CPU on it that is not the state's work."""

    def _start(self) -> None:
        for i in range(SHARDS):
            extra = ["cluster-enabled yes", "cluster-config-file nodes.conf", "cluster-node-timeout 2000"]
            self._node(f"node{i}", [*extra, f"cluster-port {free_port()}"]).start()
        argv = ["redis-cli", "--cluster", "create", *(f"127.0.0.1:{n.port}" for n in self.nodes)]
        done = subprocess.run([*argv, "--cluster-replicas", "0", "--cluster-yes"], capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(f"redis-cli --cluster create failed: {done.stdout[-2000:]} {done.stderr[-2000:]}")
        self._wait_ready()

    def _wait_ready(self, timeout_s: float = 30.0) -> None:
        def settled() -> bool:
            infos = [n.client(None).cluster("info") for n in self.nodes]
            return all(i["cluster_state"] == "ok" and int(i["cluster_known_nodes"]) == SHARDS for i in infos)

        wait_until(settled, timeout_s, what=f"the Redis Cluster in {self.workdir}")

    def slot_ranges(self) -> list[SlotRange]:
        slots: Any = self.nodes[0].client(None).execute_command("CLUSTER SLOTS")  # type: ignore[no-untyped-call]
        return [(int(low), int(high), str(primary[1])) for low, high, primary, *_ in slots]

    def pid_of(self, port: str) -> int:
        node = next(n for n in self.nodes if str(n.port) == port)
        assert node.server is not None and node.server.proc is not None
        return node.server.proc.pid


def worst_case(
    workdir: Path,
    bootstrap: str,
    state: LocalRedis | LocalCluster,
    pids: list[int],
    name: str,
    shards: int,
    app_id: str,
    work: Work,
) -> ShardRow:
    """One sidecar folds the whole workload from a backlog; CPU of it and of each primary meanwhile."""
    raws, enriched, truth = work
    raw, enr = _topics(bootstrap, "shards", PARTITIONS)
    env = sidecar_env(
        bootstrap, state, app_id, raw, enr,
        STREAMS_SESSION_TIMEOUT_MS=str(SESSION_TIMEOUT_MS), STREAMS_REDIS_SHARDS=str(shards),
    )  # fmt: skip
    proc = SidecarProc(workdir / app_id, env, name="sidecar").start()
    tables = _client(state)
    processed = [keys.key("processed") for keys in shard_keys(app_id, shards)]
    try:
        proc.wait_ready(180)
        wait_until(lambda: _balanced([proc], 2 * PARTITIONS), 180, 0.5, what="the sidecar holding its partitions")
        pid = _pid(proc)
        os.killpg(pid, signal.SIGSTOP)
        try:
            producer = BackgroundProducer(bootstrap, [(raw, raws), (enr, enriched)], 1e9)
            producer.run()
            assert producer.error is None, producer.error
        finally:
            side0, redis0 = cpu_seconds(pid), [cpu_seconds(p) for p in pids]
            started = time.monotonic()
            os.killpg(pid, signal.SIGCONT)
        events = len(raws) + len(enriched)
        deadline = time.monotonic() + 900
        while _folded(tables, processed) < events and time.monotonic() < deadline:
            time.sleep(0.02)
        seconds = time.monotonic() - started
        side1, redis1 = cpu_seconds(pid), [cpu_seconds(p) for p in pids]
        note = _verdict([proc], truth, raw, enr)
    finally:
        tables.close()
        proc.stop()
    used = [b - a for a, b in zip(redis0, redis1, strict=True)]
    return ShardRow(name, len(pids), shards, events, seconds, side1 - side0, used, note)


def _client(state: LocalRedis | LocalCluster) -> Any:
    if isinstance(state, LocalCluster):
        return redis_sync.RedisCluster("127.0.0.1", state.nodes[0].port, decode_responses=True)
    return redis_sync.Redis.from_url(state.url, decode_responses=True)


def _folded(client: Any, keys: list[str]) -> int:
    return sum(int(v) for key in keys for v in client.hgetall(key).values())


def measure(
    workdir: Path, bootstrap: str, events: int, orgs: int, scrapes: int, smoke: bool
) -> tuple[list[ShardRow], list[str]]:
    # Org and user drawn apart from 10 million users: every raw event a pair new to the day, so no member
    # is ever left out of a batch (bench/fleet.py's worst case). Its one enriched event lets /metrics be checked.
    work = build(seed=8, raw_events=events, enriched_every=events, orgs=200, users=10**7)
    rows: list[ShardRow] = []
    scrape_rows: list[str] = []
    one = LocalRedis(workdir / "one-redis").start(keep_data=False)
    try:
        assert one.server is not None and one.server.proc is not None
        pids = [one.server.proc.pid]
        rows.append(worst_case(workdir, bootstrap, one, pids, "one Redis, one shard", 1, "shards-one", work))
        if not smoke:  # the smoke keeps the two rows that the comparison needs
            name = "one Redis, S = 3 (sharding's own cost)"
            rows.append(worst_case(workdir, bootstrap, one, pids, name, SHARDS, "shards-one-s3", work))
            scrape_rows.append(scrape_time(workdir, bootstrap, one, orgs, scrapes, note="one Redis, one shard"))
    finally:
        one.stop()
    cluster = PrimariesOnly(workdir / "cluster").start()
    try:
        ranges = cluster.slot_ranges()
        app_id = spread_app_id(ranges, SHARDS, "shards-cluster")
        pids = [cluster.pid_of(port) for port in tag_owners(ranges, app_id, SHARDS)]
        name = f"{SHARDS}-primary cluster, S = {SHARDS}"
        rows.append(worst_case(workdir, bootstrap, cluster, pids, name, SHARDS, app_id, work))
        if not smoke:  # today's layout on the cluster: one primary holds it all, at cluster mode's cost
            every = [cluster.pid_of(port) for port in sorted({node for _, _, node in ranges})]
            name = f"{SHARDS}-primary cluster, one shard (cluster mode's own cost)"
            rows.append(worst_case(workdir, bootstrap, cluster, every, name, 1, "shards-cluster-one", work))
        note = f"{SHARDS}-primary cluster, S = {SHARDS}"
        scrape_rows.append(scrape_time(workdir, bootstrap, cluster, orgs, scrapes, shards=SHARDS, note=note))
        if not smoke:
            note += ", producers keying events by org"
            row = scrape_time(workdir, bootstrap, cluster, orgs, scrapes, shards=SHARDS, note=note, keyed_by_org=True)
            scrape_rows.append(row)
    finally:
        cluster.stop()
    return rows, scrape_rows


def section(
    workdir: Path, bootstrap: str, smoke: bool, events: int | None = None, orgs: int | None = None, scrapes: int = 200
) -> str:
    events = 2_000 if smoke else events or 250_000
    orgs, scrapes = (300, 10) if smoke else (orgs or 10_000, scrapes)
    rows, scrape_rows = measure(workdir, bootstrap, events, orgs, scrapes, smoke)
    head = (
        f"Sharded state, the worst case: {events:,} raw events, every one a user new to the day, folded from a "
        f"backlog by one sidecar ({PARTITIONS} partitions); Redis CPU per event of each primary from /proc "
        "(no replicas). The busiest primary is set against the one Redis of the first row."
    )
    scrape = ["| target | measured | goal | verdict |", "|---|---|---|---|", *scrape_rows]
    return "\n".join([head, "", table(rows), "", *scrape])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--events", type=int, default=250_000, help="raw events per row")
    p.add_argument("--orgs", type=int, default=10_000, help="orgs in the scrape rows")
    p.add_argument("--scrapes", type=int, default=200)
    p.add_argument("--smoke", action="store_true", help="a few thousand events, the rows compared only")
    args = p.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="ecomind-cluster-"))
    broker = LocalKafka(workdir / "kafka").start()
    try:
        print(section(workdir, broker.bootstrap, args.smoke, args.events, args.orgs, args.scrapes))
    finally:
        broker.stop()


if __name__ == "__main__":
    main()
