"""Every setting's accepted and refused values, in-process: no Redis, no subprocess."""

from __future__ import annotations

from pathlib import Path

import pytest

from shared.settings import Settings, SettingsError


def read(name: str, value: str) -> Settings:
    return Settings.from_env({name: value})


@pytest.mark.parametrize(
    ("name", "value", "field", "expected"),
    [
        ("ENDCONTACT_RESULT_TIMEOUT", "5", "result_timeout", 5.0),
        ("ENDCONTACT_RESULT_TIMEOUT", "2.5", "result_timeout", 2.5),
        ("ENDCONTACT_RESULT_TIMEOUT", "0.01", "result_timeout", 0.01),
        ("ENDCONTACT_RESULT_TIMEOUT", "300", "result_timeout", 300.0),
        ("ENDCONTACT_RATE_LIMIT", "0", "rate_limit", 0),
        ("ENDCONTACT_RATE_LIMIT", "600", "rate_limit", 600),
        ("ENDCONTACT_RATE_LIMIT", "1000000000", "rate_limit", 1_000_000_000),
        ("ENDCONTACT_RATE_WINDOW", "1", "rate_window", 1),
        ("ENDCONTACT_RATE_WINDOW", "86400", "rate_window", 86_400),
        ("ENDCONTACT_DURABLE_REPLICAS", "0", "durable_replicas", 0),
        ("ENDCONTACT_DURABLE_REPLICAS", "2", "durable_replicas", 2),
        ("ENDCONTACT_DEFAULT_REGION", "GB", "default_region", "GB"),
        ("ENDCONTACT_DEFAULT_REGION", " fr ", "default_region", "FR"),
        ("REDIS_URL", "redis://r:6379/0", "redis_url", "redis://r:6379/0"),
        ("REDIS_URL", "rediss://:pw@r:6380/1", "redis_url", "rediss://:pw@r:6380/1"),
        ("REDIS_URL", "unix:///run/redis.sock", "redis_url", "unix:///run/redis.sock"),
        ("REDIS_SENTINEL_PASSWORD", "s3cret", "sentinel_password", "s3cret"),
        ("ENDCONTACT_DRAIN_SECONDS", "0", "drain_seconds", 0.0),
        ("ENDCONTACT_DRAIN_SECONDS", "3", "drain_seconds", 3.0),
        ("ENDCONTACT_DRAIN_SECONDS", "60", "drain_seconds", 60.0),
    ],
)
def test_accepted(name: str, value: str, field: str, expected: object) -> None:
    assert getattr(read(name, value), field) == expected


def test_defaults_when_unset_or_empty() -> None:
    for settings in (Settings.from_env({}), Settings.from_env(dict.fromkeys(NAMES, ""))):
        assert settings.redis_url is None
        assert settings.data_dir == Path("var").resolve()
        assert settings.result_timeout == 5.0
        assert settings.default_region == "US"
        assert (settings.rate_limit, settings.rate_window) == (600, 60)
        assert (settings.sentinel_master, settings.sentinel_password) == (None, None)
        assert settings.durable_replicas == 0
        assert settings.drain_seconds == 0.0
        assert settings.log_format == "auto"


def test_data_dir_is_made_absolute(tmp_path: Path) -> None:
    assert read("ENDCONTACT_DATA_DIR", str(tmp_path / "a" / ".." / "b")).data_dir == tmp_path / "b"


def test_sentinel_url_with_its_group() -> None:
    url = "sentinel://:pw@h1:26379/0;sentinel://:pw@h2:26379/0"
    settings = Settings.from_env({"REDIS_URL": url, "REDIS_SENTINEL_MASTER": "main"})
    assert (settings.redis_url, settings.sentinel_master) == (url, "main")


NAMES = [
    "REDIS_URL",
    "ENDCONTACT_DATA_DIR",
    "ENDCONTACT_RESULT_TIMEOUT",
    "ENDCONTACT_DEFAULT_REGION",
    "ENDCONTACT_RATE_LIMIT",
    "ENDCONTACT_RATE_WINDOW",
    "REDIS_SENTINEL_MASTER",
    "REDIS_SENTINEL_PASSWORD",
    "ENDCONTACT_DURABLE_REPLICAS",
    "ENDCONTACT_DRAIN_SECONDS",
    "ENDCONTACT_LOG_FORMAT",
]
# Unicode digits that str.isdigit() (and int() or float(), all but "²") take.
SECONDS = [
    "abc",
    "0",
    "0.0",
    "-1",
    "300.5",
    "nan",
    "inf",
    "1e1",
    " 5",
    "5 ",
    "\uff15",
    "²",
    "1_0",
    ".",
]
WHOLE = ["abc", "-1", "1.0", "²", "١٢", "\uff15", " 5", "5\n", "1_000", "+5", "9" * 5000]


