"""Kerberos (Negotiate) proxy sign-in: domain-joined devices sign in without a prompt.

With ``identity.kerberos`` configured (``keytab``, ``service: HTTP/proxy.centre.local``), the
proxy's 407 offers ``Proxy-Authenticate: Negotiate`` before Basic. A browser on a domain-joined
device answers with ``Proxy-Authorization: Negotiate <token>``: a SPNEGO-wrapped Kerberos
ticket for the proxy's service principal. The token is accepted in one round with
``spnego.server`` against the keytab (``KRB5_KTNAME``, set once when the proxy starts), in a
thread, so the event loop never waits on the keytab or the replay cache. An expired, forged
or replayed ticket, or one for another service, is refused: the device gets the 407 again.

Who the client principal is (:func:`principal_identity`):

- ``alice@REALM`` (a user, in the service principal's realm): the esafety user ``alice``
  (the realm stripped, lower-cased). No device: a user's ticket carries no host name.
- ``host/pc1.centre.local@REALM`` or ``PC1$@REALM`` (a computer account): no user, the device
  ``pc1.centre.local`` or ``pc1``.
- Anything else (another realm, a service or admin instance like ``alice/admin``, a name esafety
  cannot hold): refused.

A successful token is remembered for :data:`ACCEPTED_SECONDS` by client address and a keyed
digest of the header, so the same CONNECT seen by the fast path and then by mitmproxy is
accepted once (Kerberos would refuse the second look as a replay). So the same header replayed
from the same address within that time is honoured, as a cached password check is; from any
other address, or later, the replay cache refuses it.

Only a Kerberos mechanism signs anyone in: NTLM offered inside Negotiate is refused (it needs
more than one round anyway). The proxy keeps no context across 407s and sends no
mutual-authentication token back.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import hmac
import logging
import os
import re
import secrets
import time
from dataclasses import dataclass
from typing import Any

from deployment.config import KerberosSettings
from store.accounts import USER_NAME
from store.records import UserRecord

log = logging.getLogger("esafety.kerberos")

SCHEME = "Negotiate"
MAX_TOKEN_CHARS = 64 * 1024
"""A Negotiate header longer than this is refused unread (Active Directory tickets with a large
group list reach 12-48 KiB)."""
ACCEPTED_SECONDS = 30.0
ACCEPT_TIMEOUT_SECONDS = 5.0
HOST_NAME = re.compile(r"^[a-z0-9]([a-z0-9-]{0,62})(\.[a-z0-9]([a-z0-9-]{0,62}))*$")
METHOD_ACCOUNT = "kerberos"
""":attr:`SignIn.method` of a Kerberos sign-in whose group is the user's esafety account's."""
METHOD_NETWORK = "kerberos-network"
"""... of one by a user without an esafety account: the network's group."""
MISSING_EXTRA = ("identity.kerberos needs pip install esafety[kerberos] (pyspnego with its "
                 "Kerberos backend, gssapi, built against the system's MIT Kerberos)")


class KerberosSetupError(RuntimeError):
    """identity.kerberos is configured but cannot work: said in words an admin can act on."""


@dataclass(frozen=True, slots=True)
class KerberosPrincipal:
    """Who a Kerberos client principal is, for esafety."""

    user: str | None
    """The esafety user name, for a user principal."""
    device: str = ""
    """The client's host name, for a computer's principal."""


def principal_identity(principal: str, realm: str) -> KerberosPrincipal | None:
    """Map a client principal of ``realm`` to an esafety user or device; None to refuse it.

    ``Alice@REALM`` -> user ``alice``; ``host/PC1.centre.local@REALM`` -> device
    ``pc1.centre.local``; ``PC1$@REALM`` -> device ``pc1``. Another realm, another instance
    (``alice/admin``), or a name with characters esafety user names cannot hold: None."""
    name, at, principal_realm = principal.rpartition("@")
    if not at or not name or principal_realm != realm or "\\" in name:
        return None
    if "/" in name:
        service, _, host = name.partition("/")
        host = host.lower().rstrip(".")
        if service.lower() == "host" and HOST_NAME.match(host):
            return KerberosPrincipal(None, host)
        return None
    if name.endswith("$"):
        host = name[:-1].lower()
        return KerberosPrincipal(None, host) if HOST_NAME.match(host) else None
    user = name.lower()
    return KerberosPrincipal(user) if USER_NAME.match(user) else None


def is_negotiate(header: str) -> bool:
    scheme, _, _rest = header.strip().partition(" ")
    return scheme.lower() == SCHEME.lower()


def negotiate_token(header: str) -> bytes | None:
    """The token of a ``Negotiate <base64>`` header; None when it is not one."""
    scheme, _, encoded = header.strip().partition(" ")
    encoded = encoded.strip()
    if scheme.lower() != SCHEME.lower() or not encoded or len(encoded) > MAX_TOKEN_CHARS:
        return None
    try:
        return base64.b64decode(encoded, validate=True) or None
    except (binascii.Error, ValueError):
        return None


