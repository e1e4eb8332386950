"""Login rate limiting: failed attempts counted per user name and per client address.

Counters are Redis strings with a time to live, so every admin host shares them. A name or
address over its limit is refused (HTTP 429) until its window runs out, even with the right
password, so guessing cannot continue at a slower pace against a known-good answer.
"""

from __future__ import annotations

from dataclasses import dataclass

from redis.asyncio import Redis

from store.keys import Keys


@dataclass(frozen=True)
class LoginLimits:
    per_user: int = 5
    per_ip: int = 30
    window_seconds: int = 900


async def retry_after(redis: Redis, keys: Keys, limits: LoginLimits, user: str, ip: str
                      ) -> int | None:
    """Seconds until a login for ``user`` from ``ip`` may be tried again, or None if allowed."""
    user_key = keys.rate_limit("login-user", user.lower())
    ip_key = keys.rate_limit("login-ip", ip)
    async with redis.pipeline(transaction=False) as pipe:
        pipe.get(user_key)
        pipe.get(ip_key)
        pipe.ttl(user_key)
        pipe.ttl(ip_key)
        user_count, ip_count, user_ttl, ip_ttl = await pipe.execute()
    waits = []
    if user_count is not None and int(user_count) >= limits.per_user:
        waits.append(max(1, int(user_ttl)))
    if ip_count is not None and int(ip_count) >= limits.per_ip:
        waits.append(max(1, int(ip_ttl)))
    return max(waits) if waits else None


async def record_failure(redis: Redis, keys: Keys, limits: LoginLimits, user: str, ip: str
                         ) -> None:
    async with redis.pipeline(transaction=True) as pipe:
        for key in (keys.rate_limit("login-user", user.lower()), keys.rate_limit("login-ip", ip)):
            pipe.incr(key)
            pipe.expire(key, limits.window_seconds, nx=True)
        await pipe.execute()


async def clear_user(redis: Redis, keys: Keys, user: str) -> None:
    """A successful login resets the user's counter (not the address's)."""
    await redis.delete(keys.rate_limit("login-user", user.lower()))
