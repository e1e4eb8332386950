"""Periodic upkeep in the admin process: retention, removing expired overrides and expired
sign-in address bindings, and indexing workflow records an older release wrote (when that
could not be done at start).

Retention (``retention`` in the config):

* hits older than ``hits_days`` leave the Redis stream (``XTRIM MINID``) and the log store;
  unblock requests follow the same limit;
* safeguarding alerts and accidental-hit reports are safeguarding records and are kept for
  ``audit_days``, as is the audit log itself (trimmed whole entries, never edited);
* daily counters and block references expire by their Redis TTLs, set when written.

An approval's override stops applying at its ``expires_at`` by itself (``Override.applies_to``
checks the time); housekeeping then deletes it, bumps the policy version, marks the request
``expired`` and records that in the audit log.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from dataclasses import replace

from redis.exceptions import RedisError

from admin_api.context import AdminState
from admin_api.log_store import LogStoreClosed
from categories.overrides import Override
from store import unblock_requests
from store.redis_store import Store

log = logging.getLogger(__name__)
OVERRIDE_EVERY_SECONDS = 30.0
RETENTION_EVERY_SECONDS = 3600.0


async def remove_expired_overrides(state: AdminState, now: float | None = None) -> list[str]:
    now = time.time() if now is None else now
    store = state.store
    raw = await store.policy.stored()
    removed = []
    for override_id, value in raw.items():
        try:
            override = Override.from_dict(json.loads(value))
        except (ValueError, KeyError, TypeError):
            continue
        if override.expires_at is None or override.expires_at > now:
            continue
        await store.policy.delete_override(override.id)
        removed.append(override_id)
        if override.request_id:
            request = await store.unblock_requests.get(override.request_id)
            if request is not None and request.status == unblock_requests.APPROVED:
                await store.unblock_requests.save_decision(
                    replace(request, status=unblock_requests.EXPIRED, updated_at=now))
        await store.audit.append(actor="system", action="override.expire",
                                 target=override.id, before=override.to_dict())
    return removed


async def apply_retention(state: AdminState, now: float | None = None) -> dict[str, int]:
    now = time.time() if now is None else now
    config = state.settings.config
    hits_cutoff = now - config.retention_hits_days * 86400
    records_cutoff = now - config.retention_audit_days * 86400
    store = state.store
    done = {
        "stream": await store.hits.trim_older_than(int(hits_cutoff * 1000)),
        "log_store": await asyncio.to_thread(state.log_store.delete_older_than, hits_cutoff),
        "unblock_requests": await store.unblock_requests.delete_older_than(hits_cutoff),
        "alerts": await store.alerts.delete_older_than(records_cutoff),
        "reports": await store.accident_reports.delete_older_than(records_cutoff),
        "audit": await store.audit.trim_older_than(int(records_cutoff * 1000)),
        "class_sessions": await store.class_sessions.prune(hits_cutoff),
    }
    if any(done.values()):
        log.info("retention: %s", done)
    return done


async def build_indexes(store: Store) -> None:
    """Index the workflow records an older release wrote (a few GETs once done)."""
    built = await store.build_indexes()
    if any(built.values()):
        log.info("indexed records written by an older release: %s", built)


async def run(state: AdminState, stop: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()
    next_retention = 0.0
    while not stop.is_set():
        try:
            await build_indexes(state.store)
            await remove_expired_overrides(state)
            await state.store.address_bindings.prune()
            await state.store.class_sessions.close_finished(time.time())
            if loop.time() >= next_retention:
                await apply_retention(state)
                next_retention = loop.time() + RETENTION_EVERY_SECONDS
        except asyncio.CancelledError:
            raise
        except LogStoreClosed:
            return  # the app is stopping
        except (RedisError, OSError) as exc:
            log.warning("housekeeping: %s; retrying", exc)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), OVERRIDE_EVERY_SECONDS)
