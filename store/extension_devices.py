"""Browser-extension installs signed in as a user: refresh tokens and hit keys.

At sign-in the extension registers its install (a random device id it keeps in
``chrome.storage.local``). The backend answers with a refresh token and a hit key:

* the refresh token (256-bit random; only its SHA-256 digest is stored) lets the extension get
  a new short-lived bearer token after a browser restart, without the learner signing in
  again. It works only together with the device id it was issued for, and is revoked by
  signing out, by :func:`revoke_user_devices` (e.g. when the account is disabled) or when it
  is not used for :data:`DEVICE_TTL_SECONDS`;
* the hit key (256-bit random) signs every off-network block the extension reports, so the
  backend accepts a hit only with a navigation token made by that install.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import time
from dataclasses import dataclass

from redis.asyncio import Redis

from store.keys import Keys

DEVICE_ID = re.compile(r"[A-Za-z0-9_-]{16,64}")
DEVICE_TTL_SECONDS = 30 * 86400
"""An install not seen for 30 days must sign in again."""


@dataclass(frozen=True)
class DeviceGrant:
    device_id: str
    refresh_token: str
    hit_key: bytes


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def _s(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


async def register_device(redis: Redis, keys: Keys, user: str, device_id: str) -> DeviceGrant:
    """A fresh grant for ``device_id`` signed in as ``user`` (replacing any earlier one)."""
    if not DEVICE_ID.fullmatch(device_id):
        raise ValueError("a device id is 16-64 letters, digits, - or _")
    await revoke_device(redis, keys, device_id)
    refresh_token = secrets.token_urlsafe(32)
    hit_key = secrets.token_bytes(32)
    async with redis.pipeline(transaction=True) as pipe:
        pipe.hset(keys.extension_device(device_id), mapping={
            "user": user, "refresh": _digest(refresh_token), "hit_key": hit_key.hex(),
            "created": str(time.time())})
        pipe.expire(keys.extension_device(device_id), DEVICE_TTL_SECONDS)
        pipe.sadd(keys.extension_devices(user), device_id)
        pipe.expire(keys.extension_devices(user), DEVICE_TTL_SECONDS)
        await pipe.execute()
    return DeviceGrant(device_id, refresh_token, hit_key)


async def _device(redis: Redis, keys: Keys, device_id: str) -> dict[str, str] | None:
    if not DEVICE_ID.fullmatch(device_id):
        return None
    data = await redis.hgetall(keys.extension_device(device_id))
    return {_s(k): _s(v) for k, v in data.items()} if data else None


async def user_for_refresh(redis: Redis, keys: Keys, device_id: str, refresh_token: str
                           ) -> str | None:
    """The user name a valid (device id, refresh token) pair belongs to, else None. A use
    extends the grant's life."""
    if not refresh_token or len(refresh_token) > 200:
        return None
    device = await _device(redis, keys, device_id)
    if device is None or not hmac.compare_digest(device.get("refresh", ""),
                                                 _digest(refresh_token)):
        return None
    await redis.expire(keys.extension_device(device_id), DEVICE_TTL_SECONDS)
    return device.get("user") or None


async def device_user(redis: Redis, keys: Keys, device_id: str) -> str | None:
    """The user an install is signed in as, or None."""
    device = await _device(redis, keys, device_id)
    return device.get("user") or None if device else None


async def hit_key_for(redis: Redis, keys: Keys, device_id: str, user: str) -> bytes | None:
    """The hit key of ``user``'s install ``device_id``, or None (unknown, or someone else's)."""
    device = await _device(redis, keys, device_id)
    if device is None or device.get("user") != user:
        return None
    try:
        return bytes.fromhex(device.get("hit_key", ""))
    except ValueError:
        return None


async def revoke_device(redis: Redis, keys: Keys, device_id: str) -> bool:
    device = await _device(redis, keys, device_id)
    if device is None:
        return False
    async with redis.pipeline(transaction=True) as pipe:
        pipe.delete(keys.extension_device(device_id))
        pipe.srem(keys.extension_devices(device.get("user", "")), device_id)
        await pipe.execute()
    return True


async def revoke_user_devices(redis: Redis, keys: Keys, user: str) -> int:
    """End every extension install's sign-in for ``user``; returns how many."""
    ids = [_s(i) for i in await redis.smembers(keys.extension_devices(user))]
    async with redis.pipeline(transaction=True) as pipe:
        for device_id in ids:
            pipe.delete(keys.extension_device(device_id))
        pipe.delete(keys.extension_devices(user))
        await pipe.execute()
    return len(ids)


def navigation_token(hit_key: bytes, hit_id: str, ts: float, url: str) -> str:
    """The token an install mints for one blocked navigation (the extension computes the
    same HMAC-SHA256 in lib/navigation_token.js)."""
    message = f"esafety-hit-v1\n{hit_id}\n{round(ts * 1000)}\n{url}".encode()
    return hmac.new(hit_key, message, hashlib.sha256).hexdigest()
