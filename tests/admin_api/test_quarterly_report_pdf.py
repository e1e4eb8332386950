"""The quarterly report as governors get it: printed to PDF by Chromium from the page the admin
service serves, its text read back. Categories are named by their titles, counts are plain
English, and a site's report holds that site's figures and names it."""

from __future__ import annotations

import asyncio
import subprocess
import time
from datetime import datetime
from pathlib import Path

from playwright.async_api import async_playwright

from admin_api.reports.wording import plural
from store.alerts import Alert
from tests.harness.api import TZ, Api, ApiFactory, hit
from tests.harness.ui import SCREENSHOTS, chromium_path

RAW_IDS = ("hate_discrimination", "prevent_search", "uncategorised")


def _quarter_now() -> str:
    today = datetime.now(TZ)
    return f"{today.year}Q{(today.month - 1) // 3 + 1}"


async def _alerts_raised(api: Api, count: int) -> list[Alert]:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        page = await api.state.store.alerts.records.page(limit=10)
        if len(page.items) >= count:
            return page.items
        await asyncio.sleep(0.1)
    raise AssertionError("the alert consumer raised no alert")


async def _pdf_text(api: Api, token: str, query: str, pdf: Path) -> str:
    """Open the report in Chromium as a signed-in manager, print it to A4 and read its text."""
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=chromium_path(), headless=True, args=["--no-sandbox"])
        try:
            context = await browser.new_context(
                locale="en-US", extra_http_headers={"Authorization": f"Bearer {token}"})
            page = await context.new_page()
            response = await page.goto(str(api.client.make_url(
                f"/api/v1/reports/quarterly?{query}")))
            assert response is not None and response.status == 200
            await page.pdf(path=str(pdf), format="A4")
        finally:
            await browser.close()
    text = await asyncio.to_thread(_text_of, pdf)
    return " ".join(text.split())


def _text_of(pdf: Path) -> str:
    return subprocess.run(["pdftotext", "-layout", str(pdf), "-"], capture_output=True,
                          text=True, check=True, timeout=60).stdout


def _page_images(pdf: Path, name: str) -> list[Path]:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    subprocess.run(["pdftoppm", "-png", "-r", "70", "-f", "1", "-l", "2", str(pdf),
                    str(SCREENSHOTS / name)], check=True, timeout=60)
    return sorted(SCREENSHOTS.glob(f"{name}-*.png"))


def test_plural_reads_as_english() -> None:
    assert plural(1, "{n} alert was raised", "{n} alerts were raised") == "1 alert was raised"
    assert plural(2, "{n} alert was raised", "{n} alerts were raised") == "2 alerts were raised"
    assert plural(0, "{n} alert was raised", "{n} alerts were raised") == "0 alerts were raised"
    assert [plural(n, "once", "{n} times", two="twice") for n in (1, 2, 3)] == [
        "once", "twice", "3 times"]
    assert plural(0, "{n} was", "{n} were", zero="none was") == "none was"


async def test_the_pdf_names_categories_by_title_counts_in_english_and_filters_by_site(
        make_api: ApiFactory, tmp_path: Path) -> None:
    api = await make_api(centre_name="Riverside Training")
    manager = await api.user("m1", "manager")
    learner = await api.user("l1", "learner")
    hateful = hit("l1", host="hate.example", category="hate_discrimination", alert=True,
                  site="north")
    await api.write_hits([hateful, hit("l2", host="casino.example", site="north"),
                          hit("l3", host="cards.example", site="south"),
                          hit("l3", host="cards.example", site="south")])
    await _alerts_raised(api, 1)
    status, _ = await api.call("POST", "/api/v1/accident-reports", learner,
                               json={"hit_id": hateful.id, "what_happened": "A search result"})
    assert status == 201
    quarter = _quarter_now()

    text = await _pdf_text(api, manager, f"quarter={quarter}", tmp_path / "all.pdf")
    assert "Riverside Training" in text
    assert "Hate and discrimination" in text and "Gambling" in text
    for raw in RAW_IDS:
        assert raw not in text
    assert "1 alert was raised; none has yet been acknowledged" in text
    assert "1 alerts" not in text
    assert "People told us once that they reached a blocked site by accident; none of them " \
           "has yet been reviewed" in text and "1 times" not in text
    assert "4 requests were blocked" in text
    assert "Unblock requests: no figures yet" in text
    assert "cards.example" in text and "hate.example" in text
    images = await asyncio.to_thread(_page_images, tmp_path / "all.pdf", "quarterly-report-pdf")
    assert images and all(image.stat().st_size > 10_000 for image in images)

    north = await _pdf_text(api, manager, f"quarter={quarter}&site=north", tmp_path / "n.pdf")
    assert "Riverside Training, site north" in north
    assert "2 requests were blocked" in north and "1 alert was raised" in north
    assert "hate.example" in north and "cards.example" not in north
    south = await _pdf_text(api, manager, f"quarter={quarter}&site=south", tmp_path / "s.pdf")
    assert "2 requests were blocked" in south and "Safeguarding alerts: no figures yet" in south
    assert "People told us" not in south and "hate.example" not in south

    status, body = await api.call("GET", f"/api/v1/reports/quarterly?quarter={quarter}"
                                  "&site=North;drop", manager)
    assert status == 400 and body["error"]["field"] == "site"


async def test_figures_outlive_the_records_housekeeping_deletes(make_api: ApiFactory) -> None:
    """Unblock requests are deleted after hits_days; the quarter's outcome counts stay."""
    api = await make_api()
    store = api.state.store
    request, _ = await store.unblock_requests.create_or_merge(
        user="l1", group="learner", url="http://games.example/", target="games.example",
        reason="revision game", hit_id=None, site="north")
    quarter = _quarter_now()
    before = await store.unblock_requests.records.figures(quarter, "north")
    assert before == {"total": 1, "status:open": 1}
    assert await store.unblock_requests.delete_older_than(time.time() + 1) == 1
    assert await store.unblock_requests.get(request.id) is None
    assert await store.unblock_requests.records.figures(quarter) == {"total": 1,
                                                                      "status:open": 1}
    assert await store.unblock_requests.records.figures(quarter, "north") == before
    key = api.keys.record_figures("unblock", quarter, "north")
    assert 0 < await api.redis.ttl(key) <= 730 * 86400
