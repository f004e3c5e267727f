"""The batch script's own check of a moving slot, on a real Redis Cluster, command by command: while the
state's slot is MIGRATING on its source and IMPORTING on its target, the script refuses on both sides
(reply 5, nothing written), run on the target under ASKING too; without the check (the negative control)
the same script run there creates the state's keys beside the source's copies, which is the split it
prevents. A Redis user that may not run CLUSTER NODES gets a named refusal (reply 6), never a skipped check.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
import redis
import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster
from redis.crc import key_slot
from redis.exceptions import RedisError

from streams.local.redis_topologies import LocalCluster
from tables.delta import Delta
from tables.reads import Reads
from tables.script import APPLY_LUA
from tables.store import RedisStore
from tables.writes import ClusterStateHidden, OffsetMove, SlotMoving

pytestmark = pytest.mark.integration
APP = "slot-check"


@pytest.fixture(scope="module")
def cluster(workdir: Path) -> Iterator[LocalCluster]:
    setup = LocalCluster(workdir / "slot-check-cluster").start()
    yield setup
    setup.stop()


def _delta(n: int) -> Delta:
    delta = Delta()
    delta.processed["raw"] += n
    return delta


def _store(port: int, slot: str | None, username: str | None = None) -> RedisStore:
    """A store on one node over one connection, so that ASKING and the script share it."""
    client = aioredis.Redis(
        port=port,
        decode_responses=True,
        single_connection_client=True,
        username=username,
        password="pw" if username else None,
    )
    store = RedisStore(client, APP, days_kept=2)
    store._slot = slot  # what a cluster client's store sets (tables/store.py); these talk to one node
    return store


def _asking(node: redis.Redis, *command: object) -> object:
    """A command on a node that imports the slot: only served right after ASKING, on the same connection."""
    pipe = node.pipeline(transaction=False)
    pipe.execute_command("ASKING")
    pipe.execute_command(*command)
    return pipe.execute()[1]


def test_a_moving_slot_is_refused_on_both_sides_and_a_hidden_cluster_state_is_named(cluster: LocalCluster) -> None:
    offsets = f"{{{APP}}}:v3:offsets"
    slot = str(key_slot(offsets.encode()))
    source = cluster.primary_of(offsets)
    target = next(n for n in cluster.primaries() if n.port != source.port)
    src, dst = source.client(None), target.client(None)

    async def run() -> None:
        home = _store(source.port, slot)
        await home.apply(_delta(5), [OffsetMove("raw", 0, None, 5)])
        assert src.hgetall(f"{{{APP}}}:v3:processed") == {"raw": "5"}

        # A user without +cluster|nodes: refused by name, nothing written.
        for node in (src, dst):
            node.acl_setuser(
                "narrow", enabled=True, passwords=["+pw"], keys=["*"],
                commands=["+@read", "+@write", "+@scripting", "+@connection", "+cluster|slots", "+cluster|myid"],
            )  # fmt: skip
        narrow = _store(source.port, slot, username="narrow")
        with pytest.raises(ClusterStateHidden) as raised:
            await narrow.apply(_delta(1), [OffsetMove("raw", 1, None, 1)])
        assert raised.value.reason == "cluster_nodes_refused" and "can't run this command" in raised.value.detail
        assert src.hget(offsets, "raw:1") is None
        await narrow.client.aclose()

        dst.execute_command("CLUSTER", "SETSLOT", slot, "IMPORTING", src.execute_command("CLUSTER", "MYID"))
        src.execute_command("CLUSTER", "SETSLOT", slot, "MIGRATING", dst.execute_command("CLUSTER", "MYID"))
        with pytest.raises(SlotMoving):  # the source side: [slot->-target] in its CLUSTER NODES
            await home.apply(_delta(7), [OffsetMove("raw", 0, 5, 12)])
        src.execute_command("MIGRATE", "127.0.0.1", target.port, offsets, 0, 5000)  # the offsets key first

        sha = dst.script_load(APPLY_LUA)  # else EVALSHA's NOSCRIPT would use up the ASKING before the script runs
        away = _store(target.port, slot)
        await away.client.execute_command("ASKING")
        with pytest.raises(SlotMoving):  # the target side, under ASKING: [slot-<-source]
            await away.apply(_delta(7), [OffsetMove("raw", 0, 5, 12)])
        assert dst.keys(f"{{{APP}}}:*") == [offsets], "nothing written on the target"

        # Negative control: the same script without the slot runs there and writes a second `processed`.
        payload = orjson.dumps(home.build_payload(_delta(7), [OffsetMove("raw", 0, 5, 12)]))
        pipe = dst.pipeline(transaction=False)  # one connection: ASKING holds for the script after it
        pipe.execute_command("ASKING")
        pipe.evalsha(sha, 1, offsets, payload)
        assert pipe.execute()[1][0] == 1
        assert _asking(dst, "HGETALL", f"{{{APP}}}:v3:processed") == {"raw": "7"}  # the split the check prevents
        assert src.hgetall(f"{{{APP}}}:v3:processed") == {"raw": "5"}

        for store in (home, away):
            await store.client.aclose()

    asyncio.run(run())


def test_the_scrape_read_never_reads_a_moving_slot(cluster: LocalCluster) -> None:
    """The read script declares only its first key (tables/reads.py): while the slot moves, a read routed to
    the target under ASKING would find only the keys already moved there, and one routed to the source would
    meet the moved ones missing. It answers TRYAGAIN on both sides instead, and reads whole again once moved."""
    tag = "{read-check}"
    keys = [f"{tag}:v3:processed", f"{tag}:v3:org:o1", f"{tag}:v3:org:o2"]
    slot = str(key_slot(keys[0].encode()))
    assert slot != str(key_slot(f"{{{APP}}}".encode())), "a slot of its own, apart from the other test's"
    source = cluster.primary_of(keys[0])
    target = next(n for n in cluster.primaries() if n.port != source.port)
    src, dst = source.client(None), target.client(None)
    for key in keys:
        src.hset(key, mapping={"f": "7"})

    async def read(client: RedisCluster, order: list[str]) -> list[object]:
        reads = Reads()
        for key in order:
            reads.hgetall(key)
        return await reads.execute(client)  # type: ignore[arg-type]

    async def run() -> None:
        client = RedisCluster("127.0.0.1", source.port, decode_responses=True)
        assert await read(client, keys) == [{"f": "7"}] * 3
        src_id, dst_id = src.execute_command("CLUSTER", "MYID"), dst.execute_command("CLUSTER", "MYID")
        dst.execute_command("CLUSTER", "SETSLOT", slot, "IMPORTING", src_id)
        src.execute_command("CLUSTER", "SETSLOT", slot, "MIGRATING", dst_id)
        with pytest.raises(RedisError, match=r"TTL exhausted|TRYAGAIN|is moving"):  # the source side
            await read(client, keys)
        src.execute_command("MIGRATE", "127.0.0.1", target.port, "", 0, 5000, "KEYS", keys[0])
        with pytest.raises(RedisError, match=r"TTL exhausted|TRYAGAIN|is moving"):  # ASK to the target
            await read(client, keys)
        with pytest.raises(RedisError):  # the first key still on the source, a later one moved
            await read(client, [keys[1], keys[0], keys[2]])
        src.execute_command("MIGRATE", "127.0.0.1", target.port, "", 0, 5000, "KEYS", *keys[1:])
        for node in (dst, src):
            node.execute_command("CLUSTER", "SETSLOT", slot, "NODE", dst_id)
        assert await read(client, keys) == [{"f": "7"}] * 3
        await client.aclose()

    asyncio.run(run())
