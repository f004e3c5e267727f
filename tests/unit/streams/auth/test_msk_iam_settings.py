"""KAFKA_SASL_MECHANISM=AWS_MSK_IAM and KAFKA_SASL_AWS_*: what the sidecar accepts, what it refuses and
with which words, what its Kafka clients get, and the Helm chart's side of it."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import kubernetes_validate
import pytest

from streams.auth.msk_iam import INSTALL, MskIam, MskIamTokenProvider, broker_regions
from streams.settings import Settings, SettingsError

MSK = {"KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "KAFKA_SASL_MECHANISM": "AWS_MSK_IAM"}
ROLE = "arn:aws:iam::123456789012:role/msk-reader"
BROKERS = (
    "b-1.streams.a1b2c3.c2.kafka.us-east-1.amazonaws.com:9098,b-2.streams.a1b2c3.c2.kafka.us-east-1.amazonaws.com:9098"
)


@pytest.mark.parametrize(
    ("env", "region"),
    [
        ({"KAFKA_SASL_AWS_REGION": "eu-west-1", "AWS_REGION": "us-west-2"}, "eu-west-1"),
        # the brokers' names say where the cluster is; AWS_REGION only where the sidecar runs
        ({"KAFKA_BOOTSTRAP_SERVERS": BROKERS, "AWS_REGION": "eu-west-1"}, "us-east-1"),
        (
            {"KAFKA_BOOTSTRAP_SERVERS": "boot-x1y2.c3.kafka-serverless.ap-southeast-2.amazonaws.com:9098"},
            "ap-southeast-2",
        ),
        ({"KAFKA_BOOTSTRAP_SERVERS": "kafka.internal:9098", "AWS_REGION": "eu-central-1"}, "eu-central-1"),
        ({"AWS_DEFAULT_REGION": "us-gov-west-1"}, "us-gov-west-1"),
        ({"AWS_REGION": "ca-central-1", "AWS_DEFAULT_REGION": "us-west-2"}, "ca-central-1"),
    ],
)
def test_the_region_comes_from_the_setting_the_broker_names_or_the_aws_environment(
    env: dict[str, str], region: str
) -> None:
    assert Settings.from_env({**MSK, **env}).kafka.msk_iam == MskIam(region)


def test_a_region_other_than_the_brokers_is_warned_about(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="streams.auth.msk_iam"):
        kafka = Settings.from_env(
            {**MSK, "KAFKA_BOOTSTRAP_SERVERS": BROKERS, "KAFKA_SASL_AWS_REGION": "eu-west-1"}
        ).kafka
    assert kafka.msk_iam == MskIam("eu-west-1")
    assert "the bootstrap servers are MSK brokers in us-east-1: tokens are signed for eu-west-1" in caplog.text


def test_broker_regions_reads_msk_names_only() -> None:
    assert broker_regions(f"kafka://{BROKERS.upper()}") == {"us-east-1"}
    assert broker_regions("b-1.x.y.c1.kafka.cn-north-1.amazonaws.com.cn:9098") == {"cn-north-1"}
    assert broker_regions("kafka.us-east-1.example.com:9098,localhost:9092,kafka.eu-west-1.amazonaws.com:9098") == set()


def test_role_profile_and_session_name_are_read_and_every_client_shares_one_provider() -> None:
    env = {**MSK, "AWS_REGION": "eu-west-1", "KAFKA_SASL_AWS_ROLE_ARN": ROLE}
    kafka = Settings.from_env({**env, "KAFKA_SASL_AWS_ROLE_SESSION_NAME": "streams@prod"}).kafka
    assert kafka.msk_iam == MskIam("eu-west-1", ROLE, "streams@prod", None)
    profiled = Settings.from_env({**MSK, "AWS_REGION": "eu-west-1", "KAFKA_SASL_AWS_PROFILE": "msk"}).kafka
    assert profiled.msk_iam == MskIam("eu-west-1", profile="msk")
    first, second = kafka.client_kwargs(), kafka.client_kwargs()
    assert first["sasl_mechanism"] == "OAUTHBEARER"  # MSK IAM on the wire
    assert isinstance(kafka.token_provider, MskIamTokenProvider) and kafka.token_provider.config == kafka.msk_iam
    assert first["sasl_oauth_token_provider"] is second["sasl_oauth_token_provider"] is kafka.token_provider
    assert first["ssl_context"] is not None and first["security_protocol"] == "SASL_SSL"
    assert not {"sasl_plain_username", "sasl_plain_password"} & set(first)
    assert kafka.oauth is None and kafka.token_provider.extensions() == {}


NOT_CHOSEN = "set, but KAFKA_SASL_MECHANISM is not AWS_MSK_IAM"
NEEDS_TLS = "KAFKA_SASL_MECHANISM=AWS_MSK_IAM needs KAFKA_SECURITY_PROTOCOL=SASL_SSL"
NO_PASSWORD = "KAFKA_SASL_USERNAME and KAFKA_SASL_PASSWORD are not used with AWS_MSK_IAM: unset them"
REGION = "expected an AWS region such as eu-west-1"
ARN = "expected an IAM role ARN, arn:aws:iam::<12-digit account>:role/<name>"
TWO_REGIONS = f"{BROKERS},b-3.s.x.c2.kafka.eu-west-1.amazonaws.com:9098"


@pytest.mark.parametrize(
    ("change", "error"),
    [
        ({"KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT"}, NEEDS_TLS),
        ({"KAFKA_SECURITY_PROTOCOL": None}, NEEDS_TLS),
        ({"KAFKA_SASL_USERNAME": "streams"}, NO_PASSWORD),
        ({"KAFKA_SASL_PASSWORD": "pw"}, NO_PASSWORD),
        (
            {"KAFKA_SASL_OAUTH_TOKEN_URL": "https://idp.example/token"},
            "KAFKA_SASL_OAUTH_TOKEN_URL set, but KAFKA_SASL_MECHANISM is not OAUTHBEARER",
        ),
        ({"KAFKA_SASL_AWS_REGION": "Ireland"}, f"KAFKA_SASL_AWS_REGION='Ireland': {REGION}"),
        ({"AWS_REGION": "us east 1"}, f"AWS_REGION='us east 1': {REGION}"),
        ({"KAFKA_SASL_AWS_ROLE_ARN": "msk-reader"}, f"KAFKA_SASL_AWS_ROLE_ARN='msk-reader': {ARN}"),
        (
            {"KAFKA_SASL_AWS_ROLE_ARN": "arn:aws:iam::1234:user/x"},
            f"KAFKA_SASL_AWS_ROLE_ARN='arn:aws:iam::1234:user/x': {ARN}",
        ),
        (
            {"KAFKA_SASL_AWS_ROLE_ARN": ROLE, "KAFKA_SASL_AWS_ROLE_SESSION_NAME": "a b"},
            "KAFKA_SASL_AWS_ROLE_SESSION_NAME='a b': expected 2 to 64 letters, digits or any of _+=,.@-",
        ),
        (
            {"KAFKA_SASL_AWS_ROLE_SESSION_NAME": "streams"},
            "KAFKA_SASL_AWS_ROLE_SESSION_NAME is set without KAFKA_SASL_AWS_ROLE_ARN",
        ),
        (
            {"KAFKA_SASL_AWS_ROLE_ARN": ROLE, "KAFKA_SASL_AWS_PROFILE": "msk"},
            "KAFKA_SASL_AWS_ROLE_ARN and KAFKA_SASL_AWS_PROFILE are both set: set one of them "
            "(a profile can name the role itself, with role_arn and source_profile)",
        ),
        (
            {"AWS_REGION": None},
            "KAFKA_SASL_MECHANISM=AWS_MSK_IAM needs the cluster's region: set KAFKA_SASL_AWS_REGION (or "
            "AWS_REGION); the bootstrap servers are not MSK broker names, which carry it",
        ),
        (
            {"AWS_REGION": None, "KAFKA_BOOTSTRAP_SERVERS": TWO_REGIONS},
            "KAFKA_BOOTSTRAP_SERVERS names MSK brokers in eu-west-1, us-east-1: one cluster is in one region; "
            "set KAFKA_SASL_AWS_REGION",
        ),
        (
            {"KAFKA_SASL_MECHANISM": "SCRAM-SHA-512", "KAFKA_SASL_USERNAME": "u", "KAFKA_SASL_AWS_PROFILE": "msk"},
            f"KAFKA_SASL_AWS_PROFILE {NOT_CHOSEN}",
        ),
        (
            {
                "KAFKA_SASL_MECHANISM": None,
                "KAFKA_SECURITY_PROTOCOL": None,
                "KAFKA_SASL_AWS_REGION": "eu-west-1",
                "KAFKA_SASL_AWS_ROLE_ARN": ROLE,
            },
            f"KAFKA_SASL_AWS_REGION, KAFKA_SASL_AWS_ROLE_ARN {NOT_CHOSEN}",
        ),
    ],
)
def test_a_bad_msk_iam_setting_is_refused_with_a_message_naming_it(change: dict[str, str | None], error: str) -> None:
    env = {k: v for k, v in {**MSK, "AWS_REGION": "eu-west-1", **change}.items() if v is not None}
    with pytest.raises(SettingsError) as refused:
        Settings.from_env(env)
    assert str(refused.value) == error


def test_aws_variables_of_the_environment_are_not_the_sidecars_to_refuse() -> None:
    # EKS sets AWS_REGION in every IRSA pod; without AWS_MSK_IAM the sidecar neither reads nor judges it.
    kafka = Settings.from_env({"AWS_REGION": "not a region", "AWS_PROFILE": "x"}).kafka
    assert kafka.msk_iam is None and kafka.token_provider is None


def test_without_the_extra_the_mechanism_is_refused_with_how_to_install_it(monkeypatch: pytest.MonkeyPatch) -> None:
    # None in sys.modules makes an import fail as for a package that is not installed.
    monkeypatch.setitem(sys.modules, "aws_msk_iam_sasl_signer", None)
    monkeypatch.setitem(sys.modules, "aws_msk_iam_sasl_signer.MSKAuthTokenProvider", None)
    with pytest.raises(SettingsError) as refused:
        Settings.from_env({**MSK, "AWS_REGION": "eu-west-1"})
    assert str(refused.value) == INSTALL
    assert "pip install 'ecomind-streams[msk-iam]'" in INSTALL and "--build-arg EXTRAS=msk-iam" in INSTALL
    assert Settings.from_env({}).kafka.token_provider is None  # any other mechanism still starts


# --- the Helm chart ----------------------------------------------------------------------------------------

CHART_MSK = f"""
kafka:
  bootstrapServers: {BROKERS}
  securityProtocol: SASL_SSL
  sasl:
    mechanism: AWS_MSK_IAM
    aws: {{roleArn: "{ROLE}", roleSessionName: ecomind-streams-prod}}
