"""Identify: attribute every request to a user and a group.

1. Proxy authentication (``407``) answered with ``Basic user:secret``, where the secret is the
   user's bearer token (what the browser extension sends) or, unless
   ``proxy_auth.passwords: false``, their password. The identity is bound to the client
   connection at ``CONNECT``, so HTTPS that is never decrypted is attributed too.
   With ``identity.kerberos`` configured, ``Negotiate`` (a Kerberos ticket from a domain-joined
   device) is offered first and accepted the same way (:mod:`proxy_addons.kerberos_signin`):
   the identity's source is then ``kerberos``, as strong as ``auth``.
2. Else the client address, matched against the configured network ranges (staff VLAN,
   learner Wi-Fi...).
3. Else the unidentified group, whose profile is the strictest.

Password guesses share the admin login's limits (:mod:`store.login_limits`): counted per user
name and client address before argon2 runs, with exponential back-off, plus a cap per address.
A locked pair is answered 407 again, even with the right password, and never gets a more open
identity. A secret shaped like a token is checked as a token only, so an expired token that
the extension keeps sending costs no password budget.

Argon2 runs off the event loop (:mod:`store.accounts`). Checks are cached by user, address and
a keyed digest of the secret (see :class:`CredentialCache`); every distinct guess is counted.

Identities are re-checked against ``accounts:version`` (polled every second). When it moves,
the proxy reads which users changed (``accounts:changes``) and, for those users only, forgets
cached checks, re-checks connections bound to their sign-in on the next request (a disabled
account, revoked token or changed password falls back to the network identity, or 407 where
sign-in is required; a changed group takes effect), and closes their tracked connections
(:meth:`Identify.track_connection`) whose sign-in ended. While Redis cannot be read for a few
seconds, no sign-in is honoured: devices get their network identity, never a more open one.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import hashlib
import hmac
import ipaddress
import itertools
import logging
import re
import secrets
import time
import weakref
from collections.abc import Callable, MutableMapping
from dataclasses import dataclass, field
from typing import Any

from mitmproxy import connection, ctx, http
from redis.asyncio import Redis
from redis.exceptions import RedisError

from deployment.config import Config, Network
from deployment.public_address import ServiceAddress, admin_endpoints
from proxy_addons.kerberos_signin import (
    KerberosAcceptor,
    KerberosPrincipal,
    account_group,
    is_negotiate,
    still_signed_in,
)
from store.accounts import (
    accounts_changed_since,
    get_user,
    password_mark,
    token_digest,
    user_for_token,
    user_still_signed_in,
    verify_password,
)
from store.address_bindings import AddressBinding, BindingError, live_bindings, normal_address
from store.extension_devices import device_for_token
from store.keys import Keys
from store.login_limits import LoginLimits, address_key, record_success, reserve_attempt

log = logging.getLogger("esafety.identify")

METADATA_KEY = "esafety.identity"
CHALLENGE_BODY = b"Sign in to use the centre's internet.\n"
TOKEN_SHAPE = re.compile(r"^[A-Za-z0-9_-]{43}$")
"""What :func:`store.accounts.issue_token` makes (32 random bytes, URL-safe base64)."""
VERSION_POLL_SECONDS = 1.0
VERSION_STALE_SECONDS = 5.0
BINDINGS_POLL_SECONDS = 0.25
"""How often the bindings' version is read: a portal sign-in or a RADIUS Start is honoured by
every proxy within this (plus one read)."""
"""With no good read of the accounts version for this long, sign-ins are not honoured."""
CHECK_TIMEOUT_SECONDS = 5.0
HANDOVER_NOTE_SECONDS = 2.0
"""How long the fast path's "challenge this" answer waits for mitmproxy to use it."""


@dataclass(frozen=True, slots=True)
class SignIn:
    """How a user proved who they are, so it can be re-checked later without the secret."""

    user: str
    group: str
    digest: str | None = None
    """The token's SHA-256, for a token sign-in."""
    mark: str | None = None
    """A fingerprint of the stored password hash, for a password sign-in."""
    method: str = ""
    """``kerberos`` or ``kerberos-network`` for a Kerberos ticket (see
    :mod:`proxy_addons.kerberos_signin`); empty for a token or password."""
    device: str = ""
    """For a token the browser extension signed in with: its install id; for a Kerberos host
    ticket, the computer."""


