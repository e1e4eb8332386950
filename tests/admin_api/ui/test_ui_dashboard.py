"""Managers' pages in a real browser: the dashboard's charts from seeded hits, the access log's
CSV export, and the printable quarterly report.

Hits are written with store.hits.HitWriter exactly as the proxy writes them; the real
``esafety admin`` process reads its counters and log store (see tests/harness/ui.py).
"""

from __future__ import annotations

import csv
from collections import Counter
from collections.abc import Iterator
from datetime import datetime, timedelta
from datetime import time as clock
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect

from store.records import HitRecord
from tests.harness.ui import (
    SCREENSHOTS,
    TZ,
    WAIT_MS,
    TabFactory,
    UiStack,
    browser,  # noqa: F401
    hit,
    start_stack,
    tab_factory,
)

# (days ago, user, host, category): 6 gambling, 3 social networks, 2 pornography blocks
SEEDED = [
    (0, "amy", "casino-royale.test", "gambling"), (0, "amy", "casino-royale.test", "gambling"),
    (1, "ben", "bet-now.test", "gambling"), (2, "amy", "casino-royale.test", "gambling"),
    (3, "cal", "poker-palace.test", "gambling"), (4, "ben", "casino-royale.test", "gambling"),
    (0, "cal", "friendface.test", "social_networks"),
    (1, "cal", "friendface.test", "social_networks"),
    (2, "dee", "friendface.test", "social_networks"),
    (1, "dee", "adult-site.test", "pornography"), (3, "amy", "adult-site.test", "pornography"),
]


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, redis_url: str) -> Iterator[UiStack]:
    running = start_stack(tmp_path_factory.mktemp("ui-dashboard"), redis_url, with_proxy=False)
    today = datetime.now(TZ).date()
    hits: list[HitRecord] = []
    for days_ago, user, host, category in SEEDED:
        # just after midnight, so the hit is on that calendar day and never in the future
        when = datetime.combine(today - timedelta(days=days_ago), clock(0, 0, 1), TZ)
        hits.append(hit(user, host=host, category=category, ts=when.timestamp(),
                        site="north-campus" if user == "amy" else "main"))
    hits.append(hit("ben", host="allowed.test", category="", action="allow",
                    ts=datetime.combine(today, clock(0, 0, 2), TZ).timestamp()))
    running.write_hits(hits)
    running.add_user("the-manager", "manager")
    yield running
    running.stop()


@pytest.fixture
def new_tab(browser: Browser, stack: UiStack) -> Iterator[TabFactory]:  # noqa: F811
    yield from tab_factory(browser, stack)


def test_dashboard_charts_blocks_per_category_over_the_chosen_period(stack: UiStack,
                                                                     new_tab: TabFactory) -> None:
    tab = new_tab()
    tab.open("/dashboard?days=7")
    tab.sign_in("the-manager")
    assert tab.heading() == "Dashboard"
    chart = tab.page.locator("#blocks-by-category canvas")
    expect(chart).to_be_visible(timeout=WAIT_MS)
    drawn = tab.page.evaluate("""() => {
        const chart = Chart.getChart(document.querySelector("#blocks-by-category canvas"));
        return {
          stacked: chart.options.scales.x.stacked && chart.options.scales.y.stacked,
          days: chart.data.labels.length,
          totals: Object.fromEntries(chart.data.datasets.map(
            (set) => [set.label, set.data.reduce((a, b) => a + b, 0)])),
          bars: chart.getDatasetMeta(0).data.filter((bar) => bar.height > 0).length,
        };
    }""")
    assert drawn["stacked"] is True
    assert drawn["days"] == 7
    assert drawn["totals"] == {"Gambling": 6, "Social networks": 3,
                               "Pornography and sexual content": 2}
    assert drawn["bars"] == 5  # gambling was blocked on five different days
    assert tab.console_errors == []

    # the same figures as a table (the chart's text alternative), one click away
    tab.page.locator("#blocks-by-category summary").click()
    table = tab.page.get_by_role("table", name="Blocked requests by category, last 7 days")
    totals = table.locator("tbody tr td:last-child").all_text_contents()
    assert sum(int(value) for value in totals) == 11
    headers = table.locator("thead th").all_text_contents()
    assert headers[1:] == ["Gambling", "Social networks", "Pornography and sexual content",
                           "Total"]

    sites = tab.page.evaluate("""() => {
        const chart = Chart.getChart(document.querySelector("#top-blocked-sites canvas"));
        return chart.data.labels.map((label, i) => [label, chart.data.datasets[0].data[i]]);
    }""")
    assert sites[:2] == [["casino-royale.test", 4], ["friendface.test", 3]]
    tab.page.locator("#blocks-by-site summary").click()
    by_site = tab.page.get_by_role("table", name="Blocks by network site, last 7 days")
    expect(by_site.get_by_role("row").filter(has_text="north-campus")).to_contain_text("4")
    expect(tab.page.locator("main")).to_contain_text("Blocked requests")
    tab.screenshot("dashboard-seeded")

    # a longer period is drawn per week
    tab.page.get_by_label("Period", exact=True).select_option("90")
    tab.page.get_by_role("button", name="Show").click()
    expect(tab.page.locator("#blocks-by-category caption")).to_have_text(
        "Blocked requests by category, last 90 days")
    weekly = tab.page.evaluate("""() => Chart.getChart(
        document.querySelector("#blocks-by-category canvas")).data.labels""")
    assert len(weekly) == 13 and all(label.startswith("w/c ") for label in weekly)
    assert tab.console_errors == []


