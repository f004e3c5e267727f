"""Value combinations that would give a pod that cannot start, a password never given or a release that
cannot drain are refused by `helm template`: by the schema, and by the templates themselves when a parent
chart renders with --skip-schema-validation, each with a message naming the value to set."""

from __future__ import annotations

import pytest

from tests.unit.deploy.helm import CHART, KUBERNETES_VERSION, run_helm

SASL = ["--set", "kafka.securityProtocol=SASL_SSL", "--set", "kafka.sasl.username=streams"]
SSL = ["--set", "kafka.securityProtocol=SSL"]
SCRAM = ["--set", "kafka.sasl.mechanism=SCRAM-SHA-512", "--set", "kafka.sasl.username=streams",
         "--set", "kafka.sasl.existingSecret=kafka-sasl"]  # fmt: skip

# (values, what the schema's error names, the template's own message, what completes the values)
REFUSED = {
    "client certificate without its key": (
        [*SSL, "--set", "kafka.tls.existingSecret=kafka-tls", "--set", "kafka.tls.certKey=tls.crt"],
        "/kafka/tls/keyKey",
        "kafka.tls.certKey is set without kafka.tls.keyKey",
        ["--set", "kafka.tls.keyKey=tls.key"],
    ),
    "key without its client certificate": (
        [*SSL, "--set", "kafka.tls.existingSecret=kafka-tls", "--set", "kafka.tls.keyKey=tls.key"],
        "/kafka/tls/certKey",
        "kafka.tls.keyKey is set without kafka.tls.certKey",
        ["--set", "kafka.tls.certKey=tls.crt"],
    ),
    "client certificate and key without their Secret": (
        [*SSL, "--set", "kafka.tls.certKey=tls.crt", "--set", "kafka.tls.keyKey=tls.key"],
        "/kafka/tls/existingSecret",
        "kafka.tls.certKey and kafka.tls.keyKey need kafka.tls.existingSecret",
        ["--set", "kafka.tls.existingSecret=kafka-tls"],
    ),
    "SCRAM without the password's Secret": (
        [*SASL, "--set", "kafka.sasl.mechanism=SCRAM-SHA-512"],
        "/kafka/sasl/existingSecret",
        "kafka.sasl.mechanism=SCRAM-SHA-512 needs kafka.sasl.existingSecret",
        ["--set", "kafka.sasl.existingSecret=kafka-sasl"],
    ),
    "PLAIN without the password's Secret": (
        [*SASL, "--set", "kafka.sasl.mechanism=PLAIN"],
        "/kafka/sasl/existingSecret",
        "kafka.sasl.mechanism=PLAIN needs kafka.sasl.existingSecret",
        ["--set", "kafka.sasl.existingSecret=kafka-sasl"],
    ),
    "PLAIN with an empty password key": (
        [
            *SASL,
            "--set",
            "kafka.sasl.mechanism=PLAIN",
            "--set",
            "kafka.sasl.existingSecret=s",
            "--set",
            "kafka.sasl.passwordKey=",
        ],
        "/kafka/sasl/passwordKey",
        "kafka.sasl.passwordKey is empty",
        ["--set", "kafka.sasl.passwordKey=password"],
    ),
    "SASL without a mechanism": (
        ["--set", "kafka.securityProtocol=SASL_SSL"],
        "/kafka/sasl/mechanism",
        "kafka.securityProtocol=SASL_SSL needs kafka.sasl.mechanism",
        SCRAM,
    ),
    "a SASL mechanism without SASL": (
        [*SSL, *SCRAM],
        "/kafka/securityProtocol",
        "kafka.sasl.mechanism=SCRAM-SHA-512 needs kafka.securityProtocol SASL_SSL or SASL_PLAINTEXT",
        ["--set", "kafka.securityProtocol=SASL_SSL"],
    ),
    "TLS settings without TLS": (
        ["--set", "kafka.securityProtocol=SASL_PLAINTEXT", *SCRAM, "--set", "kafka.tls.existingSecret=kafka-tls"],
        "/kafka/tls/existingSecret",
        "kafka.tls is set but kafka.securityProtocol=SASL_PLAINTEXT does not use TLS",
        ["--set", "kafka.securityProtocol=SASL_SSL"],
    ),
    "TLS without the CA's key": (
        [*SSL, "--set", "kafka.tls.existingSecret=kafka-tls", "--set", "kafka.tls.caKey="],
        "/kafka/tls/caKey",
        "kafka.tls.caKey is empty",
        ["--set", "kafka.tls.caKey=ca.crt"],
    ),
    "a watched group's SLO of 0 s": (
        ["--set", "prometheusRule.thresholds.WorkerLagAboveSLO=0"],
        "/prometheusRule/thresholds/WorkerLagAboveSLO",
        "prometheusRule.thresholds.WorkerLagAboveSLO=0: the watched group's lag SLO must be above 0 s",
        ["--set", "prometheusRule.thresholds.WorkerLagAboveSLO=0.5"],
    ),
    "a scrape timeout above the interval": (
        ["--set", "monitor.enabled=true", "--set", "monitor.interval=5s", "--set", "monitor.scrapeTimeout=6s"],
        "",  # the schema cannot compare two durations: the template refuses it
        "monitor.scrapeTimeout=6s is longer than monitor.interval=5s",
        ["--set", "monitor.scrapeTimeout=5s"],
    ),
    "a budget that lets no pod go": (
        ["--set", "podDisruptionBudget.maxUnavailable=0"],
        "/podDisruptionBudget/maxUnavailable",
        "podDisruptionBudget.maxUnavailable must let at least one pod go",
        ["--set", "podDisruptionBudget.maxUnavailable=1"],
    ),
}


