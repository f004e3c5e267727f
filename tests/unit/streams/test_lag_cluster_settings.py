"""STREAMS_LAG_CLUSTERS and each cluster's STREAMS_LAG_CLUSTER_<KEY>_* settings: values and refusals."""

from pathlib import Path

import pytest

from streams.cluster_settings import LagClusterSettings, env_key
from streams.settings import Settings, SettingsError


def test_without_extra_clusters_only_the_tapped_one_is_named() -> None:
    assert Settings.from_env({}).lag_clusters == LagClusterSettings("default", (), 30.0)
    assert Settings().lag_clusters == LagClusterSettings("default", (), 30.0)
    s = Settings.from_env({"STREAMS_LAG_CLUSTER_NAME": "eu-central", "STREAMS_LAG_CLUSTER_TIMEOUT_SECONDS": "12.5"})
    assert (s.lag_clusters.names, s.lag_clusters.timeout_seconds) == (("eu-central",), 12.5)


def test_each_cluster_reads_its_own_prefix(tmp_path: Path) -> None:
    secret = tmp_path / "pw"
    secret.write_text("s3cret\n")
    s = Settings.from_env(
        {
            "KAFKA_BOOTSTRAP_SERVERS": "tapped:9092",
            "STREAMS_LAG_GROUPS": "ecomind-.*",
            "STREAMS_LAG_CLUSTER_NAME": "local",
            "STREAMS_LAG_CLUSTERS": "eu-west, us.east",
            "STREAMS_LAG_CLUSTER_EU_WEST_BOOTSTRAP_SERVERS": "eu1:9093,eu2:9093",
            "STREAMS_LAG_CLUSTER_EU_WEST_SECURITY_PROTOCOL": "sasl_plaintext",
            "STREAMS_LAG_CLUSTER_EU_WEST_SASL_MECHANISM": "SCRAM-SHA-512",
            "STREAMS_LAG_CLUSTER_EU_WEST_SASL_USERNAME": "lag-reader",
            "STREAMS_LAG_CLUSTER_EU_WEST_SASL_PASSWORD_FILE": str(secret),
            "STREAMS_LAG_CLUSTER_EU_WEST_GROUPS": "billing-.*",
            "STREAMS_LAG_CLUSTER_EU_WEST_GROUPS_IGNORE": ".*-test",
            "STREAMS_LAG_CLUSTER_US_EAST_BOOTSTRAP_SERVERS": "us1:9092",
        }
    )
    c = s.lag_clusters
    assert c.names == ("local", "eu-west", "us.east")
    eu, us = c.extra
    assert (eu.bootstrap_servers, eu.groups, eu.groups_ignore) == ("eu1:9093,eu2:9093", "billing-.*", ".*-test")
    kwargs = eu.kafka.client_kwargs()
    assert kwargs == {
        "security_protocol": "SASL_PLAINTEXT",
        "sasl_mechanism": "SCRAM-SHA-512",
        "sasl_plain_username": "lag-reader",
        "sasl_plain_password": "s3cret",
    }
    # A cluster probed for lag only has no watched group: every group unless narrowed, whatever the
    # tapped cluster's STREAMS_LAG_GROUPS says.
    assert (us.bootstrap_servers, us.groups, us.groups_ignore) == ("us1:9092", ".*", None)
    assert us.kafka.client_kwargs() == {"security_protocol": "PLAINTEXT"}
    assert s.bootstrap_servers == "tapped:9092" and s.kafka.client_kwargs() == {"security_protocol": "PLAINTEXT"}


@pytest.mark.parametrize(
    ("name", "key"), [("eu-west", "EU_WEST"), ("us.east.1", "US_EAST_1"), ("Prod_2", "PROD_2"), ("a", "A")]
)
def test_env_key(name: str, key: str) -> None:
    assert env_key(name) == key


