"""STREAMS_LAG_CLUSTERS: more Kafka clusters probed for lag only, each under a `kafka_cluster` label.

One environment prefix per cluster, `STREAMS_LAG_CLUSTER_<KEY>_`, followed by the names the tapped
cluster's own settings use without their `KAFKA_` (BOOTSTRAP_SERVERS, SECURITY_PROTOCOL, SASL_*, SSL_*),
so each variable can come from its own Kubernetes Secret (`…_SASL_PASSWORD_FILE`) and is checked by the
same rules, with errors naming the prefixed variable. <KEY> is the cluster's name in capitals with `-`
and `.` as `_` (`eu-west` -> `STREAMS_LAG_CLUSTER_EU_WEST_BOOTSTRAP_SERVERS`).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from streams.auth.msk_iam import MSK_IAM_CHECKS, STANDARD_REGION, check_region, msk_iam
from streams.auth.oauth import OAUTH_CHECKS, oauth_client
from streams.env_reader import EnvReader, SettingsError, check_file, check_nonempty, check_servers
from streams.kafka_settings import SASL_MECHANISMS, KafkaSecurity, check_regex, check_sasl

PREFIX = "STREAMS_LAG_CLUSTER_"
TAPPED_NAME_VAR = "STREAMS_LAG_CLUSTER_NAME"
TIMEOUT_VAR = "STREAMS_LAG_CLUSTER_TIMEOUT_SECONDS"
DEFAULT_TAPPED_NAME = "default"
DEFAULT_TIMEOUT_SECONDS = 30.0
# A label value that reads well in PromQL and maps to one environment prefix.
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,62}")
_PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
# Every suffix a cluster's prefix may carry; anything else under a listed cluster's prefix is a typo.
_SUFFIXES = (
    "BOOTSTRAP_SERVERS",
    "SECURITY_PROTOCOL",
    "SASL_MECHANISM",
    "SASL_USERNAME",
    "SASL_PASSWORD",
    "SASL_PASSWORD_FILE",
    "SSL_CAFILE",
    "SSL_CERTFILE",
    "SSL_KEYFILE",
    "GROUPS",
    "GROUPS_IGNORE",
    *(name.removeprefix("KAFKA_") for name in OAUTH_CHECKS),
    "SASL_OAUTH_CLIENT_SECRET_FILE",
    *(name.removeprefix("KAFKA_") for name in MSK_IAM_CHECKS),
)


@dataclass(frozen=True)
class LagCluster:
    """A cluster probed for lag only: every group the patterns select, no watched group."""

    name: str  # the kafka_cluster label value
    bootstrap_servers: str
    kafka: KafkaSecurity
    groups: str = ".*"  # regex, full match; every group unless narrowed
    groups_ignore: str | None = None


@dataclass(frozen=True)
class LagClusterSettings:
    tapped_name: str = DEFAULT_TAPPED_NAME
    extra: tuple[LagCluster, ...] = ()
    # Bound of one cluster's probe cycle (or client start): past it the cluster counts as down for that
    # cycle, and the other clusters' loops never wait on it.
    timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS

    @property
    def names(self) -> tuple[str, ...]:
        return (self.tapped_name, *(c.name for c in self.extra))


def env_key(name: str) -> str:
    return re.sub(r"[^A-Z0-9]", "_", name.upper())


def _check_label(value: str) -> str | None:
    return None if _NAME.fullmatch(value) else "a cluster name of letters, digits, '.', '_' or '-' (at most 63)"


def lag_cluster_settings(r: EnvReader) -> LagClusterSettings:
    tapped = r.text(TAPPED_NAME_VAR, DEFAULT_TAPPED_NAME, _check_label)
    timeout = r.number(TIMEOUT_VAR, DEFAULT_TIMEOUT_SECONDS, 1, 3600)
    listed = [n.strip() for n in (r.env.get("STREAMS_LAG_CLUSTERS") or "").split(",") if n.strip()]
    keys: dict[str, str] = {}
    for name in listed:
        if _check_label(name):
            raise SettingsError(f"STREAMS_LAG_CLUSTERS: {name!r} is not {_check_label(name)}")
        if name == tapped:
            raise SettingsError(
                f"STREAMS_LAG_CLUSTERS: {name!r} is the tapped cluster's name ({TAPPED_NAME_VAR}); "
                "the tapped cluster is always probed, list only the others"
            )
        key = env_key(name)
        if key in keys:
            raise SettingsError(f"STREAMS_LAG_CLUSTERS: {keys[key]!r} and {name!r} share the prefix {PREFIX}{key}_")
        keys[key] = name
    _check_strays(r.env, keys)
    extra = tuple(_cluster(r, name, f"{PREFIX}{key}_") for key, name in keys.items())
    return LagClusterSettings(tapped, extra, timeout)


def _check_strays(env: Mapping[str, str], keys: Mapping[str, str]) -> None:
    """A cluster's variables under a prefix no listed cluster has, or a suffix no setting has: refused,
    as silently probing without them (or not at all) is worse than not starting."""
    for var in sorted(env):
        if not var.startswith(PREFIX) or var in (TAPPED_NAME_VAR, TIMEOUT_VAR) or not env[var].strip():
            continue
        rest = var.removeprefix(PREFIX)
        owner = next((k for k in sorted(keys, key=len, reverse=True) if rest.startswith(f"{k}_")), None)
        if owner is not None:
            if rest.removeprefix(f"{owner}_") not in _SUFFIXES:
                raise SettingsError(
                    f"{var} is not a setting of cluster {keys[owner]!r}: expected {PREFIX}{owner}_ followed by "
                    f"one of {', '.join(_SUFFIXES)}"
                )
        elif any(rest.endswith(f"_{suffix}") for suffix in _SUFFIXES):
            raise SettingsError(f"{var} is set, but no cluster in STREAMS_LAG_CLUSTERS has the prefix it uses")


def _renamed(prefix: str) -> Callable[[str], str]:
    """Messages of the shared checks name the tapped cluster's KAFKA_* variables: name this cluster's."""
    return lambda message: re.sub(r"\bKAFKA_(?=[A-Z])", prefix, message)


def _cluster(r: EnvReader, name: str, prefix: str) -> LagCluster:
    servers = r.optional_text(f"{prefix}BOOTSTRAP_SERVERS", check_servers)
    if servers is None:
        raise SettingsError(f"{prefix}BOOTSTRAP_SERVERS is required for cluster {name!r} of STREAMS_LAG_CLUSTERS")
    mechanism = r.optional_choice(f"{prefix}SASL_MECHANISM", SASL_MECHANISMS)
    rename = _renamed(prefix)
    own = {n: f"{prefix}{n.removeprefix('KAFKA_')}" for n in (*OAUTH_CHECKS, *MSK_IAM_CHECKS)}
    oauth_found = {
        n: r.secret(own[n], check) if n.endswith("_SECRET") else r.optional_text(own[n], check)
        for n, check in OAUTH_CHECKS.items()
    }
    aws_found = {n: r.optional_text(own[n], check) for n, check in MSK_IAM_CHECKS.items()}
    standard = {n: r.optional_text(n, check_region) for n in STANDARD_REGION} if mechanism == "AWS_MSK_IAM" else {}
    try:
        oauth = oauth_client(oauth_found, mechanism == "OAUTHBEARER")
        aws = msk_iam(aws_found, mechanism == "AWS_MSK_IAM", servers, standard)
    except ValueError as exc:
        raise SettingsError(rename(str(exc))) from None
    kafka = KafkaSecurity(
        security_protocol=r.choice(f"{prefix}SECURITY_PROTOCOL", "PLAINTEXT", _PROTOCOLS),
        sasl_mechanism=mechanism,
        sasl_username=r.env.get(f"{prefix}SASL_USERNAME") or None,
        sasl_password=r.secret(f"{prefix}SASL_PASSWORD", check_nonempty),
        ssl_cafile=r.optional_text(f"{prefix}SSL_CAFILE", check_file),
        ssl_certfile=r.optional_text(f"{prefix}SSL_CERTFILE", check_file),
        ssl_keyfile=r.optional_text(f"{prefix}SSL_KEYFILE", check_file),
        oauth=oauth,
        msk_iam=aws,
    )
    try:
        check_sasl(kafka)
    except SettingsError as exc:
        raise SettingsError(rename(str(exc))) from None
    return LagCluster(
        name,
        servers,
        kafka,
        r.text(f"{prefix}GROUPS", ".*", check_regex),
        r.optional_text(f"{prefix}GROUPS_IGNORE", check_regex),
    )
