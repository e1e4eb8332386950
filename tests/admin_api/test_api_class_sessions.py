"""The class-session API against the real admin app and a real Redis: who may open what, the
input it refuses, who sees and ends which session, the audit entries, the live policy the
proxies read, the hours opened, and retention."""

from __future__ import annotations

import time
from dataclasses import replace
from ipaddress import ip_network

import pytest
import redis.asyncio as aioredis

from admin_api.workers.housekeeping import apply_retention
from categories.profiles import GroupProfile, default_profiles
from deployment.config import ClassSessionSettings, Network, TutorRooms
from store.keys import Keys
from store.policy_state import read_policy_state
from tests.harness.api import Api, ApiFactory

NETWORK = "learner Wi-Fi"


@pytest.fixture
async def api(make_api: ApiFactory) -> Api:
    profiles = default_profiles()
    profiles["learner_byod"] = GroupProfile("learner_byod", online_during=("break", "lunch"))
    return await make_api(
        profiles=profiles,
        networks=(Network(ip_network("10.20.0.0/16"), "learner_byod", None, name=NETWORK,
                          online_during=("break", "lunch")),
                  Network(ip_network("10.30.0.0/16"), "staff", None, name="staff Wi-Fi")),
        class_sessions=ClassSessionSettings(max_minutes=90, tutors=(
            TutorRooms(("t.jones",), ("learner_byod",), (NETWORK,)),
            TutorRooms(("role:it_support",), (), ("staff Wi-Fi",)))))


async def post(api: Api, token: str, **body: object) -> tuple[int, dict[str, object]]:
    status, answer = await api.call("POST", "/api/v1/class-sessions", token, json=body)
    return status, answer


def error(answer: dict[str, object]) -> str:
    found = answer["error"]
    assert isinstance(found, dict)
    return str(found["message"])


async def test_a_tutor_sees_only_their_rooms_with_the_hours_they_open(api: Api) -> None:
    tutor = await api.user("t.jones", "staff")
    status, rooms = await api.call("GET", "/api/v1/class-sessions/rooms", tutor)
    assert status == 200
    assert rooms["groups"] == [{"name": "learner_byod", "online_during":
                                "break (10:30–10:45) and lunch (12:00–13:00)"}]
    assert [n["name"] for n in rooms["networks"]] == [NETWORK]
    assert rooms["learners"] is True and rooms["max_minutes"] == 90
    it = await api.user("it1", "it_support")
    _, it_rooms = await api.call("GET", "/api/v1/class-sessions/rooms", it)
    assert it_rooms["groups"] == [] and [n["name"] for n in it_rooms["networks"]] == [
        "staff Wi-Fi"]
    manager = await api.user("m1", "manager")
    _, every = await api.call("GET", "/api/v1/class-sessions/rooms", manager)
    assert every["all_rooms"] is True and "learner_byod" in [g["name"] for g in every["groups"]]


async def test_learners_and_staff_without_rooms_cannot_open_anything(api: Api) -> None:
    learner = await api.user("amy", "learner", "learner_byod")
    status, _ = await post(api, learner, target="group", names=["learner_byod"], minutes=10)
    assert status == 403
    status, _ = await api.call("GET", "/api/v1/class-sessions/rooms", learner)
    assert status == 403
    other = await api.user("s.other", "staff")
    status, answer = await post(api, other, target="group", names=["learner_byod"],
                                minutes=10)
    assert status == 403 and "class_sessions.tutors" in error(answer)
    state = await read_policy_state(api.redis, api.keys)
    assert state.sessions == ()


@pytest.mark.parametrize(("body", "status", "text"), [
    ({"target": "group", "names": ["staff"], "minutes": 10}, 403, "cannot open the group"),
    ({"target": "network", "names": ["staff Wi-Fi"], "minutes": 10}, 403,
     "cannot open the network"),
    ({"target": "room", "names": ["learner_byod"], "minutes": 10}, 400, "target must be"),
    ({"target": "group", "names": [], "minutes": 10}, 400, "names must list"),
    ({"target": "group", "names": ["learner_byod"], "minutes": 0}, 400, "from 1 to 90"),
    ({"target": "group", "names": ["learner_byod"], "minutes": 91}, 400, "from 1 to 90"),
    ({"target": "group", "names": ["learner_byod"], "minutes": "10"}, 400, "from 1 to 90"),
    ({"target": "group", "names": ["learner_byod"], "minutes": 10,
      "sites": ["pornhub.com"]}, 400, "prohibited category"),
    ({"target": "group", "names": ["learner_byod"], "minutes": 10,
      "sites": ["www.bbc.co.uk/bitesize"]}, 400, "not a page"),
    ({"target": "group", "names": ["learner_byod"], "minutes": 10,
      "sites": ["not a site"]}, 400, "not a valid site"),
    # A public suffix would open every site under it (a group that may only visit approved
    # sites would get the whole of .co.uk).
    ({"target": "group", "names": ["learner_byod"], "minutes": 10,
      "sites": ["co.uk"]}, 400, "public suffix"),
    ({"target": "group", "names": ["learner_byod"], "minutes": 10,
      "sites": ["www.bbc.co.uk", "github.io"]}, 400, "public suffix"),
    ({"target": "learners", "names": ["bo"], "minutes": 10}, 403, "not one of yours"),
    ({"target": "learners", "names": ["t.jones"], "minutes": 10}, 400, "not a learner"),
    ({"target": "group", "names": ["learner_byod"], "minutes": 10, "until": "never"}, 400,
     "until"),
])
async def test_bad_or_forbidden_sessions_are_refused_with_a_reason_and_open_nothing(
        api: Api, body: dict[str, object], status: int, text: str) -> None:
    tutor = await api.user("t.jones", "staff")
    await api.user("bo", "learner", "learner")
    got, answer = await post(api, tutor, **body)
    assert got == status, answer
    assert text in error(answer)
    assert (await read_policy_state(api.redis, api.keys)).sessions == ()


