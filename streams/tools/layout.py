"""Key layouts from the command line: which layout Redis holds, and removing a layout's keys.

    python -m streams.tools.layout status [--app-id X]
    python -m streams.tools.layout purge-layout --app-id X --layout N [--dry-run]

Redis is REDIS_URL (and REDIS_PASSWORD), as the sidecar reads them; the app id defaults to STREAMS_APP_ID.
Status lists, for sharded state (STREAMS_REDIS_SHARDS), each shard's hash tag, slot and primary, and warns
when shards share a primary. UPGRADING.md says when to run which. Exit codes: 0 done, 1 refused (status: a
marker no release writes, or a partial write refusing writes), 2 a bad argument or setting.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence
from typing import Any

from redis.exceptions import RedisError, ResponseError

from streams import clients
from streams.env_reader import SettingsError, check_name
from streams.settings import Settings
from streams.tools.shard_status import crowding, partial_writes, places, shards_with_state
from tables.keys import LAYOUT_VERSION
from tables.layout import bad_marker, marker_key, members_key, offsets_key, wrong_types
from tables.purge import PurgeRefused, purge
from tables.shards import parse_marker


async def _status(settings: Settings, app_id: str) -> int:
    client = clients.redis_client(settings)
    try:
        print(f"app id {app_id}: this release writes key layout {LAYOUT_VERSION}")
        try:
            marked = await client.get(marker_key(app_id))
        except ResponseError as exc:
            if not str(exc).startswith("WRONGTYPE"):
                raise
            print(f"layout problem: {await wrong_types(client, [marker_key(app_id)])}", file=sys.stderr)
            return 1
        in_use = "none yet" if marked is None else marked.decode() if isinstance(marked, bytes) else marked
        parsed = None if marked is None else parse_marker(in_use)
        kept = f" (layout {parsed[0]} in {parsed[1]} shards)" if parsed and parsed[1] > 1 else ""
        print(f"layout in use (marker {marker_key(app_id)}): {in_use}{kept}")
        problem = 0
        if marked is not None and parsed is None:
            print(f"layout problem: {bad_marker(app_id, marked)}", file=sys.stderr)
            problem = 1
        for layout in range(LAYOUT_VERSION + 3, 0, -1):
            if await client.exists(offsets_key(app_id, layout)):
                print(f"layout {layout}: state present ({offsets_key(app_id, layout)})")
        problem |= await _shards(client, settings, app_id, parsed)
        running = await client.hgetall(members_key(app_id))
        for replica, record in sorted(running.items()):
            layout_of = (record.decode() if isinstance(record, bytes) else record).split(":")[0]
            name = replica.decode() if isinstance(replica, bytes) else replica
            print(f"replica {name}: layout {layout_of} (seen lately)")
    finally:
        await client.aclose()
    return problem


async def _shards(client: Any, settings: Settings, app_id: str, parsed: tuple[int, int] | None) -> int:
    """Where each shard of the state in use lives (the count the marker names, else STREAMS_REDIS_SHARDS
    here), shards holding state, partial-write markers (1: writes are refused) and crowded primaries."""
    shards = parsed[1] if parsed and parsed[0] == LAYOUT_VERSION else settings.redis_shards
    if shards != settings.redis_shards:
        print(
            f"STREAMS_REDIS_SHARDS here is {settings.redis_shards}, the state is kept in {shards} shard(s): "
            "replicas set so refuse it (RUNBOOK.md, A shard count refused)"
        )
    held = await shards_with_state(client, app_id)
    found = await places(client, app_id, shards)
    for place in found:
        state = "" if place.shard < 0 else " (state present)" if place.shard in held else " (no state yet)"
        print(place.line() + state)
    if stray := [k for k in held if shards == 1 or k >= shards]:
        print(
            f"shard(s) {', '.join(map(str, stray))} hold state beside the {shards} shard(s) in use: left by another "
            f"shard count; only a rebuild removes it (`purge-layout --layout {LAYOUT_VERSION}` with every replica "
            "stopped deletes all of this layout's state: RUNBOOK.md, A shard count refused)",
            file=sys.stderr,
        )
    problem = 0
    for key, value, refuses in await partial_writes(client, app_id, shards):
        print(
            f"partial write: {key} holds {value!r}: {refuses} refused until an operator repairs it "
            "(RUNBOOK.md, StateWritesRefused)",
            file=sys.stderr,
        )
        problem = 1
    for warning in crowding(found):
        print(f"warning: {warning}", file=sys.stderr)
    return problem


async def _purge(settings: Settings, app_id: str, layout: int, dry_run: bool) -> int:
    client = clients.redis_client(settings)
    try:
        done = await purge(client, app_id, layout, dry_run)
    except PurgeRefused as exc:
        print(f"refused: {exc}", file=sys.stderr)
        return 1
    finally:
        await client.aclose()
    verb = "would delete" if dry_run else "deleted"
    print(f"layout {layout} of app id {app_id}: {verb} {done.keys} keys")
    if done.in_use == layout:
        verb = "would clear" if dry_run else "cleared"
        print(f"{verb} the marker {marker_key(app_id)}: the next replica to start claims it for its own layout")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m streams.tools.layout", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    status = commands.add_parser("status", help="the layout in use and the layouts whose state is in Redis")
    doomed = commands.add_parser("purge-layout", help="delete every key of a layout no replica runs")
    for command in (status, doomed):
        command.add_argument("--app-id", help="STREAMS_APP_ID of the replicas (default: that variable)")
    doomed.add_argument("--layout", type=int, required=True, help="the layout whose keys go")
    doomed.add_argument("--dry-run", action="store_true", help="count the keys, delete nothing")
    args = parser.parse_args(argv)
    try:
        settings = Settings.from_env()
    except SettingsError as exc:
        print(f"invalid setting: {exc}", file=sys.stderr)
        return 2
    app_id = args.app_id or settings.app_id
    if problem := check_name(app_id):
        print(f"--app-id {app_id!r}: expected {problem}", file=sys.stderr)
        return 2
    try:
        if args.command == "status":
            return asyncio.run(_status(settings, app_id))
        return asyncio.run(_purge(settings, app_id, args.layout, args.dry_run))
    except (RedisError, OSError) as exc:
        print(f"Redis failed: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
