"""User accounts, password hashes and bearer tokens.

Passwords are hashed with Argon2id (argon2-cffi). Tokens are 256-bit random strings; only
their SHA-256 digest is stored, with a time to live, so a leaked Redis dump holds no usable
token.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import time

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from redis.asyncio import Redis

from store.keys import Keys
from store.records import ROLES, UserRecord

_HASHER = PasswordHasher()
USER_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$")
TOKEN_TTL_SECONDS = 12 * 3600
MIN_PASSWORD_LENGTH = 8
# A hash to verify against when the user does not exist, so timing does not reveal names.
_DUMMY_HASH = _HASHER.hash("not a real password")


class AccountError(ValueError):
    pass


def hash_password(password: str) -> str:
    if len(password) < MIN_PASSWORD_LENGTH:
        raise AccountError(f"passwords need at least {MIN_PASSWORD_LENGTH} characters")
    return _HASHER.hash(password)


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def validate_user_fields(name: str, role: str) -> None:
    if not USER_NAME.match(name):
        raise AccountError("user names are 1-64 letters, digits, and . _ @ -")
    if role not in ROLES:
        raise AccountError(f"role must be one of: {', '.join(ROLES)}")


async def get_user(redis: Redis, keys: Keys, name: str) -> UserRecord | None:
    if not USER_NAME.match(name):
        return None
    data = await redis.hgetall(keys.user(name))
    if not data:
        return None
    return UserRecord.from_hash({_s(k): _s(v) for k, v in data.items()})


def _s(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


async def save_user(redis: Redis, keys: Keys, user: UserRecord) -> None:
    validate_user_fields(user.name, user.role)
    async with redis.pipeline(transaction=True) as pipe:
        pipe.hset(keys.user(user.name), mapping=user.to_hash())  # type: ignore[arg-type]
        pipe.sadd(keys.users, user.name)
        await pipe.execute()


async def create_user(redis: Redis, keys: Keys, name: str, role: str, group: str,
                      password: str, display_name: str = "") -> UserRecord:
    validate_user_fields(name, role)
    user = UserRecord(name=name, role=role, group=group, password_hash=hash_password(password),
                      created_at=time.time(), display_name=display_name)
    await save_user(redis, keys, user)
    return user


async def verify_password(redis: Redis, keys: Keys, name: str, password: str) -> UserRecord | None:
    user = await get_user(redis, keys, name)
    try:
        _HASHER.verify(user.password_hash if user else _DUMMY_HASH, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return None
    if user is None or user.disabled:
        return None
    return user


async def issue_token(redis: Redis, keys: Keys, name: str, ttl: int = TOKEN_TTL_SECONDS) -> str:
    token = secrets.token_urlsafe(32)
    digest = token_digest(token)
    async with redis.pipeline(transaction=True) as pipe:
        pipe.set(keys.token(digest), name, ex=ttl)
        pipe.sadd(keys.user_tokens(name), digest)
        pipe.expire(keys.user_tokens(name), ttl)
        await pipe.execute()
    return token


async def user_for_token(redis: Redis, keys: Keys, token: str) -> UserRecord | None:
    if not token or len(token) > 200:
        return None
    name = await redis.get(keys.token(token_digest(token)))
    if name is None:
        return None
    user = await get_user(redis, keys, _s(name))
    if user is None or user.disabled:
        return None
    return user


async def revoke_token(redis: Redis, keys: Keys, token: str) -> None:
    digest = token_digest(token)
    name = await redis.get(keys.token(digest))
    async with redis.pipeline(transaction=True) as pipe:
        pipe.delete(keys.token(digest))
        if name is not None:
            pipe.srem(keys.user_tokens(_s(name)), digest)
        await pipe.execute()


async def revoke_all_tokens(redis: Redis, keys: Keys, name: str) -> int:
    digests = await redis.smembers(keys.user_tokens(name))
    async with redis.pipeline(transaction=True) as pipe:
        for digest in digests:
            pipe.delete(keys.token(_s(digest)))
        pipe.delete(keys.user_tokens(name))
        await pipe.execute()
    return len(digests)
