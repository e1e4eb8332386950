"""Off-network blocks reported by the browser extension, validated and turned into hits.

The extension cannot be trusted blindly (a learner can forge its requests, and any web page
could once open its block page), so only what the extension alone knows is taken from it:
the hit id it showed on its block page, when the block happened and the address, each
signed with the navigation token the install minted with its hit key
(:func:`store.extension_devices.navigation_token`). Who and which group come from the bearer
token; the category, rule, severity and safeguarding alert come only from the server's own
decision for that address at that time. A block the server would not make itself (an
out-of-date rule set, or the strictest rules used before sign-in) is logged with no category
and raises no alert. The site is always ``off-network``.
"""

from __future__ import annotations

import hmac
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from admin_api.errors import bad_input
from admin_api.routes.http_input import HIT_REFERENCE
from categories.decision import Decision
from categories.policy import Policy
from categories.urlnorm import URLError, canonical_url
from store.extension_devices import DEVICE_ID, navigation_token
from store.records import HitRecord, UserRecord, day_of, hit_id_day

OFF_NETWORK_SITE = "off-network"
MAX_HITS_PER_BATCH = 100
MAX_AGE_SECONDS = 14 * 86400
"""Older queued hits are refused: the exactly-once marker of a batch lasts 14 days."""
CLOCK_SKEW_SECONDS = 300
BATCH_ID = re.compile(r"[A-Za-z0-9_-]{8,64}")
_HIT_FIELDS = frozenset({"id", "ts", "url", "category", "nav_token"})
_CATEGORY = re.compile(r"[a-z][a-z0-9_]{0,40}")
_NAV_TOKEN = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True)
class ReportedHit:
    id: str
    ts: float
    url: str
    category: str
    """What the extension's rule said; informational only, never logged as the category."""
    nav_token: str


def device_id_of(body: Mapping[str, Any]) -> str:
    value = body.get("device_id")
    if not isinstance(value, str) or not DEVICE_ID.fullmatch(value):
        raise bad_input("device_id must be this install's id (16-64 letters, digits, - or _)",
                        "device_id")
    return value


def unsigned_hits(hits: list[ReportedHit], hit_key: bytes) -> list[str]:
    """The ids of hits whose navigation token was not made with ``hit_key``."""
    return [hit.id for hit in hits if not hmac.compare_digest(
        hit.nav_token, navigation_token(hit_key, hit.id, hit.ts, hit.url))]


def batch_id_of(body: Mapping[str, Any]) -> str:
    value = body.get("batch_id")
    if not isinstance(value, str) or not BATCH_ID.fullmatch(value):
        raise bad_input("batch_id must be 8-64 letters, digits, - or _", "batch_id")
    return value


def reported_hits(body: Mapping[str, Any], now: float | None = None) -> list[ReportedHit]:
    """The ``hits`` array, each item checked; raises a 400 naming the first bad field."""
    now = time.time() if now is None else now
    items = body.get("hits")
    if not isinstance(items, list) or not items:
        raise bad_input("hits must be a non-empty array", "hits")
    if len(items) > MAX_HITS_PER_BATCH:
        raise bad_input(f"send at most {MAX_HITS_PER_BATCH} hits at a time", "hits")
    out: list[ReportedHit] = []
    seen: set[str] = set()
    for n, item in enumerate(items):
        where = f"hits[{n}]"
        if not isinstance(item, dict) or set(item) - _HIT_FIELDS:
            raise bad_input(f"{where} must be an object with id, ts, url and category", where)
        hit_id = item.get("id")
        if (not isinstance(hit_id, str) or not HIT_REFERENCE.fullmatch(hit_id)
                or hit_id_day(hit_id.upper()) is None):
            raise bad_input(f"{where}.id must be a block reference like 20261122-7KQ2X9AB",
                            f"{where}.id")
        hit_id = hit_id.upper()
        if hit_id in seen:
            raise bad_input(f"{where}.id is repeated in this batch", f"{where}.id")
        seen.add(hit_id)
        ts = item.get("ts")
        if (isinstance(ts, bool) or not isinstance(ts, int | float)
                or not now - MAX_AGE_SECONDS <= ts <= now + CLOCK_SKEW_SECONDS):
            raise bad_input(f"{where}.ts must be epoch seconds within the last 14 days",
                            f"{where}.ts")
        url = item.get("url")
        if not isinstance(url, str) or not 1 <= len(url) <= 2000 or not url.startswith(
                ("http://", "https://")):
            raise bad_input(f"{where}.url must be an http(s) address of at most 2000 characters",
                            f"{where}.url")
        category = item.get("category", "")
        if not isinstance(category, str) or (category and not _CATEGORY.fullmatch(category)):
            raise bad_input(f"{where}.category must be a category id", f"{where}.category")
        nav_token = item.get("nav_token")
        if not isinstance(nav_token, str) or not _NAV_TOKEN.fullmatch(nav_token):
            raise bad_input(f"{where}.nav_token must be the install's token for this block",
                            f"{where}.nav_token")
        out.append(ReportedHit(hit_id, float(ts), url, category, nav_token))
    return out


def _day_matches(hit: ReportedHit, tz: ZoneInfo) -> bool:
    """The id's day must be the hit's day, give or take a time zone."""
    day = hit_id_day(hit.id)
    return day is not None and any(day_of(hit.ts + shift, tz) == day
                                   for shift in (-86400, 0, 86400))


def to_hit_record(hit: ReportedHit, user: UserRecord, policy: Policy, tz: ZoneInfo
                  ) -> tuple[str, HitRecord]:
    """``(day, record)`` for :meth:`store.hits.HitWriter.write_batch`."""
    if not _day_matches(hit, tz):
        raise bad_input(f"hit {hit.id} does not match its time", "hits")
    try:
        url = canonical_url(hit.url)
    except URLError as exc:
        raise bad_input(f"hit {hit.id} has an address that cannot be read: {exc}", "hits") from exc
    decision: Decision = policy.decide(url, user=user.name, group=user.group,
                                       at=datetime.fromtimestamp(hit.ts, UTC))
    if decision.blocked:
        category, rule = decision.category or "", decision.rule.value
        source, severity = decision.source or "", decision.severity or ""
        alert = decision.safeguarding_alert
    else:
        category, rule, source, severity, alert = (
            "", "off-network", "browser extension", "", False)
    day = hit_id_day(hit.id)
    assert day is not None
    return day, HitRecord(
        id=hit.id, ts=round(hit.ts, 3), user=user.name, group=user.group, client_ip="",
        site=OFF_NETWORK_SITE, host=url.host, path=url.path.split("?", 1)[0][:512], action="block",
        category=category, rule=rule, source=source, severity=severity, alert=alert,
        decrypted=False, method="GET")
