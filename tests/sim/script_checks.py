"""Direct checks of the batch script's refusals, for what the simulator's schedules cannot tell.

The simulator's Redis holds what the tap wrote, on one node (with `Faults.foreign_values`, also a foreign
value now and then, where a script that writes part of a batch is seen counting it twice). It has no
label set at its cap, no re-created topic, no cluster, and its checker sees exactness only: not a
refusal that a later read turns into a script error before any write, nor an EXPIRE that Redis lets
through on a key of another type. Each check here takes a script's source (the real one, or a mutant
of it: tests/sim/mutants.py), runs it in the simulator's Lua (tests/sim/lua_redis.py) on real batches
the simulator wrote (their payloads and the keyspace each met), with one such value planted, and raises
AssertionError where the script does not keep its contract:

- refused whole: a planted value makes the script answer a refusal (reply 0, 2, 3, 4, 5 or 6) and leave
  the keyspace as it was, never write part and fail (Redis keeps what a script wrote before an error);
- offsets last: every write of the offsets hash comes after every other write, so that a failure
  between them can never leave the offsets ahead of the state;
- label caps: a label set at its cap admits no value, and the overflow value is never admitted.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from functools import cache
from typing import Any

import orjson
from redis.exceptions import ResponseError

from tests.sim.keyspace import WRITES, Keyspace
from tests.sim.lua_redis import Scripts
from tests.sim.store_redis import SimRedis
from tests.sim.world import PROFILES, simulate

# Schedules whose accepted writes are the batches checked: among them every section of the payload, and
# (seed 24) a key only the expire section names (a day's set whose members the writer knew were there).
SEEDS = (0, 1, 2, 3, 6, 24)
REFUSALS = frozenset({0, 2, 3, 4, 5, 6})
# 19 digits: a number HINCRBY reads, and one an increment would overflow.
NEAR_MAX = "9223372036854775807"


@dataclass(frozen=True)
class Batch:
    data: dict[str, Any]
    expires_ms: dict[str, int]
    now_s: float
    keys: list[str]
    args: list[Any]

    @property
    def payload(self) -> dict[str, Any]:
        loaded: dict[str, Any] = orjson.loads(self.args[0])
        return loaded


class _Node(Keyspace):
    """The keyspace a batch met, recording the script's writes; with `nodes`, a cluster node whose
    CLUSTER NODES answers that text (None: the Redis user may not run it)."""

    def __init__(self, batch: Batch, nodes: str | None = "") -> None:
        super().__init__(lambda: batch.now_s)
        self.data, self.expires_ms = copy.deepcopy(batch.data), dict(batch.expires_ms)
        self.nodes = nodes
        self.writes: list[str] = []

    def run(self, command: str, a: Sequence[str]) -> Any:
        # `run`, not `call`: the Lua bridge sends every redis.call here, its arguments already text.
        if command.upper() == "CLUSTER":
            if self.nodes is None:
                raise ResponseError("NOPERM User sidecar has no permissions to run the 'cluster|nodes' command")
            return self.nodes
        if command.upper() in WRITES:
            self.writes.append(a[0])
        return super().run(command, a)


@cache
def batches() -> tuple[Batch, ...]:
    """The writes Redis accepted in SEEDS' schedules, each with the keyspace just before it."""
    logging.disable(logging.CRITICAL)
    found: list[Batch] = []
    apply = SimRedis.apply

    def recording(self: SimRedis, source: str, keys: list[str], args: list[Any]) -> Any:
        data = {k: copy.deepcopy(v) for k, v in self.keyspace.data.items() if not k.startswith("__sim_")}
        before = Batch(data, dict(self.keyspace.expires_ms), self.world.now_s(), list(keys), list(args))
        reply = apply(self, source, keys, args)
        if reply and reply[0] == 1:
            found.append(before)
        return reply

    SimRedis.apply = recording  # type: ignore[method-assign]
    try:
        for seed in SEEDS:
            simulate(seed, steps=40, faults=PROFILES[seed % len(PROFILES)])
    finally:
        SimRedis.apply = apply  # type: ignore[method-assign]
    return tuple(found)


def _run(source: str, node: _Node, batch: Batch, args: list[Any] | None = None) -> Any:
    return Scripts(node, shared=True).run(source, batch.keys, batch.args if args is None else args)


def _written(source: str, batch: Batch) -> tuple[dict[str, type], list[str]]:
    """The keys a batch writes (with their type after it) and its writes in order, on the real script."""
    node = _Node(batch)
    reply = _run(source, node, batch)
    assert reply[0] == 1, f"the batch was accepted in the simulator, here {reply}"
    return {k: type(node.data[k]) for k in node.writes if k in node.data}, node.writes


