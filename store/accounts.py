"""User accounts, password hashes and bearer tokens.

Passwords are hashed with Argon2id (argon2-cffi). Tokens are 256-bit random strings; only
their SHA-256 digest is stored, with a time to live, so a leaked Redis dump holds no usable
token.

Argon2 is deliberately slow (tens of milliseconds of CPU), so hashing and verifying run on a
small thread pool of their own, never on the event loop, and at most two at a time (each
check also takes 64 MiB).

Every change to who a signed-in user is (account saved: disabled, enabled, role, group or
password changed; tokens revoked) bumps ``accounts:version`` and publishes it, so proxies
re-check the identities bound to open connections.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
import secrets
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from redis.asyncio import Redis
from redis.asyncio.client import Pipeline

from store.extension_devices import revoke_user_devices
from store.keys import Keys
from store.records import ROLES, UserRecord

_HASHER = PasswordHasher()
USER_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$")
TOKEN_TTL_SECONDS = 12 * 3600
SSO_ATTEMPT_SECONDS = 600
"""How long a single sign-on may take between leaving for the provider and coming back."""
MIN_PASSWORD_LENGTH = 8
# A hash to verify against when the user does not exist, so timing does not reveal names.
_DUMMY_HASH = _HASHER.hash("not a real password")
_HASH_POOL = ThreadPoolExecutor(max_workers=2, thread_name_prefix="esafety-argon2")
T = TypeVar("T")


async def _off_loop(work: Callable[[], T]) -> T:
    return await asyncio.get_running_loop().run_in_executor(_HASH_POOL, work)


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


# KEYS: version, changes. ARGV: user name. Bumps the version and records who changed at it.
_BUMP = """
local version = redis.call('INCR', KEYS[1])
redis.call('ZADD', KEYS[2], version, ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', version - tonumber(ARGV[2]))
return version
"""
# KEYS: a claim. ARGV: its holder. Deletes the claim only when that holder still holds it.
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""
CHANGES_KEPT = 10_000
"""How many account changes are remembered by version (a proxy further behind re-checks all)."""


def _bump(pipe: Pipeline, keys: Keys, name: str) -> None:
    pipe.eval(_BUMP, 2, keys.accounts_version, keys.accounts_changes, name, CHANGES_KEPT)


async def read_accounts_version(redis: Redis, keys: Keys) -> int:
    value = await redis.get(keys.accounts_version)
    return int(value) if value is not None else 0


async def accounts_changed_since(redis: Redis, keys: Keys, version: int
                                 ) -> tuple[int, set[str] | None]:
    """(current version, names of users changed after ``version``); None instead of names
    when that history is no longer kept (or the version went backwards): assume everyone."""
    async with redis.pipeline(transaction=True) as pipe:
        pipe.get(keys.accounts_version)
        pipe.zrangebyscore(keys.accounts_changes, f"({version}", "+inf")
        current_raw, names = await pipe.execute()
    current = int(current_raw) if current_raw is not None else 0
    if current == version:
        return current, set()
    if version < 0 or current < version or version < current - CHANGES_KEPT:
        return current, None
    return current, {_s(name) for name in names}


async def _announce(redis: Redis, keys: Keys, version: int) -> None:
    await redis.publish(keys.accounts_channel, str(version))


async def save_user(redis: Redis, keys: Keys, user: UserRecord) -> None:
    """Write an account; proxies re-check signed-in connections of changed users."""
    validate_user_fields(user.name, user.role)
    async with redis.pipeline(transaction=True) as pipe:
        pipe.hset(keys.user(user.name), mapping=user.to_hash())  # type: ignore[arg-type]
        pipe.sadd(keys.users, user.name)
        _bump(pipe, keys, user.name)
        results = await pipe.execute()
    await _announce(redis, keys, int(results[-1]))


async def create_user(redis: Redis, keys: Keys, name: str, role: str, group: str,
                      password: str, display_name: str = "") -> UserRecord:
    validate_user_fields(name, role)
    password_hash = await _off_loop(lambda: hash_password(password))
    user = UserRecord(name=name, role=role, group=group, password_hash=password_hash,
                      created_at=time.time(), display_name=display_name)
    await save_user(redis, keys, user)
    return user


def _password_matches(stored: str, password: str) -> bool:
    try:
        return _HASHER.verify(stored, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


async def verify_password(redis: Redis, keys: Keys, name: str, password: str) -> UserRecord | None:
    """The account if ``password`` is right and the account is enabled (checked off the loop)."""
    user = await get_user(redis, keys, name)
    stored = user.password_hash if user and user.password_hash else _DUMMY_HASH
    if not await _off_loop(lambda: _password_matches(stored, password)):
        return None
    # A single sign-on account (or any without a password) never signs in with one: not even
    # with the dummy hash's own password.
    if user is None or user.disabled or user.sso or not user.password_hash:
        return None
    return user


def password_mark(user: UserRecord) -> str:
    """A fingerprint of the stored hash: it changes when the password does."""
    return hashlib.sha256(user.password_hash.encode()).hexdigest()[:32]


async def user_still_signed_in(redis: Redis, keys: Keys, name: str, *,
                               digest: str | None = None, mark: str | None = None
                               ) -> UserRecord | None:
    """Re-check a sign-in made earlier, without the password: the account, if it is still
    enabled and the token (by digest) is still live or the password (by ``mark``) unchanged."""
    user = await get_user(redis, keys, name)
    if user is None or user.disabled:
        return None
    if digest is not None:
        owner = await redis.get(keys.token(digest))
        return user if owner is not None and _s(owner) == name else None
    return user if mark is not None and mark == password_mark(user) else None


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
            _bump(pipe, keys, _s(name))
        results = await pipe.execute()
    if name is not None:
        await _announce(redis, keys, int(results[-1]))


async def revoke_all_tokens(redis: Redis, keys: Keys, name: str) -> int:
    """End every sign-in of ``name``: bearer tokens, browser sessions, and the browser
    extension's installs (their refresh tokens); returns how many tokens and installs."""
    installs = await revoke_user_devices(redis, keys, name)
    digests = await redis.smembers(keys.user_tokens(name))
    async with redis.pipeline(transaction=True) as pipe:
        for digest in digests:
            pipe.delete(keys.token(_s(digest)))
        pipe.delete(keys.user_tokens(name))
        _bump(pipe, keys, name)
        results = await pipe.execute()
    await _announce(redis, keys, int(results[-1]))
    return len(digests) + installs


async def remember_sso_attempt(redis: Redis, keys: Keys, state: str,
                               attempt: dict[str, str]) -> None:
    """Keep what a single sign-on needs when the provider sends the browser back, by the
    digest of its ``state`` (the state itself is never stored)."""
    await redis.set(keys.sso_attempt(token_digest(state)), json.dumps(attempt),
                    ex=SSO_ATTEMPT_SECONDS)


async def take_sso_attempt(redis: Redis, keys: Keys, state: str) -> dict[str, str] | None:
    """The attempt ``state`` names, once (it is deleted as it is read); None if there is none
    (wrong, replayed or too old)."""
    if not state or len(state) > 200:
        return None
    raw = await redis.getdel(keys.sso_attempt(token_digest(state)))
    if raw is None:
        return None
    data = json.loads(raw)
    return {str(k): str(v) for k, v in data.items()} if isinstance(data, dict) else None


class Accounts:
    """User accounts and their bearer tokens (the functions above, bound to one store)."""

    def __init__(self, redis: Redis, keys: Keys) -> None:
        self._redis = redis
        self._keys = keys

    async def get(self, name: str) -> UserRecord | None:
        return await get_user(self._redis, self._keys, name)

    async def names(self) -> list[str]:
        """Every user name, sorted."""
        return sorted(_s(n) for n in await self._redis.smembers(self._keys.users))

    async def all(self) -> list[UserRecord]:
        """Every account, by name."""
        names = await self.names()
        async with self._redis.pipeline(transaction=False) as pipe:
            for name in names:
                pipe.hgetall(self._keys.user(name))
            replies = await pipe.execute()
        return [UserRecord.from_hash({_s(k): _s(v) for k, v in data.items()})
                for data in replies if data]

    async def save(self, user: UserRecord) -> None:
        await save_user(self._redis, self._keys, user)

    async def create(self, name: str, role: str, group: str, password: str,
                     display_name: str = "") -> UserRecord:
        return await create_user(self._redis, self._keys, name, role, group, password,
                                 display_name)

    async def verify_password(self, name: str, password: str) -> UserRecord | None:
        return await verify_password(self._redis, self._keys, name, password)

    async def issue_token(self, name: str, ttl: int = TOKEN_TTL_SECONDS) -> str:
        return await issue_token(self._redis, self._keys, name, ttl)

    async def user_for_token(self, token: str) -> UserRecord | None:
        return await user_for_token(self._redis, self._keys, token)

    async def revoke_token(self, token: str) -> None:
        await revoke_token(self._redis, self._keys, token)

    async def revoke_all_tokens(self, name: str) -> int:
        return await revoke_all_tokens(self._redis, self._keys, name)

    async def claim_directory_sync_turn(self, holder: str, seconds: float) -> bool:
        """True for the one caller (of every admin host) that claims this sync interval."""
        return bool(await self._redis.set(self._keys.directory_sync_due, holder, nx=True,
                                          px=max(1, int(seconds * 1000))))

    async def claim_directory_sync_run(self, holder: str, seconds: float) -> bool:
        """True when no other directory sync is running (held until released, at most
        ``seconds``)."""
        return bool(await self._redis.set(self._keys.directory_sync_running, holder, nx=True,
                                          px=max(1, int(seconds * 1000))))

    async def release_directory_sync_run(self, holder: str) -> None:
        """Give the running claim back, if ``holder`` still holds it."""
        await self._redis.eval(_RELEASE, 1, self._keys.directory_sync_running, holder)

    async def remember_sso_attempt(self, state: str, attempt: dict[str, str]) -> None:
        await remember_sso_attempt(self._redis, self._keys, state, attempt)

    async def take_sso_attempt(self, state: str) -> dict[str, str] | None:
        return await take_sso_attempt(self._redis, self._keys, state)
