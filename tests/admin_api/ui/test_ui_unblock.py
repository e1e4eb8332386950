"""IT support's pages in a real browser, confirmed through a real proxy: a learner blocked by
``esafety proxy`` asks for a review from the block page's link, IT approves it with the
keyboard alone, and the site opens for that learner (curl through the proxy with the
learner's credentials) and for nobody else; denials, overrides and "test a URL" likewise.
"""

from __future__ import annotations

import html
import re
import time
from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, expect

from tests.harness.proxy import CurlResult, curl
from tests.harness.ui import (
    PASSWORD,
    WAIT_MS,
    TabFactory,
    UiStack,
    browser,  # noqa: F401
    start_stack,
    tab_factory,
)

REVIEW_LINK = re.compile(r'href="([^"]*/request-review\?[^"]*)"')


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, redis_url: str) -> Iterator[UiStack]:
    running = start_stack(tmp_path_factory.mktemp("ui-unblock"), redis_url, with_proxy=True)
    for name, role in (("kai", "learner"), ("lee", "learner"), ("it-sam", "it_support")):
        running.add_user(name, role)
    yield running
    running.stop()


@pytest.fixture
def new_tab(browser: Browser, stack: UiStack) -> Iterator[TabFactory]:  # noqa: F811
    yield from tab_factory(browser, stack)


def browse(stack: UiStack, url: str, user: str) -> CurlResult:
    assert stack.proxy is not None
    return curl(stack.proxy, url, user=(user, PASSWORD))


def browse_until(stack: UiStack, url: str, user: str, status: int) -> CurlResult:
    """The proxies apply policy changes within a second: try for a few seconds."""
    deadline = time.monotonic() + 8
    result = browse(stack, url, user)
    while result.status != status and time.monotonic() < deadline:
        time.sleep(0.2)
        result = browse(stack, url, user)
    return result


def test_it_approves_with_the_keyboard_and_the_site_opens_for_that_learner(
        stack: UiStack, new_tab: TabFactory) -> None:
    blocked = browse(stack, "http://casino-royale.test/odds", "kai")
    assert blocked.status == 403 and "This page is blocked" in blocked.body
    match = REVIEW_LINK.search(blocked.body)
    assert match, blocked.body
    review_link = html.unescape(match.group(1))
    assert review_link.startswith(stack.admin.base_url + "/request-review?hit_id=")

    # the learner follows the block page's link, signs in and asks for a review
    learner = new_tab()
    learner.page.goto(review_link, timeout=WAIT_MS)
    learner.wait_until_drawn()
    learner.sign_in("kai")
    assert learner.heading() == "Ask for a site to be reviewed"
    expect(learner.page.get_by_label("Address of the site")).to_have_value(
        "http://casino-royale.test/odds")
    learner.page.get_by_label("Why do you need it?").fill(
        "Maths coursework on probability uses the odds tables on this page.")
    learner.page.get_by_role("button", name="Send to IT support").click()
    expect(learner.page.locator("h1")).to_have_text("Your request has been sent")
    expect(learner.page.locator("main")).to_contain_text("it will open for you straight away")
    assert learner.console_errors == []

    # IT support signs in and approves using only Tab, Enter and Space
    it = new_tab()
    it.open("/sign-in")
    it.tab_to("User name")
    it.page.keyboard.type("it-sam")
    it.tab_to("Password")
    it.page.keyboard.type(PASSWORD)
    it.page.keyboard.press("Enter")
    it.page.locator("#signed-in-as", has_text="it-sam").wait_for(timeout=WAIT_MS)
    it.wait_until_drawn()
    assert it.heading() == "Unblock requests"
    it.tab_to("casino-royale.test", exact=False)
    it.page.keyboard.press("Enter")
    expect(it.page.locator("h1")).to_contain_text("casino-royale.test")
    it.wait_until_drawn()
    details = it.page.locator("main")
    expect(details).to_contain_text("kai (group learner)")
    expect(details).to_contain_text("Gambling (gambling)")
    expect(details).to_contain_text("casino-royale.test matches casino-royale.test in "
                                    "fixtures/gambling/domains")
    expect(details).to_contain_text("Maths coursework on probability")
    it.tab_to("Only kai")
    it.page.keyboard.press("Space")
    assert it.page.get_by_label("Only kai").is_checked()
    it.tab_to("Approve")
    it.screenshot("unblock-request-before-approval")
    it.page.keyboard.press("Enter")
    expect(it.page.locator("main").get_by_role("status")).to_contain_text(
        "Approved. casino-royale.test is open for only kai")
    expect(details).to_contain_text("Decided by")
    it.screenshot("unblock-request-approved")
    assert it.console_errors == []

    opened = browse_until(stack, "http://casino-royale.test/odds", "kai", 200)
    assert opened.status == 200 and opened.json()["path"] == "/odds"
    assert browse(stack, "http://casino-royale.test/odds", "lee").status == 403

    learner.open("/my-requests")
    expect(learner.page.get_by_role("table", name="Your review requests, newest first")
           ).to_contain_text("Unblocked")