def account_group(record: UserRecord | None, network_group: str,
                  unidentified_group: str) -> tuple[str, str] | None:
    """(group, sign-in method) for a Kerberos user: their account's group when they have an
    account, else the network's. None when the account is disabled."""
    if record is None:
        return network_group, METHOD_NETWORK
    if record.disabled:
        return None
    return record.group or unidentified_group, METHOD_ACCOUNT


def still_signed_in(record: UserRecord | None, method: str, group: str,
                    unidentified_group: str) -> bool:
    """Whether a Kerberos sign-in still holds after the user's account changed: the ticket
    proved who they are; their account must still give the same group (or still not exist
    for a sign-in that took the network's group)."""
    if method == METHOD_NETWORK:
        return record is None
    return record is not None and not record.disabled \
        and (record.group or unidentified_group) == group


class KerberosAcceptor:
    """Accepts ``Negotiate`` tokens for the proxy's service principal, from its keytab."""

    def __init__(self, settings: KerberosSettings) -> None:
        try:
            import gssapi
            import spnego
            from gssapi.raw.misc import GSSError
        except ImportError:
            raise KerberosSetupError(MISSING_EXTRA) from None
        self._spnego: Any = spnego
        keytab = os.path.abspath(settings.keytab)
        if not os.access(keytab, os.R_OK):
            raise KerberosSetupError(f"identity.kerberos.keytab {keytab} cannot be read by "
                                     "the proxy (missing, or not readable by its user)")
        service, _, host = settings.service.partition("/")
        self.hostbased = f"{service}@{host}"
        """The service as GSSAPI names a host's service (``HTTP@proxy.centre.local``)."""
        # The acceptor reads the default keytab; set once for the whole process.
        os.environ["KRB5_KTNAME"] = f"FILE:{keytab}"
        try:
            principal = gssapi.Name(settings.service, gssapi.NameType.kerberos_principal)
            canonical = str(principal.canonicalize(gssapi.MechType.kerberos))
            gssapi.Credentials(name=gssapi.Name(self.hostbased,
                                                gssapi.NameType.hostbased_service),
                               usage="accept")
        except GSSError as exc:
            raise KerberosSetupError(
                f"identity.kerberos: the keytab {keytab} has no key for {settings.service} "
                f"({exc.gen_message()})") from None
        self.service_principal = canonical
        self.realm = canonical.rpartition("@")[2]
        """Client principals of this realm are mapped to users; others are refused."""
        self._key = secrets.token_bytes(32)
        self._accepted: dict[tuple[str, bytes], tuple[float, str]] = {}

    def _digest(self, header: str) -> bytes:
        return hmac.digest(self._key, header.encode("utf-8", "surrogatepass"), hashlib.sha256)

    def _accept_token(self, token: bytes) -> str | None:
        """The client principal of one complete SPNEGO/Kerberos token, or None (blocking)."""
        spnego = self._spnego
        try:
            context = spnego.server(protocol="negotiate",
                                    credentials=spnego.CredentialCache(username=self.hostbased))
            context.step(token)
            if not context.complete:
                log.info("Kerberos sign-in refused: the client wanted a second round")
                return None
            if context.negotiated_protocol != "kerberos":  # only Kerberos signs anyone in
                log.info("Negotiate sign-in refused: %s is not Kerberos",
                         context.negotiated_protocol)
                return None
            principal = context.client_principal
        except AttributeError:
            # pyspnego reads the flags of a context GSSAPI refused to establish: the ticket
            # did not decrypt or verify with the keytab's key for the service.
            log.info("Kerberos sign-in refused: the ticket is expired, replayed, forged or "
                     "for another service than %s", self.service_principal)
            return None
        except Exception as exc:  # a malformed token, or GSSAPI's own refusal
            log.info("Kerberos sign-in refused: %s", str(exc).splitlines()[0][:300]
                     if str(exc) else type(exc).__name__)
            return None
        return principal if isinstance(principal, str) and principal else None

    async def accept(self, header: str, address: str) -> KerberosPrincipal | None:
        """Who signed in with this ``Negotiate`` header from ``address``; None if refused."""
        token = negotiate_token(header)
        if token is None:
            return None
        now = time.monotonic()
        slot = (address, self._digest(header))
        seen = self._accepted.get(slot)
        if seen is not None and seen[0] >= now:
            principal = seen[1]
        else:
            try:
                accepted = await asyncio.wait_for(asyncio.to_thread(self._accept_token, token),
                                                   ACCEPT_TIMEOUT_SECONDS)
            except TimeoutError:
                log.warning("accepting a Kerberos ticket took over %.0f s: refused",
                            ACCEPT_TIMEOUT_SECONDS)
                return None
            if accepted is None:
                return None
            principal = accepted
            if len(self._accepted) > 10_000:
                self._accepted = {k: v for k, v in self._accepted.items() if v[0] >= now}
            self._accepted[slot] = (now + ACCEPTED_SECONDS, principal)
        found = principal_identity(principal, self.realm)
        if found is None:
            log.info("Kerberos principal %s is not mapped to a user or device: refused",
                     principal)
        return found
