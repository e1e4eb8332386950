"""Live policy state shared by every proxy: overrides, and the version that signals changes.

A writer changes state, then bumps ``policy:version`` and publishes the new version on
``policy:changed`` in one transaction. A proxy listens on the channel and also polls the
version, so one that missed a message (or was disconnected) still catches up.

:class:`PolicyState` is that state as one value (version and overrides), in the JSON form a
proxy keeps as its local copy for starting while Redis is unreachable.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis

from categories.overrides import Override
from store.keys import Keys

POLICY_STATE_FORMAT = 1


@dataclass(frozen=True)
class PolicyState:
    """The live policy at one version: what a proxy applies on top of the list snapshot."""

    version: int
    overrides: tuple[Override, ...]

    def to_json(self) -> str:
        return json.dumps({"format": POLICY_STATE_FORMAT, "version": self.version,
                           "overrides": [o.to_dict() for o in self.overrides]},
                          separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> PolicyState:
        """Parse :meth:`to_json`'s output; ValueError when it is not that. A damaged override
        is skipped, as in :func:`read_overrides`."""
        try:
            data: Any = json.loads(text)
            if not isinstance(data, dict) or data.get("format") != POLICY_STATE_FORMAT:
                raise ValueError("not a policy state of a known format")
            version = data["version"]
            if not isinstance(version, int) or isinstance(version, bool) or version < 0:
                raise ValueError("policy state version is not a whole number")
            items = data["overrides"]
            if not isinstance(items, list):
                raise ValueError("policy state overrides are not a list")
        except (KeyError, TypeError) as exc:
            raise ValueError(f"policy state is incomplete: {exc}") from exc
        overrides = []
        for item in items:
            try:
                overrides.append(Override.from_dict(item))
            except (ValueError, KeyError, TypeError, AttributeError):
                continue
        return cls(version, tuple(overrides))


async def read_policy_state(redis: Redis, keys: Keys) -> PolicyState:
    return PolicyState(await read_version(redis, keys), tuple(await read_overrides(redis, keys)))


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
