"""Live policy state shared by every proxy: overrides, class sessions, and the version that
signals changes.

A writer changes an override, bumps ``policy:version`` and publishes the new version on
``policy:changed`` in one script (:data:`_CHANGE`), so the change and its version are one
atomic step: whoever reads the version and the overrides together (one MULTI, as
:class:`LivePolicy` does) never sees a new version with old overrides. A proxy listens on the
channel and also polls the version, so one that missed a message (or was disconnected) still
catches up.

:class:`PolicyState` is that state as one value (version and overrides), in the JSON form a
proxy keeps as its local copy for starting while Redis is unreachable. :class:`LivePolicy` is
the one reader of it: it keeps the last state read and reads the overrides again only when
the version has moved (one GET otherwise).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from redis.asyncio import Redis

from categories.class_sessions import ClassSession
from categories.overrides import Override
from store.keys import Keys

POLICY_STATE_FORMAT = 1
T = TypeVar("T")


@dataclass(frozen=True)
class PolicyState:
    """The live policy at one version: what a proxy applies on top of the list snapshot."""

    version: int
    overrides: tuple[Override, ...]
    sessions: tuple[ClassSession, ...] = ()
    """The class sessions not yet closed (staff opening the network for a lesson)."""

    def to_json(self) -> str:
        return json.dumps({"format": POLICY_STATE_FORMAT, "version": self.version,
                           "overrides": [o.to_dict() for o in self.overrides],
                           "sessions": [s.to_dict() for s in self.sessions]},
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
            session_items = data.get("sessions") or []  # absent in copies before sessions
            if not isinstance(session_items, list):
                raise ValueError("policy state sessions are not a list")
        except (KeyError, TypeError) as exc:
            raise ValueError(f"policy state is incomplete: {exc}") from exc
        overrides = []
        for item in items:
            try:
                overrides.append(Override.from_dict(item))
            except (ValueError, KeyError, TypeError, AttributeError):
                continue
        sessions = []
        for item in session_items:
            try:
                sessions.append(ClassSession.from_dict(item))
            except (ValueError, KeyError, TypeError, AttributeError):
                continue
        return cls(version, tuple(overrides), tuple(sessions))


async def read_policy_state(redis: Redis, keys: Keys) -> PolicyState:
    """The version, the overrides and the open class sessions, read together (one
    transaction)."""
    async with redis.pipeline(transaction=True) as pipe:
        pipe.get(keys.policy_version)
        pipe.hgetall(keys.overrides)
        pipe.hgetall(keys.class_sessions)
        version, raw, raw_sessions = await pipe.execute()
    return PolicyState(int(version) if version is not None else 0, tuple(_parsed(raw)),
                       tuple(parsed_sessions(raw_sessions)))


async def read_version(redis: Redis, keys: Keys) -> int:
    value = await redis.get(keys.policy_version)
    return int(value) if value is not None else 0


# KEYS: overrides, version. ARGV: channel, "set"/"delete"/"bump", override id, JSON.
# Changes an override (or nothing), bumps the version and publishes it, atomically.
_CHANGE = """
if ARGV[2] == 'set' then
  redis.call('HSET', KEYS[1], ARGV[3], ARGV[4])
elseif ARGV[2] == 'delete' then
  redis.call('HDEL', KEYS[1], ARGV[3])
end
local version = redis.call('INCR', KEYS[2])
redis.call('PUBLISH', ARGV[1], version)
return version
"""


async def _change(redis: Redis, keys: Keys, how: str, override_id: str = "",
                  value: str = "") -> int:
    script = redis.register_script(_CHANGE)
    return int(await script(keys=[keys.overrides, keys.policy_version],
                            args=[keys.policy_channel, how, override_id, value]))


async def bump_version(redis: Redis, keys: Keys) -> int:
    """Record a policy change and tell every proxy; return the new version."""
    return await _change(redis, keys, "bump")


def _parsed(raw: dict[Any, Any]) -> list[Override]:
    """The overrides of a stored hash (id -> JSON); a damaged record is skipped here and
    reported by the admin API."""
    return _records(raw, Override.from_dict)


def _records(raw: dict[Any, Any], parse: Callable[[Any], T]) -> list[T]:
    out = []
    for value in raw.values():
        try:
            out.append(parse(json.loads(value)))
        except (ValueError, KeyError, TypeError, AttributeError):
            continue
    return out


def parsed_sessions(raw: dict[Any, Any]) -> list[ClassSession]:
    """The class sessions of a stored hash (id -> JSON); a damaged one is skipped."""
    return _records(raw, ClassSession.from_dict)


async def read_overrides(redis: Redis, keys: Keys) -> list[Override]:
    return _parsed(await redis.hgetall(keys.overrides))


async def save_override(redis: Redis, keys: Keys, override: Override) -> int:
    """Write an override, bump the version and publish it (one atomic step)."""
    return await _change(redis, keys, "set", override.id, json.dumps(override.to_dict()))


async def delete_override(redis: Redis, keys: Keys, override_id: str) -> int:
    return await _change(redis, keys, "delete", override_id)


def _s(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


class LivePolicy:
    """The live policy (overrides and version) of one deployment: one reader, cached by
    version, and the writes that bump it.

    :meth:`state` costs one GET while the version stands still, and one MULTI (version and
    overrides together) when it has moved. A proxy's policy sync could use it as is: on each
    poll (or ``policy:changed`` message) call :meth:`changed_since` with the version it
    holds and apply the state it returns, if any."""

    def __init__(self, redis: Redis, keys: Keys) -> None:
        self._redis = redis
        self._keys = keys
        self._cached: PolicyState | None = None

    async def version(self) -> int:
        return await read_version(self._redis, self._keys)

    async def state(self) -> PolicyState:
        """The current version and overrides (read again only when the version moved)."""
        cached = self._cached
        if cached is not None:
            return await self.changed_since(cached.version) or cached
        return await self._read()

    async def changed_since(self, version: int) -> PolicyState | None:
        """None while the version is still ``version`` (one GET), else the current state,
        version and overrides read together. What a proxy's poll needs: it holds
        ``version`` and swaps its copy for the state returned. Only reads (GET, HGETALL in
        MULTI), so the proxy's Redis user may call it."""
        if await self.version() == version:
            return None
        return await self._read()

    async def _read(self) -> PolicyState:
        fresh = await read_policy_state(self._redis, self._keys)
        if self._cached is None or fresh.version >= self._cached.version:
            self._cached = fresh
        return fresh

    async def stored(self) -> dict[str, str]:
        """Every override as stored (id -> JSON), damaged ones included, for the admin list."""
        raw = await self._redis.hgetall(self._keys.overrides)
        return {_s(k): _s(v) for k, v in raw.items()}

    async def stored_one(self, override_id: str) -> str | None:
        raw = await self._redis.hget(self._keys.overrides, override_id)
        return _s(raw) if raw is not None else None

    async def new_override_id(self) -> str:
        return f"ovr-{int(await self._redis.incr(self._keys.sequence('override')))}"

    async def save_override(self, override: Override) -> int:
        return await save_override(self._redis, self._keys, override)

    async def delete_override(self, override_id: str) -> int:
        return await delete_override(self._redis, self._keys, override_id)

    async def bump_version(self) -> int:
        return await bump_version(self._redis, self._keys)
