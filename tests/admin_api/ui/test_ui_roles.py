"""The admin web UI in a real browser: signing in as each role, the pages each role sees,
every page loading cleanly with labelled controls, and the learner's and DSL's own pages.

Real ``esafety admin`` process, real Redis, Debian's Chromium (see tests/harness/ui.py).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import datetime

import pytest
from playwright.sync_api import Browser, expect

from store.connection import connect
from store.records import UserRecord
from store.redis_store import Store
from tests.harness.ui import (
    TZ,
    WAIT_MS,
    TabFactory,
    UiStack,
    browser,  # noqa: F401
    hit,
    run_async,
    start_stack,
    tab_factory,
)

NAV = {
    "learner": ["My requests"],
    "staff": ["My requests", "My sessions"],
    "it_support": ["Unblock requests", "Overrides", "Categories", "Test a URL", "My sessions"],
    "manager": ["Dashboard", "Access log", "Quarterly report", "Alerts", "My sessions",
                "Audit log"],
    "dsl": ["Dashboard", "Access log", "Quarterly report", "Alerts", "My sessions"],
    "admin": ["Unblock requests", "Overrides", "Categories", "Test a URL", "Dashboard",
              "Access log", "Quarterly report", "Alerts", "My sessions", "Users", "Audit log"],
}
START_PAGE = {"learner": "My requests and reports", "staff": "My requests and reports",
              "it_support": "Unblock requests", "manager": "Dashboard",
              "dsl": "Safeguarding alerts", "admin": "Dashboard"}
# a page each role may not use, and an API route behind it that the API refuses them
FORBIDDEN = {"learner": ("/dashboard", "/api/v1/reports/summary"),
             "staff": ("/unblock-requests", "/api/v1/overrides"),
             "it_support": ("/users", "/api/v1/users"),
             "manager": ("/overrides", "/api/v1/overrides"),
             "dsl": ("/audit", "/api/v1/audit"),
             "admin": ("/my-requests", None)}
ROLE_NAMES = {"learner": "Learner", "staff": "Staff", "it_support": "IT support",
              "manager": "Manager", "dsl": "Designated safeguarding lead",
              "admin": "Administrator"}


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, redis_url: str) -> Iterator[UiStack]:
    running = start_stack(tmp_path_factory.mktemp("ui-roles"), redis_url, with_proxy=False)
    yield running
    running.stop()


@pytest.fixture
def new_tab(browser: Browser, stack: UiStack) -> Iterator[TabFactory]:  # noqa: F811
    yield from tab_factory(browser, stack)


def test_each_role_sees_only_its_pages_and_is_told_when_not_allowed(stack: UiStack,
                                                                    new_tab: TabFactory) -> None:
    for role, expected in NAV.items():
        name = stack.add_user(f"nav-{role}", role)
        tab = new_tab()
        tab.open("/")
        assert tab.heading() == "Sign in"
        tab.sign_in(name)
        assert tab.heading() == START_PAGE[role], role
        assert tab.nav_links() == expected, role
        expect(tab.page.locator("#signed-in-as")).to_contain_text(ROLE_NAMES[role])

        page, api_route = FORBIDDEN[role]
        tab.open(page)
        assert tab.heading() == "Not allowed", (role, page)
        expect(tab.page.locator("main")).to_contain_text(f"Your role ({ROLE_NAMES[role]}) "
                                                          "cannot use")
        if api_route is not None:
            refused = tab.page.request.get(stack.url(api_route))
            assert refused.status == 403, (role, api_route)
        assert tab.console_errors == [], (role, tab.console_errors)

        tab.page.get_by_role("button", name="Sign out").click()
        expect(tab.page.get_by_text("You have signed out.")).to_be_visible(timeout=WAIT_MS)
        assert tab.nav_links() == []
        tab.open(page)  # signed out: a page asks to sign in first
        assert tab.heading() == "Sign in"


def test_a_wrong_password_is_explained_and_nothing_opens(stack: UiStack,
                                                         new_tab: TabFactory) -> None:
    stack.add_user("typo-user", "manager")
    tab = new_tab()
    tab.open("/dashboard")
    assert tab.heading() == "Sign in"
    tab.page.get_by_label("User name").fill("typo-user")
    tab.page.get_by_label("Password").fill("not the password")
    tab.page.get_by_role("button", name="Sign in").click()
    expect(tab.page.get_by_role("alert")).to_contain_text("The user name or password is wrong.",
                                                          timeout=WAIT_MS)
    assert tab.nav_links() == []


def _seed_for_every_page(stack: UiStack) -> dict[str, str]:
    """An unblock request, an accidental-hit report and an alert, so detail pages have data."""
    stack.add_user("page-learner", "learner")
    now = time.time()
    blocked = hit("page-learner", host="casino-royale.test", category="gambling", ts=now - 60)
    alerting = hit("page-learner", host="hatesite.test", category="hate_discrimination",
                   ts=now - 30, alert=True)
    stack.write_hits([blocked, alerting])
    request = stack.api("POST", "/api/v1/unblock-requests", "page-learner",
                        {"url": "http://casino-royale.test/", "reason": "Business studies "
                         "case study on the gambling industry", "hit_id": blocked.id})
    stack.api("POST", "/api/v1/accident-reports", "page-learner",
              {"hit_id": blocked.id, "what_happened": "A pop-up opened it."})
    stack.add_user("page-dsl", "dsl")
    deadline = time.monotonic() + 10
    alerts: list[dict[str, str]] = []
    while not alerts and time.monotonic() < deadline:  # the admin's alert consumer files it
        alerts = stack.api("GET", "/api/v1/alerts?user=page-learner", "page-dsl")["items"]
        time.sleep(0.1)
    assert alerts, "the alert consumer did not raise an alert for the seeded hit"
    return {"request": str(request["id"]), "alert": str(alerts[0]["id"]), "hit": blocked.id}


def test_every_page_loads_cleanly_with_a_label_on_every_control(stack: UiStack,
                                                                new_tab: TabFactory) -> None:
    seeded = _seed_for_every_page(stack)
    stack.add_user("page-admin", "admin")
    today = datetime.now(TZ)  # the centre's calendar, not the machine's
    quarter = f"{today.year}Q{(today.month - 1) // 3 + 1}"
    pages = {
        "unblock-queue": "/unblock-requests",
        "unblock-request": f"/unblock-requests/{seeded['request']}",
        "overrides": "/overrides", "categories": "/categories", "test-a-url": "/check",
        "dashboard": "/dashboard", "access-log": "/access-log",
        "quarterly-report": f"/quarterly?quarter={quarter}", "alerts": "/alerts",
        "alert": f"/alerts/{seeded['alert']}", "users": "/users", "audit-log": "/audit",
    }
    tab = new_tab()
    tab.open("/sign-in")
    assert tab.page.locator("html").get_attribute("lang") == "en-GB"
    assert tab.unlabelled_controls() == []
    tab.screenshot("sign-in")
    tab.sign_in("page-admin")
    for name, path in pages.items():
        tab.open(path)
        assert tab.heading() not in ("Not allowed", "Page not found"), path
        assert tab.page.get_by_role("alert").count() == 0, (path, tab.page.inner_text("main"))
        assert tab.unlabelled_controls() == [], path
        captions = tab.page.locator("main table caption")
        assert captions.count() == tab.page.locator("main table").count(), path
        assert tab.console_errors == [], (path, tab.console_errors)
        tab.screenshot(name)

    learner = new_tab()
    learner.open(f"/request-review?hit_id={seeded['hit']}&url=http%3A%2F%2Fcasino-royale.test%2F")
    learner.sign_in("page-learner")
    for name, path in {"learner-my-requests": "/my-requests",
                       "learner-request-review": f"/request-review?hit_id={seeded['hit']}"
                                                 "&url=http%3A%2F%2Fcasino-royale.test%2F",
                       "learner-report": f"/report?hit_id={seeded['hit']}"}.items():
        learner.open(path)
        assert learner.unlabelled_controls() == [], path
        assert learner.page.locator("a.skip-link").get_attribute("href") == "#main"
        learner.screenshot(name)
    assert learner.console_errors == []


def test_a_learner_reports_an_accident_from_the_block_page_link(stack: UiStack,
                                                                new_tab: TabFactory) -> None:
    stack.add_user("oops-learner", "learner")
    blocked = hit("oops-learner", host="bet-now.test", category="gambling", ts=time.time())
    stack.write_hits([blocked])
    tab = new_tab()
    tab.open(f"/report?hit_id={blocked.id}")  # the block page's link; not signed in yet
    assert tab.heading() == "Sign in"
    expect(tab.page.get_by_text("Sign in with your centre user name and password to carry "
                                "on.")).to_be_visible()
    tab.sign_in("oops-learner")
    assert tab.heading() == "I reached this by accident"
    expect(tab.page.locator("main")).to_contain_text("you are not in trouble")
    expect(tab.page.locator("main")).to_contain_text(blocked.id)
    tab.page.get_by_label("What happened?").fill("I searched for betting odds maths "
                                                 "homework and clicked the first result.")
    tab.page.get_by_role("button", name="Send to the safeguarding team").click()
    expect(tab.page.locator("h1")).to_have_text("Thank you – your report has been sent")
    expect(tab.page.locator("main")).to_contain_text("What happens next")
    tab.screenshot("learner-report-sent")
    tab.page.get_by_role("link", name="See your requests and reports").click()
    tab.wait_until_drawn()
    reports = tab.page.get_by_role("table", name="Your accidental-hit reports, newest first")
    expect(reports).to_contain_text("I searched for betting odds maths homework")
    expect(reports).to_contain_text("bet-now.test")
    assert tab.console_errors == []


def test_the_dsl_acknowledges_an_alert_seeing_the_users_recent_blocks(stack: UiStack,
                                                                      new_tab: TabFactory) -> None:
    stack.add_user("watch-learner", "learner")
    stack.add_user("the-dsl", "dsl")
    now = time.time()
    earlier = hit("watch-learner", host="poker-palace.test", category="gambling", ts=now - 120)
    alerting = hit("watch-learner", host="hatesite.test", category="hate_discrimination",
                   ts=now - 10, alert=True, path="/forum")
    stack.write_hits([earlier, alerting])
    tab = new_tab()
    tab.open("/")
    tab.sign_in("the-dsl")
    assert tab.heading() == "Safeguarding alerts"
    alert_link = tab.page.get_by_role("link", name="hate_discrimination, watch-learner",
                                      exact=False)
    deadline = time.monotonic() + 10
    while alert_link.count() == 0 and time.monotonic() < deadline:  # consumer still filing
        tab.open("/alerts")
    alert_link.first.click()
    tab.wait_until_drawn()
    context = tab.page.get_by_role("table", name="Recent blocked requests by watch-learner")
    expect(context).to_contain_text("hatesite.test/forum")
    expect(context).to_contain_text("poker-palace.test")
    tab.page.get_by_label("What you did or decided").fill(
        "Spoke with the learner and their tutor; Prevent referral not needed.")
    tab.page.get_by_role("button", name="Acknowledge alert").click()
    expect(tab.page.locator("main").get_by_role("status")).to_contain_text("Alert acknowledged.")
    expect(tab.page.locator("main")).to_contain_text("by the-dsl")
    expect(tab.page.locator("main")).to_contain_text("Prevent referral not needed")
    tab.open("/alerts")
    expect(tab.page.locator("main table")).not_to_contain_text("watch-learner")  # no longer open
    assert tab.console_errors == []


async def _directory_leaver(stack: UiStack, name: str) -> None:
    """An account the directory sync made, and disabled when its person left every mapped
    group."""
    client = connect(stack.redis_url)
    try:
        store = Store(client, stack.keys)
        await store.accounts.save(UserRecord(
            name=name, role="learner", group="guest", password_hash="", created_at=time.time(),
            managed_by="directory", disabled=True, disabled_by="directory"))
    finally:
        await client.aclose()


def test_an_admin_adds_and_disables_a_user(stack: UiStack, new_tab: TabFactory) -> None:
    stack.add_user("root-admin", "admin")
    run_async(lambda: _directory_leaver(stack, "gone-learner"))
    tab = new_tab()
    tab.open("/users")
    tab.sign_in("root-admin")
    assert tab.heading() == "Users and roles"
    tab.page.get_by_label("User name").fill("new-tutor")
    tab.page.get_by_label("Full name (optional)").fill("Nia Tutor")
    tab.page.get_by_label("Role").select_option("staff")
    tab.page.get_by_label("Password (optional)").fill("tutor password 1")
    tab.page.get_by_role("button", name="Add user").click()
    expect(tab.page.locator("main")).to_contain_text("Added new-tutor as Staff.")
    row = tab.page.get_by_role("row").filter(has_text="new-tutor")
    expect(row).to_contain_text("Active")
    row.get_by_role("button", name="Disable new-tutor").click()
    expect(tab.page.locator("main")).to_contain_text("new-tutor is disabled")
    expect(tab.page.get_by_role("row").filter(has_text="new-tutor")).to_contain_text("Disabled")
    # A leaver comes back only through the directory: no Enable button to press.
    leaver = tab.page.get_by_role("row").filter(has_text="gone-learner")
    expect(leaver).to_contain_text("Left the directory's groups")
    expect(leaver.get_by_role("button")).to_have_count(0)

    tutor = new_tab()
    tutor.open("/sign-in")
    tutor.page.get_by_label("User name").fill("new-tutor")
    tutor.page.get_by_label("Password").fill("tutor password 1")
    tutor.page.get_by_role("button", name="Sign in").click()
    expect(tutor.page.get_by_role("alert")).to_be_visible(timeout=WAIT_MS)
    assert tutor.nav_links() == []

    tab.open("/audit")
    expect(tab.page.locator("main table")).to_contain_text("user.disable")


def test_pages_run_under_a_strict_content_security_policy(stack: UiStack,
                                                          new_tab: TabFactory) -> None:
    tab = new_tab()
    response = tab.page.goto(stack.url("/sign-in"), timeout=WAIT_MS)
    assert response is not None and response.status == 200
    policy = response.headers["content-security-policy"]
    assert "script-src 'self'" in policy and "style-src 'self'" in policy
    assert "unsafe-inline" not in policy and "unsafe-eval" not in policy
    assert "frame-ancestors 'none'" in policy
    tab.wait_until_drawn()
    assert tab.heading() == "Sign in"  # the page's modules ran under that policy
    for path in ("/static/..%2Fapp.py", "/static/js/../../app.py", "/static/js/nothing.js"):
        assert tab.page.request.get(stack.url(path)).status == 404, path
    script = tab.page.request.get(stack.url("/static/js/main.js"))
    assert script.status == 200 and script.headers["content-type"].startswith("text/javascript")
