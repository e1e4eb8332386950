"""Delivering a new safeguarding alert: a signed webhook POST and an email to the DSL.

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
from collections.abc import Mapping
from datetime import UTC, datetime
from email.message import EmailMessage
from typing import Any

import aiohttp

from deployment.config import AlertSettings
from store.alerts import Alert

log = logging.getLogger(__name__)
ATTEMPTS = 3


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
            "api": f"/api/v1/alerts/{alert.id}"}


class AlertDelivery:
    def __init__(self, settings: AlertSettings, environ: Mapping[str, str] | None = None
                 ) -> None:
        env = os.environ if environ is None else environ
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
        self.retry_delay = 1.0

    async def deliver(self, alert: Alert) -> dict[str, str]:
        """Send on every configured channel; return each channel's outcome."""
        webhook, email = await asyncio.gather(self._webhook(alert), self._email(alert))
        return {"webhook": webhook, "email": email}

    async def _webhook(self, alert: Alert) -> str:
        if not self.webhook_url:
            return "not configured"
        body = json.dumps(alert_payload(alert), separators=(",", ":")).encode()
        last_error = ""
        for attempt in range(ATTEMPTS):
            timestamp = str(int(time.time()))
            headers = {"Content-Type": "application/json", "X-Esafety-Timestamp": timestamp}
            if self.webhook_secret:
                headers["X-Esafety-Signature"] = sign(self.webhook_secret, timestamp, body)
            try:
                timeout = aiohttp.ClientTimeout(total=10)
                async with aiohttp.ClientSession(timeout=timeout) as session, \
                        session.post(self.webhook_url, data=body, headers=headers) as response:
                    if response.status < 300:
                        return "sent"
                    last_error = f"HTTP {response.status}"
            except (aiohttp.ClientError, TimeoutError, OSError) as exc:
                last_error = type(exc).__name__
            if attempt + 1 < ATTEMPTS:
                await asyncio.sleep(self.retry_delay * 2 ** attempt)
        log.warning("alert %s: webhook failed: %s", alert.id, last_error)
        return f"failed: {last_error}"

    def _message(self, alert: Alert) -> EmailMessage:
        message = EmailMessage()
        message["Subject"] = f"[esafety] Safeguarding alert {alert.id}: {alert.category}"
        message["From"] = self.email_from
        message["To"] = ", ".join(self.email_to)
        terms = f"Search terms: {', '.join(alert.search_terms)}\n" if alert.search_terms else ""
        message.set_content(
            f"A safeguarding alert was raised.\n\n"
            f"Alert: {alert.id}\nUser: {alert.user or '(unidentified device)'}\n"
            f"Group: {alert.group}\nCategory: {alert.category} ({alert.severity})\n"
            f"Sites: {', '.join(alert.hosts)}\n{terms}"
            f"First seen: {_when(alert.first_seen)}\n\n"
            f"Please review and acknowledge it in the esafety admin (alert {alert.id}).\n")
        return message

    def _send_email(self, message: EmailMessage) -> None:
        with smtplib.SMTP(self.smtp_host, self.smtp_port, timeout=15) as smtp:
            if self.smtp_starttls:
                smtp.starttls()
            if self.smtp_user and self.smtp_password:
                smtp.login(self.smtp_user, self.smtp_password)
            smtp.send_message(message)

    async def _email(self, alert: Alert) -> str:
        if not self.smtp_host or not self.email_to:
            return "not configured"
        message = self._message(alert)
        last_error = ""
        for attempt in range(ATTEMPTS):
            try:
                await asyncio.to_thread(self._send_email, message)
                return "sent"
            except (smtplib.SMTPException, OSError) as exc:
                last_error = type(exc).__name__
            if attempt + 1 < ATTEMPTS:
                await asyncio.sleep(self.retry_delay * 2 ** attempt)
        log.warning("alert %s: email failed: %s", alert.id, last_error)
        return f"failed: {last_error}"
