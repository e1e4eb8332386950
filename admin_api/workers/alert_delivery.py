"""Delivering safeguarding alerts from the store's outbox: a signed webhook POST and an email
to the DSL, tried until delivered or expired.

:class:`AlertDelivery` sends one channel of one alert, once. :class:`OutboxWorker` (one per
admin process) claims the outbox entries that are due (:meth:`store.alerts.Alerts.claim_due`:
atomic, with a lease, so several admin hosts never send the same entry at once and a host that
dies mid-send only delays it), sends, and records the outcome on the alert: delivered, or
failed and due again after a back-off that doubles from ``alerts.retry_first_seconds`` up to
``alerts.retry_max_seconds``, until ``alerts.delivery_expiry_hours`` after the alert was
raised; an expired delivery is logged and shown to the DSL. The outbox entry is written with
the alert, before the hit is acknowledged, so an admin crash loses nothing; a crash between a
successful send and recording it can send that one message again (at least once).

Webhook: ``POST`` of a JSON body with ``X-Esafety-Timestamp`` and
``X-Esafety-Signature: sha256=<hex>``, the HMAC-SHA256 of ``<timestamp>.<body>`` keyed with
the secret in the environment variable named by ``alerts.webhook_secret_env``. Receivers
recompute it and reject stale timestamps, so a captured request cannot be replayed later.

Email: plain text through ``alerts.smtp_host``/``smtp_port`` (STARTTLS and login when
configured), sent with :mod:`smtplib` in a worker thread. Messages carry what the DSL needs
to act and a reference to the alert; no more personal data than that.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import os
import smtplib
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from email.message import EmailMessage
from typing import Any

import aiohttp
from redis.exceptions import RedisError

from admin_api.reports.wording import category_title
from deployment.config import AlertSettings
from store.alerts import Alert, Alerts, retry_delay
from store.redis_store import Store

log = logging.getLogger(__name__)
WEBHOOK, EMAIL = "webhook", "email"
LEASE_SECONDS = 60.0
"""How long a claimed entry is held: longer than one send can take (webhook 10 s, SMTP 15 s)."""
POLL_SECONDS = 0.5
IDENTIFIED_BY = {"auth": "sign-in on the connection", "portal": "Wi-Fi portal sign-in",
                 "radius": "RADIUS (Wi-Fi controller)", "kerberos": "Kerberos (Windows sign-in)",
                 "network": "network range", "unidentified": "not identified"}
"""How a person was identified, in words for the DSL's mail."""


