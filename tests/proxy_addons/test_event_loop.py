"""The proxy worker's event loop: the standard library's by default, uvloop when
``ESAFETY_EVENT_LOOP=uvloop`` asks for it, and a clear refusal for anything else.

A real ``esafety proxy`` on uvloop must filter exactly as on the standard loop: an allowed
HTTPS site and an allowed plain-HTTP page reach the loopback origin (the origin saw them), the
HTTPS one through the fast path's relay, and a blocked site never does.
"""

from __future__ import annotations

import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from deployment.event_loop import EventLoopError, chosen_event_loop, event_loop_runner
from tests.harness.proxy import (
    Origins,
    ProxyProcess,
    curl,
    fast_tunnel_count,
    proxy_on_fixture_lists,
    write_config,
)


def test_the_standard_loop_is_the_default_and_unknown_names_are_refused() -> None:
    assert chosen_event_loop({}) == "asyncio"
    assert chosen_event_loop({"ESAFETY_EVENT_LOOP": " UVLoop "}) == "uvloop"
    with pytest.raises(EventLoopError, match="asyncio, uvloop"):
        chosen_event_loop({"ESAFETY_EVENT_LOOP": "trio"})
    assert event_loop_runner("uvloop").__module__.startswith("uvloop")


@pytest.fixture(scope="module")
def uvloop_proxy(tmp_path_factory: pytest.TempPathFactory, redis_url: str,
                 origins: Origins) -> Iterator[ProxyProcess]:
    with proxy_on_fixture_lists(tmp_path_factory.mktemp("uvloop"), redis_url, origins,
                                extra_env={"ESAFETY_EVENT_LOOP": "uvloop"}) as process:
        yield process


def test_a_worker_on_uvloop_filters_as_on_the_standard_loop(uvloop_proxy: ProxyProcess) -> None:
    assert "runs on the uvloop event loop" in uvloop_proxy.log_text()
    relayed = fast_tunnel_count(uvloop_proxy)
    marker = uuid.uuid4().hex
    https = curl(uvloop_proxy, f"https://allowed.test/uvloop-{marker}",
                 cacert=uvloop_proxy.origins.ca_file)
    assert https.status == 200, https.stderr
    assert uvloop_proxy.origins.saw(f"uvloop-{marker}")
    assert fast_tunnel_count(uvloop_proxy) == relayed + 1

    plain = curl(uvloop_proxy, f"http://allowed.test/plain-{marker}")
    assert plain.status == 200
    assert uvloop_proxy.origins.saw(f"plain-{marker}")

    blocked = curl(uvloop_proxy, f"http://casino-royale.test/bet-{marker}")
    assert blocked.status == 403
    tunnel = curl(uvloop_proxy, f"https://casino-royale.test/bet-{marker}",
                  cacert=uvloop_proxy.origins.ca_file)
    assert tunnel.status != 200
    assert not uvloop_proxy.origins.saw(f"bet-{marker}")


def test_an_unknown_event_loop_stops_the_proxy_before_it_listens(tmp_path: Path) -> None:
    config = write_config(tmp_path / "esafety.yaml", "esafety-test-none:")
    done = subprocess.run(
        [sys.executable, "-m", "esafety.cli", "--config", str(config), "--data-dir",
         str(tmp_path / "data"), "proxy", "--listen", "127.0.0.1:0", "--workers", "2"],
        env={"PATH": "/usr/bin:/bin", "ESAFETY_EVENT_LOOP": "tornado"},
        capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert "ESAFETY_EVENT_LOOP='tornado'" in done.stderr
    assert "asyncio, uvloop" in done.stderr
    assert not (tmp_path / "data" / "spool").exists()
