"""Live policy state shared by every proxy: overrides, and the version that signals changes.

A writer changes state, then bumps ``policy:version`` and publishes the new version on
``policy:changed`` in one transaction. A proxy listens on the channel and also polls the
version, so one that missed a message (or was disconnected) still catches up.
"""

from __future__ import annotations

import json

from redis.asyncio import Redis

from categories.overrides import Override
from store.keys import Keys


async def read_version(redis: Redis, keys: Keys) -> int:
    value = await redis.get(keys.policy_version)
    return int(value) if value is not None else 0


async def bump_version(redis: Redis, keys: Keys) -> int:
    """Record a policy change and tell every proxy; return the new version."""
    version = int(await redis.incr(keys.policy_version))
    await redis.publish(keys.policy_channel, str(version))
    return version


async def read_overrides(redis: Redis, keys: Keys) -> list[Override]:
    raw = await redis.hgetall(keys.overrides)
    out = []
    for value in raw.values():
        try:
            out.append(Override.from_dict(json.loads(value)))
        except (ValueError, KeyError, TypeError):
            continue  # a damaged record is skipped here and reported by the admin API
    return out


async def save_override(redis: Redis, keys: Keys, override: Override) -> int:
    await redis.hset(keys.overrides, override.id, json.dumps(override.to_dict()))
    return await bump_version(redis, keys)


async def delete_override(redis: Redis, keys: Keys, override_id: str) -> int:
    await redis.hdel(keys.overrides, override_id)
    return await bump_version(redis, keys)