@pytest.mark.parametrize(
    ("name", "value", "accepts"),
    [("ENDCONTACT_RESULT_TIMEOUT", v, "number of seconds above 0 and at most 300") for v in SECONDS]
    + [
        ("ENDCONTACT_DRAIN_SECONDS", v, "number of seconds from 0 (off) and at most 60")
        for v in [*(v for v in SECONDS if v not in ("0", "0.0")), "61"]
    ]
    + [("ENDCONTACT_RATE_LIMIT", v, "whole number from 0 to 1000000000") for v in WHOLE]
    + [("ENDCONTACT_RATE_LIMIT", "1000000001", "whole number from 0 to 1000000000")]
    + [("ENDCONTACT_RATE_WINDOW", v, "whole number from 1 to 86400") for v in [*WHOLE, "0"]]
    + [("ENDCONTACT_RATE_WINDOW", "86401", "whole number from 1 to 86400")]
    + [("ENDCONTACT_DURABLE_REPLICAS", v, "whole number from 0 to 16") for v in [*WHOLE, "17"]]
    + [("ENDCONTACT_DEFAULT_REGION", v, "two-letter region code") for v in ["XX", "USA", "ü"]]
    + [
        ("REDIS_URL", v, "redis://, rediss://, unix:// or sentinel://")
        for v in ["localhost:6379", "http://r:6379/0", "redis://r:port/0", "redis://r:99999/0"]
    ],
)
def test_refused_with_one_line_naming_it(name: str, value: str, accepts: str) -> None:
    with pytest.raises(SettingsError) as refused:
        read(name, value)
    message = str(refused.value)
    assert message.startswith(f"{name} must be a ")
    assert accepts in message
    assert "\n" not in message
    assert len(message) < 200


def test_refused_url_hides_its_password() -> None:
    with pytest.raises(SettingsError) as refused:
        read("REDIS_URL", "http://:p@ss@word@r:6379/0")
    assert "word" not in str(refused.value)
    assert "p@ss" not in str(refused.value)


def test_sentinel_url_needs_its_group() -> None:
    with pytest.raises(SettingsError, match="REDIS_SENTINEL_MASTER"):
        read("REDIS_URL", "sentinel://:pw@h1:26379/0")


def test_webhook_settings_defaults() -> None:
    settings = Settings.from_env({})
    assert settings.webhook_allow_private is False
    assert settings.webhook_retry_schedule == (5, 300, 1800, 7200, 18000, 36000, 36000)


@pytest.mark.parametrize(("value", "expected"), [("true", True), ("false", False)])
def test_webhook_allow_private(value: str, expected: bool) -> None:
    assert read("ENDCONTACT_WEBHOOK_ALLOW_PRIVATE", value).webhook_allow_private is expected


@pytest.mark.parametrize("value", ["yes", "1", "True", " true", "on"])
def test_webhook_allow_private_refused(value: str) -> None:
    with pytest.raises(SettingsError, match=r"^ENDCONTACT_WEBHOOK_ALLOW_PRIVATE must be true or"):
        read("ENDCONTACT_WEBHOOK_ALLOW_PRIVATE", value)


@pytest.mark.parametrize(
    ("value", "expected"), [("1", (1,)), ("1,2,3", (1, 2, 3)), ("86400,5", (86_400, 5))]
)
def test_webhook_retry_schedule(value: str, expected: tuple[int, ...]) -> None:
    assert read("ENDCONTACT_WEBHOOK_RETRY_SCHEDULE", value).webhook_retry_schedule == expected


@pytest.mark.parametrize(
    "value",
    ["0", "5,0", "-5", "1.5", "5,,6", "5,", ",5", " 5", "5 ,6", "86401", "²", "a", "1," * 101],
)
def test_webhook_retry_schedule_refused(value: str) -> None:
    with pytest.raises(SettingsError) as refused:
        read("ENDCONTACT_WEBHOOK_RETRY_SCHEDULE", value)
    message = str(refused.value)
    assert message.startswith("ENDCONTACT_WEBHOOK_RETRY_SCHEDULE must be whole seconds from 1")
    assert "\n" not in message
    assert len(message) < 200


@pytest.mark.parametrize("value", ["auto", "json", "text"])
def test_log_format(value: str) -> None:
    assert read("ENDCONTACT_LOG_FORMAT", value).log_format == value


def test_log_format_is_auto_by_default() -> None:
    assert Settings.from_env({}).log_format == "auto"
    assert read("ENDCONTACT_LOG_FORMAT", "").log_format == "auto"


@pytest.mark.parametrize("value", ["JSON", "yaml", " text", "1"])
def test_log_format_refused(value: str) -> None:
    with pytest.raises(SettingsError) as refused:
        read("ENDCONTACT_LOG_FORMAT", value)
    assert str(refused.value) == f"ENDCONTACT_LOG_FORMAT must be auto, json or text, got {value!r}"