def _template(*args: str) -> str:
    done = run_helm("template", "prod", str(CHART), "--kube-version", KUBERNETES_VERSION, *args)
    assert done.returncode != 0, f"{args} rendered"
    return done.stderr


@pytest.mark.parametrize("case", REFUSED)
def test_the_schema_refuses_it_naming_the_value(case: str) -> None:
    values, path, message, _ = REFUSED[case]
    error = _template(*values)
    if not path:
        assert "execution error" in error and message in error, error
        return
    assert "don't meet the specifications of the schema" in error and path in error, error


@pytest.mark.parametrize("case", REFUSED)
def test_the_templates_refuse_it_without_the_schema(case: str) -> None:
    values, _, message, _ = REFUSED[case]
    error = _template("--skip-schema-validation", *values)
    assert "execution error" in error and message in error, error


@pytest.mark.parametrize("case", REFUSED)
def test_the_same_values_completed_render(case: str) -> None:
    # The refusal is about the missing half, not the option: completed (a later --set wins), each renders.
    values, _, _, completion = REFUSED[case]
    done = run_helm("template", "prod", str(CHART), "--kube-version", KUBERNETES_VERSION, *values, *completion)
    assert done.returncode == 0, done.stderr


def test_a_grace_period_below_the_worst_case_stop_is_refused_with_the_least_one() -> None:
    error = _template("--set", "terminationGracePeriodSeconds=24")
    assert "terminationGracePeriodSeconds=24 is below the sidecar's worst-case shutdown: at least 25 s" in error
    budget = ["--set-string", "streams.extraEnv.STREAMS_SHUTDOWN_TIMEOUT_SECONDS=40.5"]
    error = _template(*budget, "--set", "terminationGracePeriodSeconds=45")
    assert "at least 46 s with STREAMS_SHUTDOWN_TIMEOUT_SECONDS=40.5 (the budget + 5 s)" in error, error
    done = run_helm(
        "template",
        "prod",
        str(CHART),
        "--kube-version",
        KUBERNETES_VERSION,
        *budget,
        "--set",
        "terminationGracePeriodSeconds=46",
    )
    assert done.returncode == 0, done.stderr


def test_a_shutdown_budget_too_short_for_the_hand_over_is_refused() -> None:
    # 1.1 intervals of 30 s + 3 s = 36 s: the drain could not wait for the last scrape.
    budget = "streams.extraEnv.STREAMS_SHUTDOWN_TIMEOUT_SECONDS"
    error = _template("--set", "monitor.interval=30s", "--set-string", f"{budget}=35")
    assert "STREAMS_SHUTDOWN_TIMEOUT_SECONDS=35 is below 1.1 scrape intervals + 3 s (36.0 s" in error, error
    error = _template("--set-string", f"{budget}=soon")
    assert "expected a number of seconds" in error, error


def test_an_env_name_the_chart_sets_is_refused_in_extra_env() -> None:
    error = _template("--set", "extraEnv[0].name=REDIS_URL", "--set", "extraEnv[0].value=redis://other:6379/0")
    assert "extraEnv[0]: REDIS_URL is set twice" in error, error
    error = _template("--set-string", "streams.extraEnv.STREAMS_MAX_ORG_SERIES=9", "--set",
                      "extraEnv[0].name=STREAMS_MAX_ORG_SERIES", "--set-string", "extraEnv[0].value=10")  # fmt: skip
    assert "extraEnv[0]: STREAMS_MAX_ORG_SERIES is set twice" in error, error
    error = _template("--set", "extraEnv[0].name=HTTPS_PROXY", "--set", "extraEnv[0].value=http://a:3128",
                      "--set", "extraEnv[1].name=HTTPS_PROXY", "--set", "extraEnv[1].value=http://b:3128")  # fmt: skip
    assert "extraEnv[1]: HTTPS_PROXY is set twice" in error, error
    # streams.extraEnv too: only the three settings the chart reads back from it may be given there.
    for name in ("STREAMS_SCRAPE_INTERVAL_SECONDS", "REDIS_URL", "STREAMS_WATCH_GROUP", "KAFKA_SECURITY_PROTOCOL"):
        error = _template("--set-string", f"streams.extraEnv.{name}=x")
        assert f"streams.extraEnv.{name}: the chart sets {name} from its values" in error, error


def test_labels_that_would_change_the_selector_are_refused() -> None:
    for key in ("commonLabels", "podLabels"):
        error = _template("--set", f"{key}.app\\.kubernetes\\.io/instance=other")
        assert "invalid propertyName 'app.kubernetes.io/instance'" in error, error
