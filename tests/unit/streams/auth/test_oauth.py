"""KAFKA_SASL_OAUTH_* settings and the client-credentials token provider (streams/auth/oauth.py), the provider
against the loopback OIDC server over real HTTP, with a clock the tests move."""

from __future__ import annotations

import asyncio
import io
import logging
import re
import time
from contextlib import redirect_stderr
from pathlib import Path
from typing import Any

import pytest
from aiokafka import conn as aiokafka_conn
from aiokafka.errors import SaslAuthenticationFailed

from streams.app import _check_kafka_token
from streams.auth import oauth, sasl_token
from streams.auth.oauth import ClientCredentialsTokenProvider, OAuthClient, TokenError, TokenRejected, jwt_expiry
from streams.local.oidc import LocalOidc
from streams.local.proc import free_port
from streams.settings import Settings, SettingsError

OAUTH = {
    "KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
    "KAFKA_SASL_MECHANISM": "OAUTHBEARER",
    "KAFKA_SASL_OAUTH_TOKEN_URL": "https://idp.example/oauth2/token",
    "KAFKA_SASL_OAUTH_CLIENT_ID": "ecomind-streams",
    "KAFKA_SASL_OAUTH_CLIENT_SECRET": "s3cret",
}
NEEDS = "KAFKA_SASL_MECHANISM=OAUTHBEARER needs"
EXT = "comma-separated key=value pairs, keys of letters only (not 'auth'), e.g. 'logicalCluster=lkc-1'"


