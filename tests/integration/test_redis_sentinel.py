"""The sidecar on a Sentinel-managed primary (a primary, a replica, three sentinels with a password of their
own, on loopback): exact figures, the state on the primary and its replica, the managed-Redis refusal, and
a wrong service name refused at once rather than hanging."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from streams.local.redis_topologies import SERVICE, LocalSentinel
from streams.local.sidecar_proc import wait_until
from tests.integration.conftest import Names
from tests.integration.topology_run import (
    assert_exact,
    assert_policy_refused,
    assert_unreachable,
    produce_truth,
    start_sidecar,
)

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def sentinel(workdir: Path) -> Iterator[LocalSentinel]:
    setup = LocalSentinel(workdir / "sentinel", password="data-pw", sentinel_password="sentinel-pw").start()
    yield setup
    setup.stop()


def test_exact_figures_through_the_sentinels(broker, sentinel: LocalSentinel, names: Names, workdir: Path) -> None:  # type: ignore[no-untyped-def]
    assert sentinel.url.startswith("redis+sentinel://:data-pw@127.0.0.1:") and sentinel.url.endswith(f"/{SERVICE}/0")
    produce_truth(broker.bootstrap, names)
    proc = start_sidecar(broker, sentinel, names, workdir / names.app_id)
    try:
        proc.wait_ready()
        assert_exact(proc, names)
        # The state is on the primary the sentinels name, and replicated: a failover keeps it.
        offsets = "{" + names.app_id + "}:v3:offsets"
        primary, replica = sentinel.primary.client("data-pw"), sentinel.replica.client("data-pw")
        written = primary.hgetall(offsets)
        assert written[f"{names.raw}:0"] == "4" and written[f"{names.raw}:1"] == "3"
        wait_until(lambda: replica.hgetall(offsets) == written, 10, what="the replica has the offsets")
        assert_policy_refused(proc, primary, "maxmemory-policy is volatile-lru")
    finally:
        proc.stop()


def test_a_wrong_service_name_is_not_ready_and_says_so(
    broker, sentinel: LocalSentinel, names: Names, workdir: Path
) -> None:  # type: ignore[no-untyped-def]
    wrong = sentinel.url.replace(f"/{SERVICE}/0", "/no-such-primary/0")
    proc = start_sidecar(broker, sentinel, names, workdir / names.app_id, url=wrong)
    try:
        assert_unreachable(proc, "No master found for 'no-such-primary'")
    finally:
        proc.stop()
