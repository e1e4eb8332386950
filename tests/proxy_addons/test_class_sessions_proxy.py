"""Class sessions end to end: a tutor opens the learner Wi-Fi for a lesson through the admin
API, and two real proxy processes (real Redis, loopback origins, curl) open within a second,
keep prohibited sites blocked, and close again when the session ends or runs out. The
proxies' decide clock is read from a file, to step past the session's end without waiting
for it."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from datetime import time as clock_time
from ipaddress import ip_network
from pathlib import Path
from typing import Any

import pytest

from categories.profiles import (
    DAY_NAMES,
    GroupProfile,
    TimeWindow,
    default_profiles,
    default_windows,
    parse_days,
)
from deployment.config import ClassSessionSettings, Network, TutorRooms
from store.keys import Keys
from tests.harness.api import Api, ApiFactory
from tests.harness.proxy import PROXY_LISTS, Origins, ProxyProcess, curl, write_config

NETWORK = "learner Wi-Fi"
LIVE_SECONDS = 1.0


def closed_window() -> tuple[str, str]:
    """A window (days, start) that is not open today or tomorrow: the network stays closed
    for the whole test unless a session opens it."""
    day = DAY_NAMES[(datetime.now().weekday() + 3) % 7]
    return day, "03:00"


def proxy_config(path: Path, keys: Keys) -> Path:
    day, start = closed_window()
    return write_config(
        path, keys.prefix,
        time_windows={"lunch": {"days": day, "start": start, "end": "03:30"}},
        groups={"learner_byod": {"online_during": ["lunch"]}},
        networks=[{"cidr": "127.0.0.0/8", "group": "learner_byod", "name": NETWORK,
                   "online_during": ["lunch"]}])


@pytest.fixture
def proxies(tmp_path: Path, redis_url: str, origins: Origins, keys: Keys
            ) -> Iterator[list[ProxyProcess]]:
    started: list[ProxyProcess] = []
    try:
        for name, fast_path in (("a", True), ("b", False)):
            directory = tmp_path / name
            directory.mkdir()
            process = ProxyProcess(directory / "data", proxy_config(directory / "esafety.yaml",
                                                                    keys),
                                   redis_url, origins, clock_file=directory / "clock",
                                   fast_path=fast_path)
            imported = process.cli("lists", "import", str(PROXY_LISTS), "--source", "fixtures")
            assert imported.returncode == 0, imported.stderr
            started.append(process.start())
        yield started
    finally:
        for process in started:
            process.stop()


async def admin(make_api: ApiFactory) -> Api:
    day, start = closed_window()
    hours = clock_time.fromisoformat(start)
    windows = {**default_windows(), "lunch": TimeWindow("lunch", parse_days(day), hours,
                                   (datetime.combine(datetime.now(), hours)
                                    + timedelta(minutes=30)).time())}
    profiles = default_profiles()
    profiles["learner_byod"] = GroupProfile("learner_byod", online_during=("lunch",))
    return await make_api(
        windows=windows, profiles=profiles,
        networks=(Network(ip_network("127.0.0.0/8"), "learner_byod", None, name=NETWORK,
                          online_during=("lunch",)),),
        class_sessions=ClassSessionSettings(
            max_minutes=90, tutors=(TutorRooms(("t.jones",), ("learner_byod",), (NETWORK,)),)))


def statuses(proxies: list[ProxyProcess], url: str) -> list[int]:
    return [curl(p, url).status for p in proxies]


def until_all(proxies: list[ProxyProcess], url: str, status: int, seconds: float
              ) -> float:
    """Seconds until every proxy answers ``url`` with ``status`` (fails after ``seconds``)."""
    started = time.monotonic()
    pending = list(proxies)
    while pending and time.monotonic() - started < seconds:
        pending = [p for p in pending if curl(p, url).status != status]
    assert not pending, f"{len(pending)} proxies never answered {status} for {url}"
    return time.monotonic() - started


def set_clock(proxies: list[ProxyProcess], moment: datetime | None) -> None:
    for proxy in proxies:
        assert proxy.clock_file is not None
        proxy.clock_file.write_text(moment.isoformat() if moment else "")


async def open_session(api: Api, token: str, **body: Any) -> tuple[int, Any]:
    return await api.call("POST", "/api/v1/class-sessions", token, json=body)


async def test_a_tutor_opens_the_network_for_a_lesson_on_every_proxy_within_a_second(
        proxies: list[ProxyProcess], make_api: ApiFactory, origins: Origins) -> None:
    api = await admin(make_api)
    tutor = await api.user("t.jones", "staff")
    closed = curl(proxies[0], "http://allowed.test/closed")
    assert closed.status == 403 and "The learner Wi-Fi is open at lunch" in closed.body
    assert statuses(proxies, "http://allowed.test/") == [403, 403]

    status, body = await open_session(api, tutor, target="network", names=[NETWORK],
                                      minutes=1, note="Maths: phones for the quiz")
    assert status == 201, body
    session = body["session"]
    assert session["status"] == "open" and session["opened_by"] == "t.jones"
    took = until_all(proxies, "http://allowed.test/", 200, 5)
    assert took <= LIVE_SECONDS, took
    for proxy in proxies:
        marker = uuid.uuid4().hex
        assert curl(proxy, f"https://allowed.test/{marker}", cacert=origins.ca_file
                    ).status == 200
        assert origins.saw(marker)

    # Prohibited content stays blocked while the network is open.
    for proxy in proxies:
        marker = uuid.uuid4().hex
        gambling = curl(proxy, f"http://www.casino-royale.test/{marker}")
        assert gambling.status == 403 and 'data-category="gambling"' in gambling.body
        assert not origins.saw(marker)

    # One minute later (the proxies' clock moved on) the session has run out by itself.
    set_clock(proxies, datetime.now(UTC) + timedelta(seconds=61))
    try:
        marker = uuid.uuid4().hex
        assert statuses(proxies, f"http://allowed.test/{marker}") == [403, 403]
        assert not origins.saw(marker)
    finally:
        set_clock(proxies, None)


async def test_ending_a_session_early_closes_the_network_within_a_second(
        proxies: list[ProxyProcess], make_api: ApiFactory) -> None:
    api = await admin(make_api)
    tutor = await api.user("t.jones", "staff")
    status, body = await open_session(api, tutor, target="group", names=["learner_byod"],
                                      minutes=45)
    assert status == 201, body
    until_all(proxies, "http://allowed.test/", 200, 5)
    session_id = body["session"]["id"]
    status, ended = await api.call("POST", f"/api/v1/class-sessions/{session_id}/end", tutor)
    assert status == 200 and ended["session"]["status"] == "ended", ended
    took = until_all(proxies, "http://allowed.test/", 403, 5)
    assert took <= LIVE_SECONDS, took
    again, _ = await api.call("POST", f"/api/v1/class-sessions/{session_id}/end", tutor)
    assert again == 409


async def test_a_session_for_some_sites_opens_only_those(
        proxies: list[ProxyProcess], make_api: ApiFactory, origins: Origins) -> None:
    api = await admin(make_api)
    tutor = await api.user("t.jones", "staff")
    status, body = await open_session(api, tutor, target="group", names=["learner_byod"],
                                      minutes=30, sites=["https://www.allowed.test/lesson"])
    assert status == 400 and "site name, not a page" in body["error"]["message"], body
    status, body = await open_session(api, tutor, target="group", names=["learner_byod"],
                                      minutes=30, sites=["origin.test"])
    assert status == 201, body
    assert body["session"]["sites"] == ["origin.test"]
    until_all(proxies, "http://www.origin.test/", 200, 5)
    other = curl(proxies[1], "http://allowed.test/")
    assert other.status == 403
    assert "only these sites are open: origin.test" in other.body
