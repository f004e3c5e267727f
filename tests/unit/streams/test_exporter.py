"""The exporter hand-over on the real lease scripts (Lua, over a simulated keyspace) and a manual clock."""

from __future__ import annotations

import asyncio

import pytest

from streams.exporter import Exporter, grace_s
from tables.lease import Lease, LeaseStore
from tests.sim.lua_redis import Keyspace, Scripts

TTL_S, FALLBACK_S = 10.0, 1.0  # the setting is the floor: 1 s lets the measured intervals speak


class Clock:
    def __init__(self) -> None:
        self.now_s = 1_790_000_000.0

    def __call__(self) -> float:
        return self.now_s


class Client(Scripts):
    async def hmget(self, key: str, fields: list[str]) -> list[str | None]:
        return self.keyspace.hmget(key, fields)


def fleet(clock: Clock) -> tuple[Client, dict[str, Exporter]]:
    client = Client(Keyspace(clock))
    leases = LeaseStore(client, "app")
    return client, {r: Exporter(leases, r, TTL_S, FALLBACK_S, clock) for r in ("a", "b", "a-again")}


async def scraped_every(exporter: Exporter, clock: Clock, interval_s: float, times: int, remote: str = "prom") -> None:
    """`times` scrapes `interval_s` apart, the lease renewed before each (a round every few seconds)."""
    for _ in range(times):
        await exporter.hold()
        exporter.scraped(remote, clock(), exporter.exporting(clock()))
        clock.now_s += interval_s
    clock.now_s -= interval_s


async def test_a_lease_never_held_exports_at_once_and_others_wait_for_it() -> None:
    clock = Clock()
    _, ex = fleet(clock)
    assert await ex["a"].hold() == Lease.TAKEN
    assert ex["a"].exporting(clock())
    assert await ex["b"].hold() == Lease.LOST
    assert not ex["b"].exporting(clock()) and ex["b"].starts_in_s(clock()) is None


async def test_a_clean_hand_over_after_the_last_scrape_exports_at_once() -> None:
    clock = Clock()
    _, ex = fleet(clock)
    await ex["a"].hold()
    await scraped_every(ex["a"], clock, 15.0, 3)  # the scraper's newest scrape carried the series
    assert ex["a"].owed() and ex["a"].interval_s == 15.0
    ex["a"].draining = True
    clock.now_s += 15.0
    assert await ex["a"].serves("prom") is False  # the scrape after the stop: series stale from here
    assert not ex["a"].owed()
    await ex["a"].release()
    assert await ex["b"].hold() == Lease.TAKEN
    assert ex["b"].exporting(clock())


@pytest.mark.parametrize("interval_s", [1.0, 15.0, 60.0])
async def test_a_release_with_a_scraper_that_never_came_back_waits_for_its_late_staleness(interval_s: float) -> None:
    clock = Clock()
    _, ex = fleet(clock)
    await ex["a"].hold()
    await scraped_every(ex["a"], clock, interval_s, 3)
    last_export_s = clock()
    clock.now_s += 0.5
    await ex["a"].release()  # no scrape since: a target dropped from discovery gets stale markers late
    await ex["b"].hold()
    expected_s = last_export_s + 2.2 * interval_s + 1.0
    starts = ex["b"].starts_in_s(clock())
    assert starts == pytest.approx(expected_s - clock(), abs=0.002)
    clock.now_s = expected_s - 0.01
    await ex["b"].hold()  # its own term again (lapsed or not): the wait is not restarted, nor skipped
    assert not ex["b"].exporting(clock())
    clock.now_s = expected_s + 0.01
    await ex["b"].hold()
    assert ex["b"].exporting(clock())


async def test_after_a_crash_the_next_exporter_waits_for_lease_end_plus_one_learned_interval() -> None:
    clock = Clock()
    _, ex = fleet(clock)
    await ex["a"].hold()
    await scraped_every(ex["a"], clock, 15.0, 3)
    await ex["a"].hold()  # the last renewal records the grace learned from the scrapes
    lease_end_s = clock() + TTL_S
    # kill -9: no release. Until the term ends nobody else may take the lease.
    clock.now_s += TTL_S - 0.01
    assert await ex["b"].hold() == Lease.LOST
    clock.now_s += 0.02
    assert await ex["b"].hold() == Lease.TAKEN
    assert ex["b"].starts_in_s(clock()) == pytest.approx(lease_end_s + grace_s(15.0) - clock(), abs=0.002)


