"""What every SASL/OAUTHBEARER token provider of the sidecar shares: one cached token for all the Kafka
clients of the process, refreshed by one request at a time, the errors aiokafka sees when there is none,
and a handshake that notices a broker refusing the token.

One provider serves every client, so a connection storm (a broker restart, every connection
re-authenticating) costs one token request, not one per connection. aiokafka asks for a token only when
a connection authenticates; a cached token is handed out until 80 % of its lifetime, so a connection
made at any time gets one that the broker accepts for a while yet.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar

from aiokafka import conn as aiokafka_conn
from aiokafka.abc import AbstractTokenProvider
from aiokafka.errors import KafkaError, SaslAuthenticationFailed

log = logging.getLogger(__name__)

REFRESH_AT = 0.8  # of the token's lifetime
REFUSED_REFETCH_S = 30.0  # a token the broker refused is dropped at most this often


class TokenError(KafkaError):  # type: ignore[misc]
    """No token now (endpoint unreachable, slow, 5xx, a malformed answer); the next connection asks again.

    A KafkaError, so that aiokafka counts it as a failed connection and retries, as for a refused socket.
    """

    retriable = True


class TokenRejected(TokenError):
    """The credentials were refused or are missing: retrying cannot help (the worker stops at start)."""

    retriable = False


@dataclass(frozen=True)
class Token:
    value: str
    refresh_at: float  # monotonic
    expires_at: float  # monotonic
    fetched_at: float  # monotonic


class CachedTokenProvider(AbstractTokenProvider):  # type: ignore[misc]
    """aiokafka's `sasl_oauth_token_provider`: `token()` when a connection authenticates. Subclasses say
    how a token is fetched (`_fetch`) and name themselves (`label`) in logs and errors."""

    label: ClassVar[str] = "SASL"

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._token: Token | None = None
        self._inflight: asyncio.Task[Token] | None = None
        self.requests = 0  # token requests sent, for the logs and the tests
        # aiokafka's connections make their OAUTHBEARER handshake with this module attribute; only
        # processes that use a token provider get the stricter one.
        aiokafka_conn.OAuthAuthenticator = _RefusalAwareAuthenticator

    async def _fetch(self) -> Token:
        raise NotImplementedError

    async def token(self) -> str:
        cached = self._token
        if cached is not None and self._clock() < cached.refresh_at:
            return cached.value
        # Single flight: every caller waiting for a refresh awaits the same request, and shares its failure.
        if self._inflight is None:
            self._inflight = asyncio.create_task(self._fetch_and_keep())
            self._inflight.add_done_callback(self._forget_inflight)
        try:
            fresh = await asyncio.shield(self._inflight)
        except TokenError as exc:
            # Refreshing early leaves room: a token still valid is better than no connection, even when the
            # credentials are now refused (a revoked one then shows at the token's expiry, and at the next start).
            if cached is not None and self._clock() < cached.expires_at - 1.0:
                log.warning(
                    "Kafka %s token refresh failed, using the current token until it expires: %s", self.label, exc
                )
                return cached.value
            raise
        return fresh.value

    async def _fetch_and_keep(self) -> Token:
        # Kept here, not by the caller: a token fetched for callers that were all cancelled is not lost.
        self._token = await self._fetch()
        return self._token

    def _forget_inflight(self, task: asyncio.Task[Token]) -> None:
        if self._inflight is task:
            self._inflight = None
        if not task.cancelled():
            task.exception()  # retrieved here, so a failure nobody awaited is not reported as lost

    def refused(self) -> None:
        """The broker refused the current token (a rotated key, a revocation, clock skew): fetch a new
        one for the next connection, at most once per REFUSED_REFETCH_S so that a broker refusing every
        token does not turn each reconnect into a token request."""
        cached = self._token
        if cached is not None and self._clock() - cached.fetched_at >= REFUSED_REFETCH_S:
            log.warning("the broker refused the Kafka %s token: the next connection fetches a new one", self.label)
            self._token = None


class _RefusalAwareAuthenticator(aiokafka_conn.OAuthAuthenticator):  # type: ignore[misc]
    """aiokafka 0.14 takes a broker's refusal of the token for success: the broker answers with an error
    challenge (RFC 7628 §3.2.2, e.g. {"status":"invalid_token"}), aiokafka logs "Authenticated" and the
    unauthenticated connection then gets empty metadata, so an expired or foreign token looks like a
    cluster without brokers. Fail the handshake with the broker's words instead, as for a bad password.
    (A broker that refuses with a SaslAuthenticate error code instead, as MSK IAM does, fails the
    handshake in aiokafka itself, and this step never sees it.)"""

    async def step(self, payload: bytes | None) -> tuple[bytes, bool] | None:
        if self._token_sent and payload:
            provider = self._sasl_oauth_token_provider
            label = "OAuth"
            if isinstance(provider, CachedTokenProvider):
                provider.refused()
                label = provider.label
            raise SaslAuthenticationFailed(f"the broker refused the {label} token: {payload.decode(errors='replace')}")
        result: tuple[bytes, bool] | None = await super().step(payload)
        return result
