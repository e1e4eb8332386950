"""Identify: attribute every request to a user and a group.

1. Proxy authentication (``407``) answered with ``Basic user:secret``, where the secret is the
   user's bearer token (what the browser extension sends) or password. The identity is bound
   to the client connection at ``CONNECT``, so HTTPS that is never decrypted is attributed too.
2. Else the client address, matched against the configured network ranges (staff VLAN,
   learner Wi-Fi...).
3. Else the unidentified group, whose profile is the strictest.

Credentials are checked against Redis and cached briefly (argon2 is deliberately slow). When
Redis is down, uncached credentials cannot be checked and the device falls back to its
network identity, never to a more open one.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import ipaddress
import logging
import time
import weakref
from collections.abc import MutableMapping
from dataclasses import dataclass

from mitmproxy import connection, http
from redis.asyncio import Redis
from redis.exceptions import RedisError

from esafety.config import Config, Network
from store.accounts import user_for_token, verify_password
from store.keys import Keys

log = logging.getLogger("esafety.identify")

METADATA_KEY = "esafety.identity"
CHALLENGE_BODY = b"Sign in to use the centre's internet.\n"
_FAILED_CACHE_SECONDS = 5.0


@dataclass(frozen=True, slots=True)
class Identity:
    user: str | None
    group: str
    site: str
    source: str
    """``auth``, ``network`` or ``unidentified``."""


def parse_basic(value: str) -> tuple[str, str] | None:
    scheme, _, encoded = value.strip().partition(" ")
    if scheme.lower() != "basic" or not encoded:
        return None
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return None
    user, sep, secret = decoded.partition(":")
    if not sep or not user or not secret:
        return None
    return user, secret


class CredentialCache:
    """Checked credentials, by user and a digest of the secret, for a short time."""

    def __init__(self, ttl: float) -> None:
        self.ttl = ttl
        self._entries: dict[tuple[str, str], tuple[float, str | None]] = {}

    @staticmethod
    def _key(user: str, secret: str) -> tuple[str, str]:
        return user, hashlib.sha256(secret.encode("utf-8", "surrogatepass")).hexdigest()

    def get(self, user: str, secret: str) -> tuple[bool, str | None]:
        """(found, group or None for a refused credential)."""
        entry = self._entries.get(self._key(user, secret))
        if entry is None or entry[0] < time.monotonic():
            return False, None
        return True, entry[1]

    def put(self, user: str, secret: str, group: str | None) -> None:
        ttl = self.ttl if group is not None else min(self.ttl, _FAILED_CACHE_SECONDS)
        if len(self._entries) > 50_000:
            now = time.monotonic()
            self._entries = {k: v for k, v in self._entries.items() if v[0] >= now}
        self._entries[self._key(user, secret)] = (time.monotonic() + ttl, group)


class Identify:
    """mitmproxy addon: sets ``flow.metadata["esafety.identity"]`` on every flow."""

    def __init__(self, config: Config, redis: Redis | None, keys: Keys) -> None:
        self.config = config
        self.redis = redis
        self.keys = keys
        self.cache = CredentialCache(float(config.proxy_auth_cache_seconds or 1))
        self.bound: MutableMapping[connection.Client, Identity] = weakref.WeakKeyDictionary()
        self._networks = sorted(config.networks, key=lambda n: n.network.prefixlen, reverse=True)
        self.auth_failures = 0

    def network_for(self, address: str) -> Network | None:
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return None
        if ip.version == 6 and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        for network in self._networks:
            if ip in network.network:
                return network
        return None

    def _auth_required(self, network: Network | None) -> bool:
        if network is not None and network.auth is not None:
            return network.auth == "required"
        return self.config.proxy_auth_mode == "required"

    def fallback_identity(self, address: str) -> Identity:
        network = self.network_for(address)
        if network is not None:
            return Identity(None, network.group, network.site or self.config.centre_id, "network")
        return Identity(None, self.config.unidentified_group, self.config.centre_id,
                        "unidentified")

    async def _check(self, user: str, secret: str) -> str | None:
        """The user's group if the token or password is right, else None."""
        found, group = self.cache.get(user, secret)
        if found:
            return group
        if self.redis is None:
            return None
        record = await user_for_token(self.redis, self.keys, secret)
        if record is None or record.name != user:
            record = await verify_password(self.redis, self.keys, user, secret)
        group = (record.group or self.config.unidentified_group) if record else None
        self.cache.put(user, secret, group)
        return group

    async def authenticate(self, header: str, address: str) -> Identity | None:
        """Identity from a Proxy-Authorization value, or None when absent or wrong."""
        if not header:
            return None
        parsed = parse_basic(header)
        if parsed is None:
            return None
        user, secret = parsed
        try:
            group = await asyncio.wait_for(self._check(user, secret), timeout=5.0)
        except (RedisError, OSError, TimeoutError) as exc:
            log.warning("cannot check proxy credentials (%s): using the network identity", exc)
            return None
        if group is None:
            self.auth_failures += 1
            return None
        network = self.network_for(address)
        site = (network.site if network and network.site else self.config.centre_id)
        return Identity(user, group, site, "auth")

    async def resolve(self, header: str, address: str, challenge: bool) -> Identity | None:
        """Who is browsing: signed in, else the address range, else unidentified.

        None means the device must sign in first (answer 407)."""
        identity = await self.authenticate(header, address)
        if identity is not None:
            return identity
        if challenge and self._auth_required(self.network_for(address)):
            return None
        return self.fallback_identity(address)

    def challenge_headers(self) -> dict[str, str]:
        realm = self.config.proxy_auth_realm.replace('"', "")
        return {"Proxy-Authenticate": f'Basic realm="{realm}"', "Content-Type": "text/plain",
                "Cache-Control": "no-store"}

    async def _identify(self, flow: http.HTTPFlow, challenge: bool) -> None:
        address = flow.client_conn.peername[0]
        header = flow.request.headers.get("Proxy-Authorization", "")
        identity = await self.resolve(header, address,
                                      challenge and flow.request.host != "mitm.it")
        if identity is None:
            flow.response = http.Response.make(407, CHALLENGE_BODY, self.challenge_headers())
            return
        if identity.source == "auth":
            del flow.request.headers["Proxy-Authorization"]
        flow.metadata[METADATA_KEY] = identity
        if flow.request.method == "CONNECT" or identity.source == "auth":
            self.bound[flow.client_conn] = identity

    # -- hooks -------------------------------------------------------------------------------
    async def http_connect(self, flow: http.HTTPFlow) -> None:
        await self._identify(flow, challenge=True)

    async def requestheaders(self, flow: http.HTTPFlow) -> None:
        if flow.response is not None:
            return
        bound = self.bound.get(flow.client_conn)
        if bound is not None:
            # Inside a CONNECT tunnel or a keep-alive connection that already signed in.
            flow.metadata[METADATA_KEY] = bound
            flow.request.headers.pop("Proxy-Authorization", None)
            return
        await self._identify(flow, challenge=not flow.is_replay)


def identity_of(flow: http.HTTPFlow) -> Identity | None:
    value = flow.metadata.get(METADATA_KEY)
    return value if isinstance(value, Identity) else None