def _marker(batch: Batch) -> str:
    """The write-in-progress marker, as the script names it after its KEYS[1] (tables/keys.py Keys.writing)."""
    return batch.keys[0] + ":writing"


def _put(key: str | None, value: Any, field: str | None = None) -> Callable[[_Node], None]:
    """What a check plants: `value` as the key's whole value, or as one field of its hash (None: nothing)."""

    def plant(node: _Node) -> None:
        if key is not None and field is None:
            node.data[key] = value
        elif key is not None:
            node.data.setdefault(key, {})[field] = value

    return plant


def _refused_whole(
    source: str,
    batch: Batch,
    plant: Callable[[_Node], None],
    what: str,
    nodes: str | None = "",
    args: list[Any] | None = None,
) -> None:
    node = _Node(batch, nodes)
    plant(node)
    before = (copy.deepcopy(node.data), dict(node.expires_ms))
    try:
        reply = _run(source, node, batch, args)
    except ResponseError as exc:
        raise AssertionError(f"{what}: the script failed ({exc}) instead of refusing") from None
    assert reply and reply[0] in REFUSALS, f"{what}: the script answered {reply}, not a refusal"
    assert (node.data, node.expires_ms) == before, f"{what}: refused ({reply}) but wrote"


def _numeric_fields(
    p: dict[str, Any], written: dict[str, type], before: dict[str, Any], after: dict[str, Any]
) -> Iterator[tuple[str, str, bool]]:
    """(key, field, incremented) of every stored value the batch increments or compares."""
    for key, f, *_ in p["hincr"]:
        yield key, f, True
    for key, f, *_ in p["amount"]:
        yield key, f, True
        yield key + p["lo"], f, True
    for _, org_key, _, runs, _ in p["usersadd"]:
        for org, _ in runs:
            yield org_key, org, True
    for key, f, _ in p["hmax"]:
        yield key, f, False
    w = p["win"]
    if w:
        yield w["state"], "sweep", False
        pair_prefixes = tuple(s[1] for s in w["subjects"])
        for key in written:
            if key.startswith(pair_prefixes):
                was = before.get(key, {})
                yield from ((key, f, True) for f, n in after.get(key, {}).items() if was.get(f) != n)


def check_refused_whole(source: str) -> None:
    """Every key the batch writes holding another type, every value it increments or compares not a
    number (or too long to add to), the window bucket the sweep reads holding another type or a day
    list that is not one: refused whole."""
    original = _original()
    for batch in batches():
        written, _ = _written(original, batch)
        p = batch.payload
        marker = _marker(batch)  # deleted by a whole run, so not among `written`
        for key, kind in [*written.items(), (marker, str)]:
            wrong: Any = {"f": "1"} if kind is str else "planted"
            _refused_whole(source, batch, _put(key, wrong), f"{key} of another type")
        after = _Node(batch)
        _run(original, after, batch)
        for key, f, incremented in _numeric_fields(p, written, batch.data, after.data):
            for bad in ("x1", NEAR_MAX) if incremented else ("x1",):
                _refused_whole(source, batch, _put(key, bad, f), f"{key} field {f} holding {bad}")
        w = p["win"]
        if w:
            cursor = int(batch.data.get(w["state"], {}).get("sweep", "0"))
            for prefix, *_ in w["subjects"]:
                bucket = f"{prefix}{cursor}"  # the sweep reads it whether the batch writes it or not
                _refused_whole(source, batch, _put(bucket, "planted"), f"{bucket} a string")
                _refused_whole(source, batch, _put(bucket, "not-a-day", "planted"), f"{bucket} holding a bad list")


def check_offsets_and_ids(source: str) -> None:
    """A stored offset or topic ID other than the one the batch expects: refused whole."""
    for batch in batches():
        for field, expected, _ in batch.payload["off"]:
            stored = "planted-id" if field.endswith(":id") else str(int(expected or "0") + 7)
            _refused_whole(
                source, batch, _put(batch.keys[0], stored, field), f"stored {field} {stored}, expected {expected!r}"
            )


def check_lineage(source: str) -> None:
    """The writer's lineage count not the one it expects (Redis lost some of its writes): refused whole."""
    for batch in batches():
        key, expected, *_ = batch.payload["lineage"]
        if expected:
            _refused_whole(source, batch, _put(key, "0"), f"lineage {key} at 0")


