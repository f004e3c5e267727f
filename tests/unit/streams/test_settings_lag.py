import pytest

from streams.settings import Settings, SettingsError


def test_defaults_match_the_documentation() -> None:
    s = Settings.from_env({})
    assert (s.bootstrap_servers, s.app_id, s.raw_topic, s.enriched_topic) == (
        "localhost:9092",
        "ecomind-streams",
        "events.raw",
        "events.enriched",
    )
    assert (s.watch_group, s.timezone, s.web_port) == ("ecomind-worker", "UTC", 6066)


def test_values_are_read_from_the_environment() -> None:
    s = Settings.from_env(
        {
            "STREAMS_TIMEZONE": "Europe/Paris",
            "STREAMS_WEB_PORT": "7000",
            "KAFKA_BOOTSTRAP_SERVERS": "a:1,b:2",
            "KAFKA_SECURITY_PROTOCOL": "sasl_plaintext",
            "KAFKA_SASL_MECHANISM": "PLAIN",
            "KAFKA_SASL_USERNAME": "u",
        }
    )
    assert (s.timezone, s.web_port, s.bootstrap_servers) == ("Europe/Paris", 7000, "a:1,b:2")
    assert s.kafka.client_kwargs()["sasl_plain_username"] == "u"
    assert s.dead_letter_topic is None and s.web_config_file is None  # both off unless asked for


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"STREAMS_TIMEZONE": "Mars/Olympus"}, "STREAMS_TIMEZONE='Mars/Olympus': expected an IANA time zone"),
        ({"STREAMS_WEB_PORT": "http"}, "STREAMS_WEB_PORT='http': expected an integer from 1 to 65535"),
        ({"STREAMS_WEB_PORT": "70000"}, "STREAMS_WEB_PORT='70000': expected an integer"),
        ({"KAFKA_BOOTSTRAP_SERVERS": "nohost"}, "KAFKA_BOOTSTRAP_SERVERS='nohost': expected a comma-separated"),
        ({"STREAMS_RAW_TOPIC": "bad topic"}, "STREAMS_RAW_TOPIC='bad topic': expected a Kafka topic name"),
        ({"REDIS_URL": "localhost:6379"}, "REDIS_URL='localhost:6379': expected a redis://"),
        ({"STREAMS_RAW_TOPIC": "x", "STREAMS_ENRICHED_TOPIC": "x"}, "must name different topics"),
        ({"KAFKA_SECURITY_PROTOCOL": "TLS"}, "KAFKA_SECURITY_PROTOCOL='TLS': expected one of PLAINTEXT"),
        ({"KAFKA_SASL_MECHANISM": "PLAIN"}, "KAFKA_SASL_USERNAME is required"),
        ({"STREAMS_DAYS_KEPT": "0"}, "STREAMS_DAYS_KEPT='0': expected an integer from 1 to 366"),
        ({"STREAMS_DEAD_LETTER_TOPIC": "events.raw"}, "STREAMS_DEAD_LETTER_TOPIC must differ from the input topics"),
        ({"STREAMS_DEAD_LETTER_TOPIC": "dead letters"}, "STREAMS_DEAD_LETTER_TOPIC='dead letters': expected a Kafka"),
        ({"STREAMS_WEB_CONFIG_FILE": "/nonexistent.yml"}, "STREAMS_WEB_CONFIG_FILE='/nonexistent.yml': expected the"),
        ({"KAFKA_SSL_CAFILE": "/nonexistent.pem"}, "KAFKA_SSL_CAFILE='/nonexistent.pem': expected the path"),
    ],
)
def test_bad_values_name_the_variable_and_what_is_expected(env: dict[str, str], message: str) -> None:
    with pytest.raises(SettingsError) as caught:
        Settings.from_env(env)
    assert message in str(caught.value)