# --- settings ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "error"),
    [
        ({"KAFKA_SASL_OAUTH_TOKEN_URL": None}, f"{NEEDS} KAFKA_SASL_OAUTH_TOKEN_URL"),
        ({"KAFKA_SASL_OAUTH_CLIENT_ID": " "}, f"{NEEDS} KAFKA_SASL_OAUTH_CLIENT_ID"),
        (
            {"KAFKA_SASL_OAUTH_CLIENT_SECRET": None},
            f"{NEEDS} KAFKA_SASL_OAUTH_CLIENT_SECRET (or KAFKA_SASL_OAUTH_CLIENT_SECRET_FILE)",
        ),
        (
            {"KAFKA_SASL_OAUTH_TOKEN_URL": None, "KAFKA_SASL_OAUTH_CLIENT_ID": None},
            f"{NEEDS} KAFKA_SASL_OAUTH_TOKEN_URL, KAFKA_SASL_OAUTH_CLIENT_ID",
        ),
        (
            {"KAFKA_SASL_OAUTH_TOKEN_URL": "idp.example/token"},
            "KAFKA_SASL_OAUTH_TOKEN_URL='idp.example/token': expected an http:// or https:// URL of the token "
            "endpoint, without credentials in it",
        ),
        (
            {"KAFKA_SASL_OAUTH_TOKEN_URL": "https://user:pw@idp.example/token"},
            "KAFKA_SASL_OAUTH_TOKEN_URL='https://user:***@idp.example/token': expected an http:// or https:// URL of "
            "the token endpoint, without credentials in it",
        ),
        (
            {"KAFKA_SASL_OAUTH_TOKEN_URL": "ftp://idp.example/token"},
            "KAFKA_SASL_OAUTH_TOKEN_URL='ftp://idp.example/token': expected an http:// or https:// URL of the token "
            "endpoint, without credentials in it",
        ),
        ({"KAFKA_SASL_OAUTH_EXTENSIONS": "auth=x"}, f"KAFKA_SASL_OAUTH_EXTENSIONS='auth=x': expected {EXT}"),
        ({"KAFKA_SASL_OAUTH_EXTENSIONS": "pool-id=x"}, f"KAFKA_SASL_OAUTH_EXTENSIONS='pool-id=x': expected {EXT}"),
        ({"KAFKA_SASL_OAUTH_EXTENSIONS": "cluster"}, f"KAFKA_SASL_OAUTH_EXTENSIONS='cluster': expected {EXT}"),
        ({"KAFKA_SASL_OAUTH_EXTENSIONS": "a=\x01"}, f"KAFKA_SASL_OAUTH_EXTENSIONS='a=\\x01': expected {EXT}"),
        (
            {"KAFKA_SASL_OAUTH_EXTENSIONS": "a=1,a=2"},
            f"KAFKA_SASL_OAUTH_EXTENSIONS='a=1,a=2': expected {EXT}; 'a' is given twice",
        ),
        (
            {"KAFKA_SASL_OAUTH_SCOPE": 'kafka "all"'},
            "KAFKA_SASL_OAUTH_SCOPE='kafka \"all\"': expected space-separated scope names of printable ASCII",
        ),
        (
            {"KAFKA_SECURITY_PROTOCOL": "SSL"},
            "KAFKA_SASL_MECHANISM=OAUTHBEARER needs KAFKA_SECURITY_PROTOCOL=SASL_SSL or SASL_PLAINTEXT",
        ),
        (
            {"KAFKA_SASL_USERNAME": "streams"},
            "KAFKA_SASL_USERNAME and KAFKA_SASL_PASSWORD are not used with OAUTHBEARER: unset them",
        ),
        (
            {"KAFKA_SASL_MECHANISM": "SCRAM-SHA-512", "KAFKA_SASL_USERNAME": "streams"},
            "KAFKA_SASL_OAUTH_TOKEN_URL, KAFKA_SASL_OAUTH_CLIENT_ID, KAFKA_SASL_OAUTH_CLIENT_SECRET set, but "
            "KAFKA_SASL_MECHANISM is not OAUTHBEARER",
        ),
        (
            {
                "KAFKA_SASL_MECHANISM": None,
                "KAFKA_SECURITY_PROTOCOL": None,
                "KAFKA_SASL_OAUTH_TOKEN_URL": None,
                "KAFKA_SASL_OAUTH_CLIENT_ID": None,
                "KAFKA_SASL_OAUTH_CLIENT_SECRET": None,
                "KAFKA_SASL_OAUTH_SCOPE": "kafka",
            },
            "KAFKA_SASL_OAUTH_SCOPE set, but KAFKA_SASL_MECHANISM is not OAUTHBEARER",
        ),
        (
            {"KAFKA_SASL_OAUTH_CLIENT_SECRET_FILE": "/nonexistent/secret"},
            "KAFKA_SASL_OAUTH_CLIENT_SECRET and KAFKA_SASL_OAUTH_CLIENT_SECRET_FILE are both set: set one of them",
        ),
    ],
)
def test_a_bad_oauth_setting_is_refused_with_a_message_naming_it(change: dict[str, str | None], error: str) -> None:
    env = {k: v for k, v in {**OAUTH, **change}.items() if v is not None}
    with pytest.raises(SettingsError) as refused:
        Settings.from_env(env)
    assert str(refused.value) == error
    assert "s3cret" not in str(refused.value)


def test_the_secret_comes_from_a_file_and_every_client_shares_one_provider(tmp_path: Path) -> None:
    secret = tmp_path / "client-secret"
    secret.write_text("from the file\n")
    env = {k: v for k, v in OAUTH.items() if k != "KAFKA_SASL_OAUTH_CLIENT_SECRET"}
    env |= {
        "KAFKA_SASL_OAUTH_CLIENT_SECRET_FILE": str(secret),
        "KAFKA_SASL_OAUTH_SCOPE": "kafka.read  ".strip(),
        "KAFKA_SASL_OAUTH_EXTENSIONS": " logicalCluster=lkc-1 , identityPoolId=pool-A1 ",
        "KAFKA_SSL_CAFILE": "",
    }
    kafka = Settings.from_env(env).kafka
    assert kafka.oauth == OAuthClient(
        "https://idp.example/oauth2/token",
        "ecomind-streams",
        "from the file",
        "kafka.read",
        (("logicalCluster", "lkc-1"), ("identityPoolId", "pool-A1")),
    )
    assert "from the file" not in repr(kafka)
    first, second = kafka.client_kwargs(), kafka.client_kwargs()
    assert first["sasl_mechanism"] == "OAUTHBEARER"
    assert first["sasl_oauth_token_provider"] is second["sasl_oauth_token_provider"] is kafka.token_provider
    assert not {"sasl_plain_username", "sasl_plain_password"} & set(first)
    provider = kafka.token_provider
    assert provider is not None and provider.extensions() == {"logicalCluster": "lkc-1", "identityPoolId": "pool-A1"}