async def test_opening_and_ending_reach_the_live_policy_and_the_audit_log(
        api: Api, redis: aioredis.Redis, keys: Keys) -> None:
    tutor = await api.user("t.jones", "staff")
    await api.user("ria", "learner", "learner_byod")
    before = (await read_policy_state(redis, keys)).version
    status, opened = await post(api, tutor, target="learners", names=["ria", "ria"], minutes=20,
                                sites=["https://www.BBC.co.uk/", "vle.college.test"],
                                note="Research task")
    assert status == 201, opened
    session = opened["session"]
    assert isinstance(session, dict)
    assert session["names"] == ["ria"] and session["sites"] == ["www.bbc.co.uk",
                                                                "vle.college.test"]
    assert round(session["ends_at"] - session["starts_at"]) == 1200
    state = await read_policy_state(redis, keys)
    assert state.version > before and [s.id for s in state.sessions] == [session["id"]]

    status, ended = await api.call("POST", f"/api/v1/class-sessions/{session['id']}/end",
                                   tutor)
    assert status == 200 and ended["session"]["status"] == "ended"
    after = await read_policy_state(redis, keys)
    assert after.version > state.version and after.sessions == ()

    manager = await api.user("m1", "manager")
    _, audit = await api.call("GET", "/api/v1/audit?action=class_session.open", manager)
    assert [(e["actor"], e["target"]) for e in audit["items"]] == [("t.jones", session["id"])]
    _, audit = await api.call("GET", "/api/v1/audit?action=class_session.end", manager)
    assert [(e["actor"], e["target"]) for e in audit["items"]] == [("t.jones", session["id"])]


async def test_staff_see_and_end_their_own_sessions_and_managers_every_one(api: Api) -> None:
    tutor = await api.user("t.jones", "staff")
    it = await api.user("it1", "it_support")
    manager = await api.user("m1", "manager")
    _, mine = await post(api, tutor, target="network", names=[NETWORK], minutes=30)
    _, theirs = await post(api, it, target="network", names=["staff Wi-Fi"], minutes=30)
    mine_id, theirs_id = mine["session"]["id"], theirs["session"]["id"]  # type: ignore[index]

    _, listed = await api.call("GET", "/api/v1/class-sessions", tutor)
    assert [s["id"] for s in listed["items"]] == [mine_id]
    _, listed = await api.call("GET", "/api/v1/class-sessions", manager)
    assert {s["id"] for s in listed["items"]} == {mine_id, theirs_id}
    assert {s["opened_by"] for s in listed["items"]} == {"t.jones", "it1"}
    _, own = await api.call("GET", "/api/v1/class-sessions?mine=1", manager)
    assert own["items"] == []

    status, _ = await api.call("POST", f"/api/v1/class-sessions/{theirs_id}/end", tutor)
    assert status == 404
    status, ended = await api.call("POST", f"/api/v1/class-sessions/{theirs_id}/end", manager)
    assert status == 200 and ended["session"]["ended_by"] == "m1"
    status, _ = await api.call("POST", f"/api/v1/class-sessions/{theirs_id}/end", manager)
    assert status == 409


async def test_hours_opened_are_counted_per_group_for_managers_only(api: Api) -> None:
    tutor = await api.user("t.jones", "staff")
    manager = await api.user("m1", "manager")
    _, opened = await post(api, tutor, target="network", names=[NETWORK], minutes=60)
    session_id = opened["session"]["id"]  # type: ignore[index]
    status, _ = await api.call("GET", "/api/v1/class-sessions/hours", tutor)
    assert status == 403
    status, hours = await api.call("GET", "/api/v1/class-sessions/hours", manager)
    assert status == 200 and hours["sessions"] == 1
    assert list(hours["hours"]) == ["learner_byod"]  # the network's group
    assert 0 <= hours["hours"]["learner_byod"] < 0.05  # opened a moment ago
    # Started 3 hours ago and ended after an hour: one hour.
    stored = await api.state.store.class_sessions.get(session_id)
    assert stored is not None
    now = time.time()
    await api.state.store.class_sessions.open(replace(stored, starts_at=now - 3 * 3600,
                                                      ends_at=now - 2 * 3600))
    _, hours = await api.call("GET", "/api/v1/class-sessions/hours", manager)
    assert hours["hours"] == {"learner_byod": 1.0}


async def test_sessions_older_than_the_retention_are_forgotten(api: Api) -> None:
    tutor = await api.user("t.jones", "staff")
    _, opened = await post(api, tutor, target="group", names=["learner_byod"], minutes=5)
    session_id = opened["session"]["id"]  # type: ignore[index]
    days = api.state.settings.config.retention_hits_days
    done = await apply_retention(api.state, now=time.time() + (days + 1) * 86400)
    assert done["class_sessions"] == 1
    assert await api.state.store.class_sessions.get(session_id) is None
    assert (await read_policy_state(api.redis, api.keys)).sessions == ()
