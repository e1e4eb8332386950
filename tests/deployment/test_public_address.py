"""Public addresses: what other machines use to reach the admin service and the proxy.

Set in the config, they are used as written; left unset, they are this machine's address on
the network its default route leaves by, with the services' listening ports (never
``127.0.0.1``, which names the learner's own device on every other machine)."""

from __future__ import annotations

import dataclasses
import socket
from pathlib import Path

from deployment.config import Config, ListenSettings, load_config
from deployment.listen_address import parse_listen
from deployment.public_address import (
    LOOPBACK,
    ServiceAddress,
    admin_endpoints,
    admin_public_url,
    detect_public_host,
    proxy_public_address,
)
from tests.admin_api.test_api_proxy_config import evaluate
from tests.harness.api import ApiFactory


def _has_default_route() -> bool:
    try:
        lines = Path("/proc/net/route").read_text().splitlines()[1:]
    except OSError:
        return False
    return any(line.split()[1] == "00000000" for line in lines if line.split())


def test_the_detected_address_is_one_of_this_machines_and_not_loopback() -> None:
    detected = detect_public_host()
    family = socket.AF_INET6 if ":" in detected else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.bind((detected, 0))  # only an address of this machine can be bound
    if _has_default_route():
        assert detected != LOOPBACK


def test_unset_addresses_are_detected_with_the_listening_ports_kept() -> None:
    config = Config(listen=ListenSettings(proxy=parse_listen(":3128"),
                                          admin=parse_listen(":8443")))
    detected = detect_public_host()
    assert admin_public_url(config) == f"http://{detected}:8443"
    assert proxy_public_address(config) == f"{detected}:3128"


def test_configured_addresses_win_and_keep_their_port(tmp_path: Path) -> None:
    path = tmp_path / "esafety.yaml"
    path.write_text('admin_public_url: "http://filter.centre.example:8090/"\n'
                    'proxy_public_address: "proxy.centre.example:3128"\n')
    config = load_config(path)
    assert admin_public_url(config) == "http://filter.centre.example:8090"
    assert proxy_public_address(config) == "proxy.centre.example:3128"
    without_proxy = dataclasses.replace(config, proxy_public_address=None)
    assert proxy_public_address(without_proxy) == "filter.centre.example:8080"


def test_the_admin_endpoints_are_exact_host_and_port_pairs() -> None:
    config = Config(admin_public_url="https://esafety.centre.example",
                    listen=ListenSettings(admin=parse_listen("10.0.0.5:8090")))
    assert admin_endpoints(config) == {ServiceAddress("esafety.centre.example", 443),
                                       ServiceAddress("10.0.0.5", 8090)}
    everywhere = Config(admin_public_url="http://Filter.Centre.Example:8090")
    found = admin_endpoints(everywhere)
    assert ServiceAddress("filter.centre.example", 8090) in found
    assert {ServiceAddress(LOOPBACK, 8090), ServiceAddress("localhost", 8090),
            ServiceAddress(detect_public_host(), 8090)} <= found
    assert {a.port for a in found} == {8090}


async def test_the_pac_file_of_a_default_install_names_this_machine_and_the_proxy_port(
        make_api: ApiFactory) -> None:
    api = await make_api(listen=ListenSettings(proxy=parse_listen(":8080"),
                                               admin=parse_listen(":8090")))
    async with api.client.get("/proxy.pac") as response:
        assert response.status == 200
        pac = await response.text()
    detected = detect_public_host()
    answers = evaluate(pac, ["example.org", detected])
    assert answers["example.org"] == f"PROXY {detected}:8080"
    assert answers[detected] == "DIRECT"  # the admin service itself