@pytest.mark.parametrize(
    ("url", "warned"),
    [
        ("http://idp.internal/token", True),
        ("http://10.0.0.7:8080/token", True),
        ("https://idp.example/token", False),
        ("http://127.0.0.1:9000/token", False),
        ("http://localhost/token", False),
    ],
)
def test_a_plain_http_token_url_off_this_host_is_warned_about(
    url: str, warned: bool, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="streams.auth.oauth"):
        Settings.from_env({**OAUTH, "KAFKA_SASL_OAUTH_TOKEN_URL": url})
    assert ("the client secret crosses the network unencrypted" in caplog.text) is warned


def test_without_oauthbearer_there_is_no_provider() -> None:
    kafka = Settings.from_env({"KAFKA_SASL_MECHANISM": "PLAIN", "KAFKA_SASL_USERNAME": "u"}).kafka
    assert kafka.token_provider is None and "sasl_oauth_token_provider" not in kafka.client_kwargs()


# --- the provider ------------------------------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def oidc() -> Any:
    server = LocalOidc({"streams": "s3cret"}, audience="kafka", lifetime_s=100).start()
    yield server
    server.stop()


def _provider(oidc: LocalOidc, clock: Clock, secret: str = "s3cret", scope: str | None = None) -> Any:
    return ClientCredentialsTokenProvider(OAuthClient(oidc.token_url, "streams", secret, scope), clock=clock)


def _jwt(oidc: LocalOidc, lifetime_s: float) -> str:
    return oidc.sign({"sub": "streams", "exp": time.time() + lifetime_s})


@pytest.mark.parametrize(
    ("answer", "refresh_after_s"),
    [
        ({"expires_in": 100}, 80.0),  # 80 % of expires_in
        ({"expires_in": "3600"}, 2880.0),  # quoted, as some servers send it
        ({"jwt_lifetime": 50}, 40.0),  # no expires_in: the JWT's exp
        ({"expires_in": 100, "jwt_lifetime": 50}, 40.0),  # both: the sooner
        ({"expires_in": 30, "jwt_lifetime": 3600}, 24.0),
        ({}, 48.0),  # opaque, no expires_in: 60 s assumed
    ],
)
async def test_the_token_is_cached_and_refreshed_at_80_percent_of_its_lifetime(
    oidc: LocalOidc, answer: dict[str, Any], refresh_after_s: float
) -> None:
    clock = Clock()
    provider = _provider(oidc, clock)
    for _ in range(2):
        token = _jwt(oidc, answer["jwt_lifetime"]) if "jwt_lifetime" in answer else "opaque-token.v1"
        body = {"access_token": token, "token_type": "Bearer"}
        if "expires_in" in answer:
            body["expires_in"] = answer["expires_in"]
        oidc.forced.append((200, body))
    first = await provider.token()
    clock.now += refresh_after_s - 0.5
    assert await provider.token() == first and oidc.requests == 1
    clock.now += 1.0
    second = await provider.token()
    assert oidc.requests == 2 and provider.requests == 2
    assert second != first or "jwt_lifetime" not in answer  # a fresh JWT differs in its exp


async def test_concurrent_callers_share_one_request(oidc: LocalOidc) -> None:
    oidc.delay_s = 0.3
    provider = _provider(oidc, Clock())
    tokens = await asyncio.gather(*(provider.token() for _ in range(20)))
    assert len(set(tokens)) == 1 and oidc.requests == 1 and len(oidc.issued) == 1


async def test_a_token_fetched_for_callers_all_cancelled_is_kept(oidc: LocalOidc) -> None:
    oidc.delay_s = 0.3
    provider = _provider(oidc, Clock())
    waiter = asyncio.ensure_future(provider.token())
    await asyncio.sleep(0.05)
    waiter.cancel()  # e.g. aiokafka's connect timeout
    await asyncio.sleep(0.6)  # the request itself goes on
    assert oidc.requests == 1
    await provider.token()
    assert oidc.requests == 1  # the cached token, not a second request