def sign(secret: bytes, timestamp: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret, timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()


def _when(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds")


def alert_payload(alert: Alert) -> dict[str, Any]:
    return {"type": "safeguarding_alert", "alert_id": alert.id, "user": alert.user,
            "group": alert.group, "category": alert.category, "severity": alert.severity,
            "count": alert.count, "first_seen": _when(alert.first_seen),
            "last_seen": _when(alert.last_seen), "hosts": alert.hosts,
            "search_terms": alert.search_terms, "site": alert.site, "hit_ids": alert.hit_ids,
            "devices": alert.devices, "identified_by": alert.identified_by,
            "api": f"/api/v1/alerts/{alert.id}"}


class AlertDelivery:
    """The configured channels, and one try at sending an alert on one of them."""

    def __init__(self, settings: AlertSettings, environ: Mapping[str, str] | None = None,
                 titles: Callable[[], Mapping[str, str]] = dict) -> None:
        env = os.environ if environ is None else environ
        self.titles = titles
        """Category id -> title (read when a mail is written: the definitions may change)."""
        self.webhook_url = settings.webhook_url or None
        secret_env = settings.webhook_secret_env
        self.webhook_secret = env.get(secret_env, "").encode() if secret_env else b""
        self.email_to = list(settings.email_to)
        self.email_from = settings.email_from
        self.smtp_host = settings.smtp_host
        self.smtp_port = settings.smtp_port
        self.smtp_starttls = settings.smtp_starttls
        self.smtp_user = env.get(settings.smtp_user_env, "") or None
        self.smtp_password = env.get(settings.smtp_password_env, "") or None
        self.retry_first = settings.retry_first_seconds
        self.retry_max = settings.retry_max_seconds
        self.expiry_seconds = settings.delivery_expiry_hours * 3600

    @property
    def channels(self) -> tuple[str, ...]:
        """The channels that are configured (an alert gets a delivery record on each)."""
        out = []
        if self.webhook_url:
            out.append(WEBHOOK)
        if self.smtp_host and self.email_to:
            out.append(EMAIL)
        return tuple(out)

    async def send(self, channel: str, alert: Alert) -> str | None:
        """One try; None when sent, else a short reason (no secret, no body)."""
        if channel == WEBHOOK:
            return await self._webhook(alert)
        if channel == EMAIL:
            return await self._email(alert)
        return f"unknown channel {channel[:20]}"

    async def _webhook(self, alert: Alert) -> str | None:
        if not self.webhook_url:
            return "not configured"
        body = json.dumps(alert_payload(alert), separators=(",", ":")).encode()
        timestamp = str(int(time.time()))
        headers = {"Content-Type": "application/json", "X-Esafety-Timestamp": timestamp}
        if self.webhook_secret:
            headers["X-Esafety-Signature"] = sign(self.webhook_secret, timestamp, body)
        try:
            timeout = aiohttp.ClientTimeout(total=10)
            async with aiohttp.ClientSession(timeout=timeout) as session, \
                    session.post(self.webhook_url, data=body, headers=headers) as response:
                if response.status < 300:
                    return None
                return f"HTTP {response.status}"
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            return type(exc).__name__

    def message(self, alert: Alert) -> EmailMessage:
        message = EmailMessage()
        category = category_title(alert.category, self.titles())
        message["Subject"] = f"[esafety] Safeguarding alert {alert.id}: {category}"
        message["From"] = self.email_from
        message["To"] = ", ".join(self.email_to)
        terms = f"Search terms: {', '.join(alert.search_terms)}\n" if alert.search_terms else ""
        devices = f"Device: {', '.join(alert.devices)}\n" if alert.devices else ""
        how = (f"Identified by: {IDENTIFIED_BY.get(alert.identified_by, alert.identified_by)}\n"
               if alert.identified_by else "")
        message.set_content(
            f"A safeguarding alert was raised.\n\n"
            f"Alert: {alert.id}\nUser: {alert.user or '(unidentified device)'}\n"
            f"Group: {alert.group}\n{devices}{how}Category: {category} ({alert.severity})\n"
            f"Sites: {', '.join(alert.hosts)}\n{terms}"
            f"First seen: {_when(alert.first_seen)}\n\n"
            f"Please review and acknowledge it in the esafety admin (alert {alert.id}).\n")
        return message

    def send_email_now(self, message: EmailMessage) -> None:
        """Send through the configured SMTP server (blocking: run it in a thread)."""
        with smtplib.SMTP(self.smtp_host, self.smtp_port, timeout=15) as smtp:
            if self.smtp_starttls:
                smtp.starttls()
            if self.smtp_user and self.smtp_password:
                smtp.login(self.smtp_user, self.smtp_password)
            smtp.send_message(message)

    async def _email(self, alert: Alert) -> str | None:
        if not self.smtp_host or not self.email_to:
            return "not configured"
        try:
            await asyncio.to_thread(lambda: self.send_email_now(self.message(alert)))
            return None
        except (smtplib.SMTPException, OSError) as exc:
            return type(exc).__name__


class OutboxWorker:
    """Sends what the outbox holds, when it is due; one per admin process."""

    def __init__(self, store: Store, delivery: AlertDelivery,
                 lease_seconds: float = LEASE_SECONDS) -> None:
        self._alerts: Alerts = store.alerts
        self.delivery = delivery
        self._lease = lease_seconds
        self._held: set[tuple[str, str]] = set()
        self.delivered = 0
        self.expired = 0

    async def step(self, now: float | None = None) -> int:
        """Claim and try every due entry once; return how many were tried."""
        at = time.time() if now is None else now
        claimed = await self._alerts.claim_due(at, self._lease)
        self._held.update(claimed)
        try:
            await asyncio.gather(*(self._try(alert_id, channel) for alert_id, channel in claimed))
        finally:
            self._held.difference_update(claimed)
        return len(claimed)

    async def _try(self, alert_id: str, channel: str) -> None:
        alert = await self._alerts.get(alert_id)
        if alert is None:  # deleted by retention: nothing left to send
            await self._alerts.record_delivery(alert_id, channel, at=time.time(), error=None,
                                               next_attempt_at=0.0)
            return
        error = await self.delivery.send(channel, alert)
        at = time.time()
        attempts = int((alert.deliveries.get(channel) or {}).get("attempts", 0)) + 1
        next_at = at + retry_delay(attempts, self.delivery.retry_first, self.delivery.retry_max)
        updated = await self._alerts.record_delivery(alert_id, channel, at=at, error=error,
                                                     next_attempt_at=next_at)
        state = ((updated.deliveries.get(channel) or {}).get("state")
                 if updated is not None else None)
        if error is None:
            self.delivered += 1
        elif state == "expired":
            self.expired += 1
            log.error("alert %s: %s delivery expired after %d tries (last: %s)", alert_id,
                      channel, attempts, error)
        else:
            log.warning("alert %s: %s delivery failed (%s); trying again in %.0f s", alert_id,
                        channel, error, next_at - at)

    async def run(self, stop: asyncio.Event) -> None:
        """Deliver until ``stop`` is set; entries held at stop are handed back at once."""
        try:
            while not stop.is_set():
                try:
                    if await self.step() == 0:
                        await asyncio.sleep(POLL_SECONDS)
                except asyncio.CancelledError:
                    raise
                except (RedisError, OSError, RuntimeError) as exc:
                    log.warning("alert delivery: %s; retrying", exc)
                    await asyncio.sleep(1.0)
        finally:
            await self._hand_back(list(self._held))

    async def _hand_back(self, entries: Sequence[tuple[str, str]]) -> None:
        try:
            await self._alerts.release(entries, time.time())
        except (RedisError, OSError) as exc:  # their lease runs out instead
            log.warning("alert delivery: could not hand back %d entries: %s", len(entries), exc)
