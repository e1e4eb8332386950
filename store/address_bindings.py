"""Who is at which client address, for a time: bindings made by RADIUS accounting (the Wi-Fi
controller says which user has which address) and by the Wi-Fi sign-in portal.

One hash maps each address to its binding (JSON: user, device, group, source, expiry), and a
counter moves on every change, so every proxy notices within its poll interval and reloads
the hash (:class:`BindingTable`). Expired bindings are ignored by readers and removed by
:meth:`AddressBindings.prune`. A binding never outlives its ``expires_at``; a RADIUS Stop or a
portal sign-out removes it at once, but only its own (a Stop for another user's session at the
same address changes nothing).
"""

from __future__ import annotations

import ipaddress
import json
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass

from redis.asyncio import Redis

from store.keys import Keys

SOURCES = ("portal", "radius")
"""What made a binding; also the ``identified_by`` of the hits it attributes."""

# KEYS: bindings hash, version. ARGV: address, JSON binding. Sets it and bumps the version.
_BIND = """
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
return redis.call('INCR', KEYS[2])
"""

# KEYS: bindings hash, version. ARGV: address, user ('' = any), source ('' = any).
# Removes the binding only when it is that user's (and that source's).
_UNBIND = """
local raw = redis.call('HGET', KEYS[1], ARGV[1])
if not raw then return 0 end
local binding = cjson.decode(raw)
if (ARGV[2] ~= '' and binding.user ~= ARGV[2]) or (ARGV[3] ~= '' and binding.source ~= ARGV[3]) then
  return 0
end
redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('INCR', KEYS[2])
return 1
"""


class BindingError(ValueError):
    pass


@dataclass(frozen=True)
class AddressBinding:
    address: str
    user: str
    source: str
    """``portal`` or ``radius``."""
    expires_at: float
    device: str = ""
    """The device's id where known (its MAC address, from RADIUS Calling-Station-Id)."""
    group: str = ""
    """The user's esafety group when the binder knew it (empty: the network's group)."""
    reported_by: str = ""
    """For RADIUS: the address of the Wi-Fi controller that reported it (its Accounting-On
    or Accounting-Off ends every binding it reported)."""

    def live(self, now: float) -> bool:
        return self.expires_at > now

    def to_json(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"))

    @classmethod
    def from_json(cls, raw: str | bytes) -> AddressBinding | None:
        """None for a value that is not a binding (never raises on stored data)."""
        try:
            data = json.loads(raw)
            return cls(address=str(data["address"]), user=str(data["user"]),
                       source=str(data["source"]), expires_at=float(data["expires_at"]),
                       device=str(data.get("device", "")), group=str(data.get("group", "")),
                       reported_by=str(data.get("reported_by", "")))
        except (ValueError, KeyError, TypeError):
            return None


def normal_address(address: str) -> str:
    """The canonical text of a client address (IPv4-mapped IPv6 as IPv4), or BindingError."""
    try:
        parsed = ipaddress.ip_address(address.strip().strip("[]"))
    except ValueError:
        raise BindingError(f"{address!r} is not an IP address") from None
    if isinstance(parsed, ipaddress.IPv6Address) and parsed.ipv4_mapped is not None:
        return str(parsed.ipv4_mapped)
    return str(parsed)


class AddressBindings:
    """The bindings in Redis (``Store.address_bindings``)."""

    def __init__(self, redis: Redis, keys: Keys) -> None:
        self._redis = redis
        self._keys = keys

    async def bind(self, address: str, user: str, source: str, seconds: float,
                   device: str = "", group: str = "", now: float | None = None,
                   reported_by: str = "") -> AddressBinding:
        if source not in SOURCES:
            raise BindingError(f"unknown binding source {source!r}; one of {', '.join(SOURCES)}")
        if not user or len(user) > 200:
            raise BindingError("a binding needs a user name of at most 200 characters")
        if seconds <= 0:
            raise BindingError("a binding must last a positive time")
        binding = AddressBinding(normal_address(address), user, source,
                                 (now if now is not None else time.time()) + seconds,
                                 device[:64], group, reported_by[:64])
        await self._redis.eval(_BIND, 2, self._keys.address_bindings,
                               self._keys.address_bindings_version, binding.address,
                               binding.to_json())
        return binding

    async def unbind(self, address: str, user: str = "", source: str = "") -> bool:
        """Remove the binding at ``address`` if it is ``user``'s (and ``source``'s); True
        when one was removed."""
        removed = await self._redis.eval(
            _UNBIND, 2, self._keys.address_bindings, self._keys.address_bindings_version,
            normal_address(address), user, source)
        return bool(removed)

    async def unbind_user(self, user: str) -> int:
        """Remove every binding of ``user`` (sign-out everywhere, a disabled account)."""
        return await self._unbind_each(lambda binding: binding.user == user)

    async def unbind_reported_by(self, source: str, reporter: str) -> int:
        """Remove every ``source`` binding that ``reporter`` reported (a Wi-Fi controller
        that restarted: every session it knew of has ended)."""
        return await self._unbind_each(
            lambda binding: binding.source == source and binding.reported_by == reporter)

    async def _unbind_each(self, matches: Callable[[AddressBinding], bool]) -> int:
        removed = 0
        for binding in (await self.all()).values():
            # By address, user and source: a binding made meanwhile for someone else stays.
            if matches(binding) and await self.unbind(binding.address, binding.user,
                                                      binding.source):
                removed += 1
        return removed

    async def version(self) -> int:
        raw = await self._redis.get(self._keys.address_bindings_version)
        return int(raw or 0)

    async def all(self, now: float | None = None) -> dict[str, AddressBinding]:
        """Every live binding, by address."""
        raw: Mapping[bytes | str, bytes | str] = await self._redis.hgetall(
            self._keys.address_bindings)
        return live_bindings(raw, now if now is not None else time.time())

    async def get(self, address: str, now: float | None = None) -> AddressBinding | None:
        raw = await self._redis.hget(self._keys.address_bindings,
                                     normal_address(address))
        binding = AddressBinding.from_json(raw) if raw is not None else None
        moment = now if now is not None else time.time()
        return binding if binding is not None and binding.live(moment) else None

    async def prune(self, now: float | None = None) -> int:
        """Remove expired (and unreadable) bindings; how many went."""
        moment = now if now is not None else time.time()
        raw = await self._redis.hgetall(self._keys.address_bindings)
        gone = 0
        for field, value in raw.items():
            binding = AddressBinding.from_json(value)
            if binding is None or not binding.live(moment):
                address = field.decode() if isinstance(field, bytes) else field
                user = binding.user if binding is not None else ""
                if binding is None:
                    await self._redis.hdel(self._keys.address_bindings, address)
                    gone += 1
                elif await self.unbind(address, user):
                    gone += 1
        return gone


def live_bindings(raw: Mapping[bytes | str, bytes | str], now: float
                  ) -> dict[str, AddressBinding]:
    found: dict[str, AddressBinding] = {}
    for value in raw.values():
        binding = AddressBinding.from_json(value)
        if binding is not None and binding.live(now):
            found[binding.address] = binding
    return found