async def test_a_token_the_broker_refuses_is_fetched_again_at_most_every_30_s(oidc: LocalOidc) -> None:
    clock = Clock()
    provider = _provider(oidc, clock)
    first = await provider.token()
    provider.refused()  # right after the fetch: kept, or a refusing broker would drive a request per reconnect
    assert await provider.token() == first and oidc.requests == 1
    clock.now += sasl_token.REFUSED_REFETCH_S
    provider.refused()
    await provider.token()
    assert oidc.requests == 2


@pytest.mark.parametrize(
    ("client_id", "secret"),
    [
        ("streams", "s3cret"),
        ("svc:kafka", "p@ss:w%rd+/ é"),  # RFC 6749 §2.3.1: form-encoded before Basic auth
        ("0oa1b2c3", "AbC~dEf.gh_-IJ"),  # unreserved only: sent as is
    ],
)
async def test_credentials_are_sent_by_basic_auth_and_the_scope_in_the_form(client_id: str, secret: str) -> None:
    server = LocalOidc({client_id: secret}).start()
    try:
        provider = ClientCredentialsTokenProvider(OAuthClient(server.token_url, client_id, secret, "kafka.read a:b"))
        token = await provider.token()
        (issued,) = server.issued
        assert issued.client_id == client_id and issued.claims["scope"] == "kafka.read a:b"
        assert jwt_expiry(token) == issued.claims["exp"]
    finally:
        server.stop()


REJECTED = "check KAFKA_SASL_OAUTH_CLIENT_ID, KAFKA_SASL_OAUTH_CLIENT_SECRET and KAFKA_SASL_OAUTH_SCOPE"


@pytest.mark.parametrize(
    ("status", "body", "kind", "message"),
    [
        (401, {"error": "invalid_client", "error_description": "bad secret"}, TokenRejected,
         "refused the client credentials grant for client 'streams': HTTP 401 invalid_client (bad secret); "
         + REJECTED),
        (400, {"error": "invalid_scope"}, TokenRejected,
         "refused the client credentials grant for client 'streams': HTTP 400 invalid_scope; " + REJECTED),
        (403, "<html>Forbidden</html>", TokenRejected,
         "refused the client credentials grant for client 'streams': HTTP 403; " + REJECTED),
        (404, {"error": "not_found"}, TokenRejected, "answered HTTP 404 not_found; check KAFKA_SASL_OAUTH_TOKEN_URL"),
        (429, {"error": "slow_down"}, TokenError, "answered HTTP 429 slow_down"),
        (503, {}, TokenError, "answered HTTP 503"),
        (200, {"token_type": "Bearer"}, TokenError, "answered 200 without a usable access_token"),
        (200, {"access_token": "has spaces"}, TokenError, "answered 200 without a usable access_token"),
        (200, {"access_token": 42}, TokenError, "answered 200 without a usable access_token"),
        (200, "not json", TokenError, "answered 200 without a usable access_token"),
    ],
)  # fmt: skip
async def test_endpoint_errors_are_told_apart_and_named(
    oidc: LocalOidc, status: int, body: Any, kind: type[Exception], message: str
) -> None:
    oidc.forced.append((status, body))
    with pytest.raises(TokenError) as failed:
        await _provider(oidc, Clock()).token()
    assert type(failed.value) is kind
    assert str(failed.value) == f"{kind.__name__}: token endpoint {oidc.token_url} {message}"
    assert failed.value.retriable is (kind is TokenError)


async def test_a_wrong_secret_is_refused_by_the_real_endpoint(oidc: LocalOidc) -> None:
    with pytest.raises(TokenRejected, match="HTTP 401 invalid_client"):
        await _provider(oidc, Clock(), secret="wrong").token()
    assert oidc.refused == [(401, "invalid_client")]


async def test_an_endpoint_that_does_not_answer_is_a_bounded_transient_error(
    oidc: LocalOidc, monkeypatch: pytest.MonkeyPatch
) -> None:
    closed = OAuthClient(f"http://127.0.0.1:{free_port()}/token", "streams", "s3cret")
    with pytest.raises(TokenError, match="did not answer: ClientConnectorError") as failed:
        await ClientCredentialsTokenProvider(closed).token()
    assert type(failed.value) is TokenError
    monkeypatch.setattr(oauth, "HTTP_TIMEOUT_S", 0.3)
    oidc.delay_s = 1.5
    started = time.monotonic()
    with pytest.raises(TokenError, match="did not answer: TimeoutError"):
        await _provider(oidc, Clock()).token()
    assert time.monotonic() - started < 1.2


