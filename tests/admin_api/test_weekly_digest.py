"""The weekly digest to the DSL: a real SMTP server on loopback receives one mail for the week,
with counts and titles and no learner's name; a second run for the same week, from this admin
or another host's, sends nothing."""

from __future__ import annotations

import asyncio
import time
from dataclasses import replace
from datetime import datetime, timedelta
from email import message_from_bytes
from email.message import Message

import pytest

from admin_api.workers.weekly_digest import WEEKDAYS, scheduled_before, week_of
from deployment.config import AlertSettings
from store.unblock_requests import DENIED
from tests.admin_api.test_api_alerts import Inbox, smtp  # noqa: F401
from tests.harness.api import TZ, Api, ApiFactory, hit


def _text(mail: Message) -> str:
    payload = mail.get_payload(decode=True)
    assert isinstance(payload, bytes)
    return " ".join(payload.decode().split())


async def _next_digest(inbox: Inbox, seconds: float) -> Message | None:
    """The next digest mail within ``seconds`` (alert mails the same inbox gets are passed)."""
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        try:
            mail = message_from_bytes(await asyncio.wait_for(inbox.messages.get(), left))
        except TimeoutError:
            return None
        if str(mail["Subject"]).startswith("[esafety] Weekly digest"):
            return mail
    return None


async def _alert_raised(api: Api) -> None:
    deadline = time.monotonic() + 20
    while not (await api.state.store.alerts.records.page(limit=1)).items:
        assert time.monotonic() < deadline, "no alert was raised"
        await asyncio.sleep(0.1)


def test_the_digest_moment_is_the_configured_weekday_and_time_in_the_centres_zone() -> None:
    friday = datetime(2026, 12, 4, 9, 30, tzinfo=TZ)
    assert scheduled_before(friday, "mon", "08:00") == datetime(2026, 11, 30, 8, 0, tzinfo=TZ)
    assert scheduled_before(friday, "fri", "09:30") == friday
    assert scheduled_before(friday, "fri", "10:00") == datetime(2026, 11, 27, 10, 0, tzinfo=TZ)
    assert week_of(datetime(2026, 11, 30, 8, 0, tzinfo=TZ)) == "2026-W49"


async def test_one_digest_a_week_with_the_weeks_alerts_reports_and_decisions(
        make_api: ApiFactory, smtp: tuple[Inbox, int]) -> None:  # noqa: F811
    inbox, port = smtp
    now = datetime.now(TZ)
    # the schedule's own check (every minute) finds its last moment three days old and
    # leaves it; the test sends the coming one, whose week holds what is written now
    day = WEEKDAYS[(now.weekday() - 3) % 7]
    settings = AlertSettings(email_to=("dsl@centre.example",), email_from="esafety@centre.example",
                             smtp_host="127.0.0.1", smtp_port=port, digest_day=day,
                             digest_time=now.strftime("%H:%M"))
    api = await make_api(alerts=settings, centre_name="Riverside Training")
    learner = await api.user("lena", "learner")
    hateful = hit("lena", host="hate.example", category="hate_discrimination", alert=True)
    await api.write_hits([hateful])
    await _alert_raised(api)
    status, _ = await api.call("POST", "/api/v1/accident-reports", learner,
                               json={"hit_id": hateful.id, "what_happened": "A search result"})
    assert status == 201
    requests = api.state.store.unblock_requests
    filed, _ = await requests.create_or_merge(user="lena", group="learner",
                                              url="http://games.example/",
                                              target="games.example", reason="revision",
                                              hit_id=None)
    await requests.save_decision(replace(filed, status=DENIED, decided_at=time.time(),
                                         decided_by="it1", updated_at=time.time()))

    moment = scheduled_before(now + timedelta(days=7), day, settings.digest_time)
    assert now < moment <= now + timedelta(days=7)
    assert await api.state.digest.send_for(moment) is True
    mail = await _next_digest(inbox, 30)
    assert mail is not None and mail["To"] == "dsl@centre.example"
    assert mail["Subject"] == f"[esafety] Weekly digest {week_of(moment)}: 1 alert"
    text = _text(mail)
    assert "Weekly e-safety digest for Riverside Training" in text
    assert "Safeguarding alerts: 1 alert was raised, 1 still open." in text
    assert "Hate and discrimination, 1 hit, open" in text
    assert "Accidental-hit reports: 1 report was made." in text
    assert "Unblock decisions: 1 request was decided." in text
    assert "games.example declined" in text
    assert "hate_discrimination" not in text and "lena" not in text and "1 alerts" not in text

    # the same week again: from this host, from another admin host, or by the schedule
    other_host = await make_api(alerts=settings, centre_name="Riverside Training")
    assert await api.state.digest.send_for(moment) is False
    assert await other_host.state.digest.send_for(moment) is False
    assert await other_host.state.digest.check(now=moment.timestamp() + 3600) is False
    assert await _next_digest(inbox, 2.0) is None


async def test_a_digest_that_could_not_be_sent_is_tried_again(
        make_api: ApiFactory, smtp: tuple[Inbox, int]) -> None:  # noqa: F811
    inbox, port = smtp
    now = datetime.now(TZ)
    day = WEEKDAYS[(now.weekday() - 3) % 7]
    closed_port = port + 1 if port < 65535 else port - 1
    down = AlertSettings(email_to=("dsl@centre.example",), smtp_host="127.0.0.1",
                         smtp_port=closed_port, digest_day=day, digest_time="08:00")
    api = await make_api(alerts=down)
    moment = scheduled_before(now + timedelta(days=7), day, "08:00")
    with pytest.raises(OSError):
        await api.state.digest.send_for(moment)
    up = await make_api(alerts=replace(down, smtp_port=port))
    assert await up.state.digest.send_for(moment) is True
    mail = await _next_digest(inbox, 30)
    assert mail is not None and "Safeguarding alerts: 0 alerts were raised." in _text(mail)
