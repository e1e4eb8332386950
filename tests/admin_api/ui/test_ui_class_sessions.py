"""Class sessions in a real browser: a tutor opens the learner Wi-Fi for a lesson and ends it
with the keyboard alone; the API holds the ended session, a manager sees it (and who opened
it) with the audit entries and the dashboard's hours, and learners are not offered the page.

The real ``esafety admin`` process runs with a config giving the tutor ``t.jones`` the
``learner_byod`` group and the ``learner Wi-Fi`` network (see tests/harness/ui.py).
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from playwright.sync_api import Browser, expect

from store.keys import Keys
from tests.harness.proxy import PROXY_LISTS, free_port, write_config
from tests.harness.ui import (
    WAIT_MS,
    AdminProcess,
    BrowserTab,
    TabFactory,
    UiStack,
    browser,  # noqa: F401
    ensure_ui_vendor,
    tab_factory,
)

TUTOR = "t.jones"
MANAGER = "m.patel"
WINDOWS_TEXT = "open at break (10:30–10:45) and lunch (12:00–13:00)"


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, redis_url: str) -> Iterator[UiStack]:
    ensure_ui_vendor()
    directory = tmp_path_factory.mktemp("ui-class-sessions")
    keys = Keys(prefix=f"esafety-test-{uuid.uuid4().hex[:10]}:")
    port = free_port()
    config = write_config(
        directory / "esafety.yaml", keys.prefix, admin_public_url=f"http://127.0.0.1:{port}",
        groups={"learner_byod": {"online_during": ["break", "lunch"]}},
        networks=[{"cidr": "127.0.0.0/8", "group": "learner", "site": "test-wifi"},
                  {"cidr": "10.20.0.0/16", "group": "learner_byod", "name": "learner Wi-Fi",
                   "online_during": ["break", "lunch"]}],
        class_sessions={"max_minutes": 90, "tutors": [
            {"staff": [TUTOR], "groups": ["learner_byod"], "networks": ["learner Wi-Fi"]}]})
    admin = AdminProcess(directory / "data", config, redis_url, port)
    imported = admin.cli("lists", "import", str(PROXY_LISTS), "--source", "fixtures")
    assert imported.returncode == 0, imported.stdout + imported.stderr
    running = UiStack(admin, keys, redis_url)
    try:
        admin.start()
        for name, role in ((TUTOR, "staff"), ("s.brown", "staff"), (MANAGER, "manager"),
                           ("kai", "learner")):
            running.add_user(name, role)
        running.add_user("ria", "learner", group="learner_byod")
        yield running
    finally:
        running.stop()


@pytest.fixture
def new_tab(browser: Browser, stack: UiStack) -> Iterator[TabFactory]:  # noqa: F811
    yield from tab_factory(browser, stack)


def signed_in(new_tab: TabFactory, path: str, name: str) -> BrowserTab:
    tab = new_tab()
    tab.open(path)
    tab.sign_in(name)
    return tab


def sessions_by(stack: UiStack, tutor: str) -> list[dict[str, Any]]:
    found = stack.api("GET", "/api/v1/class-sessions", MANAGER)
    return [s for s in found["items"] if s["opened_by"] == tutor]


def test_a_tutor_opens_and_ends_a_session_by_keyboard_and_a_manager_sees_it(
        stack: UiStack, new_tab: TabFactory) -> None:
    tutor = signed_in(new_tab, "/class-sessions", TUTOR)
    page = tutor.page
    assert tutor.heading() == "Class sessions"
    assert "My sessions" in tutor.nav_links()
    rooms = page.locator("section", has=page.get_by_role("heading", name="What you can open"))
    expect(rooms).to_contain_text(f"Group learner_byod: {WINDOWS_TEXT}")
    expect(rooms).to_contain_text(f"Network learner Wi-Fi (group learner_byod): {WINDOWS_TEXT}")
    assert tutor.unlabelled_controls() == []

    # open the learner Wi-Fi for 40 minutes, for two sites, with Tab, arrows and typing only
    tutor.tab_to("A group")
    page.keyboard.press("ArrowDown")
    assert tutor.focused_name() == "A network"
    expect(page.get_by_label("Which network")).to_be_visible()
    expect(page.get_by_label("Which group")).to_be_hidden()
    page.keyboard.press("Tab")
    assert tutor.focused_name() == "Which network"
    page.keyboard.press("Tab")
    assert tutor.focused_name() == "Minutes"
    expect(page.get_by_label("Minutes")).to_have_value("50")
    page.keyboard.press("Control+A")
    page.keyboard.type("40")
    page.keyboard.press("Tab")
    assert tutor.focused_name() == "Only these sites (optional)"
    page.keyboard.type("www.bbc.co.uk")
    page.keyboard.press("Enter")
    page.keyboard.type("docs.python.org")
    page.keyboard.press("Tab")
    assert tutor.focused_name() == "Note (optional)"
    page.keyboard.type("Room 4, coding club")
    page.keyboard.press("Tab")
    assert tutor.focused_name() == "Open now"
    page.keyboard.press("Enter")
    expect(page.locator("main").get_by_role("status")).to_contain_text(
        "Opened the learner Wi-Fi network for 40 minutes")
    table = page.get_by_role("table", name=re.compile("Your class sessions"))
    row = table.get_by_role("row").filter(has_text="The learner Wi-Fi network")
    expect(row).to_have_count(1)
    expect(row.locator("td").nth(0)).to_have_text("www.bbc.co.uk, docs.python.org")
    expect(row.locator("td").nth(1)).to_have_text("Open")
    expect(row.locator("td").nth(2)).to_have_text("40")
    expect(row).to_contain_text("Room 4, coding club")
    tutor.screenshot("class-sessions-open")

    opened = sessions_by(stack, TUTOR)
    assert len(opened) == 1 and opened[0]["status"] == "open"
    assert opened[0]["target"] == "network" and opened[0]["names"] == ["learner Wi-Fi"]
    assert opened[0]["sites"] == ["www.bbc.co.uk", "docs.python.org"]
    assert opened[0]["ends_at"] - opened[0]["starts_at"] == 40 * 60

    # end it: the first press asks for a confirmation, which "Keep open" withdraws
    tutor.tab_to("End now: The learner Wi-Fi network")
    page.keyboard.press("Enter")
    assert tutor.focused_name() == "Confirm: end the session for The learner Wi-Fi network"
    page.keyboard.press("Tab")
    page.keyboard.press("Space")
    assert tutor.focused_name() == "End now: The learner Wi-Fi network"
    assert sessions_by(stack, TUTOR)[0]["status"] == "open"
    page.keyboard.press("Space")
    page.keyboard.press("Enter")
    expect(page.locator("main").get_by_role("status")).to_contain_text(
        "Ended the session for The learner Wi-Fi network")
    expect(row.locator("td").nth(1)).to_have_text("Ended")
    expect(row.locator("td").nth(2)).to_have_text("–")
    expect(row).to_contain_text(f"ended early by {TUTOR}")
    expect(row.get_by_role("button")).to_have_count(0)
    tutor.screenshot("class-sessions-ended")
    assert tutor.console_errors == []

    ended = sessions_by(stack, TUTOR)
    assert len(ended) == 1 and ended[0]["status"] == "ended"
    assert ended[0]["ended_by"] == TUTOR and ended[0]["ended_at"] < ended[0]["ends_at"]

    # the manager sees the tutor's session, who opened it, the audit entries and the hours
    manager = signed_in(new_tab, "/class-sessions", MANAGER)
    everyone = manager.page.get_by_role("table", name=re.compile("Class sessions"))
    theirs = everyone.get_by_role("row").filter(has_text="The learner Wi-Fi network")
    expect(theirs.locator("td").nth(1)).to_have_text(TUTOR)
    expect(theirs.locator("td").nth(2)).to_have_text("Ended")
    manager.screenshot("class-sessions-manager")
    for linked, action in (("sessions opened", "class_session.open"),
                           ("sessions ended", "class_session.end")):
        manager.page.get_by_role("link", name=linked).click()
        manager.page.wait_for_url(re.compile(rf"/audit\?action={re.escape(action)}$"),
                                  timeout=WAIT_MS)
        manager.wait_until_drawn()
        audit = manager.page.get_by_role("table", name=re.compile("Audit entries"))
        entry = audit.get_by_role("row").filter(has_text=ended[0]["id"])
        expect(entry).to_have_count(1)
        expect(entry).to_contain_text(action)
        expect(entry).to_contain_text(TUTOR)
        if action == "class_session.end":
            manager.screenshot("class-sessions-audit")
        manager.page.go_back()
        manager.wait_until_drawn()
    manager.open("/dashboard")
    hours = manager.page.locator("section", has=manager.page.get_by_role(
        "heading", name="Hours opened by class sessions (last 30 days)"))
    expect(hours.locator("dd")).to_have_text("1")
    expect(hours.get_by_role("row").filter(has_text="learner_byod")).to_have_count(1)
    manager.screenshot("class-sessions-dashboard")
    assert manager.console_errors == []


def test_learners_are_not_offered_the_page_and_staff_without_rooms_are_told_why(
        stack: UiStack, new_tab: TabFactory) -> None:
    learner = signed_in(new_tab, "/my-requests", "kai")
    assert "My sessions" not in learner.nav_links()
    learner.open("/class-sessions")
    assert learner.heading() == "Not allowed"

    staff = signed_in(new_tab, "/class-sessions", "s.brown")
    assert "My sessions" in staff.nav_links()
    expect(staff.page.locator("main")).to_contain_text(
        "An administrator can add them for you under class_sessions.tutors in the config.")
    expect(staff.page.get_by_role("button", name="Open now")).to_have_count(0)
    expect(staff.page.get_by_role("table")).to_contain_text(
        "There are no class sessions in the last 7 days.")
    assert learner.console_errors == [] and staff.console_errors == []


def test_the_api_refusal_is_shown_next_to_the_form(stack: UiStack, new_tab: TabFactory) -> None:
    tutor = signed_in(new_tab, "/class-sessions", TUTOR)
    page = tutor.page
    page.get_by_label("Only these sites (optional)").fill("casino-royale.test")
    page.get_by_role("button", name="Open now").click()
    problem = page.locator("main").get_by_role("alert")
    expect(problem).to_contain_text("casino-royale.test is in the prohibited category")
    expect(page.get_by_label("Only these sites (optional)")).to_be_focused()
    tutor.screenshot("class-sessions-refused")
    assert all(s["status"] != "open" for s in sessions_by(stack, TUTOR))


def test_named_learners_are_opened_by_account_name(stack: UiStack, new_tab: TabFactory) -> None:
    tutor = signed_in(new_tab, "/class-sessions", TUTOR)
    page = tutor.page
    page.get_by_label("Named learners").check()
    expect(page.get_by_label("Which group")).to_be_hidden()
    page.get_by_label("Which learners").fill("kai")
    page.get_by_role("button", name="Open now").click()
    expect(page.locator("main").get_by_role("alert")).to_contain_text(
        "You cannot open sessions for 'kai'")
    expect(page.get_by_label("Which learners")).to_be_focused()

    page.get_by_label("Which learners").fill("ria, ria")
    page.get_by_label("Minutes").fill("15")
    page.get_by_role("button", name="Open now").click()
    expect(page.locator("main").get_by_role("status")).to_contain_text(
        "Opened 1 learner: ria for 15 minutes")
    row = page.get_by_role("row").filter(has_text="1 learner: ria")
    expect(row.locator("td").nth(1)).to_have_text("Open")
    expect(row.locator("td").nth(2)).to_have_text("15")
    opened = [s for s in sessions_by(stack, TUTOR) if s["status"] == "open"]
    assert [(s["target"], s["names"]) for s in opened] == [("learners", ["ria"])]
    # the browser logs the refused request itself; nothing else went wrong
    assert [e for e in tutor.console_errors if "status of 403" not in e] == []
