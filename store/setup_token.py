"""The one-time set-up token: how the first admin account is made from a browser.

While no admin account exists, ``esafety up`` issues a random token (256 bits) at every start
and prints a set-up link carrying it; only its SHA-256 digest is kept, with a time to live, and
each start replaces the previous one. The set-up page creates the first admin only with the
token, and the token is consumed (compared and deleted in one script) when it does.
"""

from __future__ import annotations

import hmac
import secrets

from redis.asyncio import Redis

from store.accounts import token_digest
from store.keys import Keys
from store.records import UserRecord

SETUP_TOKEN_TTL_SECONDS = 24 * 3600

# KEYS: the token digest key. ARGV: the digest offered. Deletes it only when it matches.
_CONSUME = """
local stored = redis.call('GET', KEYS[1])
if stored and stored == ARGV[1] then
  redis.call('DEL', KEYS[1])
  return 1
end
return 0
"""


def _text(value: bytes | str | None) -> str | None:
    return value.decode() if isinstance(value, bytes) else value


def has_admin(users: list[UserRecord]) -> bool:
    """Whether an enabled admin account is among ``users``."""
    return any(user.role == "admin" and not user.disabled for user in users)


class SetupTokens:
    """The set-up token's digest in Redis (one at a time)."""

    def __init__(self, redis: Redis, keys: Keys) -> None:
        self._redis = redis
        self._keys = keys

    async def issue(self, ttl: int = SETUP_TOKEN_TTL_SECONDS) -> str:
        """A new token, replacing any earlier one; only its digest is stored."""
        token = secrets.token_urlsafe(32)
        await self._redis.set(self._keys.setup_token, token_digest(token), ex=ttl)
        return token

    async def is_valid(self, token: str) -> bool:
        if not token or len(token) > 200:
            return False
        stored = _text(await self._redis.get(self._keys.setup_token))
        return stored is not None and hmac.compare_digest(stored, token_digest(token))

    async def consume(self, token: str) -> bool:
        """Delete the token if ``token`` is it; True when it was (so it works only once)."""
        if not token or len(token) > 200:
            return False
        used = await self._redis.eval(_CONSUME, 1, self._keys.setup_token,
                                      token_digest(token))
        return bool(used)

    async def clear(self) -> None:
        await self._redis.delete(self._keys.setup_token)
