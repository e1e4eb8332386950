"""Browser-extension installs signed in as a user: refresh tokens and hit keys.

At sign-in the extension registers its install (a random device id it keeps in
``chrome.storage.local``). The backend answers with a refresh token and a hit key:

* the refresh token (256-bit random; only its SHA-256 digest is stored) lets the extension get
  a new short-lived bearer token after a browser restart, without the learner signing in
  again. It is bound to the install: each use must be signed (ECDSA P-256, a fresh time
  each time) with the install's device key, whose private half the browser cannot export,
  so a refresh token copied elsewhere is useless. It is revoked by signing out, by
  :func:`revoke_user_devices` (e.g. when the account is disabled) or when it is not used for
  :data:`DEVICE_TTL_SECONDS`;
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

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from cryptography.hazmat.primitives.hashes import SHA256
from redis.asyncio import Redis

from store.keys import Keys

DEVICE_ID = re.compile(r"[A-Za-z0-9_-]{16,64}")
DEVICE_TTL_SECONDS = 30 * 86400
"""An install not seen for 30 days must sign in again."""
PROOF_SKEW_SECONDS = 300
PUBLIC_KEY = re.compile(r"04[0-9a-f]{128}")
"""An uncompressed P-256 point, hex (what WebCrypto exports as "raw")."""


@dataclass(frozen=True)
class DeviceGrant:
    device_id: str
    refresh_token: str
    hit_key: bytes


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def _s(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def device_public_key(hex_key: str) -> ec.EllipticCurvePublicKey:
    """The install's public key; raises ValueError when it is not a P-256 point."""
    if not PUBLIC_KEY.fullmatch(hex_key):
        raise ValueError("a device key is an uncompressed P-256 point in hex")
    return ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), bytes.fromhex(hex_key))


def proof_is_valid(hex_key: str, device_id: str, ts: int, sig: str) -> bool:
    """Whether ``sig`` (r||s, hex) signs this device id and time with the install's key."""
    if not re.fullmatch(r"[0-9a-f]{128}", sig):
        return False
    raw = bytes.fromhex(sig)
    der = encode_dss_signature(int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:], "big"))
    try:
        device_public_key(hex_key).verify(
            der, f"esafety-session-v1\n{device_id}\n{ts}".encode(), ec.ECDSA(SHA256()))
    except (InvalidSignature, ValueError):
        return False
    return True


async def register_device(redis: Redis, keys: Keys, user: str, device_id: str,
                          public_key: str, managed_device_id: str = "") -> DeviceGrant:
    """A fresh grant for ``device_id`` signed in as ``user`` (replacing any earlier one),
    bound to the install's ``public_key``. ``managed_device_id`` is the ChromeOS device's id
    where the policy lets the extension read it: the device its hits then name. Raises
    ValueError for a bad id or key."""
    if not DEVICE_ID.fullmatch(device_id):
        raise ValueError("a device id is 16-64 letters, digits, - or _")
    if managed_device_id and not DEVICE_ID.fullmatch(managed_device_id):
        raise ValueError("a managed device id is 16-64 letters, digits, - or _")
    device_public_key(public_key)
    await revoke_device(redis, keys, device_id)
    refresh_token = secrets.token_urlsafe(32)
    hit_key = secrets.token_bytes(32)
    async with redis.pipeline(transaction=True) as pipe:
        pipe.hset(keys.extension_device(device_id), mapping={
            "user": user, "refresh": _digest(refresh_token), "hit_key": hit_key.hex(),
            "public_key": public_key, "last_proof": "0", "created": str(time.time()),
            "managed_device_id": managed_device_id})
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