def test_a_denied_request_keeps_the_site_blocked_and_the_learner_sees_the_note(
        stack: UiStack, new_tab: TabFactory) -> None:
    filed = stack.api("POST", "/api/v1/unblock-requests", "lee",
                      {"url": "http://poker-palace.test/", "reason": "a friend said it is fun"})
    it = new_tab()
    it.open(f"/unblock-requests/{filed['id']}")
    it.sign_in("it-sam")
    it.page.get_by_label("Note to the requester", exact=True).fill(
        "Poker sites stay blocked; ask your tutor for a probability resource instead.")
    it.page.get_by_role("button", name="Deny").click()
    expect(it.page.locator("main").get_by_role("status")).to_contain_text("Denied.")
    it.open("/unblock-requests?status=denied")
    expect(it.page.locator("main table")).to_contain_text("poker-palace.test")

    learner = new_tab()
    learner.open("/my-requests")
    learner.sign_in("lee")
    mine = learner.page.get_by_role("table", name="Your review requests, newest first")
    expect(mine.get_by_role("row").filter(has_text="poker-palace.test")).to_contain_text(
        "Not unblocked")
    expect(mine).to_contain_text("ask your tutor for a probability resource")
    assert browse(stack, "http://poker-palace.test/", "lee").status == 403
    assert it.console_errors == [] and learner.console_errors == []


def test_overrides_added_and_removed_in_the_ui_apply_on_the_proxy(stack: UiStack,
                                                                  new_tab: TabFactory) -> None:
    assert browse(stack, "http://allowed.test/page", "lee").status == 200
    it = new_tab()
    it.open("/overrides")
    it.sign_in("it-sam")
    locked = it.page.get_by_role("region", name="Locked categories")
    expect(locked.get_by_role("listitem").first).to_contain_text("Locked")
    expect(locked).to_contain_text("Child sexual abuse material")
    it.page.get_by_label("Site or address").fill("allowed.test")
    it.page.get_by_label("Action").select_option("block")
    it.page.get_by_label("Applies to").select_option("group")
    it.page.get_by_label("Group or user name").fill("learner")
    it.page.get_by_label("Note (why)").fill("Exam week: not needed")
    it.page.get_by_role("button", name="Add override").click()
    expect(it.page.locator("main")).to_contain_text("Added: block allowed.test for group learner")
    row = it.page.get_by_role("row").filter(has_text="allowed.test")
    expect(row).to_contain_text("Exam week: not needed")
    assert browse_until(stack, "http://allowed.test/page", "lee", 403).status == 403
    it.screenshot("overrides-with-block")

    row.get_by_role("button", name="Remove override for allowed.test").click()
    it.page.get_by_role("button", name="Confirm: remove override for allowed.test").click()
    expect(it.page.locator("main")).to_contain_text("Removed the override for allowed.test")
    assert browse_until(stack, "http://allowed.test/page", "lee", 200).status == 200
    assert it.console_errors == []


