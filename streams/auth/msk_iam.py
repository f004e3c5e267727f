"""Amazon MSK IAM authentication (KAFKA_SASL_MECHANISM=AWS_MSK_IAM): SASL/OAUTHBEARER with a token that
AWS's own signer (aws-msk-iam-sasl-signer-python, the `msk-iam` extra) makes from AWS credentials.

The token is a SigV4-presigned URL for `kafka-cluster:Connect` in the cluster's region, valid 15 min.
The credentials come from botocore's standard chain (environment, web identity for IRSA, EKS Pod
Identity, a profile, the instance profile), optionally used to assume a role through STS; botocore
refreshes temporary ones before they expire. The signer and botocore are synchronous and may call the
network (instance metadata, STS), so they run in a thread, one at a time, and the token is cached and
refreshed like an OAuth one (streams/auth/sasl_token.py).

Neither botocore nor the signer is imported at module level: Settings imports this module, and an image
built without the extra must still start with any other mechanism.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from streams.auth.sasl_token import REFRESH_AT, CachedTokenProvider, Token, TokenError, TokenRejected

log = logging.getLogger(__name__)

# The signer's module that imports boto3 and botocore: importing it proves the whole extra is there.
SIGNER_MODULE = "aws_msk_iam_sasl_signer.MSKAuthTokenProvider"
INSTALL = (
    "KAFKA_SASL_MECHANISM=AWS_MSK_IAM needs AWS's signer, which this install lacks: "
    "pip install 'ecomind-streams[msk-iam]', or build the image with --build-arg EXTRAS=msk-iam"
)
# A caller waits this long for a signature; the signing itself goes on in its thread and its token is
# kept. Long enough for botocore's own bounded attempts at instance metadata or STS (below).
SIGN_TIMEOUT_S = 15.0
# botocore turns a throttled or failing instance metadata service into "no credentials": asked again for
# this long before that is final. An unreachable one takes 12 s a round (2 requests x 3 attempts x 2 s),
# so it is asked once and the refusal still comes within SIGN_TIMEOUT_S.
CREDENTIALS_WAIT_S, CREDENTIALS_PAUSE_S = 10.0, 2.0
# Instance metadata (default, ours) where not configured: botocore's 1 attempt gives up at one throttle.
IMDS = {"metadata_service_num_attempts": (1, 3), "metadata_service_timeout": (1, 2)}
# Every botocore client of the session (STS for an assumed role and for IRSA's web identity): botocore's
# 60 s connect and read timeouts, retried, hold the signing thread (and shutdown) for minutes when STS is
# blocked. Here 2 attempts of at most 3 + 5 s, under 1 s apart.
AWS_CLIENT = {"connect_timeout": 3, "read_timeout": 5, "retries": {"total_max_attempts": 2, "mode": "standard"}}
DEFAULT_SESSION_NAME = "ecomind-streams"
# STS throttling and the identity provider being away answer 400, but a retry can succeed.
_TRANSIENT_CODES = {"Throttling", "ThrottlingException", "RequestLimitExceeded", "IDPCommunicationError"}
# MSK brokers' names, provisioned and serverless: b-1.<cluster>.<id>.c2.kafka.<region>.amazonaws.com.
_MSK_HOST = re.compile(r".+\.kafka(?:-serverless)?\.([a-z]{2}(?:-[a-z]+)+-\d{1,2})\.amazonaws\.com(?:\.cn)?")
_REGION = re.compile(r"[a-z]{2}(?:-[a-z]+)+-\d{1,2}")
_ROLE_ARN = re.compile(r"arn:aws[a-z-]*:iam::\d{12}:role/[\w+=,.@/-]{1,512}")
_SESSION_NAME = re.compile(r"[\w+=,.@-]{2,64}")
CREDENTIAL_CHAIN = (
    "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, a web identity (IRSA: AWS_ROLE_ARN and "
    "AWS_WEB_IDENTITY_TOKEN_FILE), EKS Pod Identity, a profile (KAFKA_SASL_AWS_PROFILE or AWS_PROFILE) or "
    "an instance profile"
)


@dataclass(frozen=True)
class MskIam:
    """Whose credentials sign, for which region (KAFKA_SASL_AWS_*)."""

    region: str
    role_arn: str | None = None
    session_name: str | None = None
    profile: str | None = None


def check_region(value: str) -> str | None:
    return None if _REGION.fullmatch(value) else "an AWS region such as eu-west-1"


def check_role_arn(value: str) -> str | None:
    return None if _ROLE_ARN.fullmatch(value) else "an IAM role ARN, arn:aws:iam::<12-digit account>:role/<name>"


def check_session_name(value: str) -> str | None:
    return None if _SESSION_NAME.fullmatch(value) else "2 to 64 letters, digits or any of _+=,.@-"


def check_profile(value: str) -> str | None:
    return None if value.strip() == value and value else "the name of a profile in the AWS config files"


# Every KAFKA_SASL_AWS_* setting and its check; read whatever the mechanism, so one set without
# AWS_MSK_IAM is refused rather than silently ignored.
MSK_IAM_CHECKS: dict[str, Callable[[str], str | None]] = {
    "KAFKA_SASL_AWS_REGION": check_region,
    "KAFKA_SASL_AWS_ROLE_ARN": check_role_arn,
    "KAFKA_SASL_AWS_ROLE_SESSION_NAME": check_session_name,
    "KAFKA_SASL_AWS_PROFILE": check_profile,
}
# The region AWS's SDKs read, in their order; only looked at with AWS_MSK_IAM.
STANDARD_REGION = ("AWS_REGION", "AWS_DEFAULT_REGION")


def broker_regions(servers: str) -> set[str]:
    """The regions named by MSK broker host names among the bootstrap servers (none for other names)."""
    hosts = (server.strip().removeprefix("kafka://").rpartition(":")[0].lower() for server in servers.split(","))
    return {match[1] for host in hosts if (match := _MSK_HOST.fullmatch(host))}


def msk_iam(
    found: Mapping[str, str | None], chosen: bool, servers: str, standard: Mapping[str, str | None]
) -> MskIam | None:
    """The configuration from the KAFKA_SASL_AWS_* values read (None: not chosen); ValueError says what is
    wrong. `standard` holds AWS_REGION and AWS_DEFAULT_REGION."""
    given = [name for name, value in found.items() if value is not None]
    if not chosen:
        if given:
            raise ValueError(f"{', '.join(given)} set, but KAFKA_SASL_MECHANISM is not AWS_MSK_IAM")
        return None
    role_arn, session_name = found.get("KAFKA_SASL_AWS_ROLE_ARN"), found.get("KAFKA_SASL_AWS_ROLE_SESSION_NAME")
    profile = found.get("KAFKA_SASL_AWS_PROFILE")
    if role_arn and profile:
        raise ValueError(
            "KAFKA_SASL_AWS_ROLE_ARN and KAFKA_SASL_AWS_PROFILE are both set: set one of them "
            "(a profile can name the role itself, with role_arn and source_profile)"
        )
    if session_name and not role_arn:
        raise ValueError("KAFKA_SASL_AWS_ROLE_SESSION_NAME is set without KAFKA_SASL_AWS_ROLE_ARN")
    try:
        importlib.import_module(SIGNER_MODULE)
    except ImportError:
        raise ValueError(INSTALL) from None
    return MskIam(_region(found.get("KAFKA_SASL_AWS_REGION"), servers, standard), role_arn, session_name, profile)


def _region(explicit: str | None, servers: str, standard: Mapping[str, str | None]) -> str:
    # A token signed for another region than the cluster's is refused, so the brokers' own names come
    # before AWS_REGION, which says where the sidecar runs, not where the cluster is.
    named = broker_regions(servers)
    if explicit:
        if named and explicit not in named:
            log.warning(
                "KAFKA_SASL_AWS_REGION=%s, but the bootstrap servers are MSK brokers in %s: tokens are signed for %s",
                explicit, ", ".join(sorted(named)), explicit,
            )  # fmt: skip
        return explicit
    if len(named) > 1:
        raise ValueError(
            f"KAFKA_BOOTSTRAP_SERVERS names MSK brokers in {', '.join(sorted(named))}: one cluster is in one "
            "region; set KAFKA_SASL_AWS_REGION"
        )
    if named:
        return named.pop()
    for name in STANDARD_REGION:
        if standard.get(name):
            return str(standard[name])
    raise ValueError(
        "KAFKA_SASL_MECHANISM=AWS_MSK_IAM needs the cluster's region: set KAFKA_SASL_AWS_REGION (or AWS_REGION); "
        "the bootstrap servers are not MSK broker names, which carry it"
    )


class MskIamTokenProvider(CachedTokenProvider):
    """aiokafka's `sasl_oauth_token_provider` for MSK IAM (sent as SASL/OAUTHBEARER)."""

    label = "MSK IAM"

    def __init__(
        self,
        config: MskIam,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        super().__init__(clock)
        self.config = config
        self._wall_clock = wall_clock
        self._sleep = sleep  # in the signing thread, between asks for credentials
        self._credentials: Any = None  # botocore's, which botocore refreshes before they expire
        self._signing: asyncio.Future[Token] | None = None
        self._waiting = 0  # callers awaiting the signature

    async def _fetch(self) -> Token:
        signing = self._signing
        if signing is None:
            self.requests += 1
            signing = self._signing = asyncio.ensure_future(asyncio.to_thread(self._sign))
            signing.add_done_callback(self._signed)
        self._waiting += 1
        try:
            return await asyncio.wait_for(asyncio.shield(signing), SIGN_TIMEOUT_S)
        except TimeoutError:
            raise TokenError(
                f"no MSK IAM token after {SIGN_TIMEOUT_S:g}s: the AWS credential chain (instance metadata, STS) "
                "is slow to answer"
            ) from None
        finally:
            self._waiting -= 1

    def _signed(self, signing: asyncio.Future[Token]) -> None:
        # Runs before the waiters resume (registered before their shields), so _waiting still counts them.
        self._signing = None
        if signing.cancelled():
            return
        failure = signing.exception()
        if failure is None:
            # Kept even when every caller stopped waiting: the next connection gets it without a new signature.
            self._token = signing.result()
        elif not self._waiting:
            log.warning("MSK IAM signing failed after its callers stopped waiting: %s", failure)

    def _sign(self) -> Token:
        """In a worker thread: the signer's token, or a TokenError that says which credentials to check."""
        from aws_msk_iam_sasl_signer import MSKAuthTokenProvider as signer

        c = self.config
        try:
            credentials, credentials_end = self._frozen_credentials()
            value, expiry_ms = signer.generate_auth_token_from_credentials_provider(
                c.region, _fixed_provider(credentials)
            )
        except TokenError:
            raise
        except Exception as exc:  # anything else must still reach aiokafka as a failed connection, not a crash
            raise _failure(c, exc) from None
        now, wall = self._clock(), self._wall_clock()
        # The signer fixes 15 min, but MSK cannot accept a token past its session token's own life.
        end = min(expiry_ms / 1000, credentials_end or float("inf"))
        expires_at = now + (end - wall)
        until = time.strftime("%H:%M:%SZ", time.gmtime(end))
        capped = " (the credentials' expiry)" if end < expiry_ms / 1000 else ""
        log.info("MSK IAM token for %s signed, valid until %s%s", c.region, until, capped)
        # Signed again once 80 % of its lifetime has passed.
        lifetime = min(float(signer.DEFAULT_TOKEN_EXPIRY_SECONDS), expires_at - now)
        return Token(value, expires_at - lifetime * (1 - REFRESH_AT), expires_at, now)

    def _frozen_credentials(self) -> tuple[Any, float | None]:
        """One botocore session's credentials for the process, and their expiry (epoch s; None: static keys).
        botocore refreshes temporary ones (IRSA, Pod Identity, the instance profile, an assumed role) near
        their expiry. (The signer's own generate_auth_token_from_role_arn calls STS for every token.)"""
        if self._credentials is None:
            self._credentials = self._resolve()
        # One consistent key, secret and session token, even if a refresh happens meanwhile.
        frozen = self._credentials.get_frozen_credentials()
        # botocore keeps the expiry of refreshable credentials privately; this thread alone refreshes them,
        # so it is that of the frozen ones.
        expiry = getattr(self._credentials, "_expiry_time", None)
        return frozen, expiry.timestamp() if isinstance(expiry, datetime) else None

    def _resolve(self) -> Any:
        import botocore.config
        import botocore.session
        from botocore.credentials import AssumeRoleCredentialFetcher, DeferredRefreshableCredentials

        c = self.config
        session = botocore.session.Session(profile=c.profile)
        if not session.get_config_variable("region"):
            # STS (an assumed role, IRSA's web identity) then answers in the cluster's region.
            session.set_config_variable("region", c.region)
        for name, (default, ours) in IMDS.items():
            if session.get_config_variable(name) == default:
                session.set_config_variable(name, ours)
        session.set_default_client_config(botocore.config.Config(**AWS_CLIENT))
        deadline = self._clock() + CREDENTIALS_WAIT_S
        while (credentials := session.get_credentials()) is None:
            if self._clock() + CREDENTIALS_PAUSE_S >= deadline:
                with_role = f" to assume {c.role_arn} with" if c.role_arn else ""
                raise TokenRejected(
                    f"no AWS credentials found for MSK IAM{with_role}; give the sidecar {CREDENTIAL_CHAIN}"
                )
            log.warning("no AWS credentials for MSK IAM yet (instance metadata throttled?): asking again")
            self._sleep(CREDENTIALS_PAUSE_S)
        if c.role_arn:
            session_name = {"RoleSessionName": c.session_name or DEFAULT_SESSION_NAME}
            fetcher = AssumeRoleCredentialFetcher(session.create_client, credentials, c.role_arn, session_name)
            credentials = DeferredRefreshableCredentials(fetcher.fetch_credentials, "assume-role")
        return credentials


def _fixed_provider(credentials: Any) -> Any:
    """The signer takes credentials from a botocore CredentialProvider."""
    from botocore.credentials import CredentialProvider

    class Fixed(CredentialProvider):  # type: ignore[misc]
        METHOD = "ecomind-streams"

        def load(self) -> Any:
            return credentials

    return Fixed()


def _failure(config: MskIam, exc: Exception) -> TokenError:
    """botocore's and the signer's errors, told apart: refused or missing credentials stop the worker at
    start (TokenRejected); an AWS endpoint away or throttling is waited for (TokenError)."""
    from botocore import exceptions as aws

    said = f"{exc.__class__.__name__}: {exc}"
    what = f"check KAFKA_SASL_AWS_ROLE_ARN ({config.role_arn}) and its trust policy" if config.role_arn else ""
    if isinstance(exc, aws.ClientError):
        code = str(exc.response.get("Error", {}).get("Code", ""))
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        if status in (400, 401, 403) and code not in _TRANSIENT_CODES:
            return TokenRejected(f"AWS refused the credentials for MSK IAM: {said}{'; ' + what if what else ''}")
        return TokenError(f"AWS answered {said}")
    if isinstance(exc, aws.NoCredentialsError):
        return TokenRejected(f"no AWS credentials found for MSK IAM; give the sidecar {CREDENTIAL_CHAIN}")
    if isinstance(
        exc, aws.PartialCredentialsError | aws.ProfileNotFound | aws.ConfigParseError | aws.InvalidConfigError
    ):
        return TokenRejected(f"the AWS configuration cannot give credentials for MSK IAM: {said}")
    if isinstance(exc, FileNotFoundError | PermissionError | IsADirectoryError) and exc.filename:
        # IRSA's token file (AWS_WEB_IDENTITY_TOKEN_FILE) above all, which botocore reads at each refresh.
        return TokenRejected(
            f"the AWS credentials for MSK IAM need {exc.filename}, which the sidecar cannot read: {exc.strerror}"
        )
    if isinstance(exc, ValueError):  # the signer's "AWS Credentials can not be empty"
        return TokenRejected(f"the AWS credentials for MSK IAM are unusable: {said}")
    return TokenError(f"no MSK IAM token: {said}")
