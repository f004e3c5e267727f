"""Key layouts from the command line: which layout Redis holds, and removing a layout's keys.

    python -m streams.tools.layout status [--app-id X]
    python -m streams.tools.layout purge-layout --app-id X --layout N [--dry-run]

Redis is REDIS_URL (and REDIS_PASSWORD), as the sidecar reads them; the app id defaults to STREAMS_APP_ID.
UPGRADING.md says when to run which. Exit codes: 0 done, 1 refused, 2 a bad argument or setting.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence

from redis.exceptions import RedisError, ResponseError

from streams import clients
from streams.env_reader import SettingsError, check_name
from streams.settings import Settings
from tables.keys import LAYOUT_VERSION
from tables.layout import PurgeRefused, bad_marker, marker_key, members_key, offsets_key, purge, wrong_types


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
        print(f"layout in use (marker {marker_key(app_id)}): {in_use}")
        if marked is not None and not in_use.isdigit():
            print(f"layout problem: {bad_marker(app_id, marked)}", file=sys.stderr)
            return 1
        for layout in range(LAYOUT_VERSION + 3, 0, -1):
            if await client.exists(offsets_key(app_id, layout)):
                print(f"layout {layout}: state present ({offsets_key(app_id, layout)})")
        running = await client.hgetall(members_key(app_id))
        for replica, record in sorted(running.items()):
            layout_of = (record.decode() if isinstance(record, bytes) else record).split(":")[0]
            name = replica.decode() if isinstance(replica, bytes) else replica
            print(f"replica {name}: layout {layout_of} (seen lately)")
    finally:
        await client.aclose()
    return 0


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
