"""Other releases beside this one in the exporter search: the last build before the shared lease, and this
release built with another key layout.

The old build (the parent of 31c0ac1, which brought the shared lease) is its own code, read from git when a
schedule first needs it, not a model of it: its lease scripts (`_LEASE_LUA`, `_RELEASE_LUA`) and the
methods that hold, read and release the lease (tables/store.py), the Sidecar's lease loop, export
decision and stop (streams/sidecar.py), and its key names (tables/keys.py, whole). Importing that commit's
modules would bring its whole package (the tap, the tables, aiokafka clients) and clash with this one's
names, so the few definitions are taken out of its files' syntax trees and compiled as they stand, in a
namespace whose `time.time` is the simulation's clock; the rest of the Sidecar (the tap, the eviction
check, the snapshot after the decision) is left out. CI clones the whole history, as
tests/integration/test_upgrade.py needs too; a checkout without that commit stops the search with a
message saying so rather than skip the scenario. tests/unit/sim/test_exporter_simulator.py runs its lease
scripts on both simulated keyspaces alike, and one replica of it through a take, its wait and its stop.

Its scripts run on the simulated keyspace (tests/sim/lease_keyspace.py, which has GET, SET PX, PEXPIRE and
DEL on Redis's virtual clock). Its one setting that matters, `STREAMS_EXPORTER_HANDOVER_SECONDS` (the wait
after taking the lease), is given what its own hand-overs need: the target's series stay up to 2.2 scrape
intervals after its last scrape when discovery drops it at SIGTERM. With less, that build double-counts
in hand-overs between its own replicas, which no later release can change.

A replica of another layout is this release's code built with `tables.keys.LAYOUT_VERSION` one apart, as
tests/integration/test_upgrade.py builds 0.1.0 with its layout lowered: its lease keys must be the same
ones (a replica allowed to rebuild, `STREAMS_LAYOUT_UPGRADE=reread`, takes part in the lease).
"""

from __future__ import annotations
import __future__

import ast
import asyncio
import contextlib
import copy
import enum
import functools
import logging
import subprocess
import sys
import types
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, Protocol

from redis.exceptions import RedisError

import tables.keys
from core.deadline import Deadline
from streams.exporter import Exporter
from tables.lease import LeaseStore

OLD_COMMIT = "5186164f7aeba425306c1b65b7b744ef9433eaab"  # 31c0ac1^: the last build before the shared lease
OLD, THIS = "old", "this"  # releases; a layout apart: "layout N"
APP = "sim"
ROOT = Path(__file__).resolve().parents[2]


class Exporting(Protocol):
    """What the search drives of a replica's exporter, whichever release it runs."""

    @property
    def held(self) -> bool: ...

    async def run(self) -> None: ...

    async def serves(self, scraper: str | None) -> bool: ...

    async def hand_over(
        self, budget: Deadline | float, meanwhile: Awaitable[None], rounds: asyncio.Task[None] | None
    ) -> None: ...


def releases() -> tuple[str, ...]:
    return (OLD, THIS, f"layout {tables.keys.LAYOUT_VERSION - 1}", f"layout {tables.keys.LAYOUT_VERSION + 1}")


def build(
    release: str, rid: str, client: Any, ttl_s: float, fallback_s: float, interval_s: float, clock: Callable[[], float]
) -> Exporting:
    """A replica's exporter as `release` runs it; `interval_s` the real scrape interval, for the old build's wait."""
    if release == OLD:
        return OldExporter(client, rid, ttl_s, 2.2 * interval_s + 1.0, clock)
    with _layout(int(release.removeprefix("layout ")) if release != THIS else tables.keys.LAYOUT_VERSION):
        return Exporter(LeaseStore(client, APP), rid, ttl_s, fallback_s, clock)


@contextlib.contextmanager
def _layout(version: int) -> Iterator[None]:
    """This release's code as a build of layout `version` sees it while it sets up its stores."""
    kept = tables.keys.LAYOUT_VERSION
    tables.keys.LAYOUT_VERSION = version
    try:
        yield
    finally:
        tables.keys.LAYOUT_VERSION = kept


# The old build ------------------------------------------------------------------------------------------
def _git_show(path: str) -> str:
    try:
        found = subprocess.run(
            ["git", "-C", str(ROOT), "show", f"{OLD_COMMIT}:{path}"], capture_output=True, text=True, check=True
        )
    except (OSError, subprocess.CalledProcessError) as exc:
        raise RuntimeError(
            f"the exporter search runs the build before the shared lease from git ({OLD_COMMIT[:7]}:{path}); "
            "this checkout lacks it: fetch the whole history (`git fetch --unshallow`)"
        ) from exc
    return found.stdout


def _members(tree: ast.Module, names: set[str], within: str | None = None) -> list[ast.stmt]:
    body = tree.body
    if within is not None:
        body = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == within).body
    found: list[ast.stmt] = [
        n
        for n in body
        if (isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef) and n.name in names)
        or (isinstance(n, ast.Assign) and any(isinstance(t, ast.Name) and t.id in names for t in n.targets))
    ]
    missing = names - {
        ast.unparse(n.targets[0]) if isinstance(n, ast.Assign) else getattr(n, "name", "") for n in found
    }
    if missing:
        raise RuntimeError(f"{OLD_COMMIT[:7]} has no {sorted(missing)}: tests/sim/releases.py reads another build")
    return found


