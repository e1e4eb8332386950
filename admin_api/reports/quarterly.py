"""The quarterly e-safety report: one printable, accessible HTML page for governors and Ofsted.

It holds aggregates only (no learner names): blocks by category over the quarter, the top
blocked sites, safeguarding alerts and how they were handled, unblock requests with their
turnaround, and accidental-hit reports. Each chart is inline SVG with a title and
description, and its figures are repeated in a captioned table. It is written for governors:
categories by their titles, counts in plain English (:mod:`admin_api.reports.wording`), and
"no figures yet" where there is nothing to give. It covers every site of the centre, or one
site (``site``), whose name its title then gives.
"""

from __future__ import annotations

import re
from collections import Counter as Tally
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from html import escape
from zoneinfo import ZoneInfo

from admin_api.reports.style import REPORT_CSS
from admin_api.reports.summary import days_in, group_key, read_counters, top_blocked_hosts
from admin_api.reports.svg_charts import horizontal_bars, stacked_bars
from admin_api.reports.wording import NO_FIGURES, category_title, plural
from store import accident_reports, alerts, unblock_requests
from store.redis_store import Store

QUARTER = re.compile(r"([0-9]{4})Q([1-4])")
TOP_CATEGORIES = 6


@dataclass(frozen=True)
class Quarter:
    year: int
    number: int

    @classmethod
    def parse(cls, text: str) -> Quarter:
        match = QUARTER.fullmatch(text)
        if match is None or not 2000 <= int(match.group(1)) <= 2999:
            raise ValueError("quarter must look like 2026Q3")
        return cls(int(match.group(1)), int(match.group(2)))

    @property
    def first_day(self) -> date:
        return date(self.year, 3 * self.number - 2, 1)

    @property
    def last_day(self) -> date:
        if self.number == 4:
            return date(self.year, 12, 31)
        return date.fromordinal(date(self.year, 3 * self.number + 1, 1).toordinal() - 1)

    @property
    def label(self) -> str:
        return f"{self.year} Q{self.number}"

    @property
    def code(self) -> str:
        """As it is written (``2026Q3``), and as the store names its figures' quarters
        (:func:`store.indexed_collection.quarter_of`)."""
        return f"{self.year}Q{self.number}"


OUTCOME_TITLES = {
    unblock_requests.OPEN: "Pending",
    unblock_requests.APPROVED: "Approved",
    unblock_requests.DENIED: "Declined",
    unblock_requests.EXPIRED: "Approved, since expired",
}
SCOPE_TITLES = {"user": "For the person who asked", "group": "For their group",
                "everyone": "For everyone"}


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return NO_FIGURES
    if seconds < 3600:
        return plural(round(seconds / 60), "{n} minute", "{n} minutes")
    if seconds < 86400 * 2:
        return f"{seconds / 3600:.1f} hours"
    return f"{seconds / 86400:.1f} days"


