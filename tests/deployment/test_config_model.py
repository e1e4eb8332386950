"""The typed config: every default declared once on ``Config``, listen addresses parsed once,
``alerts`` typed, and the one function that builds a policy from a config."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import yaml

from categories.definitions import load_definitions
from categories.validated_yaml import ValidationFailed
from deployment.config import (
    CONFIG_SCHEMA,
    AlertSettings,
    Config,
    ListenSettings,
    build_policy,
    load_config,
)
from deployment.listen_address import LISTEN_PATTERN, ListenAddress
from tests.harness.proxy import REPO


def _load(tmp_path: Path, settings: dict[str, object]) -> Config:
    path = tmp_path / "esafety.yaml"
    path.write_text(yaml.safe_dump(settings))
    return load_config(path)


def test_a_file_that_sets_nothing_gives_the_declared_defaults(tmp_path: Path) -> None:
    path = tmp_path / "esafety.yaml"
    path.write_text("{}\n")
    assert load_config(path) == dataclasses.replace(Config(), path=path)
    assert load_config(None) == Config()


def test_empty_sections_give_the_declared_defaults_too(tmp_path: Path) -> None:
    sections = ("listen", "proxy_auth", "decryption", "logging", "retention", "alerts",
                "extension", "upstream", "groups", "time_windows", "lists")
    config = _load(tmp_path, {section: {} for section in sections})
    assert config == dataclasses.replace(Config(), path=config.path)


def test_listen_addresses_are_parsed_once_into_the_config(tmp_path: Path) -> None:
    config = _load(tmp_path, {"listen": {"admin": "127.0.0.1:9000", "proxy": "[::1]:3128"}})
    assert config.listen == ListenSettings(proxy=ListenAddress("::1", 3128),
                                           admin=ListenAddress("127.0.0.1", 9000))
    assert config.listen.proxy_status == ListenSettings().proxy_status
    assert Config().listen.admin == ListenAddress("", 8090)
    assert str(config.listen.admin) == "127.0.0.1:9000" and str(config.listen.proxy) == "[::1]:3128"


def test_the_schema_uses_the_one_listen_pattern() -> None:
    listen = CONFIG_SCHEMA["properties"]["listen"]["properties"]
    assert {spec["pattern"] for spec in listen.values()} == {LISTEN_PATTERN}


@pytest.mark.parametrize("text", ["127.0.0.1:0", ":99999", "nohost"])
def test_a_bad_listen_address_names_its_key(tmp_path: Path, text: str) -> None:
    with pytest.raises(ValidationFailed) as failed:
        _load(tmp_path, {"listen": {"admin": text}})
    assert "listen.admin" in str(failed.value)


def test_alerts_are_typed(tmp_path: Path) -> None:
    config = _load(tmp_path, {"alerts": {"webhook_url": "https://hooks.example/x",
                                         "email_to": ["dsl@centre.example"],
                                         "prevent_watch_terms": ["a phrase"],
                                         "group_window_seconds": 60}})
    assert config.alerts == AlertSettings(webhook_url="https://hooks.example/x",
                                          email_to=("dsl@centre.example",),
                                          prevent_watch_terms=("a phrase",),
                                          group_window_seconds=60)
    assert config.alerts.smtp_port == 25 and config.alerts.email_from == "esafety@localhost"
    assert Config().alerts == AlertSettings()


def test_the_example_config_loads(tmp_path: Path) -> None:
    config = load_config(REPO / "esafety.example.yaml")
    assert config.listen == ListenSettings()
    assert config.alerts.group_window_seconds == AlertSettings().group_window_seconds


def test_the_policy_is_built_from_the_config(tmp_path: Path) -> None:
    config = _load(tmp_path, {"timezone": "Europe/Paris", "unidentified_group": "visitor",
                              "groups": {"visitor": {"block_uncategorised": True}},
                              "time_windows": {"late": {"start": "20:00", "end": "21:00"}}})
    policy = build_policy(config, load_definitions())
    assert policy.unidentified_group == "visitor"
    assert policy.profile_for("visitor").block_uncategorised
    assert str(policy.schedule.timezone) == "Europe/Paris"
    assert "late" in policy.schedule.windows
    assert policy.snapshot is None and policy.snapshot_version is None
