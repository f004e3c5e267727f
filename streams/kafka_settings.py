"""The Kafka client settings: security protocol, SASL (password or token provider) and TLS files, shared
by the tapped cluster (streams/settings.py) and the clusters probed for lag only (cluster_settings.py)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cached_property

from streams.auth.msk_iam import MSK_IAM_CHECKS, STANDARD_REGION, MskIam, MskIamTokenProvider, check_region, msk_iam
from streams.auth.oauth import OAUTH_CHECKS, ClientCredentialsTokenProvider, OAuthClient, oauth_client
from streams.auth.sasl_token import CachedTokenProvider
from streams.env_reader import EnvReader, SettingsError, check_servers

DEFAULT_BOOTSTRAP_SERVERS = "localhost:9092"


@dataclass(frozen=True)
class KafkaSecurity:
    security_protocol: str = "PLAINTEXT"
    sasl_mechanism: str | None = None
    sasl_username: str | None = None
    sasl_password: str | None = None
    ssl_cafile: str | None = None
    ssl_certfile: str | None = None
    ssl_keyfile: str | None = None
    oauth: OAuthClient | None = None  # with OAUTHBEARER
    msk_iam: MskIam | None = None  # with AWS_MSK_IAM

    @cached_property
    def token_provider(self) -> CachedTokenProvider | None:
        """One for all the clients built from these settings: they share its cached token."""
        if self.oauth is not None:
            return ClientCredentialsTokenProvider(self.oauth)
        if self.msk_iam is not None:
            return MskIamTokenProvider(self.msk_iam)
        return None

    def client_kwargs(self) -> dict[str, object]:
        """Keyword arguments for every aiokafka client the sidecar opens."""
        kwargs: dict[str, object] = {"security_protocol": self.security_protocol}
        if self.sasl_mechanism in TOKEN_MECHANISMS:
            # MSK IAM is OAUTHBEARER on the wire, with AWS's signed URL as the token.
            kwargs["sasl_mechanism"] = "OAUTHBEARER"
            kwargs["sasl_oauth_token_provider"] = self.token_provider
        elif self.sasl_mechanism:
            kwargs["sasl_mechanism"] = self.sasl_mechanism
            kwargs["sasl_plain_username"] = self.sasl_username
            kwargs["sasl_plain_password"] = self.sasl_password
        if self.security_protocol in ("SSL", "SASL_SSL"):
            from aiokafka.helpers import create_ssl_context

            kwargs["ssl_context"] = create_ssl_context(
                cafile=self.ssl_cafile, certfile=self.ssl_certfile, keyfile=self.ssl_keyfile
            )
        return kwargs


SASL_MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512", "OAUTHBEARER", "AWS_MSK_IAM")
TOKEN_MECHANISMS = ("OAUTHBEARER", "AWS_MSK_IAM")  # no username or password: a token provider


def oauth_client_settings(r: EnvReader) -> OAuthClient | None:
    """KAFKA_SASL_OAUTH_*: read whatever the mechanism, so that one set without OAUTHBEARER is refused."""
    found = {
        name: r.secret(name, check) if name.endswith("_SECRET") else r.optional_text(name, check)
        for name, check in OAUTH_CHECKS.items()
    }
    try:
        return oauth_client(found, r.optional_choice("KAFKA_SASL_MECHANISM", SASL_MECHANISMS) == "OAUTHBEARER")
    except ValueError as exc:
        raise SettingsError(str(exc)) from None


def msk_iam_settings(r: EnvReader) -> MskIam | None:
    """KAFKA_SASL_AWS_*: read whatever the mechanism, so that one set without AWS_MSK_IAM is refused."""
    found = {name: r.optional_text(name, check) for name, check in MSK_IAM_CHECKS.items()}
    chosen = r.optional_choice("KAFKA_SASL_MECHANISM", SASL_MECHANISMS) == "AWS_MSK_IAM"
    # Read only with AWS_MSK_IAM: otherwise AWS's own variables are not the sidecar's to judge (EKS's IRSA
    # webhook sets AWS_REGION in pods that may never use it).
    standard = {name: r.optional_text(name, check_region) for name in STANDARD_REGION} if chosen else {}
    servers = r.text("KAFKA_BOOTSTRAP_SERVERS", DEFAULT_BOOTSTRAP_SERVERS, check_servers)
    try:
        return msk_iam(found, chosen, servers, standard)
    except ValueError as exc:
        raise SettingsError(str(exc)) from None


def check_sasl(kafka: KafkaSecurity) -> None:
    mechanism = kafka.sasl_mechanism
    if mechanism not in TOKEN_MECHANISMS:
        if mechanism and not kafka.sasl_username:
            raise SettingsError("KAFKA_SASL_USERNAME is required when KAFKA_SASL_MECHANISM is set")
    elif mechanism == "AWS_MSK_IAM" and kafka.security_protocol != "SASL_SSL":
        # MSK serves IAM authentication on its TLS listener only (port 9098, 9198 for public access).
        raise SettingsError("KAFKA_SASL_MECHANISM=AWS_MSK_IAM needs KAFKA_SECURITY_PROTOCOL=SASL_SSL")
    elif not kafka.security_protocol.startswith("SASL_"):
        raise SettingsError("KAFKA_SASL_MECHANISM=OAUTHBEARER needs KAFKA_SECURITY_PROTOCOL=SASL_SSL or SASL_PLAINTEXT")
    elif kafka.sasl_username or kafka.sasl_password:
        raise SettingsError(f"KAFKA_SASL_USERNAME and KAFKA_SASL_PASSWORD are not used with {mechanism}: unset them")


def check_regex(value: str) -> str | None:
    try:
        re.compile(value)
    except re.error as exc:
        return f"a regular expression ({exc})"
    return None