EU = {"STREAMS_LAG_CLUSTERS": "eu", "STREAMS_LAG_CLUSTER_EU_BOOTSTRAP_SERVERS": "eu1:9092"}


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"STREAMS_LAG_CLUSTERS": "eu"}, "STREAMS_LAG_CLUSTER_EU_BOOTSTRAP_SERVERS is required for cluster 'eu'"),
        ({**EU, "STREAMS_LAG_CLUSTER_EU_BOOTSTRAP_SERVERS": "eu1"}, "STREAMS_LAG_CLUSTER_EU_BOOTSTRAP_SERVERS='eu1'"),
        ({"STREAMS_LAG_CLUSTERS": "eu west"}, "STREAMS_LAG_CLUSTERS: 'eu west' is not a cluster name"),
        ({"STREAMS_LAG_CLUSTERS": "-eu"}, "STREAMS_LAG_CLUSTERS: '-eu' is not a cluster name"),
        ({"STREAMS_LAG_CLUSTERS": "eu-west,eu.west"}, "'eu-west' and 'eu.west' share the prefix"),
        ({"STREAMS_LAG_CLUSTERS": "default"}, "'default' is the tapped cluster's name (STREAMS_LAG_CLUSTER_NAME)"),
        ({"STREAMS_LAG_CLUSTER_NAME": "a b"}, "STREAMS_LAG_CLUSTER_NAME='a b': expected a cluster name"),
        ({"STREAMS_LAG_CLUSTER_TIMEOUT_SECONDS": "0"}, "STREAMS_LAG_CLUSTER_TIMEOUT_SECONDS='0': expected a number"),
        # A cluster's variables with no cluster listed for them, or a misspelt setting: never ignored.
        ({"STREAMS_LAG_CLUSTER_US_BOOTSTRAP_SERVERS": "us1:9092"}, "no cluster in STREAMS_LAG_CLUSTERS has the prefix"),
        ({**EU, "STREAMS_LAG_CLUSTER_EU_BOOTSTRAP": "x:1"}, "STREAMS_LAG_CLUSTER_EU_BOOTSTRAP is not a setting of"),
        ({**EU, "STREAMS_LAG_CLUSTER_EU_SECURITY_PROTOCOL": "TLS"}, "STREAMS_LAG_CLUSTER_EU_SECURITY_PROTOCOL='TLS'"),
        (
            {**EU, "STREAMS_LAG_CLUSTER_EU_SASL_MECHANISM": "PLAIN"},
            "STREAMS_LAG_CLUSTER_EU_SASL_USERNAME is required when STREAMS_LAG_CLUSTER_EU_SASL_MECHANISM is set",
        ),
        (
            {**EU, "STREAMS_LAG_CLUSTER_EU_SASL_OAUTH_CLIENT_ID": "me"},
            "STREAMS_LAG_CLUSTER_EU_SASL_OAUTH_CLIENT_ID set, but STREAMS_LAG_CLUSTER_EU_SASL_MECHANISM is not",
        ),
        (
            {**EU, "STREAMS_LAG_CLUSTER_EU_SASL_MECHANISM": "OAUTHBEARER"},
            "STREAMS_LAG_CLUSTER_EU_SASL_MECHANISM=OAUTHBEARER needs STREAMS_LAG_CLUSTER_EU_SASL_OAUTH_TOKEN_URL",
        ),
        (
            {**EU, "STREAMS_LAG_CLUSTER_EU_SASL_PASSWORD": "a", "STREAMS_LAG_CLUSTER_EU_SASL_PASSWORD_FILE": "/f"},
            "STREAMS_LAG_CLUSTER_EU_SASL_PASSWORD and STREAMS_LAG_CLUSTER_EU_SASL_PASSWORD_FILE are both set",
        ),
        ({**EU, "STREAMS_LAG_CLUSTER_EU_SSL_CAFILE": "/nonexistent.pem"}, "STREAMS_LAG_CLUSTER_EU_SSL_CAFILE="),
        ({**EU, "STREAMS_LAG_CLUSTER_EU_GROUPS": "("}, "STREAMS_LAG_CLUSTER_EU_GROUPS='(': expected a regular"),
    ],
)
def test_bad_values_name_the_cluster_variable(env: dict[str, str], message: str) -> None:
    with pytest.raises(SettingsError) as caught:
        Settings.from_env(env)
    assert message in str(caught.value)


def test_a_password_is_never_echoed() -> None:
    env = {**EU, "STREAMS_LAG_CLUSTER_EU_SASL_PASSWORD": "hunter2", "STREAMS_LAG_CLUSTER_EU_SASL_MECHANISM": "PLAIN"}
    with pytest.raises(SettingsError) as caught:
        Settings.from_env(env)  # no username
    assert "STREAMS_LAG_CLUSTER_EU_SASL_USERNAME is required" in str(caught.value)
    assert "hunter2" not in str(caught.value)
