"""The upstream guard's rules on their own: which addresses are internal in every spelling,
every address a name resolves to is checked, own ports stay closed, and the ``upstream``
config section's errors name the key and line. End to end: tests/proxy_addons/test_proxy_transport.py."""

from __future__ import annotations

import asyncio
import ipaddress
from pathlib import Path

import pytest

from categories.decision import Rule
from categories.validated_yaml import ValidationFailed
from deployment.config import UpstreamSettings, load_config, parse_internal_allowance
from proxy_addons.upstream_guard import (
    Destination,
    Refusal,
    UpstreamGuard,
    ip_literal,
    is_internal,
    redis_ports,
)

INTERNAL = ["127.0.0.1", "127.255.255.254", "0.0.0.0", "10.0.0.1", "172.16.5.4", "192.168.1.1",
            "169.254.169.254", "100.64.0.1", "100.127.255.254", "224.0.0.1", "239.1.2.3",
            "240.0.0.1", "255.255.255.255", "::1", "::", "fe80::1", "fc00::1", "fd12:3456::1",
            "ff02::1", "::ffff:127.0.0.1", "::ffff:10.0.0.1", "::ffff:169.254.169.254",
            "::127.0.0.1", "2002:7f00:1::", "2002:a9fe:a9fe::1", "64:ff9b::7f00:1",
            "64:ff9b::a9fe:a9fe", "64:ff9b:1::a00:1", "198.18.0.1", "192.0.2.1", "2001:db8::1"]
PUBLIC = ["8.8.8.8", "1.1.1.1", "151.101.1.1", "2a00:1450:4009:81f::200e", "::ffff:8.8.8.8",
          "2606:4700::1111"]


@pytest.mark.parametrize("text", INTERNAL)
def test_internal_addresses_in_every_form(text: str) -> None:
    assert is_internal(ipaddress.ip_address(text)), text


@pytest.mark.parametrize("text", PUBLIC)
def test_public_addresses_are_not_internal(text: str) -> None:
    assert not is_internal(ipaddress.ip_address(text)), text


@pytest.mark.parametrize(("host", "address"), [
    ("127.1", "127.0.0.1"), ("0", "0.0.0.0"), ("2130706433", "127.0.0.1"),
    ("0x7f.0.0.1", "127.0.0.1"), ("0177.0.0.1", "127.0.0.1"), ("[::1]", "::1"), ("::1", "::1"),
    ("[::ffff:127.0.0.1]", "127.0.0.1"), ("[::ffff:7f00:1]", "127.0.0.1"),
    ("169.254.169.254.", "169.254.169.254")])
def test_ip_literals_in_odd_spellings_are_read_as_addresses(host: str, address: str) -> None:
    assert str(ip_literal(host)) == address


@pytest.mark.parametrize("host", ["localhost", "origin.test", "1e100.net", "0x.test"])
def test_names_are_not_literals(host: str) -> None:
    assert ip_literal(host) is None


def _guard(answers: dict[str, list[str]], settings: UpstreamSettings = UpstreamSettings(),
           own_ports: tuple[int, ...] = ()) -> UpstreamGuard:
    guard = UpstreamGuard(settings, own_ports=own_ports)

    async def resolver(host: str, port: int) -> list[tuple[str, int]]:
        if host not in answers:
            raise OSError("no such name")
        return [(a, port) for a in answers[host]]

    guard.resolver = resolver
    return guard


def _check(guard: UpstreamGuard, host: str, port: int) -> Destination | Refusal:
    return asyncio.run(guard.check(host, port))


def test_every_address_a_name_resolves_to_is_checked() -> None:
    guard = _guard({"mixed.example": ["93.184.216.34", "10.0.0.5"],
                    "public.example": ["93.184.216.34", "2606:2800:220:1::"],
                    "mapped.example": ["::ffff:192.168.0.1"]})
    refused = _check(guard, "mixed.example", 443)
    assert isinstance(refused, Refusal) and refused.decision is not None
    assert refused.decision.rule is Rule.INTERNAL_DESTINATION
    assert isinstance(_check(guard, "mapped.example", 443), Refusal)
    allowed = _check(guard, "public.example", 443)
    # Pinned to the checked address; the name is kept for TLS and the Host header.
    assert allowed == Destination("public.example", ("93.184.216.34", 443))


def test_a_name_that_does_not_resolve_is_a_refusal_without_a_hit() -> None:
    refused = _check(_guard({}), "nowhere.example", 443)
    assert isinstance(refused, Refusal) and refused.decision is None


def test_allow_internal_with_and_without_port_and_own_ports_stay_closed() -> None:
    settings = UpstreamSettings(allow_internal=(parse_internal_allowance("10.2.0.0/16"),
                                                parse_internal_allowance("192.168.9.9:8443")))
    guard = _guard({"intranet": ["10.2.3.4"], "nas": ["192.168.9.9"]}, settings,
                   own_ports=(6379,))
    assert isinstance(_check(guard, "intranet", 443), Destination)
    assert isinstance(_check(guard, "intranet", 80), Destination)
    assert isinstance(_check(guard, "intranet", 6379), Refusal)  # own port, even when allowed
    assert isinstance(_check(guard, "nas", 8443), Destination)
    assert isinstance(_check(guard, "nas", 443), Refusal)
    assert isinstance(_check(guard, "10.3.0.1", 443), Refusal)


def test_the_onboarding_name_is_never_an_upstream() -> None:
    assert isinstance(_check(_guard({"mitm.it": ["93.184.216.34"]}), "mitm.it", 80), Refusal)


def test_redis_ports_from_every_url_form() -> None:
    assert redis_ports("redis://127.0.0.1:6390/0") == {6390}
    assert redis_ports("redis://:secret@redis.internal/0") == {6379}
    assert redis_ports("rediss://h:6380") == {6380}
    assert redis_ports("redis+sentinel://:pw@s1:26379,s2:26380/esafety/0") == {26379, 26380}
    assert redis_ports("unix:///run/redis.sock") == set()
    assert redis_ports(None) == set()


def test_upstream_config_is_read_and_bad_entries_name_key_and_line(tmp_path: Path) -> None:
    good = tmp_path / "good.yaml"
    good.write_text("upstream:\n  connect_ports: [443, 8443]\n  http_ports: [80, 8080]\n"
                    "  allow_internal: ['10.2.0.0/16', '10.2.0.5:8443', '[fd00::5]:443']\n")
    upstream = load_config(good).upstream
    assert upstream.connect_ports == {443, 8443} and upstream.http_ports == {80, 8080}
    assert [str(a.network) for a in upstream.allow_internal] == [
        "10.2.0.0/16", "10.2.0.5/32", "fd00::5/128"]
    assert [a.port for a in upstream.allow_internal] == [None, 8443, 443]
    assert load_config(None).upstream.connect_ports == {443}
    bad = tmp_path / "bad.yaml"
    bad.write_text("centre_id: main\nupstream:\n  allow_internal:\n    - 10.2.0.0/16\n"
                   "    - intranet.local\n    - '10.0.0.1:99999'\n")
    with pytest.raises(ValidationFailed) as failed:
        load_config(bad)
    text = str(failed.value)
    assert "upstream.allow_internal.1" in text and "intranet.local" in text
    assert "upstream.allow_internal.2" in text and "1 to 65535" in text
    lines = {p.line for p in failed.value.problems}
    assert lines == {5, 6}
    ports = tmp_path / "ports.yaml"
    ports.write_text("upstream:\n  connect_ports: [0]\n")
    with pytest.raises(ValidationFailed) as failed:
        load_config(ports)
    assert "upstream.connect_ports" in str(failed.value)