serviceAccount:
  annotations: {{eks.amazonaws.com/role-arn: arn:aws:iam::123456789012:role/ecomind-streams}}
"""


def _chart_values(tmp_path: Path) -> str:
    path = tmp_path / "msk-values.yaml"
    path.write_text(CHART_MSK)
    return str(path)


def test_the_chart_passes_msk_iam_settings_the_sidecar_accepts_and_annotates_the_service_account(
    tmp_path: Path,
) -> None:
    from tests.unit.deploy.helm import KUBERNETES_VERSION, one, pod_container, render, settings_env_names

    docs = render("default", "-f", _chart_values(tmp_path))
    pod, container = pod_container(docs)
    env = {e["name"]: e["value"] for e in container["env"]}
    assert set(env) <= settings_env_names(), set(env) - settings_env_names()
    assert env["KAFKA_SASL_MECHANISM"] == "AWS_MSK_IAM" and "KAFKA_SASL_USERNAME" not in env
    assert "KAFKA_SASL_AWS_REGION" not in env  # left to the brokers' names
    assert Settings.from_env(env).kafka.msk_iam == MskIam("us-east-1", ROLE, "ecomind-streams-prod")
    assert not [m for m in container["volumeMounts"] if m["name"].startswith("kafka")]  # no secret to mount
    account = one(docs, "ServiceAccount")
    assert account["metadata"]["annotations"] == {
        "eks.amazonaws.com/role-arn": "arn:aws:iam::123456789012:role/ecomind-streams"
    }
    assert pod["serviceAccountName"] == account["metadata"]["name"]
    for doc in (account, one(docs, "Deployment")):
        kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
    with_region = render("default", "-f", _chart_values(tmp_path), "--set", "kafka.sasl.aws.region=us-east-1")
    assert {"name": "KAFKA_SASL_AWS_REGION", "value": "us-east-1"} in pod_container(with_region)[1]["env"]


@pytest.mark.parametrize(
    "bad",
    [
        ["--set", "kafka.securityProtocol=SASL_PLAINTEXT"],
        ["--set", "kafka.sasl.username=streams"],
        ["--set", "kafka.sasl.existingSecret=kafka-sasl"],
        ["--set", "kafka.sasl.aws.region=Frankfurt"],
        ["--set", "kafka.sasl.aws.roleArn=msk-reader"],
        ["--set", "kafka.sasl.aws.roleArn="],  # a session name without a role
        ["--set", "kafka.sasl.aws.roleSessionName=a b"],
        ["--set-json", 'serviceAccount.annotations={"eks.amazonaws.com/role-arn": 1}'],
    ],
)
def test_the_values_schema_refuses_what_the_sidecar_would_refuse(tmp_path: Path, bad: list[str]) -> None:
    from tests.unit.deploy.helm import CHART, KUBERNETES_VERSION, run_helm

    done = run_helm(
        "template", "prod", str(CHART), "--kube-version", KUBERNETES_VERSION, "-f", _chart_values(tmp_path), *bad
    )
    assert done.returncode != 0 and "schema" in done.stderr, done.stderr