def check_cluster_slot(source: str) -> None:
    """In a cluster (ARGV[2], the state's slot): the slot moving either way, or CLUSTER NODES not allowed."""
    batch = batches()[0]
    args = [*batch.args, "1234"]
    me = "0f1e myself,master - 0 0 1 connected 0-5460"
    for nodes in (f"{me} [1234->-9a8b]\n", f"{me} [1234-<-9a8b]\n", None):
        _refused_whole(source, batch, _put(None, ""), f"CLUSTER NODES {nodes!r}", nodes=nodes, args=args)
    reply = _run(source, _Node(batch, nodes=f"{me} [99->-9a8b]\n"), batch, args)
    assert reply[0] == 1, f"another slot moving refused the batch: {reply}"


def check_offsets_last(source: str) -> None:
    """The write-in-progress marker is the batch's first write and its last; the offsets hash is written
    after every other write."""
    for batch in batches():
        node = _Node(batch)
        _run(source, node, batch)
        marker = _marker(batch)
        assert node.writes[0] == node.writes[-1] == marker, f"writes {node.writes}: not between the marker's"
        writes = node.writes[1:-1]
        last_other = max((i for i, k in enumerate(writes) if k != batch.keys[0]), default=-1)
        first_offset = min((i for i, k in enumerate(writes) if k == batch.keys[0]), default=len(writes))
        assert last_other < first_offset, f"writes {node.writes}: the offsets are not written last"
        assert marker not in node.data, "a whole batch left its marker"


class _Stopping(_Node):
    """A node whose `stop_at`-th write (0: the first) fails as a command the Redis user may not run."""

    def __init__(self, batch: Batch, stop_at: int) -> None:
        super().__init__(batch)
        self.stop_at = stop_at

    def run(self, command: str, a: Sequence[str]) -> Any:
        if command.upper() in WRITES and len(self.writes) == self.stop_at:
            raise ResponseError("ERR The user executing the script can't run this command or subcommand")
        return super().run(command, a)


def check_stopped_halfway(source: str) -> None:
    """A script stopped by an error at any write after its first leaves the marker, and then every batch
    is refused with nothing written (reply 7); stopped at its first write, it wrote nothing."""
    for batch in batches()[:8]:
        whole = _Node(batch)
        _run(source, whole, batch)
        marker = _marker(batch)
        for stop_at in sorted({0, 1, len(whole.writes) // 2, len(whole.writes) - 2, len(whole.writes) - 1}):
            node = _Stopping(batch, stop_at)
            try:
                _run(source, node, batch)
            except Exception:  # the script's error, as Redis answers it
                pass
            else:
                raise AssertionError(f"a write refused at {stop_at} did not stop the script")
            if stop_at == 0:
                assert node.data == batch.data, "stopped at its first write, the script wrote something"
                continue
            assert marker in node.data, f"stopped at write {stop_at} of {whole.writes}, no marker left"
            node.stop_at, before = -1, copy.deepcopy(node.data)
            node.writes.clear()
            reply = _run(source, node, batch)
            assert reply[0] == 7 and not node.writes, f"after a batch stopped halfway: {reply}, wrote {node.writes}"
            assert node.data == before


def check_label_caps(source: str) -> None:
    """A label set at its cap admits nothing more; the overflow value is never admitted."""
    for batch in batches():
        p = batch.payload
        for i, (key, cap, _values) in enumerate(p["admit"]):
            full = {f"planted{j}" for j in range(int(cap))}
            node = _Node(batch)
            node.data[key] = set(full)
            _run(source, node, batch)
            assert node.data[key] == full, f"{key} at its cap {cap} admitted {sorted(node.data[key] - full)}"
            other = copy.deepcopy(p)
            other["admit"][i][2] = [p["other"], *other["admit"][i][2]]
            node = _Node(batch)
            _run(source, node, batch, [orjson.dumps(other).decode(), *batch.args[1:]])
            assert p["other"] not in node.data.get(key, set()), f"{key} admitted {p['other']}"


CHECKS: dict[str, Callable[[str], None]] = {
    "refused-whole": check_refused_whole,
    "offsets-and-ids": check_offsets_and_ids,
    "lineage": check_lineage,
    "cluster-slot": check_cluster_slot,
    "offsets-last": check_offsets_last,
    "stopped-halfway": check_stopped_halfway,
    "label-caps": check_label_caps,
}


def _original() -> str:
    from tables.script import APPLY_LUA

    return APPLY_LUA


def first_failure(source: str) -> tuple[str, str] | None:
    """The first check `source` fails, and how; None when it passes them all."""
    for name, check in CHECKS.items():
        try:
            check(source)
        except AssertionError as exc:
            return name, str(exc).splitlines()[0] if str(exc) else "failed"
    return None