async def test_the_same_replica_restarted_takes_its_own_lease_back_without_a_wait() -> None:
    clock = Clock()
    client, ex = fleet(clock)
    await ex["a"].hold()
    restarted = Exporter(LeaseStore(client, "app"), "a", TTL_S, FALLBACK_S, clock)  # same id: same series
    assert await restarted.hold() == Lease.KEPT
    assert restarted.exporting(clock())


async def test_a_holder_cut_off_from_redis_goes_quiet_before_its_term_can_end() -> None:
    clock = Clock()
    _, ex = fleet(clock)
    await ex["a"].hold()
    clock.now_s += TTL_S - 0.01
    assert ex["a"].exporting(clock())
    clock.now_s += 0.01  # no renewal got through: quiet exactly when another could take the lease
    assert not ex["a"].exporting(clock())


async def test_a_failed_round_quiets_and_a_kept_lease_resumes_without_a_wait() -> None:
    clock = Clock()
    _, ex = fleet(clock)
    await ex["a"].hold()
    ex["a"].lapse()
    assert not ex["a"].exporting(clock())
    clock.now_s += 1.0
    assert await ex["a"].hold() == Lease.KEPT
    assert ex["a"].exporting(clock())


async def test_a_lease_taken_by_another_stops_the_export_at_the_next_scrape() -> None:
    clock = Clock()
    client, ex = fleet(clock)
    await ex["a"].hold()
    assert await ex["a"].serves("prom") is True
    client.keyspace.data["{app}:exporter"]["holder"] = "b"  # e.g. a Redis failover to a stale replica
    assert await ex["a"].serves("prom") is False


async def test_scrape_intervals_are_learned_per_scraper_and_the_longest_wins() -> None:
    clock = Clock()
    _, ex = fleet(clock)
    assert ex["a"].interval_s == FALLBACK_S
    ex["a"].scraped("p1", clock(), False)
    assert ex["a"].interval_s == FALLBACK_S  # one scrape tells no interval
    for _ in range(4):
        clock.now_s += 5.0
        ex["a"].scraped("p1", clock(), False)
        if _ % 2 == 0:
            ex["a"].scraped("p2", clock(), False)
    assert ex["a"].interval_s == 10.0
    clock.now_s += 601.0
    ex["a"].scraped("p1", clock(), False)
    assert set(ex["a"].scrapers) == {"p1"}  # a scraper silent for ten minutes is forgotten


async def test_the_drain_waits_for_the_owed_scraper_and_gives_up_when_it_is_overdue() -> None:
    clock = Clock()
    _, ex = fleet(clock)
    await ex["a"].hold()
    await scraped_every(ex["a"], clock, 2.0, 3)
    drain = asyncio.create_task(ex["a"].drain(budget_s=30.0, poll_s=0.001))
    await asyncio.sleep(0.01)
    assert not drain.done()
    clock.now_s += 2.0
    await ex["a"].serves("prom")
    await asyncio.wait_for(drain, 1.0)
    # Overdue: nothing came back within 1.1 intervals + 1 s, so the drain ends and the release covers it.
    scraped = Exporter(ex["a"].leases, "b", TTL_S, FALLBACK_S, clock)
    scraped.scraped("prom", clock(), True)
    clock.now_s += 2.0
    scraped.scraped("prom", clock(), True)
    late = asyncio.create_task(scraped.drain(budget_s=30.0, poll_s=0.001))
    await asyncio.sleep(0.01)
    assert not late.done()
    clock.now_s += grace_s(2.0)
    await asyncio.wait_for(late, 1.0)
    assert scraped.owed()


async def test_a_take_whose_reply_was_lost_still_waits_for_the_last_holders_series() -> None:
    clock = Clock()
    _, ex = fleet(clock)
    await ex["a"].hold()
    ex["a"].scraped("prom", clock(), True)
    await ex["a"].release()  # owed: its series stay visible for 2.2 fallback intervals + 1 s
    await ex["b"].leases.hold("b", 10_000, 2_000, 500, 0)  # the take ran in Redis; its reply never came back
    clock.now_s += 1.0
    assert await ex["b"].hold() == Lease.KEPT
    assert ex["b"].starts_in_s(clock()) == pytest.approx(2.2 * FALLBACK_S + 1.0 - 1.0, abs=0.002)


async def test_a_restarted_process_under_the_same_id_covers_its_predecessors_scrapes_on_release() -> None:
    clock = Clock()
    client, ex = fleet(clock)
    await ex["a"].hold()
    await scraped_every(ex["a"], clock, 15.0, 3)  # measured: 15 s, and the last scrape showed the series
    await ex["a"].hold()
    clock.now_s += 1.0  # kill -9, and the container is back within a second: same id, same target
    restarted = Exporter(LeaseStore(client, "app"), "a", TTL_S, FALLBACK_S, clock)
    assert await restarted.hold() == Lease.KEPT
    assert restarted.interval_s == 15.0  # what the lease remembers, before any scrape reached this process
    await restarted.release()  # SIGTERM before its first scrape: who saw its predecessor last is unknown
    await ex["b"].hold()
    assert ex["b"].starts_in_s(clock()) == pytest.approx(2.2 * 15.0 + 1.0, abs=0.002)


