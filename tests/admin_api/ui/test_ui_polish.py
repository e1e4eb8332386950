"""Rough edges a centre notices on its first day, in a real browser set to US English: no
"Sign out" on the sign-in page, dates written and typed dd/mm/yyyy, "Show more" only when there
is more, an unblock request's heading that matches its outcome, each alert's delivery state,
and empty lists that say so."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from typing import Any

import pytest
from playwright.sync_api import Browser, expect

from tests.harness.ui import (
    WAIT_MS,
    BrowserTab,
    TabFactory,
    UiStack,
    browser,  # noqa: F401
    hit,
    start_stack,
)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, redis_url: str) -> Iterator[UiStack]:
    running = start_stack(tmp_path_factory.mktemp("ui-polish"), redis_url, with_proxy=False)
    for name, role in (("ana", "learner"), ("it-ola", "it_support"), ("dsl-dee", "dsl")):
        running.add_user(name, role)
    yield running
    running.stop()


@pytest.fixture
def us_tab(browser: Browser, stack: UiStack) -> Iterator[TabFactory]:  # noqa: F811
    """Tabs in a browser whose language is US English (dates would be mm/dd/yyyy)."""
    contexts: list[Any] = []

    def new_tab() -> BrowserTab:
        context = browser.new_context(viewport={"width": 1280, "height": 900}, locale="en-US",
                                      timezone_id="America/New_York")
        contexts.append(context)
        page = context.new_page()
        page.set_default_timeout(WAIT_MS)
        tab = BrowserTab(page, stack)
        page.on("console", lambda message: tab.console_errors.append(message.text)
                if message.type == "error" else None)
        return tab

    try:
        yield new_tab
    finally:
        for context in contexts:
            context.close()


def test_sign_out_is_not_offered_on_the_sign_in_page(us_tab: TabFactory) -> None:
    tab = us_tab()
    tab.open("/sign-in")
    expect(tab.page.get_by_role("button", name="Sign in")).to_be_visible()
    expect(tab.page.get_by_role("button", name="Sign out")).to_be_hidden()
    tab.sign_in("dsl-dee")
    expect(tab.page.get_by_role("button", name="Sign out")).to_be_visible()


def test_dates_are_written_and_typed_day_first_in_a_us_english_browser(
        us_tab: TabFactory) -> None:
    tab = us_tab()
    tab.open("/alerts?status=&from=2026-11-03")
    tab.sign_in("dsl-dee")
    tab.open("/alerts?status=&from=2026-11-03")
    start = tab.page.get_by_label("From")
    expect(start).to_have_value("03/11/2026")
    assert start.get_attribute("type") == "text"
    assert tab.page.evaluate("document.documentElement.lang") == "en-GB"
    start.fill("12/31/2026")  # month first: not a date in the UK
    tab.page.get_by_role("button", name="Filter").click()
    expect(tab.page.locator(".messages")).to_contain_text(
        'From: "12/31/2026" is not a date. Write it as day/month/year')
    assert "from=2026-11-03" in tab.page.url  # nothing was lost or sent
    start.fill("1/12/2026")
    tab.page.get_by_role("button", name="Filter").click()
    tab.page.wait_for_url("**from=2026-12-01**")
    tab.wait_until_drawn()
    expect(tab.page.get_by_label("From")).to_have_value("01/12/2026")
    expect(tab.page.locator("main table")).to_contain_text("No alerts match these filters.")


def test_show_more_appears_only_when_there_is_more(stack: UiStack, us_tab: TabFactory) -> None:
    now = time.time()
    stack.write_hits([hit("ana", host=f"page{i}.casino-royale.test", category="gambling",
                          ts=now - i) for i in range(3)])
    tab = us_tab()
    tab.open("/sign-in")
    tab.sign_in("dsl-dee")
    tab.open("/access-log?user=ana")
    expect(tab.page.locator("#access-log-table tbody tr")).to_have_count(3)
    expect(tab.page.get_by_role("button", name="Show more")).to_be_hidden()
    tab.open("/access-log?user=nobody-at-all")
    expect(tab.page.locator("#access-log-table")).to_contain_text(
        "No requests match these filters.")
    expect(tab.page.get_by_role("button", name="Show more")).to_be_hidden()


def test_an_approved_request_is_headed_as_approved_not_as_blocked(
        stack: UiStack, us_tab: TabFactory) -> None:
    filed = stack.api("POST", "/api/v1/unblock-requests", "ana",
                      {"url": "http://casino-royale.test/odds", "reason": "Maths project"})
    declined = stack.api("POST", "/api/v1/unblock-requests", "ana",
                         {"url": "http://bet-now.test/", "reason": "Curious"})
    tab = us_tab()
    tab.open("/sign-in")
    tab.sign_in("it-ola")
    tab.open(f"/unblock-requests/{declined['id']}")
    expect(tab.page.locator("#why-heading")).to_have_text("Why it is blocked")
    stack.api("POST", f"/api/v1/unblock-requests/{filed['id']}/approve", "it-ola",
              {"scope": "user", "note": "For the project"})
    stack.api("POST", f"/api/v1/unblock-requests/{declined['id']}/deny", "it-ola",
              {"note": "Not for coursework"})
    tab.open(f"/unblock-requests/{filed['id']}")
    expect(tab.page.locator("#why-heading")).to_have_text("Approved: why it was unblocked")
    tab.open(f"/unblock-requests/{declined['id']}")
    expect(tab.page.locator("#why-heading")).to_have_text("Declined: why it stays blocked")
    assert tab.console_errors == []


def test_each_alert_shows_how_its_delivery_went(stack: UiStack, us_tab: TabFactory) -> None:
    stack.write_hits([hit("ana", host="extreme.test", category="extremism", alert=True,
                          ts=time.time())])
    tab = us_tab()
    tab.open("/sign-in")
    tab.sign_in("dsl-dee")
    tab.open("/alerts")
    table = tab.page.locator("main table")
    expect(table.get_by_role("columnheader", name="Delivery")).to_be_visible()
    expect(table.locator("tbody tr").filter(has_text="ana")).to_contain_text(
        "Not sent (no channel set up)")
    # times read the British way in a US-English browser: "4 Dec 2026, 09:30", never "Dec 4"
    shown = table.locator("tbody tr").filter(has_text="ana").locator("th").inner_text()
    assert re.fullmatch(r"\d{1,2} [A-Z][a-z]{2} \d{4}, \d{2}:\d{2}", shown.strip()), shown
    table.locator("tbody tr").filter(has_text="ana").get_by_role("link").first.click()
    tab.wait_until_drawn()
    expect(tab.page.locator("main")).to_contain_text("Not sent (no channel set up)")
    assert tab.console_errors == []


def test_the_quarterly_report_can_be_shown_for_one_site(stack: UiStack,
                                                        us_tab: TabFactory) -> None:
    stack.write_hits([hit("ana", host="north-casino.test", category="gambling", ts=time.time(),
                          site="north")])
    tab = us_tab()
    tab.open("/sign-in")
    tab.sign_in("dsl-dee")
    tab.open("/quarterly")
    report = tab.page.locator("article.quarterly-report")
    expect(report).to_contain_text("north-casino.test")
    tab.page.get_by_label("Site (optional)").fill("north")
    tab.page.get_by_role("button", name="Show report").click()
    tab.page.wait_for_url("**site=north**")
    tab.wait_until_drawn()
    expect(tab.page.locator("#report-title")).to_contain_text("site north")
    expect(report).to_contain_text("1 request was blocked this quarter")
    expect(report.get_by_role("table", name="Blocked requests by category")).to_contain_text(
        "Gambling")
    tab.page.get_by_label("Site (optional)").fill("North!")
    tab.page.get_by_role("button", name="Show report").click()
    tab.wait_until_drawn()
    expect(tab.page.locator("main")).to_contain_text("is not a site id")
