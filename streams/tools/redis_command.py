"""One Redis command on the state's Redis, reached as the sidecar reaches it (any topology REDIS_URL names,
its passwords and TLS files): the runbook's `sredis`, for images without redis-cli.

    python -m streams.tools.redis_command HGETALL '{ecomind-streams}:exporter'

In a Redis Cluster, a command with a key goes to the primary of its slot. Exit codes: 0 answered,
1 Redis failed or refused, 2 a bad setting.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Sequence

from redis.exceptions import RedisError

from streams import clients
from streams.env_reader import SettingsError
from streams.settings import Settings


async def _run(settings: Settings, args: Sequence[str]) -> object:
    client = clients.redis_client(settings)
    try:
        return await client.execute_command(*args)  # type: ignore[no-untyped-call]
    finally:
        await client.aclose()


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args:
        print(__doc__, file=sys.stderr)
        return 2
    try:
        settings = Settings.from_env()
    except SettingsError as exc:
        print(f"invalid setting: {exc}", file=sys.stderr)
        return 2
    try:
        print(asyncio.run(_run(settings, args)))
    except (RedisError, OSError) as exc:
        print(f"Redis failed: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
