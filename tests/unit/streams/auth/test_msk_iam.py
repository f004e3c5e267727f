"""The MSK IAM token provider (streams/auth/msk_iam.py) with AWS's real signer and botocore: fake credentials
in the environment or in AWS config files (the signer signs offline), a loopback STS for assumed roles and
web identities, instance metadata switched off or served on loopback, and a clock the tests move."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import io
import json
import logging
import re
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import redirect_stderr
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib.metadata import version
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, quote, urlsplit

import pytest
from aiokafka import conn as aiokafka_conn
from aiokafka.errors import SaslAuthenticationFailed
from aiokafka.protocol.admin import SaslAuthenticateRequest_v0, SaslAuthenticateResponse_v0, SaslHandShakeResponse_v1

from streams.app import _check_kafka_token
from streams.auth import msk_iam
from streams.auth.msk_iam import MskIam, MskIamTokenProvider
from streams.auth.sasl_token import TokenError, TokenRejected
from streams.settings import Settings

KEY_ID, SECRET, SESSION_TOKEN = (
    "AKIAIOSFODNN7EXAMPLE",
    "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
    "FwoGZXIvYXdz+/sess==",
)
ROLE = "arn:aws:iam::123456789012:role/msk-reader"
NO_CREDENTIALS = (
    "no AWS credentials found for MSK IAM; give the sidecar AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, a web "
    "identity (IRSA: AWS_ROLE_ARN and AWS_WEB_IDENTITY_TOKEN_FILE), EKS Pod Identity, a profile "
    "(KAFKA_SASL_AWS_PROFILE or AWS_PROFILE) or an instance profile"
)


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> pytest.MonkeyPatch:
    """An AWS environment of the test's own: nothing from the machine, no instance metadata, no retries."""
    import os

    for name in [n for n in os.environ if n.startswith("AWS_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "aws-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    return monkeypatch


def _with_keys(aws: pytest.MonkeyPatch, session_token: str | None = SESSION_TOKEN) -> None:
    aws.setenv("AWS_ACCESS_KEY_ID", KEY_ID)
    aws.setenv("AWS_SECRET_ACCESS_KEY", SECRET)
    if session_token is not None:
        aws.setenv("AWS_SESSION_TOKEN", session_token)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        """The provider's wait between asks for credentials, without waiting."""
        self.slept.append(seconds)
        self.now += seconds


def presigned_url(token: str) -> str:
    assert re.fullmatch(r"[A-Za-z0-9_-]+", token), "base64url without padding"
    return base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode()


def sigv4_signature(url: str, secret: str) -> str:
    """SigV4 of a presigned GET, computed here from the URL alone: what the broker checks."""
    parts = urlsplit(url)
    query = dict(parse_qsl(parts.query, keep_blank_values=True))
    signed = sorted((k, v) for k, v in query.items() if k not in ("X-Amz-Signature", "User-Agent"))
    canonical_query = "&".join(f"{quote(k, safe='-_.~')}={quote(v, safe='-_.~')}" for k, v in signed)
    empty_payload = hashlib.sha256(b"").hexdigest()
    request = "\n".join(["GET", parts.path, canonical_query, f"host:{parts.hostname}", "", "host", empty_payload])
    scope = query["X-Amz-Credential"].split("/", 1)[1]
    to_sign = "\n".join(["AWS4-HMAC-SHA256", query["X-Amz-Date"], scope, hashlib.sha256(request.encode()).hexdigest()])
    key = f"AWS4{secret}".encode()
    for part in scope.split("/"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    return hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()


# --- the token ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("session_token", [SESSION_TOKEN, None])
async def test_the_token_is_awss_presigned_connect_url_for_the_region(
    aws: pytest.MonkeyPatch, session_token: str | None
) -> None:
    _with_keys(aws, session_token)
    before = datetime.now(UTC).replace(microsecond=0)
    token = await MskIamTokenProvider(MskIam("eu-central-1")).token()
    url = presigned_url(token)
    parts = urlsplit(url)
    assert (parts.scheme, parts.hostname, parts.path) == ("https", "kafka.eu-central-1.amazonaws.com", "/")
    query = dict(parse_qsl(parts.query))
    signed_at = datetime.strptime(query["X-Amz-Date"], "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
    assert before <= signed_at <= datetime.now(UTC)
    assert query["Action"] == "kafka-cluster:Connect"
    assert query["X-Amz-Algorithm"] == "AWS4-HMAC-SHA256"
    assert query["X-Amz-Credential"] == f"{KEY_ID}/{signed_at:%Y%m%d}/eu-central-1/kafka-cluster/aws4_request"
    assert query["X-Amz-Expires"] == "900" and query["X-Amz-SignedHeaders"] == "host"
    assert query.get("X-Amz-Security-Token") == session_token
    assert query["User-Agent"] == f"aws-msk-iam-sasl-signer-python/{version('aws-msk-iam-sasl-signer-python')}"
    assert query["X-Amz-Signature"] == sigv4_signature(url, SECRET)
    assert query["X-Amz-Signature"] != sigv4_signature(url.replace("eu-central-1", "eu-west-1"), SECRET)
    assert SECRET not in url


async def test_the_token_is_cached_and_signed_again_at_80_percent_of_its_15_minutes(aws: pytest.MonkeyPatch) -> None:
    _with_keys(aws)
    clock = Clock()
    provider = MskIamTokenProvider(MskIam("us-east-1"), clock=clock)
    first = await provider.token()
    clock.now += 715  # the signer's tokens live 900 s from their X-Amz-Date: refreshed from 720 s on
    assert await provider.token() == first and provider.requests == 1
    clock.now += 10
    second = await provider.token()
    assert provider.requests == 2
    assert await provider.token() == second and provider.requests == 2


async def test_concurrent_callers_share_one_signature(aws: pytest.MonkeyPatch) -> None:
    _with_keys(aws)
    provider = MskIamTokenProvider(MskIam("us-east-1"))
    tokens = await asyncio.gather(*(provider.token() for _ in range(20)))
    assert len(set(tokens)) == 1 and provider.requests == 1


async def test_credentials_from_a_named_profile_in_the_aws_files(aws: pytest.MonkeyPatch, tmp_path: Path) -> None:
    (tmp_path / "aws-credentials").write_text(
        f"[default]\naws_access_key_id = AKIADEFAULT\naws_secret_access_key = x\n\n"
        f"[streams]\naws_access_key_id = AKIASTREAMS\naws_secret_access_key = {SECRET}\n"
    )
    url = presigned_url(await MskIamTokenProvider(MskIam("eu-west-1", profile="streams")).token())
    query = dict(parse_qsl(urlsplit(url).query))
    assert query["X-Amz-Credential"].startswith("AKIASTREAMS/") and "X-Amz-Security-Token" not in query
    assert query["X-Amz-Signature"] == sigv4_signature(url, SECRET)
    with pytest.raises(
        TokenRejected, match="cannot give credentials for MSK IAM: ProfileNotFound: The config profile \\(absent\\)"
    ):
        await MskIamTokenProvider(MskIam("eu-west-1", profile="absent")).token()


# --- missing or refused credentials ------------------------------------------------------------------------


async def test_missing_credentials_are_refused_clearly_and_stop_the_worker_with_exit_2(
    aws: pytest.MonkeyPatch,
) -> None:
    clock = Clock()
    with pytest.raises(TokenRejected) as refused:
        await MskIamTokenProvider(MskIam("eu-west-1"), clock=clock, sleep=clock.sleep).token()
    assert str(refused.value) == f"TokenRejected: {NO_CREDENTIALS}" and refused.value.retriable is False
    assert clock.slept == [2.0, 2.0, 2.0, 2.0]  # asked 5 times over 8 s before refusing
    aws.setattr(msk_iam, "CREDENTIALS_WAIT_S", 0.0)  # the worker's own provider, without the wait
    env = {"KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "KAFKA_SASL_MECHANISM": "AWS_MSK_IAM", "AWS_REGION": "eu-west-1"}
    stderr = io.StringIO()
    with redirect_stderr(stderr), pytest.raises(SystemExit) as exited:
        await _check_kafka_token(Settings.from_env(env))
    assert exited.value.code == 2
    assert stderr.getvalue() == f"ecomind-streams: Kafka MSK IAM: TokenRejected: {NO_CREDENTIALS}\n"


async def test_a_key_without_its_secret_is_refused(aws: pytest.MonkeyPatch) -> None:
    aws.setenv("AWS_ACCESS_KEY_ID", KEY_ID)
    with pytest.raises(TokenRejected, match="cannot give credentials for MSK IAM: PartialCredentialsError"):
        await MskIamTokenProvider(MskIam("eu-west-1")).token()


# --- instance metadata, throttled ---------------------------------------------------------------------------


class LocalImds:
    """EC2 instance metadata on 127.0.0.1 (IMDSv2, then v1), answering 503 to its first `failing` requests
    as a throttled or restarting metadata service does."""

    def __init__(self, failing: int) -> None:
        self.failing = failing
        self.requests: list[tuple[str, str]] = []
        imds = self
        role_path = "/latest/meta-data/iam/security-credentials/"
        credentials = {
            "Code": "Success",
            "Type": "AWS-HMAC",
            "AccessKeyId": "ASIAINSTANCE",
            "SecretAccessKey": "instance-secret",
            "Token": "instance/session+token",
            "Expiration": "2099-01-01T00:00:00Z",
        }

        class Handler(BaseHTTPRequestHandler):
            def answer(self) -> None:
                imds.requests.append((self.command, self.path))
                if len(imds.requests) <= imds.failing:
                    status, body = 503, ""
                else:
                    status, body = (
                        200,
                        {
                            "/latest/api/token": "imds-session-token",
                            role_path: "streams-node",
                            role_path + "streams-node": json.dumps(credentials),
                        }[self.path],
                    )
                self.send_response(status)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body.encode())

            do_GET = do_PUT = answer

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/"
        threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True).start()


@pytest.fixture
def imds(aws: pytest.MonkeyPatch) -> Iterator[LocalImds]:
    server = LocalImds(failing=6)
    aws.delenv("AWS_EC2_METADATA_DISABLED")
    aws.setenv("AWS_EC2_METADATA_SERVICE_ENDPOINT", server.url)
    yield server
    server.server.shutdown()
    server.server.server_close()


async def test_a_throttled_instance_metadata_service_is_asked_again_before_credentials_are_refused(
    imds: LocalImds, caplog: pytest.LogCaptureFixture
) -> None:
    clock = Clock()
    with caplog.at_level(logging.WARNING, logger="streams.auth.msk_iam"):
        token = await MskIamTokenProvider(MskIam("eu-west-1"), clock=clock, sleep=clock.sleep).token()
    url = presigned_url(token)
    query = dict(parse_qsl(urlsplit(url).query))
    assert query["X-Amz-Credential"].startswith("ASIAINSTANCE/")
    assert query["X-Amz-Security-Token"] == "instance/session+token"
    assert query["X-Amz-Signature"] == sigv4_signature(url, "instance-secret")
    role = "/latest/meta-data/iam/security-credentials/"
    assert imds.requests == [
        # botocore's round with 3 attempts a request (its default is 1): IMDSv2's token, then v1's role
        *[("PUT", "/latest/api/token")] * 3,
        *[("GET", role)] * 3,
        # asked again 2 s later
        ("PUT", "/latest/api/token"),
        ("GET", role),
        ("GET", role + "streams-node"),
    ]
    assert clock.slept == [2.0]
    assert "no AWS credentials for MSK IAM yet (instance metadata throttled?): asking again" in caplog.text


async def test_instance_metadata_throttled_throughout_is_refused_after_the_bounded_wait(imds: LocalImds) -> None:
    imds.failing = 10**6
    clock = Clock()
    with pytest.raises(TokenRejected) as refused:
        await MskIamTokenProvider(MskIam("eu-west-1"), clock=clock, sleep=clock.sleep).token()
    assert str(refused.value) == f"TokenRejected: {NO_CREDENTIALS}"
    assert clock.slept == [2.0] * 4 and len(imds.requests) == 5 * 6  # 5 rounds of 6 requests over 8 s


# --- an assumed role, through a loopback STS ----------------------------------------------------------------


def sts_answer(action: str, key_id: str, secret: str, expiration: str = "2099-01-01T00:00:00Z") -> str:
    return f"""<{action}Response xmlns="https://sts.amazonaws.com/doc/2011-06-15/"><{action}Result>
<Credentials><AccessKeyId>{key_id}</AccessKeyId><SecretAccessKey>{secret}</SecretAccessKey>
<SessionToken>assumed/session+token</SessionToken><Expiration>{expiration}</Expiration></Credentials>
<AssumedRoleUser><AssumedRoleId>AROA1:s</AssumedRoleId><Arn>arn:aws:sts::123456789012:assumed-role/r/s</Arn>
</AssumedRoleUser></{action}Result><ResponseMetadata><RequestId>1</RequestId></ResponseMetadata>
</{action}Response>"""


def sts_error(code: str) -> str:
    return (
        '<ErrorResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/"><Error><Type>Sender</Type>'
        f"<Code>{code}</Code><Message>{code} for this test</Message></Error><RequestId>1</RequestId></ErrorResponse>"
    )


class LocalSts:
    """Answers STS AssumeRole on 127.0.0.1 and records what it was asked."""

    def __init__(self) -> None:
        self.requests: list[tuple[dict[str, str], str]] = []  # (form, Authorization header)
        self.forced: list[tuple[int, str]] = []
        self.delay_s = 0.0
        self.answers = {
            "AssumeRole": sts_answer("AssumeRole", "ASIAASSUMED", "assumed-secret"),
            "AssumeRoleWithWebIdentity": sts_answer("AssumeRoleWithWebIdentity", "ASIAWEBIDENTITY", "web-secret"),
        }
        sts = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                form = dict(parse_qsl(self.rfile.read(int(self.headers["Content-Length"])).decode()))
                sts.requests.append((form, self.headers.get("Authorization", "")))
                time.sleep(sts.delay_s)
                status, body = sts.forced.pop(0) if sts.forced else (200, sts.answers[form["Action"]])
                self.send_response(status)
                self.send_header("Content-Type", "text/xml")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body.encode())

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True).start()


@pytest.fixture
def sts(aws: pytest.MonkeyPatch) -> Any:
    server = LocalSts()
    aws.setenv("AWS_ENDPOINT_URL_STS", server.url)
    _with_keys(aws, session_token=None)  # the base credentials the role is assumed with
    yield server
    server.server.shutdown()
    server.server.server_close()


async def test_an_assumed_roles_credentials_sign_the_token_and_are_kept_until_they_expire(sts: LocalSts) -> None:
    clock = Clock()
    provider = MskIamTokenProvider(MskIam("ap-southeast-2", role_arn=ROLE, session_name="streams-prod"), clock=clock)
    url = presigned_url(await provider.token())
    query = dict(parse_qsl(urlsplit(url).query))
    assert re.fullmatch(r"ASIAASSUMED/\d{8}/ap-southeast-2/kafka-cluster/aws4_request", query["X-Amz-Credential"])
    assert query["X-Amz-Security-Token"] == "assumed/session+token"
    assert query["X-Amz-Signature"] == sigv4_signature(url, "assumed-secret")
    ((form, authorization),) = sts.requests
    assert form["Action"] == "AssumeRole" and form["RoleArn"] == ROLE and form["RoleSessionName"] == "streams-prod"
    # asked with the base credentials, of STS in the cluster's region (no AWS_REGION here)
    assert f"Credential={KEY_ID}/" in authorization and "/ap-southeast-2/sts/aws4_request" in authorization
    clock.now += 730
    again = dict(parse_qsl(urlsplit(presigned_url(await provider.token())).query))
    # signed again, with the role's credentials, which are valid for hours yet: no second AssumeRole
    assert provider.requests == 2 and len(sts.requests) == 1
    assert again["X-Amz-Credential"].startswith("ASIAASSUMED/")


@pytest.mark.parametrize(
    ("status", "code", "kind", "message"),
    [
        (403, "AccessDenied", TokenRejected, "AWS refused the credentials for MSK IAM: ClientError: "),
        (403, "InvalidClientTokenId", TokenRejected, "AWS refused the credentials for MSK IAM: ClientError: "),
        (400, "Throttling", TokenError, "AWS answered ClientError: "),
        (503, "ServiceUnavailable", TokenError, "AWS answered ClientError: "),
    ],
)
async def test_sts_refusals_stop_and_sts_trouble_is_waited_for(
    sts: LocalSts, status: int, code: str, kind: type[TokenError], message: str
) -> None:
    sts.forced += [(status, sts_error(code))] * 2
    with pytest.raises(TokenError) as failed:
        await MskIamTokenProvider(MskIam("eu-west-1", role_arn=ROLE)).token()
    assert type(failed.value) is kind and str(failed.value).startswith(f"{kind.__name__}: {message}")
    assert f"({code})" in str(failed.value)
    assert ("check KAFKA_SASL_AWS_ROLE_ARN" in str(failed.value)) is (kind is TokenRejected)
    assert sts.requests[0][0]["RoleSessionName"] == msk_iam.DEFAULT_SESSION_NAME
    # botocore's 2 attempts for throttling and 5xx (AWS_MAX_ATTEMPTS=1 is overridden), 1 for a refusal
    assert len(sts.requests) == (1 if kind is TokenRejected else 2)


async def test_an_unreachable_sts_is_a_transient_error_and_the_worker_waits(
    sts: LocalSts, aws: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    sts.server.shutdown()
    sts.server.server_close()
    env = {
        "KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
        "KAFKA_SASL_MECHANISM": "AWS_MSK_IAM",
        "KAFKA_SASL_AWS_REGION": "eu-west-1",
        "KAFKA_SASL_AWS_ROLE_ARN": ROLE,
    }
    settings = Settings.from_env(env)
    with caplog.at_level(logging.WARNING, logger="streams.app"):
        await _check_kafka_token(settings)  # returns: the clients keep asking
    assert "no Kafka MSK IAM token yet" in caplog.text and "EndpointConnectionError" in caplog.text


async def test_a_slow_credential_chain_is_a_bounded_wait_and_its_late_token_is_kept(
    sts: LocalSts, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(msk_iam, "SIGN_TIMEOUT_S", 0.3)
    sts.delay_s = 1.0
    provider = MskIamTokenProvider(MskIam("eu-west-1", role_arn=ROLE))
    started = time.monotonic()
    with pytest.raises(TokenError, match=re.escape("no MSK IAM token after 0.3s: the AWS credential chain")):
        await provider.token()
    assert time.monotonic() - started < 0.9
    with pytest.raises(TokenError):  # still signing: waited for again, not asked again
        await provider.token()
    await asyncio.sleep(0.8)
    assert "ASIAASSUMED" in presigned_url(await provider.token())
    assert len(sts.requests) == 1 and provider.requests == 1


# --- a blocked STS, IRSA's web identity, expiring credentials -------------------------------------------


@pytest.fixture
def silent_sts(aws: pytest.MonkeyPatch) -> Iterator[list[socket.socket]]:
    """An STS endpoint that accepts connections and never answers (egress to STS dropped by a proxy)."""
    listener = socket.create_server(("127.0.0.1", 0))
    accepted: list[socket.socket] = []

    def accept() -> None:
        while True:
            try:
                accepted.append(listener.accept()[0])
            except OSError:
                return

    threading.Thread(target=accept, daemon=True).start()
    aws.setenv("AWS_ENDPOINT_URL_STS", f"http://127.0.0.1:{listener.getsockname()[1]}")
    _with_keys(aws, session_token=None)
    yield accepted
    listener.close()
    for connection in accepted:
        connection.close()


async def test_a_silent_sts_ends_the_signing_within_seconds_and_its_late_failure_is_logged(
    silent_sts: list[socket.socket], monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(msk_iam, "SIGN_TIMEOUT_S", 0.5)
    provider = MskIamTokenProvider(MskIam("eu-west-1", role_arn=ROLE))
    started = time.monotonic()
    with caplog.at_level(logging.WARNING, logger="streams.auth.msk_iam"):
        with pytest.raises(TokenError, match=re.escape("no MSK IAM token after 0.5s")):
            await provider.token()
        while "after its callers stopped waiting" not in caplog.text and time.monotonic() - started < 60:
            await asyncio.sleep(0.1)
    ended = time.monotonic() - started
    # 2 attempts of a 5 s read timeout, not botocore's default 60 s read timeout, retried
    assert 10 <= ended < 20 and len(silent_sts) == 2
    assert "MSK IAM signing failed after its callers stopped waiting: TokenError: no MSK IAM token: " in caplog.text
    assert "ReadTimeoutError: Read timeout on endpoint URL" in caplog.text
    assert provider._signing is None  # the next connection signs anew


@pytest.fixture
def web_identity(sts: LocalSts, aws: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """IRSA as EKS injects it: a role and a projected token file, no keys."""
    aws.delenv("AWS_ACCESS_KEY_ID")
    aws.delenv("AWS_SECRET_ACCESS_KEY")
    token_file = tmp_path / "eks.amazonaws.com" / "serviceaccount" / "token"
    token_file.parent.mkdir(parents=True)
    token_file.write_text("eyJhbGciOiJSUzI1NiJ9.projected.token")
    aws.setenv("AWS_ROLE_ARN", ROLE)
    aws.setenv("AWS_WEB_IDENTITY_TOKEN_FILE", str(token_file))
    return token_file


async def test_irsas_web_identity_signs_and_its_sts_client_retries_once(sts: LocalSts, web_identity: Path) -> None:
    sts.forced.append((503, sts_error("ServiceUnavailable")))
    url = presigned_url(await MskIamTokenProvider(MskIam("eu-west-1")).token())
    query = dict(parse_qsl(urlsplit(url).query))
    assert query["X-Amz-Credential"].startswith("ASIAWEBIDENTITY/")
    assert query["X-Amz-Signature"] == sigv4_signature(url, "web-secret")
    # the session's client config reaches botocore's own STS client: asked again despite AWS_MAX_ATTEMPTS=1
    assert [form["Action"] for form, _ in sts.requests] == ["AssumeRoleWithWebIdentity"] * 2
    assert sts.requests[1][0]["WebIdentityToken"] == "eyJhbGciOiJSUzI1NiJ9.projected.token"
    assert sts.requests[1][0]["RoleArn"] == ROLE


@pytest.mark.parametrize(("make", "reason"), [(None, "No such file or directory"), ("dir", "Is a directory")])
async def test_an_unreadable_web_identity_token_file_is_refused_naming_it(
    sts: LocalSts, web_identity: Path, make: str | None, reason: str
) -> None:
    web_identity.unlink()
    if make == "dir":
        web_identity.mkdir()
    env = {"KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "KAFKA_SASL_MECHANISM": "AWS_MSK_IAM", "AWS_REGION": "eu-west-1"}
    stderr = io.StringIO()
    with redirect_stderr(stderr), pytest.raises(SystemExit) as exited:
        await _check_kafka_token(Settings.from_env(env))
    assert exited.value.code == 2
    assert stderr.getvalue() == (
        f"ecomind-streams: Kafka MSK IAM: TokenRejected: the AWS credentials for MSK IAM need {web_identity}, "
        f"which the sidecar cannot read: {reason}\n"
    )
    assert sts.requests == []


async def test_a_token_ends_with_the_credentials_it_was_signed_with(
    sts: LocalSts, caplog: pytest.LogCaptureFixture
) -> None:
    ends = datetime.fromtimestamp(int(time.time()) + 720, UTC)  # an assumed role's session, 12 min left
    sts.answers["AssumeRole"] = sts_answer("AssumeRole", "ASIASHORT", "short-secret", f"{ends:%Y-%m-%dT%H:%M:%SZ}")
    clock = Clock()
    provider = MskIamTokenProvider(MskIam("eu-west-1", role_arn=ROLE), clock=clock)
    with caplog.at_level(logging.INFO, logger="streams.auth.msk_iam"):
        first = await provider.token()
    assert f"valid until {ends:%H:%M:%S}Z (the credentials' expiry)" in caplog.text
    token = provider._token
    assert token is not None and 715 < token.expires_at - token.fetched_at <= 720  # not the signer's 900 s
    clock.now += 565  # signed again at 80 % of those 12 min (576 s), not of 15 min (720 s)
    assert await provider.token() == first and provider.requests == 1
    clock.now += 15
    await provider.token()
    assert provider.requests == 2


# --- what aiokafka sends and how MSK's refusal surfaces --------------------------------------------------


async def test_the_sasl_message_carries_the_token_alone(aws: pytest.MonkeyPatch) -> None:
    _with_keys(aws)
    provider = MskIamTokenProvider(MskIam("eu-west-1"))
    authenticator = aiokafka_conn.OAuthAuthenticator(sasl_oauth_token_provider=provider)
    step = await authenticator.step(None)
    assert step == (f"n,,\x01auth=Bearer {await provider.token()}\x01\x01".encode(), True)


async def test_msks_refusal_is_an_error_code_that_fails_the_connection_and_keeps_the_token(
    aws: pytest.MonkeyPatch,
) -> None:
    """MSK answers a refused token with SaslAuthenticate error 58, not an RFC 7628 error challenge: aiokafka
    raises it without another step of the authenticator, so the provider keeps its token (re-signed at 80 %
    of its life); what MSK refuses is mostly the role's policy, which a new signature would not change."""
    _with_keys(aws)
    provider = MskIamTokenProvider(MskIam("eu-west-1"))
    connection = aiokafka_conn.AIOKafkaConnection(
        "b-1.streams.a1b2c3.c2.kafka.eu-west-1.amazonaws.com",
        9098,
        security_protocol="SASL_SSL",
        sasl_mechanism="OAUTHBEARER",
        sasl_oauth_token_provider=provider,
    )
    answers = [
        SaslHandShakeResponse_v1(error_code=0, enabled_mechanisms=["OAUTHBEARER"]),
        SaslAuthenticateResponse_v0(error_code=58, error_message="Access denied", sasl_auth_bytes=b""),
    ]
    sent: list[Any] = []

    async def send(request: Any, expect_response: bool = True) -> Any:
        sent.append(request)
        return answers.pop(0)

    connection.send = send  # type: ignore[method-assign]
    with pytest.raises(SaslAuthenticationFailed, match="Access denied"):
        await connection._do_sasl_handshake()
    token = await provider.token()
    assert sent[1].build(SaslAuthenticateRequest_v0).sasl_auth_bytes == f"n,,\x01auth=Bearer {token}\x01\x01".encode()
    assert provider.requests == 1