@dataclass(frozen=True, slots=True)
class Identity:
    user: str | None
    group: str
    site: str
    source: str
    """How the person was identified, strongest first: ``auth`` (a token or password on the
    connection) or ``kerberos`` (a Kerberos ticket on the connection), ``portal`` or
    ``radius`` (a sign-in binding for the address), ``network`` (the address range) or
    ``unidentified``."""
    proof: SignIn | None = field(default=None, compare=False, repr=False)
    """For ``auth`` and ``kerberos``: the sign-in it rests on."""
    device: str = ""
    """The device's id where known (the MAC address RADIUS reported, the extension's install
    id for a token it signed in with, the computer a Kerberos host principal names)."""


SIGNED_IN_ON_CONNECTION = frozenset({"auth", "kerberos"})
"""Identity sources that are a sign-in on the connection itself (bound to it at CONNECT)."""


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
    """Checked credentials, by user, address and a keyed digest of the secret, for a short time.

    A wrong password is remembered too, so a browser that keeps sending a stale password does
    not count (and lock itself out) on every request; a new guess is never found here, so
    the limit still counts every distinct guess. A user's entries are forgotten when their
    account changes.

    The digest is an HMAC under a key that lives only in this process's memory, so the cache
    holds nothing a memory dump could replay elsewhere or test guesses against offline."""

    def __init__(self, ttl: float) -> None:
        self.ttl = ttl
        self._key = secrets.token_bytes(32)
        self._entries: dict[str, dict[tuple[str, bytes], tuple[float, SignIn | None]]] = {}
        self._size = 0

    def digest(self, secret: str) -> bytes:
        """A keyed digest of ``secret``, never the secret itself."""
        return hmac.digest(self._key, secret.encode("utf-8", "surrogatepass"), hashlib.sha256)

    def _slot(self, address: str, secret: str) -> tuple[str, bytes]:
        # By address too: a success cached for the real user's desk must not answer a guess
        # from a laptop whose attempts are locked (that would be an oracle again).
        return address, self.digest(secret)

    def get(self, user: str, address: str, secret: str) -> tuple[bool, SignIn | None]:
        """(found, the sign-in, or None for a password found wrong)."""
        entry = self._entries.get(user, {}).get(self._slot(address, secret))
        if entry is None or entry[0] < time.monotonic():
            return False, None
        return True, entry[1]

    def put(self, user: str, address: str, secret: str, proof: SignIn | None) -> None:
        if self.ttl <= 0:
            return
        if self._size > 50_000:
            now = time.monotonic()
            self._entries = {name: kept for name, slots in self._entries.items()
                             if (kept := {k: v for k, v in slots.items() if v[0] >= now})}
            self._size = sum(len(slots) for slots in self._entries.values())
        slots = self._entries.setdefault(user, {})
        slot = self._slot(address, secret)
        self._size += slot not in slots
        slots[slot] = (time.monotonic() + self.ttl, proof)

    def forget(self, users: set[str]) -> None:
        for user in users:
            self._size -= len(self._entries.pop(user, {}))

    def clear(self) -> None:
        self._entries.clear()
        self._size = 0


@dataclass(slots=True)
class _Bound:
    identity: Identity
    version: int
    untrack: Callable[[], None] | None = None


@dataclass(frozen=True, slots=True)
class _Outcome:
    proof: SignIn | None = None
    locked_for: int | None = None
    """Seconds the name must wait at this address before a password is checked again."""
    identity: Identity | None = None
    """A sign-in complete as it is (a Kerberos ticket)."""


