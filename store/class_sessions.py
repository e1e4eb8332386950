"""Class sessions in the store: open, end, list, and the hours opened.

A session not yet closed sits in ``class-sessions:open``, which every proxy reads with the
overrides (:func:`store.policy_state.read_policy_state`). Opening or ending one changes that
hash, bumps the policy version and publishes it in one script, exactly as an override change
does, so every proxy applies it within its poll interval. A session that runs out needs no
write: proxies compare its end with their clock, and housekeeping moves it out of the open
hash (:meth:`ClassSessions.close_finished`).

Every session, open or closed, is also kept in ``class-sessions:log`` (with its start in
``class-sessions:by-start``) for the session lists and the hours opened, and pruned after the
deployment's retention.
"""

from __future__ import annotations

import json
from dataclasses import replace

from redis.asyncio import Redis

from categories.class_sessions import ClassSession
from store.keys import Keys
from store.policy_state import parsed_sessions

# KEYS: open hash, log hash, by-start zset, policy version. ARGV: channel, "open"/"end",
# session id, JSON, start. Opens or ends a session, bumps the version and publishes it.
_CHANGE = """
if ARGV[2] == 'open' then
  redis.call('HSET', KEYS[1], ARGV[3], ARGV[4])
  redis.call('ZADD', KEYS[3], ARGV[5], ARGV[3])
else
  redis.call('HDEL', KEYS[1], ARGV[3])
end
redis.call('HSET', KEYS[2], ARGV[3], ARGV[4])
local version = redis.call('INCR', KEYS[4])
redis.call('PUBLISH', ARGV[1], version)
return version
"""

MAX_LISTED = 5000
"""At most this many sessions in one list (newest first)."""


class SessionNotOpen(LookupError):
    """The session does not exist, or has already closed."""


class ClassSessions:
    def __init__(self, redis: Redis, keys: Keys) -> None:
        self._redis = redis
        self._keys = keys

    async def new_id(self) -> str:
        return f"cls-{int(await self._redis.incr(self._keys.sequence('class-session')))}"

    async def _change(self, how: str, session: ClassSession) -> int:
        keys = self._keys
        script = self._redis.register_script(_CHANGE)
        return int(await script(
            keys=[keys.class_sessions, keys.class_session_log, keys.class_session_starts,
                  keys.policy_version],
            args=[keys.policy_channel, how, session.id, json.dumps(session.to_dict()),
                  session.starts_at]))

    async def open(self, session: ClassSession) -> int:
        """Store ``session`` and tell every proxy; the new policy version."""
        return await self._change("open", session)

    async def get(self, session_id: str) -> ClassSession | None:
        raw = await self._redis.hget(self._keys.class_session_log, session_id)
        found = parsed_sessions({session_id: raw}) if raw is not None else []
        return found[0] if found else None

    async def end(self, session_id: str, by: str, now: float) -> tuple[ClassSession, int]:
        """End a session early; SessionNotOpen when it is unknown or already closed."""
        session = await self.get(session_id)
        if session is None or session.closes_at <= now:
            raise SessionNotOpen(session_id)
        ended = replace(session, ended_at=now, ended_by=by)
        return ended, await self._change("end", ended)

    async def open_now(self, now: float) -> list[ClassSession]:
        """The sessions still open at ``now``, oldest first (a read only)."""
        sessions = parsed_sessions(await self._redis.hgetall(self._keys.class_sessions))
        return sorted((s for s in sessions if s.closes_at > now), key=lambda s: s.starts_at)

    async def close_finished(self, now: float) -> int:
        """Move the sessions that ran out by ``now`` out of the open hash (housekeeping; no
        version bump: proxies already ignore them). How many."""
        sessions = parsed_sessions(await self._redis.hgetall(self._keys.class_sessions))
        finished = [s.id for s in sessions if s.closes_at <= now]
        if finished:
            await self._redis.hdel(self._keys.class_sessions, *finished)
        return len(finished)

    async def started_between(self, start: float, end: float) -> list[ClassSession]:
        """Every kept session that started in ``[start, end)``, newest first (at most
        :data:`MAX_LISTED`)."""
        found = await self._redis.zrevrangebyscore(
            self._keys.class_session_starts, f"({end}", start, start=0, num=MAX_LISTED)
        ids = [i for i in found if isinstance(i, (str, bytes))]
        if not ids:
            return []
        values = await self._redis.hmget(self._keys.class_session_log, ids)
        raw = {i: v for i, v in zip(ids, values, strict=True) if v is not None}
        return sorted(parsed_sessions(raw), key=lambda s: (-s.starts_at, s.id))

    async def prune(self, before: float) -> int:
        """Forget sessions that started before ``before`` (the retention); how many."""
        ids = await self._redis.zrangebyscore(self._keys.class_session_starts, "-inf",
                                              f"({before}")
        if not ids:
            return 0
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.hdel(self._keys.class_session_log, *ids)
            pipe.zrem(self._keys.class_session_starts, *ids)
            pipe.hdel(self._keys.class_sessions, *ids)
            await pipe.execute()
        return len(ids)

