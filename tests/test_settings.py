from __future__ import annotations

from pathlib import Path

import pytest

from shared.connection import SentinelGroup
from shared.settings import Settings, SettingsError


def test_defaults() -> None:
    settings = Settings.from_env({})
    assert settings.redis_url is None
    assert settings.result_timeout == 5.0
    assert settings.default_region == "US"
    assert settings.data_dir.name == "var"


def test_values_are_read() -> None:
    settings = Settings.from_env(
        {
            "REDIS_URL": "redis://r:6379/0",
            "ENDCONTACT_RESULT_TIMEOUT": "2.5",
            "ENDCONTACT_DEFAULT_REGION": "gb",
            "ENDCONTACT_DATA_DIR": "/tmp/x",
        }
    )
    assert settings.redis_url == "redis://r:6379/0"
    assert settings.result_timeout == 2.5
    assert settings.default_region == "GB"
    assert settings.data_dir == Path("/tmp/x")


@pytest.mark.parametrize(
    "env",
    [
        {"ENDCONTACT_RESULT_TIMEOUT": "soon"},
        {"ENDCONTACT_RESULT_TIMEOUT": "0"},
        {"ENDCONTACT_RESULT_TIMEOUT": "nan"},
        {"ENDCONTACT_DEFAULT_REGION": "XX"},
        {"ENDCONTACT_RATE_LIMIT": "many"},
        {"ENDCONTACT_RATE_WINDOW": "-1"},
        {"ENDCONTACT_DURABLE_REPLICAS": "one"},
    ],
)
def test_bad_values_are_named(env: dict[str, str]) -> None:
    with pytest.raises(SettingsError, match=next(iter(env))):
        Settings.from_env(env)


def test_sentinel_needs_its_group_name() -> None:
    url = "sentinel://:pw@h1:26379/2;sentinel://:pw@h2:26380/2"
    with pytest.raises(SettingsError, match="REDIS_SENTINEL_MASTER"):
        Settings.from_env({"REDIS_URL": url})
    settings = Settings.from_env({"REDIS_URL": url, "REDIS_SENTINEL_MASTER": "main"})
    target = SentinelGroup.parse(url, "main", None)
    assert target.sentinels == [("h1", 26379), ("h2", 26380)]
    assert (target.db, target.password, target.master) == (2, "pw", "main")
    assert settings.sentinel_master == "main"


def test_broker_is_the_store_unless_set() -> None:
    one = Settings.from_env({"REDIS_URL": "redis://store:6379/0"})
    assert one.broker() == one
    split = Settings.from_env(
        {"REDIS_URL": "redis://store:6379/0", "ENDCONTACT_BROKER_URL": "redis://broker:6379/0"}
    )
    assert split.redis_url == "redis://store:6379/0"
    assert split.broker().redis_url == "redis://broker:6379/0"


def test_broker_through_sentinel_needs_its_own_group_name() -> None:
    env = {
        "REDIS_URL": "redis://store:6379/0",
        "ENDCONTACT_BROKER_URL": "sentinel://h1:26379/0;sentinel://h2:26379/0",
    }
    with pytest.raises(SettingsError, match="ENDCONTACT_BROKER_SENTINEL_MASTER"):
        Settings.from_env(env)
    settings = Settings.from_env({**env, "ENDCONTACT_BROKER_SENTINEL_MASTER": "queue"})
    assert settings.sentinel_master is None
    assert settings.broker().sentinel_master == "queue"
    assert settings.broker().redis_url == env["ENDCONTACT_BROKER_URL"]


def test_a_cluster_store_needs_a_node_and_a_broker_apart() -> None:
    node = {"REDIS_URL": "redis://:pw@node-1:6379", "ENDCONTACT_REDIS_CLUSTER": "true"}
    with pytest.raises(SettingsError, match="ENDCONTACT_BROKER_URL"):
        Settings.from_env(node)
    broker = {"ENDCONTACT_BROKER_URL": "redis://broker:6379/0"}
    for url in ("sentinel://h1:26379/0", "unix:///run/valkey.sock", ""):
        with pytest.raises(SettingsError, match="REDIS_URL"):
            Settings.from_env({**node, **broker, "REDIS_URL": url, "REDIS_SENTINEL_MASTER": "m"})
    settings = Settings.from_env({**node, **broker})
    assert settings.redis_cluster is True
    # The broker is never the cluster.
    assert settings.broker().redis_cluster is False
    assert Settings.from_env({"REDIS_URL": "redis://one:6379"}).redis_cluster is False