async def user_for_refresh(redis: Redis, keys: Keys, device_id: str, refresh_token: str,
                           ts: int, sig: str, now: float | None = None) -> str | None:
    """The user name a valid (device id, refresh token, device-key proof) belongs to, else
    None. The proof's time must be recent and later than the last one (no replay). A use
    extends the grant's life."""
    if not refresh_token or len(refresh_token) > 200:
        return None
    device = await _device(redis, keys, device_id)
    if device is None or not hmac.compare_digest(device.get("refresh", ""),
                                                 _digest(refresh_token)):
        return None
    current = time.time() if now is None else now
    if abs(current - ts) > PROOF_SKEW_SECONDS or ts <= int(device.get("last_proof", "0")):
        return None
    if not proof_is_valid(device.get("public_key", ""), device_id, ts, sig):
        return None
    async with redis.pipeline(transaction=True) as pipe:
        pipe.hset(keys.extension_device(device_id), "last_proof", str(ts))
        pipe.expire(keys.extension_device(device_id), DEVICE_TTL_SECONDS)
        await pipe.execute()
    return device.get("user") or None


async def shown_device(redis: Redis, keys: Keys, device_id: str) -> str:
    """The device an install's hits name: the managed ChromeOS device id it registered with,
    else its install id ("" for an unknown install)."""
    device = await _device(redis, keys, device_id)
    if device is None:
        return ""
    return device.get("managed_device_id") or device_id


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


async def bind_token(redis: Redis, keys: Keys, device_id: str, token_digest: str,
                     ttl_seconds: int) -> None:
    """Remember that the bearer token with ``token_digest`` was issued to (or registered)
    install ``device_id``, for as long as the token lives: the proxy then knows the device
    of a browser signed in with it."""
    if not DEVICE_ID.fullmatch(device_id) or ttl_seconds <= 0:
        return
    await redis.set(keys.token_device(token_digest), device_id, ex=ttl_seconds)


async def device_for_token(redis: Redis, keys: Keys, token_digest: str) -> str:
    """The install id a bearer token belongs to, or "" (not an extension's token)."""
    value = await redis.get(keys.token_device(token_digest))
    device_id = _s(value) if value is not None else ""
    return device_id if DEVICE_ID.fullmatch(device_id) else ""


def navigation_token(hit_key: bytes, hit_id: str, ts: float, url: str) -> str:
    """The token an install mints for one blocked navigation (the extension computes the
    same HMAC-SHA256 in lib/navigation_token.js)."""
    message = f"esafety-hit-v1\n{hit_id}\n{round(ts * 1000)}\n{url}".encode()
    return hmac.new(hit_key, message, hashlib.sha256).hexdigest()


class ExtensionDevices:
    """Browser-extension installs signed in as users (the functions above, bound)."""

    def __init__(self, redis: Redis, keys: Keys) -> None:
        self._redis = redis
        self._keys = keys

    async def register(self, user: str, device_id: str, public_key: str,
                       managed_device_id: str = "") -> DeviceGrant:
        return await register_device(self._redis, self._keys, user, device_id, public_key,
                                     managed_device_id)

    async def shown_device(self, device_id: str) -> str:
        return await shown_device(self._redis, self._keys, device_id)

    async def user_for_refresh(self, device_id: str, refresh_token: str, ts: int, sig: str,
                               now: float | None = None) -> str | None:
        return await user_for_refresh(self._redis, self._keys, device_id, refresh_token, ts,
                                      sig, now)

    async def user_of(self, device_id: str) -> str | None:
        return await device_user(self._redis, self._keys, device_id)

    async def hit_key_for(self, device_id: str, user: str) -> bytes | None:
        return await hit_key_for(self._redis, self._keys, device_id, user)

    async def revoke(self, device_id: str) -> bool:
        return await revoke_device(self._redis, self._keys, device_id)

    async def bind_token(self, device_id: str, token_digest: str, ttl_seconds: int) -> None:
        await bind_token(self._redis, self._keys, device_id, token_digest, ttl_seconds)

    async def device_for_token(self, token_digest: str) -> str:
        return await device_for_token(self._redis, self._keys, token_digest)
