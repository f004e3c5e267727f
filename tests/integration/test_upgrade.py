"""A key layout change against the previous release's own code, on the broker and redis-server.

The previous release (0.1.0, from git) runs with its key layout lowered to 2: the same code writing an
older layout than this release's, as a release before a layout bump would. Beside it, this release must
neither export nor read its topics into its own layout; after the old replica stops, the documented
paths (UPGRADING.md) end with exact figures and the older layout's keys gone.
"""

from __future__ import annotations

import io
import os
import shutil
import socket
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import pytest
import redis

from streams.local.scrape import Samples, value
from streams.local.sidecar_proc import SidecarProc, wait_until
from streams.local.topics import make_topics
from streams.local.workload import build
from tables.keys import LAYOUT_VERSION
from tables.layout import marker_key
from tables.lease import lease_key, legacy_lease_key
from tables.purge import scan_pattern
from tests.integration.conftest import Names, all_folded, processed, sidecar_env
from tests.integration.kafka_io import Out, produce

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
PREVIOUS = "3c722a5"  # 0.1.0: the last commit before the layout marker
OLD_LAYOUT = LAYOUT_VERSION - 1


@pytest.fixture(scope="module")
def previous_release(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """0.1.0's packages from git, its LAYOUT_VERSION lowered by one (a test edit of the old copy only).

    A checkout without that commit (a shallow clone) fails here: skipped, the upgrade path would go
    untested while the suite reads green."""
    if shutil.which("git") is None:
        pytest.fail("git is needed to extract the previous release")
    found = subprocess.run(["git", "-C", str(ROOT), "cat-file", "-e", f"{PREVIOUS}^{{commit}}"], capture_output=True)
    if found.returncode:
        pytest.fail(f"the git history lacks {PREVIOUS} (0.1.0): fetch it (`git fetch --unshallow`)")
    tree = tmp_path_factory.mktemp("release-0.1.0")
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", PREVIOUS, "streams", "agents", "tables"], capture_output=True, check=True
    ).stdout
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(tree, filter="data")
    keys = tree / "tables" / "keys.py"
    source = keys.read_text()
    assert f"\nLAYOUT_VERSION = {LAYOUT_VERSION}\n" in source, "0.1.0 wrote this release's layout"
    keys.write_text(source.replace(f"\nLAYOUT_VERSION = {LAYOUT_VERSION}\n", f"\nLAYOUT_VERSION = {OLD_LAYOUT}\n"))
    return tree


def _produce(bootstrap: str, names: Names, raws: list[bytes], enriched: list[bytes]) -> None:
    produce(bootstrap, names.raw, [Out(v) for v in raws])
    produce(bootstrap, names.enriched, [Out(v) for v in enriched])


def _keys(store: redis.Redis, app_id: str, layout: int) -> list[str]:
    found = [str(k) for k in store.scan_iter(match=scan_pattern(app_id, layout), count=1000)]
    return sorted(k for k in found if k != legacy_lease_key(app_id))


def _quiet(m: Samples, names: Names) -> bool:
    """A scrape without the business series of a replica that neither holds nor exports the lease."""
    return (
        value(m, "ecomind_streams_exporter_leader") == 0.0
        and value(m, "ecomind_streams_exporting") == 0.0
        and processed(m, names) == 0.0
        and value(m, "ecomind_daily_active_users") is None
    )


def _log(proc: SidecarProc) -> str:
    assert proc.server is not None
    return proc.server.log_path.read_text(errors="replace")


def _layout_cli(redis_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "REDIS_URL": redis_url, "PYTHONPATH": str(ROOT)}
    argv = [sys.executable, "-m", "streams.tools.layout", *args]
    return subprocess.run(argv, env=env, capture_output=True, text=True, timeout=60)


def _sidecars(  # type: ignore[no-untyped-def]
    broker, redis_server, names: Names, workdir: Path, release: Path, **new_env: str
) -> tuple[SidecarProc, SidecarProc]:
    env = sidecar_env(broker, redis_server, names, STREAMS_BATCH_MAX_RECORDS="2000")
    # Faust imports `streams` from its working directory first: each replica runs in its own release's tree.
    old_env = {**env, "PYTHONPATH": str(release)}
    old = SidecarProc(workdir / names.app_id / "old", old_env, name="old", cwd=release)
    new_env = {**env, "PYTHONPATH": str(ROOT), **new_env}
    new = SidecarProc(workdir / names.app_id / "new", new_env, name="new", cwd=ROOT)
    return old, new


def _old_code_ran(store: redis.Redis, app: str) -> None:
    """What only the previous release's code writes: its own layout's keys, and no marker (0.1.0 had none)."""
    assert _keys(store, app, OLD_LAYOUT), "the old release writes the older layout"
    assert _keys(store, app, LAYOUT_VERSION) == [] and store.get(marker_key(app)) is None, "0.1.0 ran, not this"


