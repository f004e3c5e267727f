"""SASL/OAUTHBEARER tokens from an OIDC client-credentials grant (RFC 6749 §4.4), for aiokafka.

The caching, the single flight and the broker's refusal are streams/auth/sasl_token.py's; this module asks
the token endpoint and reads its answer.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from urllib.parse import quote_plus, urlsplit

from streams.auth.sasl_token import REFRESH_AT, CachedTokenProvider, Token
from streams.auth.sasl_token import TokenError as TokenError
from streams.auth.sasl_token import TokenRejected as TokenRejected

log = logging.getLogger(__name__)

# Neither expires_in nor a JWT exp: the broker still ends the session at the token's real expiry, which
# is unknown here, so ask again soon rather than hand out a token that may be dead.
UNKNOWN_LIFETIME_S = 60.0
HTTP_TIMEOUT_S = 10.0  # the whole request; connecting alone gets half
# RFC 6750 b64token: a token outside it cannot be sent in the SASL message (RFC 7628 §3.1).
_B64TOKEN = re.compile(r"[A-Za-z0-9\-._~+/]+=*")
# RFC 7628 §3.1 keys and values; Kafka reserves "auth" (the token itself).
_EXT_KEY = re.compile(r"[A-Za-z]+")
_EXT_VALUE = re.compile(r"[\x21-\x7e \t\r\n]+")
_SCOPE = re.compile(r"[\x21\x23-\x5b\x5d-\x7e]+( [\x21\x23-\x5b\x5d-\x7e]+)*")
# Too many requests, too early, timed out: the endpoint is busy, the credentials may still be right.
_TRANSIENT_4XX = {408, 425, 429}
CREDENTIAL_SETTINGS = "KAFKA_SASL_OAUTH_CLIENT_ID, KAFKA_SASL_OAUTH_CLIENT_SECRET and KAFKA_SASL_OAUTH_SCOPE"


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


class ClientCredentialsTokenProvider(CachedTokenProvider):
    """aiokafka's `sasl_oauth_token_provider`: `token()` when a connection authenticates, `extensions()`."""

    label = "OAuth"

    def __init__(
        self,
        client: OAuthClient,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__(clock)
        self.client = client
        self._wall_clock = wall_clock

    def extensions(self) -> dict[str, str]:
        return dict(self.client.extensions)

    async def _fetch(self) -> Token:
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
        return self._parse(body, started)

    def _parse(self, body: bytes, started: float) -> Token:
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
        return Token(token, started + lifetime * REFRESH_AT, started + lifetime, self._clock())


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
