"""Shared fixtures: a real Redis (``REDIS_URL`` when set, else an embedded redis-server),
a unique key prefix per test, and the UT1 snapshot or the small fixture tree in its place."""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis

from esafety.embedded_redis import EmbeddedRedis
from store.keys import Keys
from tests.harness.list_fixtures import list_tree
from tests.harness.proxy import Origins, start_origins

pytest_plugins = ["tests.harness.api"]
"""The admin API tests' fixtures (``make_api``, ``api``)."""

REPO = Path(__file__).resolve().parent.parent
FIXTURES = REPO / "tests" / "fixtures"
SHARED_UT1 = REPO.parent / "shared" / "data" / "ut1"


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real Redis: the one at ``REDIS_URL`` if set, else an embedded one for the session.

    The embedded one is locked as in production (ACL users, ``default`` off); the URL is its
    admin user's, with the password in it, over the whole key space (the tests use a prefix
    each)."""
    url = os.environ.get("REDIS_URL")
    if url:
        yield url
        return
    server = EmbeddedRedis(tmp_path_factory.mktemp("redis"), persistent=False, prefix="").start()
    try:
        yield server.url
    finally:
        server.stop()


@pytest.fixture(scope="module")
def origins(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Origins]:
    """Loopback HTTP and HTTPS echo origins (a test CA signs every test host name)."""
    servers = start_origins(tmp_path_factory.mktemp("origins"))
    yield servers
    servers.stop()


@pytest.fixture
def keys() -> Keys:
    """A key prefix of its own for each test, so tests never see each other's data."""
    return Keys(prefix=f"esafety-test-{uuid.uuid4().hex[:10]}:")


@pytest.fixture
async def redis(redis_url: str, keys: Keys) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(redis_url, decode_responses=True)
    try:
        yield client
    finally:
        async for key in client.scan_iter(match=keys.prefix + "*", count=1000):
            await client.delete(key)
        await client.aclose()


@pytest.fixture(scope="session")
def ut1_dir() -> Path:
    """The shared UT1 snapshot when present, else the small fixture tree shipped in tests/.

    Which one ran is printed in the test summary (see pytest_terminal_summary below)."""
    if (SHARED_UT1 / "gambling" / "domains").is_file():
        return SHARED_UT1
    return list_tree("ut1_mini")


SECURITY_FIGURES: dict[str, str] = {}
"""Figures that security tests report (evasion cases, fuzz inputs, outage losses, matrix
cells), printed at the end of the run and written to artifacts/security-figures.json."""


@pytest.fixture(scope="session")
def security_figures() -> dict[str, str]:
    return SECURITY_FIGURES


BROWSER_TEST_DIRS = ("tests/extension/", "tests/admin_api/ui/")
"""Browser tests share one Chromium policy folder: under ``pytest -n`` they run on one worker."""


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Under pytest-xdist (``--dist loadgroup``) each test file runs whole on one worker, so a
    module's proxy, origins and Redis start once; the browser tests all run on one worker."""
    for item in items:
        path = str(Path(item.path).relative_to(REPO))
        group = "browser" if path.startswith(BROWSER_TEST_DIRS) else path
        item.add_marker(pytest.mark.xdist_group(group))


def pytest_sessionfinish(session: pytest.Session) -> None:
    """An xdist worker hands its security figures to the controller, which prints them."""
    workeroutput = getattr(session.config, "workeroutput", None)
    if workeroutput is not None:
        workeroutput["security_figures"] = json.dumps(SECURITY_FIGURES)


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node: Any, error: object) -> None:
    """On the controller: merge a finished worker's security figures."""
    figures = getattr(node, "workeroutput", {}).get("security_figures")
    if figures:
        SECURITY_FIGURES.update(json.loads(figures))


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    source = SHARED_UT1 if (SHARED_UT1 / "gambling" / "domains").is_file() else None
    terminalreporter.write_line(
        "list data: " + (f"shared UT1 snapshot at {source}" if source else
                         "shared UT1 snapshot absent; ran on tests/fixtures/ut1_mini.yaml"))
    if SECURITY_FIGURES:
        terminalreporter.section("security figures")
        for name, figure in sorted(SECURITY_FIGURES.items()):
            terminalreporter.write_line(f"{name}: {figure}")
        out = REPO / "artifacts" / "security-figures.json"
        out.parent.mkdir(exist_ok=True)
        out.write_text(json.dumps(SECURITY_FIGURES, indent=2, sort_keys=True))
