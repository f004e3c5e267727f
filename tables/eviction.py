"""Redis's maxmemory-policy as the state needs it: noeviction wherever the state's keys live or may move.

In a Redis Cluster each primary evicts its own keys, and a reshard may move the state's slot to any of
them, so every primary is asked. The primary holding the state's slot must answer (its error is raised:
unknown is not safe); another primary that does not answer in time is left out and named, so that a
shard the app does not use, down and not failed over, cannot make every replica unready.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from redis.asyncio.cluster import RedisCluster
from redis.exceptions import RedisError

SAFE = "noeviction"
NODE_TIMEOUT_S = 2.0  # every primary at once: the check runs beside the lease rounds and must end soon


async def eviction_policy(client: Any, state_key: str | Sequence[str]) -> str:
    """ "noeviction", or the unsafe policy found (in a cluster, with the primary that has it). Sharded
    state names a key of each shard: every primary is still asked once, and each shard's must answer."""
    if not isinstance(client, RedisCluster):
        found = await client.config_get("maxmemory-policy")
        return str(found.get("maxmemory-policy", ""))
    await client.initialize()  # the slot map, once: the primaries are known after it
    keys = [state_key] if isinstance(state_key, str) else list(state_key)
    homes = {home.name for home in map(client.get_node_from_key, keys) if home is not None}
    nodes = sorted(client.get_primaries(), key=lambda n: n.name)

    async def ask(node: Any) -> str:
        found = await asyncio.wait_for(client.config_get("maxmemory-policy", target_nodes=node), NODE_TIMEOUT_S)
        return str(found.get("maxmemory-policy", ""))

    # At once, not one after another: a few silent primaries cost one timeout, not one each.
    answers = await asyncio.gather(*(ask(n) for n in nodes), return_exceptions=True)
    silent: list[str] = []
    for node, answer in zip(nodes, answers, strict=True):
        if isinstance(answer, BaseException):
            if not isinstance(answer, RedisError | OSError | TimeoutError) or node.name in homes:
                raise answer
            silent.append(node.name)
        elif answer != SAFE:
            return f"{answer} (primary {node.name})"
    # The state's primary and every other that answered are safe; those that did not are named.
    return SAFE if not silent else f"{SAFE} (not answering: {', '.join(silent)})"


def is_safe(policy: str) -> bool:
    return policy == SAFE or policy.startswith(f"{SAFE} (not answering")