def _download(page: Page, link_name: str, target: Path) -> list[dict[str, str]]:
    with page.expect_download(timeout=WAIT_MS) as info:
        page.get_by_role("link", name=link_name).click()
    info.value.save_as(target)
    with target.open(newline="") as file:
        return list(csv.DictReader(file))


def test_access_log_search_and_csv_export(stack: UiStack, new_tab: TabFactory,
                                          tmp_path: Path) -> None:
    tab = new_tab()
    tab.open("/access-log")
    tab.sign_in("the-manager")
    tab.page.get_by_label("Category").select_option("gambling")
    tab.page.get_by_label("User", exact=True).fill("amy")
    tab.page.get_by_role("button", name="Search").click()
    tab.wait_until_drawn()
    results = tab.page.locator("#access-log-table tbody tr")
    expect(results).to_have_count(3)
    expect(tab.page.locator("#access-log-table")).not_to_contain_text("bet-now.test")

    rows = _download(tab.page, "Export these results as CSV", tmp_path / "export.csv")
    assert [(row["user"], row["host"], row["category"], row["action"]) for row in rows] == \
        [("amy", "casino-royale.test", "gambling", "block")] * 3
    assert all(row["time"] and row["id"] for row in rows)

    tab.page.get_by_label("Replace user names, addresses and devices with pseudonyms").check()
    pseudonymised = _download(tab.page, "Export these results as CSV",
                              tmp_path / "pseudonymised.csv")
    assert len(pseudonymised) == 3
    assert {row["user"] for row in pseudonymised} != {"amy"}
    assert len({row["user"] for row in pseudonymised}) == 1  # the same pseudonym each time
    assert all(row["host"] == "casino-royale.test" for row in pseudonymised)
    tab.screenshot("access-log-filtered")
    assert tab.console_errors == []

    tab.open("/audit?action=hits.export")
    expect(tab.page.locator("main table tbody tr")).to_have_count(2)


def test_the_quarterly_report_prints_without_the_page_furniture(stack: UiStack,
                                                                new_tab: TabFactory) -> None:
    tab = new_tab()
    tab.open("/quarterly")
    tab.sign_in("the-manager")
    report = tab.page.locator("article.quarterly-report")
    expect(report).to_contain_text("requests were blocked this quarter")
    counts = Counter(category for _, _, _, category in SEEDED)
    table = report.get_by_role("table", name="Blocked requests by category")
    expect(table.get_by_role("row").filter(has_text="gambling")).to_contain_text(
        str(counts["gambling"]))
    assert report.locator("svg[role=img]").count() >= 2
    tab.page.emulate_media(media="print")
    expect(tab.page.locator("nav[aria-label=Main]")).to_be_hidden()
    expect(tab.page.get_by_role("button", name="Print or save as PDF")).to_be_hidden()
    expect(report).to_be_visible()
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    tab.page.pdf(path=str(SCREENSHOTS / "quarterly-report.pdf"), format="A4")
    tab.screenshot("quarterly-report-print")
    assert (SCREENSHOTS / "quarterly-report.pdf").read_bytes().startswith(b"%PDF")
    assert tab.console_errors == []