def _class(tree: ast.Module, name: str, members: list[ast.stmt]) -> ast.ClassDef:
    """The class `name` of `tree` with only `members` (no bases, no decorators: none of the old two has any)."""
    (found,) = _members(tree, {name})
    assert isinstance(found, ast.ClassDef) and not found.bases and not found.decorator_list
    cut = copy.copy(found)
    cut.body = members
    return cut


def _decision(sidecar: ast.Module) -> ast.AsyncFunctionDef:
    """`exporting_snapshot` up to its decision, which then answers True: what it reads after is the tables."""
    (snapshot,) = _members(sidecar, {"exporting_snapshot"}, within="Sidecar")
    assert isinstance(snapshot, ast.AsyncFunctionDef)
    body = [s for s in snapshot.body if not (isinstance(s, ast.Expr) and isinstance(s.value, ast.Constant))]
    decided = next(i for i, s in enumerate(body) if isinstance(s, ast.If) and "self.exporting(" in ast.unparse(s))
    decides = copy.copy(snapshot)
    decides.name, decides.returns = "decides", None
    decides.body = [*body[: decided + 1], ast.Return(value=ast.Constant(value=True))]
    return decides


@functools.cache
def _old_code() -> types.CodeType:
    store, sidecar = ast.parse(_git_show("tables/store.py")), ast.parse(_git_show("streams/sidecar.py"))
    module = ast.Module(
        body=[
            *_members(store, {"_LEASE_LUA", "_RELEASE_LUA", "Lease"}),
            _class(store, "RedisStore", _members(store, {"hold_lease", "lease_holder", "release_lease"}, "RedisStore")),
            *_members(sidecar, {"REDIS_ERRORS"}),
            _class(
                sidecar,
                "Sidecar",
                [
                    *_members(sidecar, {"stop", "_run_lease", "_lease_round", "exporting"}, "Sidecar"),
                    _decision(sidecar),
                ],
            ),
        ],
        type_ignores=[],
    )
    ast.fix_missing_locations(module)
    flags = __future__.annotations.compiler_flag
    code: types.CodeType = compile(module, f"{OLD_COMMIT[:7]}:tables/store.py+streams/sidecar.py", "exec", flags, True)
    return code


@functools.cache
def _old_keys() -> types.ModuleType:
    """The old tables/keys.py, whole, as a module of its own (a dataclass looks its module up)."""
    module = sys.modules["_old_release_keys"] = types.ModuleType("_old_release_keys")
    exec(
        compile(_git_show("tables/keys.py"), f"{OLD_COMMIT[:7]}:tables/keys.py", "exec", dont_inherit=True),
        module.__dict__,
    )
    return module


@functools.cache
def old_lease_lua() -> str:
    """The old build's lease script, as its RedisStore registers it."""
    script: str = old_namespace(lambda: 0.0)["_LEASE_LUA"]
    return script


def old_namespace(clock: Callable[[], float]) -> dict[str, Any]:
    """The old build's lease code, its `time.time` the simulation's clock."""
    namespace: dict[str, Any] = {
        "__name__": "old_release",
        "asyncio": asyncio,
        "enum": enum,
        "time": types.SimpleNamespace(time=clock),
        "log": logging.getLogger("old_release"),
        "RedisError": RedisError,
        "Keys": _old_keys().Keys,
    }
    exec(_old_code(), namespace)
    return namespace


class _Tap:
    def __init__(self, drain: Awaitable[None]) -> None:
        self.drain = drain

    async def stop(self) -> None:
        await self.drain


async def _nothing() -> None:
    pass


class OldExporter:
    """One replica of the old build: its Sidecar's lease loop, export decision and stop, on `client`."""

    def __init__(self, client: Any, rid: str, ttl_s: float, handover_s: float, clock: Callable[[], float]) -> None:
        old = old_namespace(clock)
        store = old["RedisStore"]()
        # What its RedisStore.__init__ does for the lease.
        store.client, store.keys = client, old["Keys"](APP)
        store._lease, store._release = (
            client.register_script(old["_LEASE_LUA"]),
            client.register_script(old["_RELEASE_LUA"]),
        )
        store.close = _nothing
        self.sidecar = sidecar = old["Sidecar"]()
        sidecar.settings = types.SimpleNamespace(
            leader_lease_seconds=ttl_s, exporter_handover_seconds=handover_s, shutdown_timeout_seconds=20.0
        )
        sidecar.status = types.SimpleNamespace(replica_id=rid, leader=False, exporter_since_s=None, redis_ok=False)
        sidecar.store, sidecar.agent, sidecar.probe, sidecar._tasks = store, None, None, []
        sidecar._check_eviction_policy = _nothing

    @property
    def held(self) -> bool:
        return bool(self.sidecar.status.leader)

    async def run(self) -> None:
        await self.sidecar._run_lease()

    async def serves(self, scraper: str | None) -> bool:
        return bool(await self.sidecar.decides())

    async def hand_over(
        self, budget: Deadline | float, meanwhile: Awaitable[None], rounds: asyncio.Task[None] | None
    ) -> None:
        """Its own stop: the lease loop cancelled, then the tap's drain (still exporting), then the release."""
        self.sidecar._tasks = [rounds] if rounds is not None else []
        self.sidecar.agent = _Tap(meanwhile)
        await self.sidecar.stop()
