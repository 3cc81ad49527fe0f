"""Settings from `GOVBUS_*` variables: the embedded default, the switches to production, and
start-up failures that say what to fix."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from bus.config import RetryPolicy, Settings
from bus.errors import ConfigError
from schemas import XmlLimits


def test_empty_environment_gives_the_embedded_default():
    settings = Settings.from_env({})
    assert settings.broker_url == "memory://"
    assert settings.embedded
    assert settings.data_dir == Path("var")
    assert settings.database_url == "sqlite:///var/govbus.db"
    assert settings.routes is None
    assert settings.prefix == "govbus"
    assert settings.xml == XmlLimits()
    assert settings.retry == RetryPolicy()


def test_variables_without_the_prefix_are_ignored():
    settings = Settings.from_env({"PATH": "/usr/bin", "BROKER_URL": "amqp://x", "govbus_broker_url": "amqp://y"})
    assert settings.broker_url == "memory://"


def test_broker_url_switches_to_rabbitmq():
    settings = Settings.from_env({"GOVBUS_BROKER_URL": "amqp://gov:secret@mq.internal:5672/govbus"})
    assert settings.broker_url == "amqp://gov:secret@mq.internal:5672/govbus"
    assert not settings.embedded
    assert settings.database_url == "sqlite:///var/govbus.db"  # one switch does not pull the other


def test_database_url_switches_to_postgresql():
    url = "postgresql+psycopg://govbus@db.internal:5432/govbus"
    settings = Settings.from_env({"GOVBUS_DATABASE_URL": url})
    assert settings.database_url == url
    assert settings.embedded


def test_data_dir_moves_the_default_sqlite_file(tmp_path):
    settings = Settings.from_env({"GOVBUS_DATA_DIR": str(tmp_path / "state")})
    assert settings.data_dir == tmp_path / "state"
    assert settings.database_url == f"sqlite:///{tmp_path / 'state' / 'govbus.db'}"


def test_relative_data_dir_moves_the_default_sqlite_file():
    assert Settings.from_env({"GOVBUS_DATA_DIR": "data"}).database_url == "sqlite:///data/govbus.db"


def test_an_explicit_database_url_wins_over_the_data_dir(tmp_path):
    url = "postgresql+psycopg://govbus@db.internal/govbus"
    settings = Settings.from_env({"GOVBUS_DATA_DIR": str(tmp_path), "GOVBUS_DATABASE_URL": url})
    assert settings.database_url == url


def test_from_env_reads_the_process_environment_by_default(monkeypatch):
    import os

    for key in list(os.environ):
        if key.startswith("GOVBUS_"):
            monkeypatch.delenv(key)
    monkeypatch.setenv("GOVBUS_PREFETCH", "42")
    monkeypatch.setenv("GOVBUS_ROUTES", "/etc/govbus/routes.toml")
    settings = Settings.from_env()
    assert settings.prefetch == 42
    assert settings.routes == Path("/etc/govbus/routes.toml")


def test_every_kind_of_value_is_read():
    settings = Settings.from_env(
        {
            "GOVBUS_PREFIX": "zh-city_1",
            "GOVBUS_PREFETCH": "100",
            "GOVBUS_BATCH_SIZE": "50",
            "GOVBUS_DELIVERY_LIMIT": "5",
            "GOVBUS_DEDUP_DAYS": "30",
            "GOVBUS_XML_MAX_BYTES": "1048576",
            "GOVBUS_XML_MAX_DEPTH": "32",
            "GOVBUS_RETRY_ATTEMPTS": "3",
            "GOVBUS_RETRY_BASE_DELAY": "0.5",
            "GOVBUS_RETRY_FACTOR": "3",
            "GOVBUS_RETRY_MAX_DELAY": "10",
        }
    )
    assert (settings.prefix, settings.prefetch, settings.batch_size) == ("zh-city_1", 100, 50)
    assert (settings.delivery_limit, settings.dedup_days) == (5, 30)
    assert settings.xml == XmlLimits(max_bytes=1048576, max_depth=32)
    assert settings.retry == RetryPolicy(attempts=3, base_delay=0.5, factor=3.0, max_delay=10.0)


def test_misspelt_variable_fails_with_a_suggestion():
    with pytest.raises(ConfigError) as caught:
        Settings.from_env({"GOVBUS_BROKR_URL": "amqp://mq.internal"})
    assert "GOVBUS_BROKR_URL" in caught.value.message
    assert "did you mean GOVBUS_BROKER_URL?" in caught.value.message


def test_unknown_variable_without_a_close_match_lists_the_known_ones():
    with pytest.raises(ConfigError) as caught:
        Settings.from_env({"GOVBUS_ZZZZ": "1"})
    assert "GOVBUS_ZZZZ" in caught.value.message
    for known in ("GOVBUS_BROKER_URL", "GOVBUS_DATABASE_URL", "GOVBUS_ROUTES", "GOVBUS_RETRY_ATTEMPTS"):
        assert known in caught.value.message


@pytest.mark.parametrize("value", ["many", "1.5", ""])
def test_non_integer_prefetch_names_the_variable(value):
    with pytest.raises(ConfigError) as caught:
        Settings.from_env({"GOVBUS_PREFETCH": value})
    assert "GOVBUS_PREFETCH" in caught.value.message
    assert repr(value) in caught.value.message


@pytest.mark.parametrize("key", ["PREFETCH", "BATCH_SIZE", "DELIVERY_LIMIT", "DEDUP_DAYS"])
def test_counts_below_one_name_the_variable(key):
    with pytest.raises(ConfigError, match=f"GOVBUS_{key} must be at least 1"):
        Settings.from_env({f"GOVBUS_{key}": "0"})


@pytest.mark.parametrize("prefix", ["gov.bus", "gov bus", "gov*", ""])
def test_prefix_that_would_break_names_is_refused(prefix):
    with pytest.raises(ConfigError, match="GOVBUS_PREFIX"):
        Settings.from_env({"GOVBUS_PREFIX": prefix})


@pytest.mark.parametrize("key, value", [("XML_MAX_DEPTH", "0"), ("XML_MAX_DEPTH", "1000"), ("XML_MAX_BYTES", "0")])
def test_nonsense_xml_limits_are_a_config_error(key, value):
    with pytest.raises(ConfigError):
        Settings.from_env({f"GOVBUS_{key}": value})


# --- RetryPolicy ------------------------------------------------------------------------------


def test_retry_delays_grow_exponentially():
    policy = RetryPolicy(attempts=5, base_delay=1.0, factor=2.0, max_delay=300.0)
    assert [policy.delay_ms(a) for a in range(1, 5)] == [1000, 2000, 4000, 8000]


def test_retry_delays_are_capped_at_max_delay():
    policy = RetryPolicy(attempts=8, base_delay=1.0, factor=3.0, max_delay=20.0)
    assert [policy.delay_ms(a) for a in range(1, 8)] == [1000, 3000, 9000, 20000, 20000, 20000, 20000]


def test_delays_ms_lists_each_distinct_delay_once():
    policy = RetryPolicy(attempts=8, base_delay=1.0, factor=3.0, max_delay=20.0)
    assert policy.delays_ms() == [1000, 3000, 9000, 20000]


def test_delays_ms_covers_every_retry_and_no_more():
    # attempts counts every attempt, the first included: 5 attempts are 4 retries
    policy = RetryPolicy(attempts=5, base_delay=0.2, factor=2.0, max_delay=300.0)
    assert policy.delays_ms() == [200, 400, 800, 1600]
    assert RetryPolicy(attempts=1).delays_ms() == []


def test_a_constant_delay_needs_one_retry_queue():
    assert RetryPolicy(attempts=10, base_delay=5, factor=1, max_delay=5).delays_ms() == [5000]


def test_default_retry_policy():
    policy = RetryPolicy()
    assert policy.delays_ms() == [1000, 2000, 4000, 8000]


@pytest.mark.parametrize(
    "changes",
    [
        {"attempts": 0},
        {"attempts": -3},
        {"base_delay": 0},
        {"base_delay": -1},
        {"factor": 0.5},
        {"base_delay": 10, "max_delay": 5},
        {"base_delay": math.nan},
        {"factor": math.nan},
        {"max_delay": math.nan},
    ],
)
def test_bad_retry_values_raise_config_error(changes):
    with pytest.raises(ConfigError):
        RetryPolicy(**changes)


def test_bad_retry_attempts_from_the_environment_names_the_variable():
    with pytest.raises(ConfigError, match="GOVBUS_RETRY_ATTEMPTS"):
        Settings.from_env({"GOVBUS_RETRY_ATTEMPTS": "0"})


@pytest.mark.parametrize(
    "env",
    [
        {"GOVBUS_RETRY_BASE_DELAY": "soon"},
        {"GOVBUS_RETRY_MAX_DELAY": "0.5"},  # below the default base delay of 1 s
        {"GOVBUS_RETRY_FACTOR": "0.9"},
        {"GOVBUS_RETRY_FACTOR": "nan"},
        {"GOVBUS_RETRY_BASE_DELAY": "nan"},
    ],
)
def test_bad_retry_values_from_the_environment_raise_config_error(env):
    with pytest.raises(ConfigError):
        Settings.from_env(env)


def test_the_catalogue_user_variable_is_not_a_setting_but_is_known():
    # GOVBUS_USER says who `govbus catalog` acts as; every command must accept it
    assert Settings.from_env({"GOVBUS_USER": "admin"}) == Settings.from_env({})
    with pytest.raises(ConfigError) as caught:
        Settings.from_env({"GOVBUS_USRE": "admin"})
    assert "did you mean GOVBUS_USER?" in caught.value.message
