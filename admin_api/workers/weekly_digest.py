"""The weekly digest: one email to the DSL addresses (``alerts.email_to``) with the week's
safeguarding alerts, accidental-hit reports and unblock decisions.

It goes out at ``alerts.digest_day`` / ``alerts.digest_time`` in the centre's time zone and
covers the seven days before that moment. Every admin host runs the schedule; a store key per
week (:meth:`store.alerts.Alerts.claim_digest`) lets exactly one of them send it, and a send
that fails gives the claim back so the next check tries again. An admin that was down at the
time sends it when it starts, within a day; a later week is never sent twice.

The mail gives counts and a short list with category titles. It names no learner: the DSL
opens the admin (by alert number) to see who; an email may be read in places the admin is not.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from email.message import EmailMessage
from zoneinfo import ZoneInfo

from redis.exceptions import RedisError

from admin_api.reports.wording import category_title, plural
from admin_api.workers.alert_delivery import AlertDelivery
from deployment.config import AlertSettings
from store import unblock_requests
from store.indexed_collection import IndexedCollection, PageCursor, R
from store.redis_store import Store

log = logging.getLogger(__name__)
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
LIST_LIMIT = 15
"""At most this many lines per section; the counts are always whole."""
CHECK_EVERY_SECONDS = 60.0
LATE_BY_AT_MOST = timedelta(days=1)
DECISION_LOOKBACK_DAYS = 120
"""Unblock requests decided in the week may have been made this long before it."""
OUTCOMES = {unblock_requests.APPROVED: "approved", unblock_requests.DENIED: "declined",
            unblock_requests.EXPIRED: "approved (since expired)"}


def scheduled_before(now: datetime, day: str, at: str) -> datetime:
    """The latest digest moment (weekday ``day`` at ``at``, in ``now``'s time zone) not after
    ``now``."""
    hour, minute = (int(part) for part in at.split(":"))
    days_back = (now.weekday() - WEEKDAYS.index(day)) % 7
    moment = (now - timedelta(days=days_back)).replace(hour=hour, minute=minute, second=0,
                                                      microsecond=0)
    if moment > now:
        moment -= timedelta(days=7)
    return moment


def week_of(moment: datetime) -> str:
    year, week, _ = moment.isocalendar()
    return f"{year}-W{week:02d}"


@dataclass(frozen=True)
class Digest:
    week: str
    start: datetime
    end: datetime
    message: EmailMessage


async def _created_between(records: IndexedCollection[R], start: float, end: float,
                           keep: Callable[[R], bool] | None = None) -> list[R]:
    out: list[R] = []
    cursor: PageCursor | None = None
    while True:
        page = await records.page(created_from=start, created_before=end, keep=keep,
                                  cursor=cursor, limit=200)
        out.extend(page.items)
        if page.next_cursor is None:
            return out
        cursor = page.next_cursor


def _listed(lines: list[str]) -> str:
    shown = lines[:LIST_LIMIT]
    more = len(lines) - len(shown)
    tail = [f"  ... and {more} more (see the admin)"] if more else []
    return "\n".join([f"  - {line}" for line in shown] + tail)


async def build_digest(store: Store, settings: AlertSettings, titles: Mapping[str, str],
                       centre_name: str, moment: datetime) -> Digest:
    """The digest for the week ending at ``moment`` (a digest moment, timezone-aware)."""
    end = moment
    start = moment - timedelta(days=7)
    since, until = start.timestamp(), end.timestamp()
    tz = moment.tzinfo

    def day(ts: float) -> str:
        return datetime.fromtimestamp(ts, tz).strftime("%a %d/%m/%Y %H:%M")

    alerts = await _created_between(store.alerts.records, since, until)
    reports = await _created_between(store.accident_reports.records, since, until)
    decided = [r for r in await _created_between(
        store.unblock_requests.records, since - DECISION_LOOKBACK_DAYS * 86400, until,
        keep=lambda r: r.decided_at is not None and since <= r.decided_at < until)]
    decided.sort(key=lambda r: r.decided_at or 0.0)
    alerts.sort(key=lambda a: a.created_at)
    reports.sort(key=lambda r: r.created_at)

    alert_lines = [
        f"{day(a.created_at)}: alert {a.id}, {category_title(a.category, titles)}, "
        f"{plural(a.count, '{n} hit', '{n} hits')}, "
        f"{'acknowledged' if a.status == 'acknowledged' else 'open'}" for a in alerts]
    report_lines = [
        f"{day(r.created_at)}: report {r.id}, "
        f"{category_title(str((r.hit or {}).get('category') or ''), titles)}, {r.status}"
        for r in reports]
    decision_lines = [
        f"{day(r.decided_at or 0.0)}: {r.target} {OUTCOMES.get(r.status, r.status)}"
        for r in decided]
    open_alerts = sum(1 for a in alerts if a.status != "acknowledged")
    text = (
        f"Weekly e-safety digest for {centre_name}: {start:%d/%m/%Y %H:%M} to "
        f"{end:%d/%m/%Y %H:%M}.\n\n"
        f"Safeguarding alerts: "
        f"{plural(len(alerts), '{n} alert was raised', '{n} alerts were raised')}"
        f"{f', {open_alerts} still open' if alerts else ''}.\n"
        f"{_listed(alert_lines)}\n\n"
        f"Accidental-hit reports: "
        f"{plural(len(reports), '{n} report was made', '{n} reports were made')}.\n"
        f"{_listed(report_lines)}\n\n"
        f"Unblock decisions: "
        f"{plural(len(decided), '{n} request was decided', '{n} requests were decided')}.\n"
        f"{_listed(decision_lines)}\n\n"
        "No learner is named in this email: open the esafety admin to see who each alert and "
        "report is about.\n")
    message = EmailMessage()
    message["Subject"] = f"[esafety] Weekly digest {week_of(moment)}: " + plural(
        len(alerts), "{n} alert", "{n} alerts")
    message["From"] = settings.email_from
    message["To"] = ", ".join(settings.email_to)
    message.set_content(text)
    return Digest(week_of(moment), start, end, message)


class WeeklyDigest:
    """Sends the week's digest once, from whichever admin host claims it first."""

    def __init__(self, store: Store, delivery: AlertDelivery, settings: AlertSettings,
                 tz: ZoneInfo, centre_name: str, titles: Callable[[], Mapping[str, str]]
                 ) -> None:
        self._store = store
        self._delivery = delivery
        self._settings = settings
        self._tz = tz
        self._centre = centre_name
        self._titles = titles
        self._me = f"{socket.gethostname()}-{os.getpid()}"

    async def send_for(self, moment: datetime) -> bool:
        """Send the digest of the week ending at ``moment`` unless some host already has;
        True when this call sent it."""
        if not self._settings.email_to or not self._delivery.smtp_host:
            return False
        week = week_of(moment)
        if not await self._store.alerts.claim_digest(week, self._me):
            return False
        try:
            titles = await asyncio.to_thread(self._titles)
            digest = await build_digest(self._store, self._settings, titles, self._centre,
                                        moment)
            await asyncio.to_thread(self._delivery.send_email_now, digest.message)
        except BaseException:
            await self._store.alerts.release_digest(week, self._me)
            raise
        log.info("weekly digest %s sent to %d addresses", week, len(self._settings.email_to))
        return True

    async def check(self, now: float | None = None) -> bool:
        """Send the digest when its moment has passed (by less than a day)."""
        current = datetime.fromtimestamp(time.time() if now is None else now, self._tz)
        moment = scheduled_before(current, self._settings.digest_day,
                                  self._settings.digest_time)
        if current - moment > LATE_BY_AT_MOST:
            return False
        return await self.send_for(moment)

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                await self.check()
            except asyncio.CancelledError:
                raise
            except (RedisError, OSError, RuntimeError) as exc:
                log.warning("weekly digest: %s; trying again", exc)
            try:
                await asyncio.wait_for(stop.wait(), CHECK_EVERY_SECONDS)
            except TimeoutError:
                pass