def _table(caption: str, headers: list[str], rows: list[list[object]], numeric: set[int]) -> str:
    head = "".join(f'<th scope="col"{" class=num" if i in numeric else ""}>{escape(h)}</th>'
                   for i, h in enumerate(headers))
    body = []
    for row in rows:
        cells = []
        for i, value in enumerate(row):
            if i == 0:
                cells.append(f'<th scope="row">{escape(str(value))}</th>')
            else:
                cls = ' class="num"' if i in numeric else ""
                cells.append(f"<td{cls}>{escape(str(value))}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    if not rows:
        body.append(f'<tr><td colspan="{len(headers)}">No figures yet for this period.</td></tr>')
    return (f"<table><caption>{escape(caption)}</caption><thead><tr>{head}</tr></thead>"
            f"<tbody>{''.join(body)}</tbody></table>")


async def render(store: Store, quarter: Quarter, tz: ZoneInfo, centre_name: str,
                 titles: Mapping[str, str], site: str | None = None) -> str:
    """The report. Blocks come from the proxies' daily counters; alerts, requests and
    reports from the store's per-quarter figures (quarters of the centre's calendar, ``tz``):
    a few reads whatever the number of records. ``titles`` maps category ids to their
    titles; ``site`` limits the report to one site's figures."""
    def title(category: str) -> str:
        return category_title(category, titles)

    days = days_in(quarter.first_day, quarter.last_day)
    counters = [c for c in await read_counters(store.hits, days)
                if site is None or c.site == site]
    parts: list[str] = []

    # blocks by category over time (weeks)
    weekly: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    by_category: Tally[str] = Tally()
    total_allowed = 0
    for counter in counters:
        if counter.action == "block":
            category = title(counter.category)
            weekly[group_key(counter, "week")][category] += counter.count
            by_category[category] += counter.count
        elif counter.action == "allow":
            total_allowed += counter.count
    weeks = sorted({group_key(c, "week") for c in counters} | {
        f"{d.isocalendar()[0]}-W{d.isocalendar()[1]:02d}" for d in days})
    top = [c for c, _ in by_category.most_common(TOP_CATEGORIES)]
    series = {c: [weekly[w].get(c, 0) for w in weeks] for c in top}
    others = [sum(v for c, v in weekly[w].items() if c not in top) for w in weeks]
    if any(others):
        series[title("other")] = others
    total_blocks = sum(by_category.values())
    parts.append("<section><h2>Blocked requests by category</h2>")
    if total_blocks or total_allowed:
        allowed = plural(total_allowed, " and {n} was logged as allowed",
                         " and {n} were logged as allowed") if total_allowed else ""
        blocked = plural(total_blocks, "{n} request was blocked", "{n} requests were blocked")
        parts.append(f"<p>{blocked} this quarter{allowed}.</p>")
    else:
        parts.append(f"<p>Blocked requests: {NO_FIGURES}.</p>")
    parts.append("<figure>" + stacked_bars(
        f"Blocked requests per week by category, {quarter.label}",
        "Stacked bars, one per ISO week; the figures are in the table below.", weeks, series)
        + "<figcaption>Blocked requests per week, by category.</figcaption></figure>")
    parts.append(_table(f"Blocked requests by category, {quarter.label}", ["Category", "Blocks"],
                        [[c, n] for c, n in by_category.most_common()], {1}))
    parts.append("</section>")

    # top blocked sites
    top_sites = await top_blocked_hosts(store.hits, days, limit=15, site=site)
    parts.append("<section><h2>Most blocked sites</h2><figure>" + horizontal_bars(
        f"Most blocked sites, {quarter.label}", "Horizontal bars, one per site, longest first.",
        top_sites) + "<figcaption>The sites blocked most often.</figcaption></figure>")
    parts.append(_table("Most blocked sites", ["Site", "Blocks"],
                        [[h, n] for h, n in top_sites], {1}) + "</section>")

    # alerts, unblock requests and reports: the quarter's figures, kept as records are written
    # (and kept after the records themselves are deleted)
    label = quarter.code
    alert_figures = await store.alerts.records.figures(label, site)
    acknowledging = await store.alerts.records.durations(label, site)
    raised = alert_figures.get("total", 0)
    alert_rows: dict[str, list[int]] = {}
    for name in alert_figures:
        kind, _, category = name.partition(":")
        if kind == "category":
            alert_rows[category] = [alert_figures.get(f"category:{category}", 0),
                                    alert_figures.get(f"hits:{category}", 0),
                                    alert_figures.get(f"acknowledged:{category}", 0)]
    handled = alert_figures.get(f"status:{alerts.ACKNOWLEDGED}", 0)
    parts.append("<section><h2>Safeguarding alerts and how they were handled</h2>")
    if raised:
        median = (f", with a median time to acknowledge of {_duration(acknowledging.median)}"
                  if handled else "")
        open_now = raised - handled
        were_raised = plural(raised, "{n} alert was raised", "{n} alerts were raised")
        were_handled = plural(handled, "{n} was", "{n} were", zero="none has yet been")
        remain = plural(open_now, "{n} remains", "{n} remain")
        parts.append(f"<p>{were_raised}; {were_handled} acknowledged by the safeguarding "
                     f"team{median}. {remain} open.</p>")
    else:
        parts.append(f"<p>Safeguarding alerts: {NO_FIGURES}.</p>")
    parts.append("<figure>" + horizontal_bars(
        f"Safeguarding alerts by category, {quarter.label}",
        "Horizontal bars, one per category, showing the number of alerts.",
        sorted(((title(c), r[0]) for c, r in alert_rows.items()), key=lambda x: (-x[1], x[0])))
        + "<figcaption>Alerts raised, by category.</figcaption></figure>")
    parts.append(_table("Safeguarding alerts by category",
                        ["Category", "Alerts", "Hits grouped into them", "Acknowledged"],
                        sorted([title(c), *r] for c, r in alert_rows.items()), {1, 2, 3}))
    parts.append("</section>")

    # unblock requests: outcome counters written as requests are made and decided
    request_figures = await store.unblock_requests.records.figures(label, site)
    turnaround = await store.unblock_requests.records.durations(label, site)
    scopes = sorted((SCOPE_TITLES.get(name.partition(":")[2], name.partition(":")[2]), n)
                    for name, n in request_figures.items() if name.startswith("scope:"))
    requested = request_figures.get("total", 0)
    parts.append("<section><h2>Unblock requests</h2>")
    if requested:
        decided = (f" Median turnaround {_duration(turnaround.median)}; 90% were decided "
                   f"within {_duration(turnaround.p90)}." if turnaround.count
                   else f" Turnaround: {NO_FIGURES} (none decided yet).")
        made = plural(requested, "{n} request was made.", "{n} requests were made.")
        parts.append(f"<p>{made}{decided}</p>")
    else:
        parts.append(f"<p>Unblock requests: {NO_FIGURES}.</p>")
    parts.append(_table("Unblock requests by outcome", ["Outcome", "Requests"],
                        [[OUTCOME_TITLES[s], request_figures.get(f"status:{s}", 0)]
                         for s in unblock_requests.STATUSES] if requested else [], {1}))
    parts.append(_table("Approved requests by scope", ["Scope", "Approvals"],
                        [[s, n] for s, n in scopes], {1}))
    parts.append("</section>")

    # accidental-hit reports
    report_figures = await store.accident_reports.records.figures(label, site)
    report_categories = Tally({
        title(name.partition(":")[2]) if name.partition(":")[2]
        else "Not linked to a logged block": n
        for name, n in report_figures.items() if name.startswith("category:")})
    reported = report_figures.get("total", 0)
    reviewed = report_figures.get(f"status:{accident_reports.REVIEWED}", 0)
    parts.append("<section><h2>Accidental-hit reports</h2>")
    if reported:
        how_often = plural(reported, "once", "{n} times", two="twice")
        were_reviewed = plural(reviewed, "{n} of these reports has",
                               "{n} of these reports have", zero="none of them has yet")
        parts.append(f"<p>People told us {how_often} that they reached a blocked site by "
                     f"accident; {were_reviewed} been reviewed.</p>")
    else:
        parts.append(f"<p>Accidental-hit reports: {NO_FIGURES}.</p>")
    parts.append(_table("Accidental-hit reports by category of the blocked site",
                        ["Category", "Reports"], [[c, n] for c, n in report_categories.most_common()],
                        {1}))
    parts.append("</section>")

    generated = datetime.now(UTC).astimezone(tz).strftime("%d %B %Y %H:%M")
    where = f"{centre_name}, site {site}" if site else centre_name
    covers = f"Site {site} of {centre_name}" if site else f"{centre_name}, every site"
    return ("<!DOCTYPE html>\n<html lang=\"en-GB\"><head><meta charset=\"utf-8\">"
            f"<title>E-safety report {escape(quarter.label)} – {escape(where)}</title>"
            f"<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
            f"<style>{REPORT_CSS}</style></head><body><main>"
            f"<h1>E-safety report: {escape(where)}, {escape(quarter.label)}</h1>"
            f"<p class=\"meta\">{escape(covers)}, {quarter.first_day:%d %B %Y} to "
            f"{quarter.last_day:%d %B %Y}. Generated {escape(generated)}. Figures are totals; "
            "no individual is named in this report.</p>"
            + "".join(parts) + "</main></body></html>\n")