def test_a_new_layout_waits_beside_the_old_release_and_starts_after_the_purge(  # type: ignore[no-untyped-def]
    broker, redis_server, names: Names, workdir: Path, previous_release: Path
) -> None:
    make_topics(broker.bootstrap, [names.raw, names.enriched], partitions=4)
    raws, enriched, truth = build(seed=26, raw_events=12_000, enriched_every=3)
    total = truth.raw_count + truth.enriched_count
    half_raw, half_enriched = len(raws) // 2, len(enriched) // 2
    old, new = _sidecars(broker, redis_server, names, workdir, previous_release)
    store = redis.Redis.from_url(redis_server.url, decode_responses=True)
    app = names.app_id
    try:
        _produce(broker.bootstrap, names, raws[:half_raw], enriched[:half_enriched])
        old.start()
        old.wait_ready()
        wait_until(lambda: all_folded(old, names, half_raw + half_enriched), 90, what="the old release's folds")
        _old_code_ran(store, app)

        new.start()
        new.wait_until_serving()
        wait_until(lambda: "not reading the topics nor exporting" in _log(new), 60, what="the refusal")
        assert f"older key layout ({OLD_LAYOUT}, this release writes {LAYOUT_VERSION})" in _log(new)
        _produce(broker.bootstrap, names, raws[half_raw:], enriched[half_enriched:])
        on_old = wait_until(lambda: all_folded(old, names, total), 90, what="the old release folds the rest")
        assert truth.mismatches(on_old, names.raw, names.enriched) == [], "the old release keeps exporting"
        deadline = time.monotonic() + 6  # beyond one re-check of the refusal
        while time.monotonic() < deadline:
            assert _quiet(new.scrape(), names), "the new release exports nothing beside the old one"
            assert new.get("/ready")[0] == 503
            time.sleep(0.5)
        assert _keys(store, app, LAYOUT_VERSION) == [], "no silent re-read into the new layout"
        assert store.get(marker_key(app)) is None
        assert store.hget(lease_key(app), "holder") == f"{socket.gethostname()}:{old.port}"

        old.stop()
        time.sleep(6)
        assert new.get("/ready")[0] == 503 and _keys(store, app, LAYOUT_VERSION) == [], "still refused"

        refused = _layout_cli(redis_server.url, "purge-layout", "--app-id", app, "--layout", str(LAYOUT_VERSION))
        assert refused.returncode == 1 and f"layout {LAYOUT_VERSION} is the one in use" in refused.stderr
        old_keys = _keys(store, app, OLD_LAYOUT)
        dry = _layout_cli(redis_server.url, "purge-layout", "--app-id", app, "--layout", str(OLD_LAYOUT), "--dry-run")
        assert dry.returncode == 0, dry.stderr
        assert f"would delete {len(old_keys)} keys" in dry.stdout
        assert _keys(store, app, OLD_LAYOUT) == old_keys, "a dry run deletes nothing"
        purged = _layout_cli(redis_server.url, "purge-layout", "--app-id", app, "--layout", str(OLD_LAYOUT))
        assert purged.returncode == 0 and f"deleted {len(old_keys)} keys" in purged.stdout, purged.stderr
        assert _keys(store, app, OLD_LAYOUT) == [], "the old layout's keys are gone"

        new.wait_ready(60)  # the refusal is checked again every 5 s: no restart needed
        final = wait_until(lambda: all_folded(new, names, total), 120, what="the new layout rebuilt")
        assert truth.mismatches(final, names.raw, names.enriched) == []
        assert value(final, "ecomind_streams_records_folded_total") == float(total), "each record read once"
        assert store.get(marker_key(app)) == str(LAYOUT_VERSION)
        assert f"key layout {LAYOUT_VERSION} is in use" in _log(new)
    finally:
        store.close()
        new.stop()
        old.stop()


def test_an_opted_in_rebuild_never_exports_beside_the_old_exporter(  # type: ignore[no-untyped-def]
    broker, redis_server, names: Names, workdir: Path, previous_release: Path
) -> None:
    make_topics(broker.bootstrap, [names.raw, names.enriched], partitions=4)
    raws, enriched, truth = build(seed=27, raw_events=12_000, enriched_every=3)
    total = truth.raw_count + truth.enriched_count
    old, new = _sidecars(broker, redis_server, names, workdir, previous_release, STREAMS_LAYOUT_UPGRADE="reread")
    store = redis.Redis.from_url(redis_server.url, decode_responses=True)
    app = names.app_id
    try:
        _produce(broker.bootstrap, names, raws, enriched)
        old.start()
        old.wait_ready()
        wait_until(lambda: all_folded(old, names, total), 90, what="the old release's folds")
        _old_code_ran(store, app)

        new.start()
        wait_until(lambda: store.get(marker_key(app)) == str(LAYOUT_VERSION), 60, what="the marker moved")
        wait_until(lambda: "is now the one in use" in _log(new), 30, what="the take-over logged")
        # Both replicas share the group now, so the new one rebuilds its partitions while the old one
        # keeps the shared lease: a scrape of both, for a while, never shows two exporters.
        deadline = time.monotonic() + 8
        while time.monotonic() < deadline:
            on_new, on_old = new.scrape(), old.scrape()
            assert _quiet(on_new, names), "no export beside the old layout's exporter"
            assert value(on_old, "ecomind_streams_exporting") == 1.0
            assert truth.mismatches(on_old, names.raw, names.enriched) == [], "the old figures stay whole"
            time.sleep(0.5)

        old.stop()
        final = wait_until(lambda: all_folded(new, names, total), 120, what="the new layout rebuilt")
        assert truth.mismatches(final, names.raw, names.enriched) == []
        assert _keys(store, app, OLD_LAYOUT), "the old layout stays until purged (a rollback could use it)"
        purged = _layout_cli(redis_server.url, "purge-layout", "--app-id", app, "--layout", str(OLD_LAYOUT))
        assert purged.returncode == 0, purged.stderr
        assert _keys(store, app, OLD_LAYOUT) == []
        assert truth.mismatches(new.scrape(), names.raw, names.enriched) == [], "the purge took nothing in use"
    finally:
        store.close()
        new.stop()
        old.stop()