def test_test_a_url_explains_the_decision_and_categories_show_the_lists(
        stack: UiStack, new_tab: TabFactory) -> None:
    it = new_tab()
    it.open("/check")
    it.sign_in("it-sam")
    it.page.get_by_label("Address or site").fill("https://www.bet-now.test/casino")
    it.page.get_by_label("Group (optional)").fill("learner")
    it.page.get_by_role("button", name="Test").click()
    result = it.page.locator(".check-result")
    expect(result).to_contain_text("Blocked")
    expect(result).to_contain_text("Gambling (gambling)")
    expect(result).to_contain_text("bet-now.test in fixtures/gambling/domains")
    it.screenshot("test-a-url-result")

    it.page.get_by_role("link", name="Categories").click()
    it.wait_until_drawn()
    sources = it.page.get_by_role("table", name="Imported list sources")
    expect(sources).to_contain_text("fixtures")
    categories = it.page.get_by_role("table", name="Categories with their lists")
    gambling = categories.locator("tbody tr").filter(has_text="gambling: fixtures")
    expect(gambling).to_contain_text("Gambling")
    expect(gambling).to_contain_text("6 entries")
    assert it.console_errors == []


def test_a_learner_asking_for_a_page_that_is_not_blocked_is_told_so_and_nothing_is_filed(
        stack: UiStack, new_tab: TabFactory) -> None:
    """mixed-content.test has listed paths but its front page is allowed: asking for the front
    page files nothing that IT could approve into a host override."""
    assert browse(stack, "http://mixed-content.test/", "lee").status == 200
    learner = new_tab()
    learner.open("/request-review?url=http%3A%2F%2Fmixed-content.test%2F")
    learner.sign_in("lee")
    assert learner.heading() == "Ask for a site to be reviewed"
    learner.page.get_by_label("Why do you need it?").fill("Health and social care reading")
    learner.page.get_by_role("button", name="Send to IT support").click()
    problem = learner.page.locator("main").get_by_role("alert")
    expect(problem).to_contain_text("http://mixed-content.test/ is not blocked for you")
    assert learner.heading() == "Ask for a site to be reviewed"
    filed = stack.api("GET", "/api/v1/unblock-requests?site=mixed-content.test", "it-sam")
    assert filed["items"] == []
    assert browse(stack, "http://mixed-content.test/adult-section", "lee").status == 403
    # the browser logs the API's answer (409 not_blocked) and nothing else
    assert learner.console_errors == [
        "Failed to load resource: the server responded with a status of 409 (Conflict)"]


def test_it_is_told_exactly_what_an_approval_opens_and_must_confirm_it(
        stack: UiStack, new_tab: TabFactory) -> None:
    """The centre blocked mixed-content.test for learners; approving kai's request for it
    opens the whole host, and so also its two listed paths: the page says so, and the approval
    goes through only once IT ticks the confirmation."""
    stack.api("POST", "/api/v1/overrides", "it-sam", {
        "target": "mixed-content.test", "action": "block", "scope": "group",
        "subject": "learner", "note": "Mixed site: not during lessons"})
    assert browse_until(stack, "http://mixed-content.test/", "kai", 403).status == 403
    filed = stack.api("POST", "/api/v1/unblock-requests", "kai",
                      {"url": "http://mixed-content.test/", "reason": "Course reading"})
    assert filed["request"]["target"] == "mixed-content.test"
    it = new_tab()
    it.open(f"/unblock-requests/{filed['id']}")
    it.sign_in("it-sam")
    details = it.page.locator("main")
    expect(details).to_contain_text(
        "This opens the whole site mixed-content.test, every page and subdomain of it, "
        "including 2 listed paths: mixed-content.test/adult-section (Pornography and sexual "
        "content), mixed-content.test/x/rated (Pornography and sexual content).")
    expect(details).to_contain_text("Approving opens more than was blocked")
    it.screenshot("unblock-request-wider-approval")
    it.page.get_by_role("button", name="Approve").click()
    expect(details.get_by_role("alert")).to_contain_text("Tick the box to confirm")
    assert stack.api("GET", f"/api/v1/unblock-requests/{filed['id']}", "it-sam"
                     )["request"]["status"] == "open"
    assert browse(stack, "http://mixed-content.test/adult-section", "kai").status == 403

    confirm = it.page.get_by_label("Yes, open all of mixed-content.test, including the 2 "
                                   "listed entries above")
    confirm.check()
    it.page.get_by_role("button", name="Approve").click()
    expect(details.get_by_role("status")).to_contain_text(
        "Approved. mixed-content.test is open for only kai")
    assert it.console_errors == []
    assert browse_until(stack, "http://mixed-content.test/adult-section", "kai",
                        200).status == 200
    assert browse(stack, "http://mixed-content.test/", "lee").status == 403
