"""Sign-in limits shared by the admin login and the proxy's 407 sign-in.

A password guess is counted against the pair (user name, client address) *before* the
password is checked, in one atomic Redis script, so parallel guesses cannot slip past the
limit. After ``per_pair`` failures of a pair, that pair waits ``base_lock_seconds``, and the
wait doubles with each further failure, up to ``max_lock_seconds``. While a pair waits, even
the right password is refused (HTTP 429 at the admin API, 407 at the proxy), so guessing
cannot continue against a known-good answer.

Because the lock is per pair, a learner who guesses the DSL's password from their laptop locks
only that laptop out of that account: the DSL at their own desk still signs in. A separate cap
counts every attempt from one address across all names (password spraying): over
``per_ip`` in ``window_seconds``, the address is refused for the rest of the window.

A success clears the pair's failures. Counters live in Redis so every proxy and admin host
shares them; keys are spelled in :mod:`store.keys`.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from redis.asyncio import Redis

from store.keys import Keys


@dataclass(frozen=True)
class LoginLimits:
    per_pair: int = 5
    """Failures of one user name from one address before it must wait."""
    base_lock_seconds: int = 30
    """The first wait; each further failure doubles it."""
    max_lock_seconds: int = 900
    per_ip: int = 30
    """Sign-in attempts from one address, across all names, per window."""
    window_seconds: int = 900
    """How long failures are remembered after the last one (and the address cap's window)."""


# KEYS: pair hash, address counter, address lock.
# ARGV: per_pair, base_lock, max_lock, per_ip, window.
# Returns {0, 0} when the attempt may go ahead (and has been counted), else {1, seconds}.
_RESERVE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local per_pair, base, cap = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local per_ip, window = tonumber(ARGV[4]), tonumber(ARGV[5])
local address_lock = redis.call('PTTL', KEYS[3])
if address_lock > 0 then
  return {1, math.ceil(address_lock / 1000)}
end
local locked_until = tonumber(redis.call('HGET', KEYS[1], 'until') or '0')
if locked_until > now then
  return {1, math.ceil(locked_until - now)}
end
local fails = redis.call('HINCRBY', KEYS[1], 'fails', 1)
local keep = window
if fails >= per_pair then
  local wait = math.min(cap, base * 2 ^ (fails - per_pair))
  redis.call('HSET', KEYS[1], 'until', tostring(now + wait))
  keep = math.max(window, math.ceil(wait) + 1)
end
redis.call('EXPIRE', KEYS[1], keep)
local attempts = redis.call('INCR', KEYS[2])
if attempts == 1 then
  redis.call('EXPIRE', KEYS[2], window)
end
if attempts >= per_ip then
  local left = redis.call('TTL', KEYS[2])
  if left < 1 then left = window end
  redis.call('SET', KEYS[3], '1', 'EX', left)
end
return {0, 0}
"""

# KEYS: pair hash, address counter.
_SUCCEED = """
redis.call('DEL', KEYS[1])
local attempts = tonumber(redis.call('GET', KEYS[2]) or '0')
if attempts > 0 then
  redis.call('DECR', KEYS[2])
end
return 1
"""


def address_key(address: str) -> str:
    """One spelling per client address (an IPv4-mapped IPv6 address counts as the IPv4 one)."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address[:64] or "unknown"
    if ip.version == 6 and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return str(ip)


def _pair_keys(keys: Keys, user: str, address: str) -> list[str]:
    addr = address_key(address)
    return [keys.signin_pair(user[:64].lower(), addr), keys.signin_address(addr),
            keys.signin_address_lock(addr)]


async def reserve_attempt(redis: Redis, keys: Keys, limits: LoginLimits, user: str,
                          address: str) -> int | None:
    """Count a password attempt for ``user`` from ``address`` before checking it.

    Returns None when the check may go ahead, else the seconds until it may be tried again
    (the attempt is then refused without being checked, whatever the password)."""
    script = redis.register_script(_RESERVE)
    refused, wait = await script(
        keys=_pair_keys(keys, user, address),
        args=[limits.per_pair, limits.base_lock_seconds, limits.max_lock_seconds,
              limits.per_ip, limits.window_seconds])
    return max(1, int(wait)) if int(refused) else None


async def record_success(redis: Redis, keys: Keys, user: str, address: str) -> None:
    """A right password: the pair's failures are forgotten, and the attempt is not counted
    against the address."""
    script = redis.register_script(_SUCCEED)
    await script(keys=_pair_keys(keys, user, address)[:2])


async def retry_after(redis: Redis, keys: Keys, user: str, address: str) -> int | None:
    """Seconds ``user`` must wait at ``address`` before a password is checked, or None.

    Read-only: for showing a lock, never for deciding (use :func:`reserve_attempt`)."""
    pair, _, lock = _pair_keys(keys, user, address)
    async with redis.pipeline(transaction=False) as pipe:
        pipe.time()
        pipe.hget(pair, "until")
        pipe.pttl(lock)
        (seconds, micros), until, lock_ms = await pipe.execute()
    now = seconds + micros / 1_000_000
    waits = []
    if until is not None and float(until) > now:
        waits.append(float(until) - now)
    if lock_ms is not None and int(lock_ms) > 0:
        waits.append(int(lock_ms) / 1000)
    return max(1, int(max(waits) + 0.999)) if waits else None


class SignInLimits:
    """The sign-in limits of one store (the functions above, bound to it)."""

    def __init__(self, redis: Redis, keys: Keys, limits: LoginLimits) -> None:
        self._redis = redis
        self._keys = keys
        self.limits = limits

    async def reserve_attempt(self, user: str, address: str) -> int | None:
        return await reserve_attempt(self._redis, self._keys, self.limits, user, address)

    async def record_success(self, user: str, address: str) -> None:
        await record_success(self._redis, self._keys, user, address)

    async def retry_after(self, user: str, address: str) -> int | None:
        return await retry_after(self._redis, self._keys, user, address)
