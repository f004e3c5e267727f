"""The compiled hot path against its Python sources, and the check that refuses a stale build.

The sources are the reference (core/compiled.py): here a second copy of each hot module is executed from
its .py file, and the modules the process imported (the mypyc build where ./scripts/compile made one)
must fold the benchmark's corpora and hostile payloads into the same Delta and the same Redis payload.
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from zoneinfo import ZoneInfo

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import agents.fold
import tables.windows
from bench.corpus import corpus, payload, read_records
from bench.workload_rows import ROWS
from core.calendar import DayCalendar
from core.compiled import (
    DIGEST_MODULE,
    GROUP,
    HOT_MODULES,
    ROOT,
    build_files,
    compiled_from,
    hot_path,
    source_path,
    stale_reason,
    state,
    write_digest_module,
)
from tables.delta import Delta
from tests.unit.agents.test_fold_decode import CALENDAR, DAYS_KEPT, Rec
from tests.unit.core.event_strategies import ENRICHED_FIELDS, FUTURE_MS, NOW_MS, RAW_FIELDS, payloads
from tests.unit.tables.delta_summary import delta_summary

# scripts/test builds the hot path first: there, a run on the sources alone would compare them with
# themselves, so it fails instead.
EXPECT_COMPILED = os.environ.get("ECOMIND_STREAMS_EXPECT_COMPILED") == "1"


def _pure() -> dict[str, ModuleType]:
    """Each hot module (and the store, which imports the windows) executed from its source, in import order."""
    saved = {name: sys.modules[name] for name in (*HOT_MODULES, "tables.store")}
    pure: dict[str, ModuleType] = {}
    try:
        for name in ("core.decode", "tables.windows", "agents.fold", "tables.store"):
            spec = importlib.util.spec_from_file_location(name, source_path(name))
            assert spec is not None and spec.loader is not None
            module = importlib.util.module_from_spec(spec)
            sys.modules[name] = module  # so that the next module's imports bind the pure copy
            spec.loader.exec_module(module)
            pure[name] = module
    finally:
        sys.modules.update(saved)
    return pure


PURE = _pure()


def _require_build() -> None:
    if hot_path() != "compiled":
        if EXPECT_COMPILED:
            pytest.fail(f"ECOMIND_STREAMS_EXPECT_COMPILED=1 but the hot path runs {hot_path()}: ./scripts/compile")
        pytest.skip("no compiled hot path in this checkout (./scripts/compile builds it)")


def test_the_pure_copies_run_from_source() -> None:
    assert all(Path(m.__file__ or "").suffix == ".py" for m in PURE.values())
    assert PURE["agents.fold"].raw_events is PURE["core.decode"].raw_events


def _fold_with(fold: ModuleType, raw_parts: list, enriched_parts: list) -> Delta:  # type: ignore[type-arg]
    calendar = DayCalendar(ZoneInfo("UTC"))
    ctx = fold.FoldContext(calendar, 1_759_838_400_000, 3, 600_000, 65_536)
    delta = Delta()
    for topic, fn, parts in (("raw", fold.fold_raw, raw_parts), ("enriched", fold.fold_enriched, enriched_parts)):
        for partition, records in enumerate(parts):
            fn(delta, topic, records, ctx, partition)
    return delta


@pytest.mark.parametrize("row", ROWS, ids=lambda r: r.key)
def test_the_build_folds_each_workload_row_as_the_sources_do(row) -> None:  # type: ignore[no-untyped-def]
    _require_build()
    raw_parts, enriched_parts = read_records(corpus(row, 400))
    built, pure = (
        _fold_with(agents.fold, raw_parts, enriched_parts),
        _fold_with(PURE["agents.fold"], raw_parts, enriched_parts),
    )
    assert delta_summary(built) == delta_summary(pure)
    assert sum(built.processed.values()) == 800
    # The payload too: the windows' section is compiled, the store around it is Python in both.
    store_pure = PURE["tables.store"]
    assert store_pure.window_section is PURE["tables.windows"].window_section
    assert tables.windows.window_section is not store_pure.window_section
    built_payload = payload(built, raw_parts, enriched_parts)
    pure_payload = payload(pure, raw_parts, enriched_parts, store_pure.RedisStore)
    assert orjson.loads(built_payload) == orjson.loads(pure_payload)
    assert built_payload == pure_payload


@given(
    raw=st.lists(st.one_of(payloads(RAW_FIELDS), st.none()), max_size=12),
    enriched=st.lists(st.one_of(payloads(ENRICHED_FIELDS), st.none()), max_size=12),
    max_bytes=st.sampled_from([65_536, 200, 64]),
)
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_the_build_answers_hostile_payloads_as_the_sources_do(raw: list, enriched: list, max_bytes: int) -> None:  # type: ignore[type-arg]
    _require_build()
    summaries = []
    for fold in (agents.fold, PURE["agents.fold"]):
        ctx = fold.FoldContext(CALENDAR, NOW_MS, DAYS_KEPT, FUTURE_MS, max_bytes)
        delta = Delta()
        fold.fold_raw(delta, "raw", [Rec(p) for p in raw], ctx, 0)
        fold.fold_enriched(delta, "enriched", [Rec(p) for p in enriched], ctx, 1)
        summaries.append((delta_summary(delta), [r.record.value for r in delta.rejections], delta.last_ts_ms))
    assert summaries[0] == summaries[1]


def _checkout(root: Path) -> None:
    for name in (*HOT_MODULES, "core.calendar"):
        path = source_path(name, root)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"# {name}\n")
    # A hot module's import: mypyc compiles against its types, so it is part of what the build came from.
    source_path("agents.fold", root).write_text("from core.calendar import DayCalendar\n")


def _build(root: Path, name: str) -> None:
    built = source_path(name, root).with_suffix(importlib.machinery.EXTENSION_SUFFIXES[0])
    built.parent.mkdir(parents=True, exist_ok=True)
    built.write_bytes(b"\x7fELF")


def test_a_build_is_current_only_while_every_source_it_was_compiled_from_is(tmp_path: Path) -> None:
    _checkout(tmp_path)
    assert compiled_from(tmp_path) == ["agents.fold", "core.calendar", "core.decode", "tables.windows"]
    assert state(tmp_path) == "python" and stale_reason(tmp_path) is None
    for name in (*HOT_MODULES, GROUP, DIGEST_MODULE):
        _build(tmp_path, name)
    write_digest_module(tmp_path)
    assert state(tmp_path) == "compiled"
    # An import of a hot module edited after the build: stale, though no hot module changed.
    source_path("core.calendar", tmp_path).write_text("# edited after the build\n")
    assert state(tmp_path) == "stale"
    assert stale_reason(tmp_path) == (
        "the compiled hot path does not match its sources (agents.fold, core.decode, tables.windows or what they "
        "import): run ./scripts/compile to rebuild it, or ./scripts/compile --clean to run the sources as written"
    )
    write_digest_module(tmp_path)  # rebuilt
    assert state(tmp_path) == "compiled"
    # A build without its digest (an old one, or one left by a module since dropped from the list).
    for path in build_files(tmp_path):
        if path.name.startswith("hot_path_build."):
            path.unlink()
    assert state(tmp_path) == "stale"
    for path in build_files(tmp_path):
        path.unlink()
    assert state(tmp_path) == "python"
    _build(tmp_path, "streams.web")  # any extension in the packages is a build to account for
    assert state(tmp_path) == "stale"


def test_the_worker_refuses_to_start_on_a_stale_build(tmp_path: Path) -> None:
    """A copy of the checkout with its build, a module the fold imports edited after it: the worker exits 2."""
    _require_build()
    for package in ("core", "agents", "tables", "streams"):
        shutil.copytree(ROOT / package, tmp_path / package, ignore=shutil.ignore_patterns("__pycache__"))
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    fresh = subprocess.run([sys.executable, "-m", "core.compiled"], cwd=tmp_path, env=env, capture_output=True)
    assert fresh.stdout.decode().startswith("hot path: compiled"), fresh.stdout + fresh.stderr
    with (tmp_path / "tables" / "delta.py").open("a") as f:
        f.write("# edited after the build\n")
    faust = str(Path(sys.executable).parent / "faust")
    done = subprocess.run(
        [faust, "-A", "streams", "worker"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 2, done.stderr
    assert "compiled hot path does not match its sources" in done.stderr
