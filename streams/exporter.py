"""The exporter role of one replica: lease rounds, the scrapes it serves, and a hand-over without a blind wait.

Prometheus shows a target's samples until that target's next scrape: one without them, or one that fails,
marks them stale at once. So the replica that takes the lease must not export before the last holder's
exported samples are stale, and the holder learns from the scrapes themselves when that is:

- it knows each scraper (remote address of requests carrying Prometheus's scrape-timeout header) and the
  interval between its scrapes, so the lease's record carries a grace measured, not configured
  (`STREAMS_SCRAPE_INTERVAL_SECONDS` only until a scrape is seen);
- on SIGTERM it stops exporting, keeps answering scrapes, and once every scraper that got its business
  series has scraped it again (within about one interval) releases the lease as "stale now": the next
  replica exports at once. A scraper that never came back (a target dropped from service discovery gets
  its staleness markers about two intervals late) is covered by the release's visibility bound instead;
- it stops exporting when its lease could have lapsed (the term counted from before the renewal was
  sent), so a replica cut off from Redis goes quiet before another can take over.

docs/design.md ("The exporter hand-over") has the whole argument and what it assumes of the scrapers.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from redis.exceptions import RedisError

from core.deadline import Deadline
from tables.lease import Lease, LeaseStore

LEASE_ERRORS = (RedisError, OSError, asyncio.TimeoutError)
log = logging.getLogger(__name__)

# Prometheus (and vmagent, Grafana Alloy, the OpenTelemetry Collector's receiver) send it on every scrape.
SCRAPE_HEADER = "X-Prometheus-Scrape-Timeout-Seconds"
# Scrapes land on a fixed schedule; a tenth of the interval and a second absorb jitter and slow answers.
GRACE_FACTOR, GRACE_MARGIN_S = 1.1, 1.0
# A target dropped from service discovery gets its staleness markers just over two intervals after its
# last scrape, stamped at the next one (Prometheus's endOfRunStaleness).
DROPPED_TARGET_FACTOR = 2.2
POLL_S = 0.5  # how often a replica without the lease looks for it
RELEASE_BUDGET_S = 2.0  # kept from the shutdown budget for the release itself
GAPS_KEPT = 3  # the interval is the longest of a scraper's last gaps: a late scrape only makes waits longer
# A scrape without business series clears what a scraper was shown only this far into an interval after
# the last one with them: two jobs (or an HA pair) behind one address must both have come back.
QUIET_AFTER = 0.9
FORGET_AFTER_S = 600.0


def grace_s(interval_s: float) -> float:
    return interval_s * GRACE_FACTOR + GRACE_MARGIN_S


@dataclass
class Scraper:
    last_s: float
    gaps_s: collections.deque[float] = field(default_factory=lambda: collections.deque(maxlen=GAPS_KEPT))
    last_export_s: float | None = None
    last_quiet_s: float | None = None  # its newest scrape without business series

    @property
    def interval_s(self) -> float | None:
        return max(self.gaps_s) if self.gaps_s else None


class Exporter:
    def __init__(
        self,
        leases: LeaseStore,
        replica_id: str,
        ttl_s: float,
        fallback_interval_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.leases = leases
        self.replica_id = replica_id
        self.ttl_s = ttl_s
        self.fallback_interval_s = fallback_interval_s
        self.clock = clock
        self.held = False
        self.export_from_s: float | None = None  # None until a term starts; kept while rounds fail
        self.valid_until_s = 0.0
        self.draining = False
        self.scrapers: dict[str, Scraper] = {}
        self.inherited_at_s: float | None = None
        self.holds_taken = 0
        self.fleet_interval_s = 0.0
        self.failed_at_s: float | None = None  # the last round that could not reach Redis

    # The lease --------------------------------------------------------------------------------------
    async def hold(self) -> Lease:
        """One lease round: take or renew the lease, and learn when this replica's series may appear."""
        sent_s = self.clock()
        measured_ms = int((self.measured_interval_s or 0.0) * 1000)
        ttl_ms, grace_ms, poll_ms = int(self.ttl_s * 1000), int(self.grace_s * 1000), int(self.poll_s * 1000)
        hold = await self.leases.hold(self.replica_id, ttl_ms, grace_ms, poll_ms, measured_ms)
        self.fleet_interval_s = hold.fleet_interval_s
        if hold.lease == Lease.LOST:
            self.held, self.export_from_s = False, None
            return hold.lease
        wait_s = hold.wait_s
        if hold.fresh and hold.lease == Lease.TAKEN and self._failed_within(self.ttl_s + self.grace_s):
            # No record right after Redis was out of reach: it restarted or failed over and lost the
            # lease, whose last holder may still be shown. Never held would look the same, but then no
            # replica of the fleet would have lost Redis.
            wait_s = max(wait_s, self.grace_s)
        if self.export_from_s is None or wait_s > 0:
            self.export_from_s = self.clock() + wait_s  # Redis keeps the term's start: never earlier
        if hold.inherited and not self.holds_taken:
            # An earlier process under this id (a restarted container) may have been scraped last, and
            # this one cannot know by whom: its release covers them as if they never came back.
            self.inherited_at_s = self.clock()
        self.holds_taken += 1
        self.held = True
        self.valid_until_s = sent_s + self.ttl_s
        return hold.lease

    def lapse(self) -> None:
        """A round failed: quiet now; a later round that finds the lease still ours resumes without a wait."""
        self.held = False
        self.failed_at_s = self.clock()

    def _failed_within(self, seconds: float) -> bool:
        return self.failed_at_s is not None and self.clock() - self.failed_at_s < seconds

    async def run(
        self,
        on_round: Callable[[Lease | None, BaseException | None], None] = lambda lease, exc: None,
        before_round: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        """The lease loop: a holder renews three times per term; the others look twice a second, so a
        released lease is taken at once (a hand-over's gap is one scrape interval plus this)."""
        while not (self.draining and not self.held):
            try:
                if before_round is not None:
                    await before_round()
                on_round(await self.hold(), None)
            except LEASE_ERRORS as exc:
                self.lapse()
                on_round(None, exc)
            await asyncio.sleep(self.ttl_s / 3 if self.held else self.poll_s)

    def exporting(self, now_s: float) -> bool:
        since = self.export_from_s
        return self.held and not self.draining and since is not None and since <= now_s < self.valid_until_s

    def starts_in_s(self, now_s: float) -> float | None:
        """Seconds until this holder's series appear (0 when they do); None when it does not hold the lease."""
        if not self.held or self.export_from_s is None or self.draining:
            return None
        return max(0.0, self.export_from_s - now_s)

    # The scrapes ------------------------------------------------------------------------------------
    async def serves(self, scraper: str | None) -> bool:
        """Whether this response may carry the business series; `scraper` names a Prometheus scrape.

        The lease is read again when the answer is yes: a replica whose lease another took goes quiet at once.
        """
        now_s = self.clock()
        exported = self.exporting(now_s)
        if scraper is not None:
            # Before any await: a hand-over that starts meanwhile must count this scrape as owed one more.
            self.scraped(scraper, now_s, exported)
        return exported and await self.leases.holder() == self.replica_id

    @property
    def measured_interval_s(self) -> float | None:
        known = [i for s in self.scrapers.values() if (i := s.interval_s) is not None]
        return max(known) if known else None

    @property
    def interval_s(self) -> float:
        """The setting, or longer where a scraper (here, or as the last holder measured) is seen slower:
        the setting is the floor, so two jobs behind one address cannot make it look shorter."""
        return max(self.fallback_interval_s, self.measured_interval_s or 0.0, self.fleet_interval_s)

    @property
    def poll_s(self) -> float:
        return min(POLL_S, self.ttl_s / 3)

    @property
    def grace_s(self) -> float:
        """How long after its term this holder's series may be seen: once it is stopping, discovery may drop
        its target, whose series then stay until the late markers."""
        if self.draining:
            return DROPPED_TARGET_FACTOR * self.interval_s + GRACE_MARGIN_S
        return grace_s(self.interval_s)

    def scraped(self, remote: str, now_s: float, exported: bool) -> None:
        """Called by /metrics for a Prometheus scrape, after it decided whether to carry business series."""
        scraper = self.scrapers.get(remote)
        if scraper is None:
            scraper = self.scrapers[remote] = Scraper(last_s=now_s)
        elif now_s > scraper.last_s:
            scraper.gaps_s.append(now_s - scraper.last_s)
            scraper.last_s = now_s
        if exported:
            scraper.last_export_s = now_s
        else:
            scraper.last_quiet_s = now_s
        for name, s in list(self.scrapers.items()):
            if now_s - s.last_s > max(FORGET_AFTER_S, 3 * (s.interval_s or 0.0)):
                del self.scrapers[name]

    # The hand-over ----------------------------------------------------------------------------------
    def owed(self) -> list[Scraper]:
        """Scrapers that may still show this replica's business series: shown them, and not come back
        without them at least most of an interval later."""
        cleared_after_s = QUIET_AFTER * self.interval_s
        return [
            s
            for s in self.scrapers.values()
            if s.last_export_s is not None
            and (s.last_quiet_s is None or s.last_quiet_s < s.last_export_s + cleared_after_s)
        ]

    def visible_for_s(self, now_s: float) -> float:
        """How long, from now, a scraper may still show this replica's business series."""
        ends = [
            s.last_export_s + DROPPED_TARGET_FACTOR * self.interval_s + GRACE_MARGIN_S
            for s in self.owed()
            if s.last_export_s is not None
        ]
        if self.inherited_at_s is not None:
            ends.append(self.inherited_at_s + DROPPED_TARGET_FACTOR * self.interval_s + GRACE_MARGIN_S)
        return max(0.0, max(ends, default=now_s) - now_s)

    async def drain(self, budget_s: float, poll_s: float = 0.1) -> None:
        """Stop exporting and wait, within the budget, until every scraper owed one has scraped again."""
        self.draining = True
        deadline_s = self.clock() + budget_s
        # The longer grace on record now, in case Redis is gone by the release; also after a round whose
        # reply was lost (the term may still be ours, with the shorter grace on record).
        if self.held or self.export_from_s is not None:
            with contextlib.suppress(*LEASE_ERRORS):
                await self.hold()
        while (owed := self.owed()) and self.clock() < deadline_s:
            due_s = max(s.last_export_s or s.last_s for s in owed) + grace_s(self.interval_s)
            if self.clock() >= due_s:
                return  # a scraper that would have come back by now is not coming: the release covers it
            await asyncio.sleep(poll_s)

    async def hand_over(
        self, budget: Deadline | float, meanwhile: Awaitable[None], rounds: asyncio.Task[None] | None
    ) -> None:
        """SIGTERM: quiet at once and drain while `meanwhile` (the tap's own drain) runs; the lease is kept,
        renewed by `rounds`, until the drain ends, and released then, not after the tap: every second
        the release waits is a second of the next exporter's gap. `budget` is the shutdown's deadline
        (or seconds from now), shared with `meanwhile`."""
        deadline = budget if isinstance(budget, Deadline) else Deadline(budget, self.clock)
        handed = asyncio.create_task(self._drain_and_release(deadline, rounds))
        try:
            await meanwhile
        finally:
            await handed

    async def _drain_and_release(self, deadline: Deadline, rounds: asyncio.Task[None] | None) -> None:
        started_s = self.clock()
        # Bounded from outside too: its first renewal against a frozen Redis waits out the client's timeout.
        drain = self.drain(deadline.left(RELEASE_BUDGET_S))
        await deadline.within(drain, "the exporter's drain", log, reserve_s=RELEASE_BUDGET_S)
        if rounds is not None:
            rounds.cancel()
            # A swallowed cancel must not hang it.
            await asyncio.wait([rounds], timeout=max(0.001, min(RELEASE_BUDGET_S / 2, deadline.left())))
        owed = len(self.owed())
        visible_s = self.visible_for_s(self.clock())
        release = asyncio.ensure_future(self.release())
        if await deadline.within(release, "releasing the exporter lease", log) and release.result():
            log.info(
                "exporter lease released after %.1fs of drain: %d scraper(s) not back, series visible %.1fs more",
                self.clock() - started_s,
                owed,
                visible_s,
            )

    async def release(self) -> bool:
        """Hand the lease over, telling the next holder how long this one's series may still be seen."""
        self.draining = True
        visible_ms = int(self.visible_for_s(self.clock()) * 1000)
        self.held = False
        return await self.leases.release(self.replica_id, visible_ms)