async def test_a_failed_refresh_keeps_the_current_token_until_it_expires(
    oidc: LocalOidc, caplog: pytest.LogCaptureFixture
) -> None:
    clock = Clock()
    provider = _provider(oidc, clock)
    first = await provider.token()  # lifetime 100 s: refreshed after 80 s
    clock.now += 85
    oidc.forced += [(503, {}), (401, {"error": "invalid_client"})]
    with caplog.at_level(logging.WARNING, logger="streams.auth.oauth"):
        assert await provider.token() == first
        assert await provider.token() == first
    assert "using the current token until it expires" in caplog.text
    clock.now += 14.5  # 99.5 s: less than a second left
    oidc.forced.append((503, {}))
    with pytest.raises(TokenError):
        await provider.token()
    assert await provider.token() != first  # the endpoint is back
    assert oidc.requests == 5


@pytest.mark.parametrize(
    ("token", "expected"),
    [
        ("eyJhbGciOiJub25lIn0.eyJleHAiOjE3MDAwMDAwMDB9.", 1_700_000_000.0),
        ("eyJhbGciOiJub25lIn0.eyJleHAiOjE3MDAwMDAwMDAuNX0.sig", 1_700_000_000.5),
        ("eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0.sig", None),  # no exp
        ("eyJhbGciOiJub25lIn0.eyJleHAiOnRydWV9.sig", None),  # exp: true
        ("eyJhbGciOiJub25lIn0.eyJleHAiOiIxNzAwMDAwMDAwIn0.sig", None),  # exp as a string
        ("eyJhbGciOiJub25lIn0.!!!.sig", None),
        ("opaque-token", None),
    ],
)
def test_jwt_expiry_reads_exp_and_nothing_else(token: str, expected: float | None) -> None:
    assert jwt_expiry(token) == expected


# --- what aiokafka sends and how a refusal surfaces ------------------------------------------------------


async def test_the_sasl_message_carries_the_token_and_the_extensions(oidc: LocalOidc) -> None:
    provider = ClientCredentialsTokenProvider(
        OAuthClient(oidc.token_url, "streams", "s3cret", None, (("logicalCluster", "lkc-1"), ("pool", "p 1")))
    )
    authenticator = aiokafka_conn.OAuthAuthenticator(sasl_oauth_token_provider=provider)
    step = await authenticator.step(None)
    assert step is not None
    payload, expect_response = step
    token = await provider.token()
    assert payload == f"n,,\x01auth=Bearer {token}\x01logicalCluster=lkc-1\x01pool=p 1\x01\x01".encode()
    assert expect_response is True
    assert await authenticator.step(b"") is None  # the broker's empty answer: authenticated
    # RFC 7628 §3.2.2: a refusal is an error challenge, which aiokafka 0.14 alone would take for success.
    refused = aiokafka_conn.OAuthAuthenticator(sasl_oauth_token_provider=provider)
    await refused.step(None)
    with pytest.raises(
        SaslAuthenticationFailed, match=re.escape('the broker refused the OAuth token: {"status":"invalid_token"}')
    ):
        await refused.step(b'{"status":"invalid_token"}')


# --- the worker's first token ------------------------------------------------------------------------------


