"""A proxy worker started while Redis is unreachable applies the overrides it last saw.

Before the local copy, such a worker filtered with policy version -1 (no overrides): 84 of 200
requests to a site blocked by an override got through. Here the site is blocked by an override
set through the store API, the proxy saves its copy, and a restart with Redis unreachable must
block every request (none reaches the origin, which records what it receives).
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
import uuid
from pathlib import Path

import pytest
import trustme
from aiohttp import web

from categories.overrides import Override, OverrideScope
from esafety.embedded_redis import EmbeddedRedis
from proxy_addons.policy_copy import POLICY_COPY_FILE
from store.connection import connect
from store.keys import Keys
from store.policy_state import PolicyState, delete_override, save_override
from tests.harness.proxy import (
    PROXY_LISTS,
    Origins,
    ProxyProcess,
    curl,
    free_port,
    write_config,
)

REQUESTS = 50
BLOCKED_SITE = "allowed.test"
"""Allowed by the lists; blocked here by an override."""


def start_recording_origin(directory: Path) -> tuple[Origins, list[tuple[str, str]]]:
    """A plain-HTTP loopback origin that records the host and path of every request."""
    seen: list[tuple[str, str]] = []

    async def record(request: web.Request) -> web.Response:
        seen.append((request.host.split(":")[0], request.path))
        return web.Response(text="origin")

    ca = trustme.CA()
    ca_file = directory / "origin-ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    http_port = free_port()
    loop = asyncio.new_event_loop()
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", record)
    runner = web.AppRunner(app, access_log=None)
    ready = threading.Event()

    def serve() -> None:
        asyncio.set_event_loop(loop)

        async def setup() -> None:
            await runner.setup()
            await web.TCPSite(runner, "127.0.0.1", http_port).start()

        loop.run_until_complete(setup())
        ready.set()
        loop.run_forever()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    assert ready.wait(10)
    return Origins(ca, ca_file, http_port, free_port(), loop, thread, runner), seen


def _wait_for_copy(path: Path, version: int, seconds: float = 15) -> PolicyState:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if path.is_file():
            state = PolicyState.from_json(path.read_text())
            if state.version >= version:
                return state
        time.sleep(0.1)
    raise AssertionError(f"no policy copy of version {version} at {path}")


def test_a_proxy_started_while_redis_is_unreachable_keeps_override_blocks(
        tmp_path: Path, security_figures: dict[str, str]) -> None:
    keys = Keys(prefix=f"esafety-test-{uuid.uuid4().hex[:8]}:")
    server = EmbeddedRedis(tmp_path / "redis", persistent=True).start()
    origin, seen = start_recording_origin(tmp_path)
    config = write_config(tmp_path / "esafety.yaml", keys.prefix,
                          networks=[{"cidr": "127.0.0.0/8", "group": "learner"}])
    proxy = ProxyProcess(tmp_path / "data", config, server.url, origin)
    assert proxy.cli("lists", "import", str(PROXY_LISTS), "--source", "f").returncode == 0
    copy_path = proxy.data_dir / POLICY_COPY_FILE

    async def store_call(action: str) -> int:
        client = connect(server.url)
        try:
            if action == "block":
                return await save_override(client, keys, Override(
                    id="ov-block", target=BLOCKED_SITE, action="block",
                    scope=OverrideScope.EVERYONE, subject=None, created_by="it1",
                    note="Blocked for the exam week"))
            return await delete_override(client, keys, "ov-block")
        finally:
            await client.aclose()

    try:
        proxy.start()
        assert curl(proxy, f"http://{BLOCKED_SITE}/before").status == 200
        version = asyncio.run(store_call("block"))
        state = _wait_for_copy(copy_path, version)
        assert [o.id for o in state.overrides] == ["ov-block"]
        assert copy_path.stat().st_mode & 0o777 == 0o600  # it names users and groups
        proxy.stop()

        # Redis unreachable for this start: nothing listens on the port it is given.
        unreachable = ProxyProcess(proxy.data_dir, config, f"redis://127.0.0.1:{free_port()}",
                                   origin)
        seen.clear()
        unreachable.start()
        try:
            code, body = unreachable.status("/readyz")
            assert code == 503 and "redis unreachable" in body
            assert f'esafety_proxy_policy_version{{worker="0"}} {version}' in (
                unreachable.status("/metrics")[1])
            statuses = [curl(unreachable, f"http://{BLOCKED_SITE}/{n}").status
                        for n in range(REQUESTS)]
            assert curl(unreachable, "http://origin.test/control").status == 200
        finally:
            unreachable.stop()
        leaked = [s for s in seen if s[0] == BLOCKED_SITE]
        assert leaked == [] and statuses == [403] * REQUESTS
        assert ("origin.test", "/control") in seen  # the origin does record what arrives
        security_figures["outage: worker started with Redis unreachable"] = (
            f"override block held from the local copy: {REQUESTS} requests, "
            f"{len(leaked)} reached the origin")

        # Redis returns with a newer version (the override withdrawn): Redis wins.
        server.stop()
        proxy.start()  # Redis down at start: the copy applies
        assert curl(proxy, f"http://{BLOCKED_SITE}/copy").status == 403
        server.start()
        newer = asyncio.run(store_call("unblock"))
        assert newer > version
        deadline = time.monotonic() + 10
        status = 0
        while time.monotonic() < deadline and status != 200:
            status = curl(proxy, f"http://{BLOCKED_SITE}/after").status
            time.sleep(0.1)
        assert status == 200 and (BLOCKED_SITE, "/after") in seen
        assert _wait_for_copy(copy_path, newer).overrides == ()
    finally:
        proxy.stop()
        origin.stop()
        server.stop()


def test_a_damaged_policy_copy_is_refused_not_half_applied(tmp_path: Path) -> None:
    """The copy is written whole (atomically); one that is not a whole copy is not used."""
    good = PolicyState(7, (Override(id="a", target="x.test", action="block",
                                    scope=OverrideScope.GROUP, subject="learner"),))
    assert PolicyState.from_json(good.to_json()) == good
    text = good.to_json()
    for damaged in (text[: len(text) // 2], "[]", json.dumps({"format": 1, "version": -3,
                                                                "overrides": []})):
        with pytest.raises(ValueError):
            PolicyState.from_json(damaged)