class Identify:
    """mitmproxy addon: sets ``flow.metadata["esafety.identity"]`` on every flow."""

    def __init__(self, config: Config, redis: Redis | None, keys: Keys,
                 limits: LoginLimits | None = None) -> None:
        self.config = config
        self.redis = redis
        self.keys = keys
        self.limits = limits or LoginLimits()
        self.cache = CredentialCache(float(config.proxy_auth_cache_seconds))
        self.kerberos = (KerberosAcceptor(config.identity.kerberos)
                         if config.identity.kerberos is not None else None)
        """Raises :class:`proxy_addons.kerberos_signin.KerberosSetupError` when configured
        but unusable (no pyspnego, an unreadable keytab, no key for the service)."""
        self.bound: MutableMapping[connection.Client, _Bound] = weakref.WeakKeyDictionary()
        self._networks = sorted(config.networks, key=lambda n: n.network.prefixlen, reverse=True)
        self.admin = admin_endpoints(config)
        """The admin service's addresses: reached without the proxy's sign-in (it has its own,
        and the browser extension signs in there before it can answer the proxy's)."""
        self.auth_failures = 0
        self.auth_locked = 0
        self.version = -1
        self._version_read_at = 0.0
        self._version_tried_at = 0.0
        self._changed_at: dict[str, int] = {}
        """User name -> the accounts version at which this proxy saw them change."""
        self._reset_at = -1
        """The version at which every sign-in had to be re-checked (history too short)."""
        self._tracked: dict[str, dict[int, tuple[Callable[[], None], SignIn | None]]] = {}
        self._track_ids = itertools.count()
        self._poller: asyncio.Task[None] | None = None
        self._bindings_poller: asyncio.Task[None] | None = None
        self.bindings: dict[str, AddressBinding] = {}
        """Client address -> its live sign-in binding, as last read from the store."""
        self._bindings_version = -1
        self._bindings_read_at = 0.0
        self._recheck: set[str] = set()
        self._recheck_all = False
        """Users whose tracked connections still need re-checking (Redis failed meanwhile)."""
        self._locks: dict[tuple[str, str], float] = {}
        """(user, address) pairs this process saw locked, until when: a cached success for
        the pair is not honoured meanwhile."""
        self._challenged: dict[tuple[str, bytes], tuple[float, int | None]] = {}
        """Credentials the fast path found wanting, by address and keyed digest of the
        header, until when, and the lock-out left: used once by the mitmproxy path that the
        connection is handed to, so one attempt is checked and counted once."""

    # -- networks ----------------------------------------------------------------------------
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

    def binding_for(self, address: str) -> AddressBinding | None:
        """The live sign-in binding (portal, RADIUS) of ``address``, while the bindings are
        fresh: when they cannot be read for a few seconds none is honoured (fail closed)."""
        if not self.bindings or time.monotonic() - self._bindings_read_at > VERSION_STALE_SECONDS:
            return None
        try:
            key = normal_address(address)
        except BindingError:
            return None
        binding = self.bindings.get(key)
        return binding if binding is not None and binding.live(time.time()) else None

    def fallback_identity(self, address: str) -> Identity:
        """Who is at ``address`` without a sign-in on the connection: a sign-in binding, else
        the address range, else unidentified."""
        network = self.network_for(address)
        binding = self.binding_for(address)
        if binding is not None:
            group = binding.group or (network.group if network is not None
                                      else self.config.unidentified_group)
            site = network.site if network and network.site else self.config.centre_id
            return Identity(binding.user, group, site, binding.source, device=binding.device)
        if network is not None:
            return Identity(None, network.group, network.site or self.config.centre_id, "network")
        return Identity(None, self.config.unidentified_group, self.config.centre_id,
                        "unidentified")

    def _signed_in(self, proof: SignIn, address: str) -> Identity:
        network = self.network_for(address)
        site = network.site if network and network.site else self.config.centre_id
        return Identity(proof.user, proof.group, site, "auth", proof, device=proof.device)

    # -- accounts version --------------------------------------------------------------------
    @property
    def version_fresh(self) -> bool:
        """True while the accounts version has been read recently enough to trust sign-ins."""
        return time.monotonic() - self._version_read_at <= VERSION_STALE_SECONDS

    async def refresh_version(self) -> None:
        """Read the accounts version; when it moved, forget checked credentials and end the
        tracked connections of users whose sign-in no longer holds."""
        if self.redis is None:
            return
        self._version_tried_at = time.monotonic()
        try:
            version, changed = await asyncio.wait_for(
                accounts_changed_since(self.redis, self.keys, self.version),
                CHECK_TIMEOUT_SECONDS)
        except (RedisError, OSError, TimeoutError) as exc:
            if self.version_fresh:
                log.warning("cannot read the accounts version (%s): sign-ins are not honoured "
                            "until Redis answers", exc)
            return
        self._version_read_at = time.monotonic()
        if version == self.version:
            if self._recheck_all or self._recheck:
                await self._end_tracked(set())  # a re-check Redis refused earlier
            return
        if changed is None:
            self.cache.clear()
            self._changed_at.clear()
            self._reset_at = version
        else:
            self.cache.forget(changed)
            for name in changed:
                self._changed_at[name] = version
        self.version = version
        await self._end_tracked(changed)

    def _changed_since(self, user: str, version: int) -> bool:
        return max(self._reset_at, self._changed_at.get(user, -1)) > version

    async def _refresh_if_stale(self) -> bool:
        """True when the accounts version can be trusted (reading it now at most once a
        second, so a Redis that hangs does not stall every request)."""
        if self.version_fresh:
            return True
        if time.monotonic() - self._version_tried_at >= VERSION_POLL_SECONDS:
            await self.refresh_version()
        return self.version_fresh

    async def _poll(self) -> None:
        while True:
            await asyncio.sleep(VERSION_POLL_SECONDS)
            await self.refresh_version()

    # -- sign-in bindings (portal, RADIUS) ---------------------------------------------------
    async def refresh_bindings(self) -> None:
        """Reload the address bindings when their version moved."""
        if self.redis is None:
            return
        try:
            raw_version = await asyncio.wait_for(
                self.redis.get(self.keys.address_bindings_version), CHECK_TIMEOUT_SECONDS)
            version = int(raw_version or 0)
            if version != self._bindings_version:
                raw = await asyncio.wait_for(
                    self.redis.hgetall(self.keys.address_bindings),
                    CHECK_TIMEOUT_SECONDS)
                self.bindings = live_bindings(raw, time.time())
                self._bindings_version = version
        except (RedisError, OSError, TimeoutError, ValueError) as exc:
            if time.monotonic() - self._bindings_read_at <= VERSION_STALE_SECONDS:
                log.warning("cannot read the sign-in bindings (%s): they are not honoured "
                            "until Redis answers", exc)
            return
        self._bindings_read_at = time.monotonic()

    async def _poll_bindings(self) -> None:
        while True:
            await self.refresh_bindings()
            await asyncio.sleep(BINDINGS_POLL_SECONDS)

    async def _still_valid(self, proof: SignIn) -> bool:
        assert self.redis is not None
        if proof.method:
            return still_signed_in(await get_user(self.redis, self.keys, proof.user),
                                   proof.method, proof.group, self.config.unidentified_group)
        user = await user_still_signed_in(self.redis, self.keys, proof.user,
                                          digest=proof.digest, mark=proof.mark)
        return user is not None and (user.group or self.config.unidentified_group) == proof.group

    # -- tracked connections -----------------------------------------------------------------
    def track_connection(self, user: str, close: Callable[[], None],
                         proof: SignIn | None = None) -> Callable[[], None]:
        """Call ``close()`` when ``user``'s identity ends (account disabled, tokens revoked,
        password or group changed). Returns the function that stops tracking. With ``proof``
        (``identity.proof``) exactly that sign-in is re-checked; without it, the connection
        ends when no sign-in of the user seen by this proxy still holds."""
        track_id = next(self._track_ids)
        self._tracked.setdefault(user, {})[track_id] = (close, proof)

        def untrack() -> None:
            entries = self._tracked.get(user)
            if entries is not None:
                entries.pop(track_id, None)
                if not entries:
                    self._tracked.pop(user, None)
        return untrack

    async def _end_tracked(self, changed: set[str] | None) -> None:
        """Close tracked connections of the users in ``changed`` (None: of anyone) whose
        sign-in no longer holds."""
        if self.redis is None:
            return
        if changed is None:
            self._recheck_all = True
        else:
            self._recheck |= changed
        verdicts: dict[SignIn, bool] = {}
        for user, entries in list(self._tracked.items()):
            if not self._recheck_all and user not in self._recheck:
                continue
            proofs = {proof for _close, proof in entries.values() if proof is not None}
            try:
                for proof in proofs - verdicts.keys():
                    verdicts[proof] = await self._still_valid(proof)
                user_gone = False
                if any(proof is None for _close, proof in entries.values()):
                    record = await get_user(self.redis, self.keys, user)
                    user_gone = record is None or record.disabled
            except (RedisError, OSError) as exc:
                log.warning("cannot re-check signed-in connections (%s): will retry", exc)
                return
            for track_id, (close, tracked_proof) in list(entries.items()):
                ended = (not verdicts[tracked_proof] if tracked_proof is not None
                         else user_gone)
                if ended:
                    entries.pop(track_id, None)
                    try:
                        close()
                    except Exception:  # one broken callback must not keep others open
                        log.exception("closing a connection of %s failed", user)
            if not entries:
                self._tracked.pop(user, None)
        self._recheck_all = False
        self._recheck.clear()

    # -- credentials -------------------------------------------------------------------------
    async def _check(self, user: str, secret: str, address: str) -> _Outcome:
        address = address_key(address)
        pair = (user.lower(), address)
        found, cached = self.cache.get(user, address, secret)
        if found:
            locked_until = self._locks.get(pair, 0.0)
            if cached is not None and cached.mark is not None \
                    and locked_until > time.monotonic():
                return _Outcome(locked_for=int(locked_until - time.monotonic()) + 1)
            return _Outcome(cached)
        if self.redis is None:
            return _Outcome()
        if TOKEN_SHAPE.match(secret):
            record = await user_for_token(self.redis, self.keys, secret)
            if record is None or record.name != user:
                return _Outcome()
            digest = token_digest(secret)
            proof = SignIn(user, record.group or self.config.unidentified_group,
                           digest=digest, device=await device_for_token(self.redis, self.keys,
                                                                        digest))
        else:
            if not self.config.proxy_auth_passwords:
                return _Outcome()
            wait = await reserve_attempt(self.redis, self.keys, self.limits, user, address)
            if wait is not None:
                if len(self._locks) > 10_000:
                    now = time.monotonic()
                    self._locks = {k: v for k, v in self._locks.items() if v > now}
                self._locks[pair] = time.monotonic() + wait
                return _Outcome(locked_for=wait)
            record = await verify_password(self.redis, self.keys, user, secret)
            if record is None:
                self.cache.put(user, address, secret, None)
                return _Outcome()
            await record_success(self.redis, self.keys, user, address)
            proof = SignIn(user, record.group or self.config.unidentified_group,
                           mark=password_mark(record))
        self.cache.put(user, address, secret, proof)
        return _Outcome(proof)

    async def _kerberos(self, header: str, address: str) -> _Outcome:
        """A ``Negotiate`` header: the ticket's user (their account's group, else the
        network's) or computer (the network's group)."""
        assert self.kerberos is not None
        found = await self.kerberos.accept(header, address)
        if found is None:
            return _Outcome()
        return await self._kerberos_identity(found, address)

    async def _kerberos_identity(self, found: KerberosPrincipal, address: str) -> _Outcome:
        network = self.network_for(address)
        site = network.site if network and network.site else self.config.centre_id
        network_group = network.group if network is not None else self.config.unidentified_group
        if found.user is None:
            return _Outcome(identity=Identity(None, network_group, site, "kerberos",
                                              device=found.device))
        record = None
        if self.redis is not None:
            record = await get_user(self.redis, self.keys, found.user)
        grouped = account_group(record, network_group, self.config.unidentified_group)
        if grouped is None:
            return _Outcome()  # the esafety account is disabled
        proof = SignIn(found.user, grouped[0], method=grouped[1])
        return _Outcome(proof, identity=Identity(found.user, grouped[0], site, "kerberos",
                                                 proof, device=found.device))

    async def _authenticate(self, header: str, address: str) -> _Outcome:
        if not header:
            return _Outcome()
        if self.kerberos is not None and is_negotiate(header):
            if self.redis is not None and not await self._refresh_if_stale():
                return _Outcome()
            try:
                outcome = await asyncio.wait_for(self._kerberos(header, address),
                                                 CHECK_TIMEOUT_SECONDS)
            except (RedisError, OSError, TimeoutError) as exc:
                log.warning("cannot check a Kerberos sign-in (%s): using the network identity",
                            exc)
                return _Outcome()
            if outcome.identity is None:
                self.auth_failures += 1
            return outcome
        parsed = parse_basic(header)
        if parsed is None:
            return _Outcome()
        if self.redis is not None and not await self._refresh_if_stale():
            return _Outcome()
        user, secret = parsed
        try:
            outcome = await asyncio.wait_for(self._check(user, secret, address),
                                             CHECK_TIMEOUT_SECONDS)
        except (RedisError, OSError, TimeoutError) as exc:
            log.warning("cannot check proxy credentials (%s): using the network identity", exc)
            return _Outcome()
        if outcome.locked_for is not None:
            self.auth_locked += 1
        elif outcome.proof is None:
            self.auth_failures += 1
        return outcome

    async def authenticate(self, header: str, address: str) -> Identity | None:
        """Identity from a Proxy-Authorization value, or None when absent, wrong or locked."""
        outcome = await self._authenticate(header, address)
        if outcome.identity is not None:
            return outcome.identity
        return self._signed_in(outcome.proof, address) if outcome.proof else None

    async def _resolve(self, header: str, address: str, challenge: bool
                       ) -> tuple[Identity | None, int | None]:
        outcome = await self._authenticate(header, address)
        if outcome.identity is not None:
            return outcome.identity, None
        if outcome.proof is not None:
            return self._signed_in(outcome.proof, address), None
        if outcome.locked_for is None and self.binding_for(address) is not None:
            # Signed in for this address (portal, RADIUS): that is the sign-in required here.
            return self.fallback_identity(address), None
        if challenge and (outcome.locked_for is not None
                          or self._auth_required(self.network_for(address))):
            return None, outcome.locked_for
        return self.fallback_identity(address), None

    async def resolve(self, header: str, address: str, challenge: bool) -> Identity | None:
        """Who is browsing: signed in, else the address range, else unidentified.

        None means the device must sign in first (answer 407): sign-in is required here, or
        the name is locked at this address after too many wrong passwords."""
        identity, _locked_for = await self._resolve(header, address, challenge)
        return identity

    async def resolve_before_handover(self, header: str, address: str) -> Identity | None:
        """:meth:`resolve` with a challenge, for the fast path. When the device must sign in,
        the fast path hands the connection to mitmproxy, whose ``http_connect`` answers the
        407 from this outcome instead of checking (and counting) the same credentials again.
        """
        identity, locked_for = await self._resolve(header, address, challenge=True)
        if identity is None and header:
            now = time.monotonic()
            if len(self._challenged) > 10_000:
                self._challenged = {k: v for k, v in self._challenged.items() if v[0] > now}
            self._challenged[(address, self.cache.digest(header))] = (
                now + HANDOVER_NOTE_SECONDS, locked_for)
        return identity

    def _challenged_before(self, header: str, address: str) -> tuple[bool, int | None]:
        """(True, lock-out) once, when the fast path just found these credentials wanting."""
        if not header or not self._challenged:
            return False, None
        noted = self._challenged.pop((address, self.cache.digest(header)), None)
        if noted is None or noted[0] < time.monotonic():
            return False, None
        return True, noted[1]

    def challenge_headers(self) -> dict[str, str]:
        realm = self.config.proxy_auth_realm.replace('"', "")
        return {"Proxy-Authenticate": f'Basic realm="{realm}"', "Content-Type": "text/plain",
                "Cache-Control": "no-store"}

    # -- bound connections -------------------------------------------------------------------
    async def _bound_identity(self, flow: http.HTTPFlow) -> Identity | None:
        """The identity bound to this client connection, re-checked if accounts changed."""
        bound = self.bound.get(flow.client_conn)
        if bound is None:
            return None
        proof = bound.identity.proof
        if proof is None:
            return bound.identity
        if self.redis is None:
            return None
        if not await self._refresh_if_stale():
            return None  # cannot tell whether this sign-in still holds: fail closed
        if not self._changed_since(proof.user, bound.version):
            bound.version = self.version
            return bound.identity
        try:
            valid = await asyncio.wait_for(self._still_valid(proof), CHECK_TIMEOUT_SECONDS)
        except (RedisError, OSError, TimeoutError):
            return None
        if not valid:
            self._unbind(flow.client_conn)
            return None
        bound.version = self.version
        return bound.identity

    def _unbind(self, client: connection.Client) -> None:
        bound = self.bound.pop(client, None)
        if bound is not None and bound.untrack is not None:
            bound.untrack()

    def _bind(self, flow: http.HTTPFlow, identity: Identity) -> None:
        self._unbind(flow.client_conn)
        bound = _Bound(identity, self.version)
        if identity.proof is not None and flow.request.method == "CONNECT":
            # A tunnel's inner traffic may never come back through these hooks: close it
            # when the sign-in ends, so the device must connect (and sign in) again.
            client = flow.client_conn
            bound.untrack = self.track_connection(identity.proof.user,
                                                  lambda: close_client(client), identity.proof)
        self.bound[flow.client_conn] = bound

    async def _identify(self, flow: http.HTTPFlow, challenge: bool) -> None:
        address = flow.client_conn.peername[0]
        header = flow.request.headers.get("Proxy-Authorization", "")
        challenge = (challenge and flow.request.host != "mitm.it"
                     and ServiceAddress.of(flow.request.host, flow.request.port) not in self.admin)
        noted, locked_for = (self._challenged_before(header, address)
                             if challenge and flow.request.method == "CONNECT"
                             else (False, None))
        identity: Identity | None = None
        if not noted:
            identity, locked_for = await self._resolve(header, address, challenge)
        if identity is None:
            body = CHALLENGE_BODY if locked_for is None else (
                "Too many wrong passwords for this name from this device. Try again in "
                f"{locked_for // 60 + 1} minutes, or ask IT support.\n").encode()
            flow.response = http.Response.make(407, body, self.challenge_headers())
            if self.kerberos is not None:  # offered first: browsers pick the first they can
                flow.response.headers.insert(0, "Proxy-Authenticate", "Negotiate")
            return
        if identity.source in SIGNED_IN_ON_CONNECTION:
            del flow.request.headers["Proxy-Authorization"]
        flow.metadata[METADATA_KEY] = identity
        if flow.request.method == "CONNECT" or identity.source in SIGNED_IN_ON_CONNECTION:
            self._bind(flow, identity)

    # -- hooks -------------------------------------------------------------------------------
    async def running(self) -> None:
        if self.redis is not None and self._poller is None:
            await self.refresh_version()
            self._poller = asyncio.get_running_loop().create_task(
                self._poll(), name="esafety-accounts-version")
        if self.redis is not None and self._bindings_poller is None:
            await self.refresh_bindings()
            self._bindings_poller = asyncio.get_running_loop().create_task(
                self._poll_bindings(), name="esafety-address-bindings")

    async def done(self) -> None:
        for task in (self._poller, self._bindings_poller):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        self._poller = self._bindings_poller = None

    async def http_connect(self, flow: http.HTTPFlow) -> None:
        await self._identify(flow, challenge=True)

    async def requestheaders(self, flow: http.HTTPFlow) -> None:
        if flow.response is not None:
            return
        bound = await self._bound_identity(flow)
        if bound is not None:
            # Inside a CONNECT tunnel or a keep-alive connection that already signed in.
            flow.metadata[METADATA_KEY] = bound
            flow.request.headers.pop("Proxy-Authorization", None)
            return
        await self._identify(flow, challenge=not flow.is_replay)

    def client_disconnected(self, client: connection.Client) -> None:
        self._unbind(client)


def close_client(client: connection.Client) -> None:
    """Close a client connection that mitmproxy is serving (as its own CloseConnection)."""
    server: Any = ctx.master.addons.get("proxyserver")  # type: ignore[no-untyped-call]
    handler: Any = getattr(server, "connections", {}).get(client.id)
    if handler is None or client not in handler.transports:
        return
    handler.close_connection(client)


def identity_of(flow: http.HTTPFlow) -> Identity | None:
    value = flow.metadata.get(METADATA_KEY)
    return value if isinstance(value, Identity) else None