async def test_the_worker_exits_2_on_a_refused_secret_and_waits_out_an_absent_endpoint(
    oidc: LocalOidc, caplog: pytest.LogCaptureFixture
) -> None:
    env = {**OAUTH, "KAFKA_SASL_OAUTH_TOKEN_URL": oidc.token_url, "KAFKA_SASL_OAUTH_CLIENT_ID": "streams"}
    stderr = io.StringIO()
    with redirect_stderr(stderr), pytest.raises(SystemExit) as exited:
        await _check_kafka_token(Settings.from_env({**env, "KAFKA_SASL_OAUTH_CLIENT_SECRET": "wrong"}))
    assert exited.value.code == 2
    assert stderr.getvalue().startswith(f"ecomind-streams: Kafka OAuth: TokenRejected: token endpoint {oidc.token_url}")
    assert "wrong" not in stderr.getvalue()
    absent = {**env, "KAFKA_SASL_OAUTH_TOKEN_URL": f"http://127.0.0.1:{free_port()}/token"}
    with caplog.at_level(logging.WARNING, logger="streams.app"):
        await _check_kafka_token(Settings.from_env(absent))  # returns: the clients keep asking
    assert "no Kafka OAuth token yet" in caplog.text
    good = Settings.from_env({**env, "KAFKA_SASL_OAUTH_CLIENT_SECRET": "s3cret"})
    await _check_kafka_token(good)
    assert good.kafka.token_provider is not None and good.kafka.token_provider.requests == 1
    await _check_kafka_token(Settings.from_env({}))  # no OAuth: nothing asked
    assert oidc.refused == [(401, "invalid_client")]


# --- the Helm chart ----------------------------------------------------------------------------------------

CHART_OAUTH = """
kafka:
  securityProtocol: SASL_SSL
  sasl:
    mechanism: OAUTHBEARER
    oauth:
      tokenUrl: https://login.example/tenant/oauth2/v2.0/token
      clientId: ecomind-streams
      existingSecret: kafka-oauth
      clientSecretKey: secret
      scope: api://kafka/.default
      extensions: {logicalCluster: lkc-abc123, identityPoolId: pool-Xy1}
"""


def _chart_values(tmp_path: Path) -> str:
    path = tmp_path / "oauth-values.yaml"
    path.write_text(CHART_OAUTH)
    return str(path)


def test_the_chart_passes_oauth_settings_the_sidecar_accepts_with_the_secret_from_a_file(tmp_path: Path) -> None:
    from tests.unit.deploy.helm import materialise_mounts, pod_container, render, settings_env_names

    pod, container = pod_container(render("default", "-f", _chart_values(tmp_path)))
    env = {e["name"]: e["value"] for e in container["env"]}
    assert set(env) <= settings_env_names(), set(env) - settings_env_names()
    assert "KAFKA_SASL_OAUTH_CLIENT_SECRET" not in env and "KAFKA_SASL_USERNAME" not in env  # never inline
    (mount,) = materialise_mounts(pod, container, tmp_path / "root").items()
    secret = env["KAFKA_SASL_OAUTH_CLIENT_SECRET_FILE"]
    assert secret == f"{mount[0]}/secret"
    settings = Settings.from_env({**env, "KAFKA_SASL_OAUTH_CLIENT_SECRET_FILE": str(mount[1] / "secret")})
    assert settings.kafka.oauth == OAuthClient(
        "https://login.example/tenant/oauth2/v2.0/token",
        "ecomind-streams",
        "secret-value",
        "api://kafka/.default",
        (("identityPoolId", "pool-Xy1"), ("logicalCluster", "lkc-abc123")),
    )
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["kafka-oauth"]["secret"] == {
        "secretName": "kafka-oauth",
        "items": [{"key": "secret", "path": "secret"}],
    }


@pytest.mark.parametrize(
    "bad",
    [
        "kafka.sasl.oauth.tokenUrl=",
        "kafka.sasl.oauth.tokenUrl=login.example/token",
        "kafka.sasl.oauth.clientId=",
        "kafka.sasl.oauth.existingSecret=",
        "kafka.securityProtocol=SSL",
        "kafka.sasl.username=streams",
        "kafka.sasl.oauth.extensions.auth=x",
        "kafka.sasl.oauth.extensions.pool-id=x",
        r"kafka.sasl.oauth.extensions.pools=a\,b",
    ],
)
def test_the_values_schema_refuses_what_the_sidecar_would_refuse(tmp_path: Path, bad: str) -> None:
    from tests.unit.deploy.helm import CHART, KUBERNETES_VERSION, run_helm

    args = ["-f", _chart_values(tmp_path), "--set", bad]
    done = run_helm("template", "prod", str(CHART), "--kube-version", KUBERNETES_VERSION, *args)
    assert done.returncode != 0 and "schema" in done.stderr, done.stderr