async def test_an_older_release_exporting_is_waited_out_after_it_deletes_its_key() -> None:
    clock = Clock()
    client, ex = fleet(clock)
    ks = client.keyspace
    ks.call("SET", "{app}:v3:leader", "old-pod", "PX", "10000")  # layout 3's exporter holds its key
    assert await ex["a"].hold() == Lease.LOST
    clock.now_s += 3.0
    ks.call("DEL", "{app}:v3:leader")  # its SIGTERM: it deletes the key, its series still shown
    assert await ex["a"].hold() == Lease.LOST  # the record written for it still runs for 7 s
    clock.now_s += 7.01
    assert await ex["a"].hold() == Lease.TAKEN
    # Then twice the grace: its target may be dropped at SIGTERM, and nobody saw its scrapes.
    assert ex["a"].starts_in_s(clock()) == pytest.approx(2 * int(grace_s(FALLBACK_S) * 1000) / 1000 - 0.01, abs=0.002)


async def test_no_record_right_after_redis_was_unreachable_waits_one_grace() -> None:
    clock = Clock()
    client, ex = fleet(clock)
    await ex["a"].hold()
    ex["b"].lapse()  # b's rounds failed: Redis restarted empty, the lease record with it
    client.keyspace.data.clear()
    assert await ex["b"].hold() == Lease.TAKEN
    assert ex["b"].starts_in_s(clock()) == pytest.approx(ex["b"].grace_s, abs=0.002)
    # A replica that never lost Redis and finds no record takes a lease never held: at once.
    client.keyspace.data.clear()
    assert await ex["a-again"].hold() == Lease.TAKEN and ex["a-again"].exporting(clock())


async def test_two_jobs_behind_one_address_must_both_come_back_before_the_release_says_stale() -> None:
    clock = Clock()
    _, ex = fleet(clock)
    a = ex["a"]
    await scraped_every(a, clock, 15.0, 2)  # job A at 0 and 15: 15 s measured
    clock.now_s += 6.0
    a.scraped("prom", clock(), True)  # job B, same address, 6 s after job A
    a.draining = True
    clock.now_s += 9.0
    a.scraped("prom", clock(), False)  # job A's next scrape, quiet: job B may still show the series
    assert a.owed()
    clock.now_s += 6.0
    a.scraped("prom", clock(), False)  # job B's, quiet: now both are stale
    assert not a.owed()


async def test_the_setting_is_the_floor_of_every_interval() -> None:
    clock = Clock()
    client, _ = fleet(clock)
    slow = Exporter(LeaseStore(client, "app"), "s", TTL_S, 30.0, clock)
    for _ in range(3):
        slow.scraped("prom", clock(), False)
        clock.now_s += 5.0
    assert slow.measured_interval_s == 5.0 and slow.interval_s == 30.0


async def test_a_long_wait_keeps_its_record_for_as_long() -> None:
    clock = Clock()
    client, ex = fleet(clock)
    await ex["a"].hold()
    ex["a"].scraped("prom", clock(), True)
    ex["a"].fallback_interval_s = 120.0  # a slow scraper: the release keeps 2.2 intervals + 1 s ahead
    await ex["a"].release()
    await ex["b"].hold()
    assert ex["b"].starts_in_s(clock()) == pytest.approx(265.0, abs=0.01)
    clock.now_s += 200.0  # b dies before its start, without a release; the record must outlive the wait
    assert client.keyspace.call("HGET", "{app}:exporter", "start_ms") is not None
    await ex["a-again"].hold()
    assert ex["a-again"].starts_in_s(clock()) == pytest.approx(65.0, abs=0.01)


async def test_a_drain_after_a_lost_renewal_still_puts_the_longer_grace_on_record() -> None:
    clock = Clock()
    client, ex = fleet(clock)
    await scraped_every(ex["a"], clock, 15.0, 3)
    ex["a"].lapse()  # the last renewal ran in Redis, but its reply was lost
    await ex["a"].drain(budget_s=0.0)
    grace_ms = client.keyspace.hmget("{app}:exporter", ["grace_ms"])[0]
    assert grace_ms == str(int(ex["a"].grace_s * 1000)) and ex["a"].grace_s > grace_s(15.0)
