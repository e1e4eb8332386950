"""The typed config: every default declared once on ``Config``, listen addresses parsed once,
``alerts`` typed, and the one function that builds a policy from a config."""

from __future__ import annotations

import dataclasses
import ipaddress
import re
from pathlib import Path

import pytest
import yaml

from categories.definitions import load_definitions
from categories.validated_yaml import ValidationFailed
from deployment.config import (
    CONFIG_SCHEMA,
    AlertSettings,
    Config,
    IdentitySettings,
    KerberosSettings,
    ListenSettings,
    RadiusClient,
    build_policy,
    load_config,
)
from deployment.listen_address import LISTEN_PATTERN, ListenAddress
from store.records import ROLES
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


IDENTITY_BLOCKS = ("radius_accounting", "kerberos", "ldap", "oidc")


def _uncomment_identity_blocks(text: str) -> str:
    """The example with its commented-out identity blocks switched on, as a reader would:
    each block starts ``  #name:`` under ``identity:`` and goes on with ``  #  `` lines."""
    lines, found, inside = [], [], False
    for line in text.splitlines():
        opening = re.fullmatch(r"  #(\w+):(.*)", line)
        if opening and opening.group(1) in IDENTITY_BLOCKS:
            found.append(opening.group(1))
            lines.append(f"  {opening.group(1)}:{opening.group(2)}")
            inside = True
        elif inside and line.startswith("  #  "):
            lines.append("   " + line[3:])
        else:
            inside = False
            lines.append(line)
    assert sorted(found) == sorted(IDENTITY_BLOCKS), found
    return "\n".join(lines) + "\n"


def test_the_examples_commented_identity_blocks_load_when_uncommented(tmp_path: Path) -> None:
    # The loader reads no secrets (only the names of the variables that hold them): nothing
    # needs to be in the environment for the file to load.
    example = (REPO / "esafety.example.yaml").read_text()
    path = tmp_path / "esafety.yaml"
    path.write_text(_uncomment_identity_blocks(example))
    config = load_config(path)
    identity = config.identity
    assert identity.radius_accounting is not None
    assert identity.radius_accounting.listen == ListenAddress("", 1813)
    assert identity.radius_accounting.clients == (
        RadiusClient(ipaddress.ip_network("10.20.0.2/32"), "ESAFETY_RADIUS_SECRET"),)
    assert identity.radius_accounting.binding_hours == 12
    assert identity.radius_accounting.realms == ("centre.ac.uk", "centre")
    assert identity.kerberos == KerberosSettings(keytab="/etc/esafety/proxy.keytab",
                                                 service="HTTP/proxy.centre.local")
    ldap = identity.ldap
    assert ldap is not None
    assert (ldap.url, ldap.bind_dn, ldap.password_env, ldap.base_dn, ldap.user_attribute) == (
        "ldaps://dc1.centre.example", "CN=esafety-sync,OU=Service Accounts,DC=centre,DC=example",
        "ESAFETY_LDAP_PASSWORD", "DC=centre,DC=example", "sAMAccountName")
    assert ldap.groups == {"CN=Learners,OU=Groups,DC=centre,DC=example": "learner",
                           "CN=Staff,OU=Groups,DC=centre,DC=example": "staff"}
    assert ldap.roles == {"CN=Staff,OU=Groups,DC=centre,DC=example": "staff",
                          "CN=IT Support,OU=Groups,DC=centre,DC=example": "it_support"}
    assert set(ldap.roles.values()) <= set(ROLES)
    oidc = identity.oidc
    assert oidc is not None
    assert (oidc.issuer, oidc.client_id, oidc.client_secret_env, oidc.name, oidc.scopes) == (
        "https://accounts.google.com", "1234.apps.googleusercontent.com",
        "ESAFETY_OIDC_CLIENT_SECRET", "Google", ("openid", "email", "profile"))
    assert oidc.roles == {"admin": ("it@centre.example",), "manager": ("group:managers",)}
    assert oidc.groups == {"staff": ("group:managers",)}
    assert set(oidc.roles) <= set(ROLES)
    # The portal block, never commented out, is unchanged, and so is the rest of the file.
    assert identity.portal == load_config(REPO / "esafety.example.yaml").identity.portal
    assert dataclasses.replace(config, identity=IdentitySettings(portal=identity.portal),
                               path=None) == dataclasses.replace(
        load_config(REPO / "esafety.example.yaml"), path=None)


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


def test_an_unknown_role_in_an_identity_mapping_is_a_clear_error(tmp_path: Path) -> None:
    """A typo under oidc.roles or ldap.roles would map nobody; it stops the config instead,
    naming the key, the line and the roles there are."""
    oidc = {"issuer": "https://id.example", "client_id": "esafety",
            "client_secret_env": "ESAFETY_OIDC_SECRET", "roles": {"wizard": ["a@centre.test"]}}
    ldap = {"url": "ldaps://dc.centre.test", "bind_dn": "CN=esafety", "password_env": "X",
            "base_dn": "DC=centre", "roles": {"CN=Staff,DC=centre": "stafff"}}
    for identity, key, wrong in (({"oidc": oidc}, "identity.oidc.roles", "wizard"),
                                 ({"ldap": ldap}, "identity.ldap.roles.CN=Staff", "stafff")):
        with pytest.raises(ValidationFailed) as failed:
            _load(tmp_path, {"identity": identity})
        message = str(failed.value)
        assert key in message and repr(wrong) in message, message
        assert "learner, staff, it_support, manager, dsl, admin" in message
    good = _load(tmp_path, {"identity": {"ldap": {**ldap, "roles": {"CN=Staff": "staff"}}}})
    assert good.identity.ldap is not None and good.identity.ldap.roles == {"CN=Staff": "staff"}
