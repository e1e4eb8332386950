"""Moving keys written before the hash tag to their hash-tagged names, once.

Versions before Redis Cluster support kept a deployment's keys under the configured prefix
as it was (``esafety:hits``); now they are under it as a hash tag (``{esafety}:hits``, see
:mod:`store.keys`). :func:`move_legacy_keys` renames every old key to its new name with
``RENAMENX``, so it is safe to run again and from several processes at once: a key is moved
by exactly one of them, and a key whose new name already exists is never overwritten (it is
left where it is and reported as kept, for an operator to look at).

Only keys of the families :class:`store.keys.Keys` spells are moved, so the keys of another
deployment whose prefix merely starts with this one (``esafety:centre-b:hits``) stay put.

The admin service and ``esafety up`` run it at start; ``esafety redis migrate-keys`` runs it
by hand. Old keys only ever exist on a single Redis (or a Sentinel master): the old layout
could not run on a Redis Cluster, where the rename would cross slots.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from redis.asyncio import Redis
from redis.exceptions import RedisError, ResponseError

from store.connection import connect
from store.keys import Keys, legacy_prefix

log = logging.getLogger(__name__)

KEY_FAMILIES = frozenset({
    "hits", "hitref", "hitbatch", "count", "tophosts", "policy", "overrides", "seq", "user",
    "users", "token", "usertokens", "accounts", "ratelimit", "unblock", "report", "alert",
    "audit", "proxy", "extdevice", "extdevices", "setup",
})
"""The first part of every key name :class:`Keys` spells (after the prefix)."""


@dataclass(frozen=True)
class MigrationSummary:
    moved: int
    kept: tuple[str, ...]
    """Old keys left in place because their new name was already taken."""


def _glob_escape(text: str) -> str:
    return "".join("\\" + c if c in "*?[]\\" else c for c in text)


def _family(relative: str) -> str:
    return relative.partition(":")[0]


async def move_legacy_keys(redis: Redis, configured_prefix: str) -> MigrationSummary:
    """Rename the keys under the pre-hash-tag spelling of ``configured_prefix`` (the
    ``redis_prefix`` setting) to their :class:`Keys` names; ``redis`` must decode responses."""
    old = legacy_prefix(configured_prefix)
    if old is None:
        return MigrationSummary(0, ())
    new = Keys(configured_prefix).prefix
    found = [key async for key in redis.scan_iter(match=_glob_escape(old) + "*", count=1000)]
    moved, kept = 0, []
    for key in found:
        name = key.decode() if isinstance(key, bytes) else str(key)
        relative = name[len(old):]
        if _family(relative) not in KEY_FAMILIES:
            continue
        try:
            if await redis.renamenx(name, new + relative):
                moved += 1
            elif await redis.exists(name):
                kept.append(name)
        except ResponseError as exc:
            if "no such key" in str(exc).lower():
                continue  # moved by another process between SCAN and RENAMENX
            raise
    if moved:
        log.info("moved %d Redis keys from %s* to %s*", moved, old, new)
    if kept:
        log.warning("%d Redis keys under %s* were not moved because their new names under %s* "
                    "already exist (first: %s); move or delete them by hand",
                    len(kept), old, new, kept[0])
    return MigrationSummary(moved, tuple(kept))


async def move_legacy_keys_at(url: str, configured_prefix: str) -> MigrationSummary | None:
    """:func:`move_legacy_keys` on the Redis at ``url`` (a user allowed both spellings: the
    admin user). None, with a warning logged, when Redis cannot be reached or refuses: the
    next start tries again."""
    if legacy_prefix(configured_prefix) is None:
        return MigrationSummary(0, ())
    client = connect(url)
    try:
        return await move_legacy_keys(client, configured_prefix)
    except (RedisError, OSError) as exc:
        log.warning("Redis keys of a version before the hash tag not moved (%s); the next "
                    "start of the admin service tries again", exc)
        return None
    finally:
        await client.aclose()
