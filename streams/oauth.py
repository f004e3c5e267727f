"""SASL/OAUTHBEARER tokens from an OIDC client-credentials grant (RFC 6749 §4.4), for aiokafka.

One provider is shared by every Kafka client of the process, so a connection storm (a broker restart,
every connection re-authenticating) costs one token request, not one per connection. aiokafka asks for
a token only when a connection authenticates; a cached token is handed out until 80 % of its lifetime,
so a connection made at any time gets one that the broker accepts for a while yet.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import logging
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from urllib.parse import quote_plus, urlsplit

from aiokafka import conn as aiokafka_conn
from aiokafka.abc import AbstractTokenProvider
from aiokafka.errors import KafkaError, SaslAuthenticationFailed

log = logging.getLogger(__name__)

REFRESH_AT = 0.8  # of the token's lifetime
# Neither expires_in nor a JWT exp: the broker still ends the session at the token's real expiry, which
# is unknown here, so ask again soon rather than hand out a token that may be dead.
UNKNOWN_LIFETIME_S = 60.0
HTTP_TIMEOUT_S = 10.0  # the whole request; connecting alone gets half
REFUSED_REFETCH_S = 30.0  # a token the broker refused is dropped at most this often
# RFC 6750 b64token: a token outside it cannot be sent in the SASL message (RFC 7628 §3.1).
_B64TOKEN = re.compile(r"[A-Za-z0-9\-._~+/]+=*")
# RFC 7628 §3.1 keys and values; Kafka reserves "auth" (the token itself).
_EXT_KEY = re.compile(r"[A-Za-z]+")
_EXT_VALUE = re.compile(r"[\x21-\x7e \t\r\n]+")
_SCOPE = re.compile(r"[\x21\x23-\x5b\x5d-\x7e]+( [\x21\x23-\x5b\x5d-\x7e]+)*")
# Too many requests, too early, timed out: the endpoint is busy, the credentials may still be right.
_TRANSIENT_4XX = {408, 425, 429}
CREDENTIAL_SETTINGS = "KAFKA_SASL_OAUTH_CLIENT_ID, KAFKA_SASL_OAUTH_CLIENT_SECRET and KAFKA_SASL_OAUTH_SCOPE"


class TokenError(KafkaError):  # type: ignore[misc]
    """No token now (endpoint unreachable, slow, 5xx, a malformed answer); the next connection asks again.

    A KafkaError, so that aiokafka counts it as a failed connection and retries, as for a refused socket.
    """

    retriable = True


class TokenRejected(TokenError):
    """The endpoint refused the grant (a 4xx such as invalid_client): retrying cannot help."""

    retriable = False


@dataclass(frozen=True)
class OAuthClient:
    """Where and as whom to ask for tokens (KAFKA_SASL_OAUTH_*)."""

    token_url: str
    client_id: str
    client_secret: str = field(repr=False)
    scope: str | None = None
    extensions: tuple[tuple[str, str], ...] = ()


def oauth_client(found: Mapping[str, str | None], oauthbearer: bool) -> OAuthClient | None:
    """The client from the KAFKA_SASL_OAUTH_* values read (None: unset); ValueError names what is wrong."""
    given = [name for name, value in found.items() if value is not None]
    if not oauthbearer:
        if given:
            raise ValueError(f"{', '.join(given)} set, but KAFKA_SASL_MECHANISM is not OAUTHBEARER")
        return None
    missing = [f"{n} (or {n}_FILE)" if n.endswith("_SECRET") else n for n in _REQUIRED if found.get(n) is None]
    if missing:
        raise ValueError(f"KAFKA_SASL_MECHANISM=OAUTHBEARER needs {', '.join(missing)}")
    url, client_id, secret = (found[name] or "" for name in _REQUIRED)
    if urlsplit(url).scheme == "http" and urlsplit(url).hostname not in ("127.0.0.1", "::1", "localhost"):
        log.warning("KAFKA_SASL_OAUTH_TOKEN_URL is plain http: the client secret crosses the network unencrypted")
    scope, extensions = found.get("KAFKA_SASL_OAUTH_SCOPE"), found.get("KAFKA_SASL_OAUTH_EXTENSIONS")
    return OAuthClient(url, client_id, secret, scope, parse_extensions(extensions or ""))


def check_nonempty(value: str) -> str | None:
    return None if value else "a non-empty value"


def check_scope(value: str) -> str | None:
    # RFC 6749 §3.3: space-separated names of printable ASCII without '"' and '\\'.
    return None if _SCOPE.fullmatch(value) else "space-separated scope names of printable ASCII"


def check_token_url(value: str) -> str | None:
    parts = urlsplit(value)
    ok = parts.scheme in ("http", "https") and bool(parts.hostname) and not parts.fragment
    # Credentials in the URL would clash with the client's own Basic auth and end up in every log line.
    ok = ok and parts.username is None and parts.password is None
    return None if ok else "an http:// or https:// URL of the token endpoint, without credentials in it"


def check_extensions(value: str) -> str | None:
    try:
        parse_extensions(value)
    except ValueError as exc:
        return str(exc)
    return None


# Every KAFKA_SASL_OAUTH_* setting and its check (the secret also from a file: Settings reads *_SECRET so).
OAUTH_CHECKS: dict[str, Callable[[str], str | None]] = {
    "KAFKA_SASL_OAUTH_TOKEN_URL": check_token_url,
    "KAFKA_SASL_OAUTH_CLIENT_ID": check_nonempty,
    "KAFKA_SASL_OAUTH_CLIENT_SECRET": check_nonempty,
    "KAFKA_SASL_OAUTH_SCOPE": check_scope,
    "KAFKA_SASL_OAUTH_EXTENSIONS": check_extensions,
}
_REQUIRED = ("KAFKA_SASL_OAUTH_TOKEN_URL", "KAFKA_SASL_OAUTH_CLIENT_ID", "KAFKA_SASL_OAUTH_CLIENT_SECRET")


def parse_extensions(value: str) -> tuple[tuple[str, str], ...]:
    """KAFKA_SASL_OAUTH_EXTENSIONS, "key=value,key2=value2" (librdkafka's format: no comma in a value)."""
    expected = "comma-separated key=value pairs, keys of letters only (not 'auth'), e.g. 'logicalCluster=lkc-1'"
    pairs: dict[str, str] = {}
    for item in filter(None, (part.strip() for part in value.split(","))):
        key, sep, val = item.partition("=")
        if not sep or not _EXT_KEY.fullmatch(key) or key == "auth" or not _EXT_VALUE.fullmatch(val):
            raise ValueError(expected)
        if key in pairs:
            raise ValueError(f"{expected}; {key!r} is given twice")
        pairs[key] = val
    return tuple(pairs.items())


def jwt_expiry(token: str) -> float | None:
    """The `exp` claim (epoch seconds) of a JWT, read without checking the signature (the broker does);
    None for an opaque token."""
    parts = token.split(".")
    if len(parts) != 3:
        return None
    try:
        claims = json.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
    except (ValueError, binascii.Error):
        return None
    exp = claims.get("exp") if isinstance(claims, dict) else None
    return float(exp) if isinstance(exp, int | float) and not isinstance(exp, bool) else None


@dataclass(frozen=True)
class _Token:
    value: str
    refresh_at: float  # monotonic
    expires_at: float  # monotonic
    fetched_at: float  # monotonic


class ClientCredentialsTokenProvider(AbstractTokenProvider):  # type: ignore[misc]
    """aiokafka's `sasl_oauth_token_provider`: `token()` when a connection authenticates, `extensions()`."""

    def __init__(
        self,
        client: OAuthClient,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.client = client
        self._clock = clock
        self._wall_clock = wall_clock
        self._token: _Token | None = None
        self._inflight: asyncio.Task[_Token] | None = None
        self.requests = 0  # token requests sent, for the logs and the tests
        # aiokafka's connections make their OAUTHBEARER handshake with this module attribute; only
        # processes that use OAuth get the stricter one.
        aiokafka_conn.OAuthAuthenticator = _OAuthAuthenticator

    def extensions(self) -> dict[str, str]:
        return dict(self.client.extensions)

    async def token(self) -> str:
        cached = self._token
        if cached is not None and self._clock() < cached.refresh_at:
            return cached.value
        # Single flight: every caller waiting for a refresh awaits the same request, and shares its failure.
        if self._inflight is None:
            self._inflight = asyncio.create_task(self._fetch())
            self._inflight.add_done_callback(self._forget_inflight)
        try:
            fresh = await asyncio.shield(self._inflight)
        except TokenError as exc:
            # Refreshing early leaves room: a token still valid is better than no connection, even when the
            # grant is now refused (a revoked secret then shows at the token's expiry, and at the next start).
            if cached is not None and self._clock() < cached.expires_at - 1.0:
                log.warning("Kafka OAuth token refresh failed, using the current token until it expires: %s", exc)
                return cached.value
            raise
        self._token = fresh
        return fresh.value

    def _forget_inflight(self, task: asyncio.Task[_Token]) -> None:
        if self._inflight is task:
            self._inflight = None
        if not task.cancelled():
            task.exception()  # retrieved here, so a failure nobody awaited is not reported as lost

    async def _fetch(self) -> _Token:
        import aiohttp  # here, not at the top: Settings imports this module and most of its users never ask

        c = self.client
        form = {"grant_type": "client_credentials"}
        if c.scope:
            form["scope"] = c.scope
        # RFC 6749 §2.3.1: id and secret are form-encoded before Basic auth; unreserved characters (what
        # generated ids and secrets are made of) come out unchanged, so servers that skip decoding agree.
        basic = base64.b64encode(f"{quote_plus(c.client_id, safe='')}:{quote_plus(c.client_secret, safe='')}".encode())
        headers = {"Authorization": f"Basic {basic.decode()}", "Accept": "application/json"}
        self.requests += 1
        started = self._clock()
        try:
            async with (
                aiohttp.ClientSession(
                    timeout=aiohttp.ClientTimeout(HTTP_TIMEOUT_S, connect=HTTP_TIMEOUT_S / 2)
                ) as session,
                session.post(c.token_url, data=form, headers=headers) as resp,
            ):
                body = await resp.read()
                status = resp.status
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise TokenError(f"token endpoint {c.token_url} did not answer: {exc.__class__.__name__} {exc}") from None
        except Exception as exc:  # anything else must still reach aiokafka as a failed connection, not a crash
            raise TokenError(f"token request to {c.token_url} failed: {exc.__class__.__name__} {exc}") from None
        if status != 200:
            raise _refusal(c, status, body)
        # Kept here, not by the caller: a token fetched for callers that were all cancelled is not lost.
        self._token = self._parse(body, started)
        return self._token

    def refused(self) -> None:
        """The broker refused the current token (a rotated key, a revocation, clock skew): fetch a new
        one for the next connection, at most once per REFUSED_REFETCH_S so that a broker refusing every
        token does not turn each reconnect into a token request."""
        cached = self._token
        if cached is not None and self._clock() - cached.fetched_at >= REFUSED_REFETCH_S:
            log.warning("the broker refused the Kafka OAuth token: the next connection fetches a new one")
            self._token = None

    def _parse(self, body: bytes, started: float) -> _Token:
        url = self.client.token_url
        try:
            answer = json.loads(body)
        except ValueError:
            answer = None
        token = answer.get("access_token") if isinstance(answer, dict) else None
        if not isinstance(token, str) or not _B64TOKEN.fullmatch(token):
            raise TokenError(f"token endpoint {url} answered 200 without a usable access_token")
        assert isinstance(answer, dict)
        lifetimes = []
        expires_in = answer.get("expires_in")
        if isinstance(expires_in, str) and expires_in.isdigit():  # some servers send it quoted
            expires_in = int(expires_in)
        if isinstance(expires_in, int | float) and not isinstance(expires_in, bool):
            lifetimes.append(float(expires_in))
        exp = jwt_expiry(token)
        if exp is not None:
            lifetimes.append(exp - self._wall_clock())
        # Counted from when the request left: the token was issued somewhere in between.
        lifetime = min(lifetimes) if lifetimes else UNKNOWN_LIFETIME_S
        log.info("Kafka OAuth token from %s, valid for %.0fs; refreshed after %.0fs", url, lifetime, lifetime * 0.8)
        return _Token(token, started + lifetime * REFRESH_AT, started + lifetime, self._clock())


def _refusal(client: OAuthClient, status: int, body: bytes) -> TokenError:
    """The endpoint's error (RFC 6749 §5.2: `error`, `error_description`) in a message that names the
    settings to check; never the secret."""
    try:
        answer = json.loads(body)
    except ValueError:
        answer = None
    detail = ""
    if isinstance(answer, dict) and isinstance(answer.get("error"), str):
        detail = answer["error"]
        if isinstance(answer.get("error_description"), str):
            detail += f" ({answer['error_description']})"
    said = f"HTTP {status}{' ' + detail[:200] if detail else ''}"
    if status in (400, 401, 403):
        return TokenRejected(
            f"token endpoint {client.token_url} refused the client credentials grant for client "
            f"{client.client_id!r}: {said}; check {CREDENTIAL_SETTINGS}"
        )
    if 400 <= status < 500 and status not in _TRANSIENT_4XX:
        return TokenRejected(f"token endpoint {client.token_url} answered {said}; check KAFKA_SASL_OAUTH_TOKEN_URL")
    return TokenError(f"token endpoint {client.token_url} answered {said}")


class _OAuthAuthenticator(aiokafka_conn.OAuthAuthenticator):  # type: ignore[misc]
    """aiokafka 0.14 takes a broker's refusal of the token for success: the broker answers with an error
    challenge (RFC 7628 §3.2.2, e.g. {"status":"invalid_token"}), aiokafka logs "Authenticated" and the
    unauthenticated connection then gets empty metadata, so an expired or foreign token looks like a
    cluster without brokers. Fail the handshake with the broker's words instead, as for a bad password."""

    async def step(self, payload: bytes | None) -> tuple[bytes, bool] | None:
        if self._token_sent and payload:
            provider = self._sasl_oauth_token_provider
            if isinstance(provider, ClientCredentialsTokenProvider):
                provider.refused()
            raise SaslAuthenticationFailed(f"the broker refused the OAuth token: {payload.decode(errors='replace')}")
        result: tuple[bytes, bool] | None = await super().step(payload)
        return result
