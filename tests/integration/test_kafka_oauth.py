"""Kafka over SASL/OAUTHBEARER end to end: a loopback OIDC provider issues 20-second RS256 JWTs by the
client-credentials grant, Apache Kafka checks them against its JWKS (signature, expiry, issuer,
audience) and ends each session when its token expires (KIP-368). The sidecar's clients (tap, lag
probe, dead-letter producer) must keep reading across token refreshes, and a wrong client secret must
stop the worker at once with a clear message."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import orjson
import pytest
from aiokafka.conn import create_conn
from aiokafka.errors import SaslAuthenticationFailed

from streams.auth.oauth import ClientCredentialsTokenProvider, OAuthClient
from streams.local.brokers import LocalKafka, OAuthBearer
from streams.local.oidc import LocalOidc
from streams.local.redis_server import LocalRedis
from streams.local.scrape import Samples, value
from streams.local.sidecar_proc import SidecarProc, wait_until
from streams.local.topics import make_topics
from tests.integration.conftest import Names, sidecar_env
from tests.integration.kafka_io import Out, commit_group, produce

pytestmark = [pytest.mark.integration, pytest.mark.kafka_only]

LIFETIME_S = 20
CLIENT_ID, SECRET = "ecomind-streams", "s3cret/with+odd chars"  # form-encoded in Basic auth (RFC 6749 §2.3.1)


@dataclass
class Stack:
    oidc: LocalOidc
    kafka: LocalKafka
    internal: str  # the broker's PLAINTEXT listener, for the test's own producing and committing
    home: Path


@pytest.fixture(scope="module")
def stack(workdir: Path) -> Iterator[Stack]:
    home = workdir / "oauth"
    oidc = LocalOidc({CLIENT_ID: SECRET}, audience="kafka-broker", lifetime_s=LIFETIME_S).start()
    oauth = OAuthBearer(oidc.jwks_url, oidc.issuer, "kafka-broker")
    kafka = LocalKafka(home / "kafka", oauth=oauth)
    try:
        kafka.start()
        yield Stack(oidc, kafka, oauth.internal_bootstrap, home)
    finally:
        kafka.stop()
        oidc.stop()


def _oauth_env(stack: Stack, secret_file: Path, **extra: str) -> dict[str, str]:
    return {
        "KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
        "KAFKA_SASL_MECHANISM": "OAUTHBEARER",
        "KAFKA_SASL_OAUTH_TOKEN_URL": stack.oidc.token_url,
        "KAFKA_SASL_OAUTH_CLIENT_ID": CLIENT_ID,
        "KAFKA_SASL_OAUTH_CLIENT_SECRET_FILE": str(secret_file),
        "KAFKA_SASL_OAUTH_SCOPE": "kafka.read kafka.write",
        "KAFKA_SASL_OAUTH_EXTENSIONS": "logicalCluster=lkc-test,identityPoolId=pool-1",
        **extra,
    }


def _events(org: str, users: range, ts_ms: int) -> list[bytes]:
    return [
        orjson.dumps({"org_id": org, "user_id": f"u{n}", "provider": "openai", "model": "gpt-4o", "tokens_in": 1,
                      "tokens_out": 2, "ts": ts_ms})
        for n in users
    ]  # fmt: skip


def _scrape_when(proc: SidecarProc, want: dict[tuple[str, tuple[tuple[str, str], ...]], float]) -> Samples:
    def check() -> Samples | None:
        m = proc.scrape()
        got = {k: value(m, k[0], **dict(k[1])) for k in want}
        return m if got == want else None

    try:
        return wait_until(check, 60, what="exact values")
    except AssertionError:
        m = proc.scrape()
        raise AssertionError({k: (value(m, k[0], **dict(k[1])), v) for k, v in want.items()}) from None


def _log(proc: SidecarProc) -> str:
    assert proc.server is not None
    return proc.server.log_path.read_text(errors="replace")


def test_sidecar_reads_and_measures_lag_over_oauth_across_token_refreshes(
    stack: Stack, redis_server: LocalRedis, names: Names
) -> None:
    dead = f"dead.{names.app_id}"
    make_topics(stack.internal, [names.raw, names.enriched, dead], partitions=2)
    now = int(time.time() * 1000)
    # raw: 60 events on partition 0 plus one that is not JSON, 40 on partition 1 (ends 61 and 40).
    first = [Out(e, 0) for e in _events("o1", range(60), now)] + [Out(b"{not json", 0)]
    produce(stack.internal, names.raw, first + [Out(e, 1) for e in _events("o2", range(40), now)])
    commit_group(stack.internal, names.watch_group, names.raw, {0: 21, 1: 10})
    secret_file = stack.home / f"{names.app_id}.secret"
    secret_file.write_text(SECRET + "\n")
    tokens_before = len(stack.oidc.issued)
    env = sidecar_env(
        stack.kafka, redis_server, names, STREAMS_DEAD_LETTER_TOPIC=dead, **_oauth_env(stack, secret_file)
    )
    proc = SidecarProc(stack.home / names.app_id, env).start()
    try:
        proc.wait_ready()
        ingested = "ecomind_events_ingested_total"
        worker_lag = "ecomind_worker_kafka_lag"
        before = {
            (ingested, (("org_id", "o1"), ("provider", "openai"))): 60.0,
            (ingested, (("org_id", "o2"), ("provider", "openai"))): 40.0,
            ("ecomind_daily_active_users", ()): 100.0,
            ("ecomind_streams_events_invalid_total", (("topic", names.raw), ("reason", "not_json"))): 1.0,
            ("ecomind_streams_dead_letters_total", ()): 1.0,  # the dead-letter producer wrote over OAuth
            # The lag probe's admin client and consumer: the watched group's committed offsets, exactly.
            (worker_lag, (("topic", names.raw), ("partition", "0"))): 40.0,
            (worker_lag, (("topic", names.raw), ("partition", "1"))): 30.0,
        }
        _scrape_when(proc, before)
        first_token = stack.oidc.issued[tokens_before]
        assert first_token.client_id == CLIENT_ID and first_token.claims["scope"] == "kafka.read kafka.write"

        # Past the first token's expiry, and the broker's end of every session it opened: all the
        # connections the sidecar reads and probes on now are new ones, on a refreshed token.
        wait_until(lambda: time.time() > first_token.claims["exp"] + 3, LIFETIME_S + 10, what="first token expired")
        wait_until(lambda: len(stack.oidc.issued) >= tokens_before + 2, 30, what="a refreshed token")
        later = int(time.time() * 1000)
        produce(stack.internal, names.raw, [Out(e, 1) for e in _events("o3", range(25), later)])
        commit_group(stack.internal, names.watch_group, names.raw, {0: 61, 1: 50})
        after = {
            **before,
            (ingested, (("org_id", "o3"), ("provider", "openai"))): 25.0,
            ("ecomind_daily_active_users", ()): 125.0,
            (worker_lag, (("topic", names.raw), ("partition", "0"))): 0.0,
            (worker_lag, (("topic", names.raw), ("partition", "1"))): 15.0,
        }
        m = _scrape_when(proc, after)
        assert value(m, "ecomind_streams_broker_up") == 1.0 and value(m, "ecomind_streams_ready") == 1.0

        # One provider for every client: tokens come one at a time, each refreshed at 80 % of its
        # lifetime (16 s), never one per connection.
        issued = stack.oidc.issued[tokens_before:]
        gaps = [b.at - a.at for a, b in itertools.pairwise(issued)]
        assert gaps and all(gap >= LIFETIME_S * 0.8 - 0.5 for gap in gaps), gaps
        log = _log(proc)
        assert log.count("Authenticated via OAUTHBEARER") >= 2 * 4, log[-3000:]  # 4 clients, twice at least
        assert "SaslAuthenticationFailed" not in log  # no expired or refused token was ever offered
        # A client without OAuth (one Faust made, say) would fail on the SASL listener, again and again.
        assert "Unable to bootstrap" not in log
        # aiokafka does not re-authenticate (KIP-368): each expiry closes the connections, seen as a blip.
        blips = log.count("Kafka unreachable")
        print(f"tokens issued {len(issued)}, gaps {[round(g, 1) for g in gaps]} s, broker_up blips {blips}")
    finally:
        proc.stop()


def test_wrong_client_secret_stops_the_worker_with_a_clear_error(
    stack: Stack, redis_server: LocalRedis, names: Names
) -> None:
    secret_file = stack.home / f"{names.app_id}.wrong"
    secret_file.write_text("not-the-secret\n")
    refused_before = len(stack.oidc.refused)
    env = sidecar_env(stack.kafka, redis_server, names, **_oauth_env(stack, secret_file))
    proc = SidecarProc(stack.home / names.app_id, env).start()
    assert proc.server is not None and proc.server.proc is not None
    started = time.monotonic()
    code = proc.server.proc.wait(timeout=60)
    took = time.monotonic() - started
    log = _log(proc)
    assert code == 2, log[-3000:]
    expected = (
        f"ecomind-streams: Kafka OAuth: TokenRejected: token endpoint {stack.oidc.token_url} refused the client "
        f"credentials grant for client '{CLIENT_ID}': HTTP 401 invalid_client (client authentication failed); "
        "check KAFKA_SASL_OAUTH_CLIENT_ID, KAFKA_SASL_OAUTH_CLIENT_SECRET and KAFKA_SASL_OAUTH_SCOPE"
    )
    assert expected in log, log[-3000:]
    assert "Traceback" not in log and "not-the-secret" not in log
    assert stack.oidc.refused[refused_before:] == [(401, "invalid_client")]  # asked once, not retried
    assert took < 30, took
    print(f"exit code {code} after {took:.1f}s")


@pytest.mark.parametrize(
    ("case", "accepted"),
    [
        ("the provider's own token", True),
        ("signed by an unknown key", False),
        ("for another audience", False),
        ("from another issuer", False),
        ("expired", False),
    ],
)
def test_the_broker_checks_signature_audience_issuer_and_expiry(stack: Stack, case: str, accepted: bool) -> None:
    """The control: tokens that differ from the accepted ones in one respect are refused, so the tokens the
    sidecar was let in with were checked, not waved through (see BrokerJwtValidator in brokers.py)."""
    trusted = stack.oidc
    audience, lifetime, issuer = {
        "for another audience": ("someone-else", LIFETIME_S, trusted.issuer),
        "from another issuer": ("kafka-broker", LIFETIME_S, "http://127.0.0.1:1/elsewhere"),
        "expired": ("kafka-broker", -60, trusted.issuer),
    }.get(case, ("kafka-broker", LIFETIME_S, trusted.issuer))
    other = LocalOidc({CLIENT_ID: SECRET}, audience, lifetime, issuer_url=issuer).start()
    if case != "signed by an unknown key":
        other.key, other.kid = trusted.key, trusted.kid
    source = trusted if case == "the provider's own token" else other
    provider = ClientCredentialsTokenProvider(OAuthClient(source.token_url, CLIENT_ID, SECRET))
    try:
        result = asyncio.run(_handshake(stack.kafka, provider))
    finally:
        other.stop()
    assert result == ("ok" if accepted else 'the broker refused the OAuth token: {"status":"invalid_token"}')


async def _handshake(kafka: LocalKafka, provider: ClientCredentialsTokenProvider) -> str:
    try:
        conn = await create_conn(
            "127.0.0.1",
            kafka.port,
            security_protocol="SASL_PLAINTEXT",
            sasl_mechanism="OAUTHBEARER",
            sasl_oauth_token_provider=provider,
        )
    except SaslAuthenticationFailed as exc:
        return str(exc.args[0])
    conn.close()
    return "ok"
