"""The directory sync: read group membership from LDAP or Active Directory (``ldap3``) on a
schedule and make each member's esafety account follow it (:mod:`admin_api.directory_groups`
holds the rules: who gets which group and role, and what happens to a leaver).

Every admin host runs the schedule; a Redis key with the interval as its time to live lets
one of them sync each interval, and a second key with a time to live keeps two syncs (a
scheduled one and ``esafety directory sync``) from running at once.

Reading the directory: a simple bind with ``bind_dn`` and the password from the environment
variable named by ``password_env``; ``ldaps://``, or ``ldap://`` with ``start_tls``
(certificates checked against ``ca_file`` or the system's CAs). Plain ``ldap://`` to a host
other than the loopback is allowed but logged as a warning: it sends the bind password in
clear. For each mapped group DN the group entry's ``member`` and ``uniqueMember`` DNs are
resolved to user names (the ``user_attribute`` of each entry, or straight from the DN when
its first part is that attribute; member groups are followed), and ``memberUid`` values
(posix groups) are user names already; with ``base_dn`` set, each name must still be a user
there (a group may still list someone deleted). With ``nested_groups`` (Active Directory) the
users are searched under ``base_dn`` with the ``1.2.840.113556.1.4.1941`` (in-chain) matching
rule, which also finds members of nested groups, leaving out accounts disabled in AD.

Failures never look like an empty directory: a bind refused, the server unreachable, a mapped
group DN that does not exist, or a search error stop the sync with one clear log line and
change nothing; the next interval tries again. A directory that lists nobody at all in any
mapped group while it manages enabled accounts is treated as a fault as well (nothing is
disabled). Every change is written to the audit log as ``directory:ldap``, through
:mod:`store.accounts`, so proxies re-check the changed users' sign-ins within a second.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import os
import socket
import ssl
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from ldap3 import BASE, NONE, SIMPLE, SUBTREE, Connection, Server, Tls
from ldap3.core.exceptions import LDAPException, LDAPNoSuchObjectResult
from ldap3.utils.conv import escape_filter_chars
from ldap3.utils.dn import parse_dn
from redis.exceptions import RedisError

from admin_api.directory_groups import (
    MANAGED_BY,
    AccountChange,
    DirectoryConfigError,
    SyncPlan,
    check_mapping,
    plan_sync,
    valid_user_name,
)
from deployment.config import LdapSettings
from store.redis_store import Store

log = logging.getLogger(__name__)
AUDIT_ACTOR = "directory:ldap"
AUDIT_ACTIONS = {"create": "user.create", "update": "user.update", "disable": "user.disable",
                 "enable": "user.enable"}
CONNECT_SECONDS = 10
RECEIVE_SECONDS = 30
RUN_CLAIM_SECONDS = 600.0
"""A sync that has not finished after this long no longer keeps others from running."""
CHECK_EVERY_SECONDS = 30.0
MAX_NESTING = 8
EXISTENCE_BATCH = 50
DISABLED_IN_AD = "(!(userAccountControl:1.2.840.113556.1.4.803:=2))"
"""Active Directory: leave out accounts disabled there (a common way to mark a leaver)."""
MEMBER_ATTRIBUTES = ("member", "uniqueMember", "memberUid")
IN_CHAIN = "1.2.840.113556.1.4.1941"


class DirectoryError(Exception):
    """The directory could not be read (or is set up wrongly): nothing was changed."""


@dataclass(frozen=True)
class SyncReport:
    changes: tuple[AccountChange, ...]
    kept_local: tuple[str, ...]
    members: int
    skipped_names: tuple[str, ...]

    def lines(self) -> list[str]:
        out = [change.describe() for change in self.changes]
        out += [f"kept {name}: a local account of that name exists, which the directory "
                "does not manage" for name in self.kept_local]
        out += [f"skipped {name!r}: not a valid esafety user name" for name in
                self.skipped_names]
        return out


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class DirectoryReader:
    """Reads the mapped groups' members (blocking: run it in a thread)."""

    def __init__(self, settings: LdapSettings, password: str) -> None:
        self.settings = settings
        self._password = password
        self.skipped: set[str] = set()

    def _server(self) -> Server:
        parts = urlsplit(self.settings.url)
        secure = parts.scheme == "ldaps"
        host = parts.hostname or ""
        if not secure and not self.settings.start_tls and not is_loopback(host):
            log.warning("identity.ldap.url %s is plain ldap:// without start_tls: the bind "
                        "password and the member lists cross the network unencrypted; use "
                        "ldaps:// or start_tls: true", self.settings.url)
        tls = Tls(validate=ssl.CERT_REQUIRED, ca_certs_file=self.settings.ca_file or None)
        return Server(host, port=parts.port or (636 if secure else 389), use_ssl=secure,
                      tls=tls, get_info=NONE, connect_timeout=CONNECT_SECONDS)

    def read(self) -> dict[str, frozenset[str]]:
        """Mapped group DN -> the user names it lists. Raises :class:`DirectoryError`."""
        settings = self.settings
        where = settings.url
        try:
            connection = Connection(
                self._server(), user=settings.bind_dn or None,
                password=self._password if settings.bind_dn else None,
                authentication=SIMPLE if settings.bind_dn else None, raise_exceptions=True,
                receive_timeout=RECEIVE_SECONDS, read_only=True, auto_range=True)
        except LDAPException as exc:
            raise DirectoryError(f"cannot use the directory at {where}: {exc}") from exc
        try:
            try:
                connection.open()
                if settings.start_tls:
                    connection.start_tls()
                connection.bind()
            except LDAPException as exc:
                raise DirectoryError(f"cannot sign in to the directory at {where} as "
                                     f"{settings.bind_dn or 'anonymous'}: "
                                     f"{_reason(exc)}") from exc
            members: dict[str, frozenset[str]] = {}
            for dn in dict.fromkeys([*settings.groups, *settings.roles]):
                try:
                    members[dn] = frozenset(self._members(connection, dn))
                except LDAPNoSuchObjectResult as exc:
                    raise DirectoryError(f"the mapped directory group {dn!r} does not exist "
                                         f"at {where}") from exc
                except LDAPException as exc:
                    raise DirectoryError(f"cannot read the directory group {dn!r} at {where}: "
                                         f"{_reason(exc)}") from exc
            return members
        except OSError as exc:
            raise DirectoryError(f"the directory at {where} failed: {exc}") from exc
        finally:
            try:
                connection.unbind()
            except (LDAPException, OSError):
                pass

    def _members(self, connection: Connection, dn: str) -> set[str]:
        if self.settings.nested_groups:
            return self._members_in_chain(connection, dn)
        names: set[str] = set()
        self._group_members(connection, dn, names, {dn.lower()}, 0)
        return self._existing(connection, names) if self.settings.base_dn else names

    def _existing(self, connection: Connection, names: set[str]) -> set[str]:
        """The names that are still a user's under ``base_dn``: a group may still list someone
        deleted from the directory (a ``memberUid``, or a DN nothing keeps in step), who must
        not keep access."""
        attribute = self.settings.user_attribute
        found: set[str] = set()
        ordered = sorted(names)
        try:
            connection.search(self.settings.base_dn, "(objectClass=*)", BASE,
                              attributes=["objectClass"])
        except LDAPNoSuchObjectResult as exc:
            raise DirectoryError(f"identity.ldap.base_dn {self.settings.base_dn!r} does not "
                                 "exist in the directory") from exc
        for start in range(0, len(ordered), EXISTENCE_BATCH):
            batch = ordered[start:start + EXISTENCE_BATCH]
            query = "(|" + "".join(f"({attribute}={escape_filter_chars(name)})"
                                   for name in batch) + ")"
            for item in connection.extend.standard.paged_search(
                    self.settings.base_dn, query, SUBTREE, attributes=[attribute],
                    paged_size=500, generator=True):
                if item.get("type") != "searchResEntry":
                    continue
                values = (item.get("attributes") or {}).get(attribute)
                for value in values if isinstance(values, list) else [values]:
                    if value is not None:
                        found.add(str(value).lower())
        gone = {name for name in names if name.lower() not in found}
        for name in sorted(gone):
            log.warning("directory group lists %s, who is not under %s; left out", name,
                        self.settings.base_dn)
        return names - gone

    def _entry(self, connection: Connection, dn: str, attributes: list[str]
               ) -> dict[str, list[str]]:
        connection.search(dn, "(objectClass=*)", BASE, attributes=attributes)
        for item in connection.response or []:
            if item.get("type") == "searchResEntry":
                return {str(k).lower(): [str(v) for v in (vals if isinstance(vals, list)
                                                          else [vals])]
                        for k, vals in (item.get("attributes") or {}).items()}
        raise LDAPNoSuchObjectResult(f"no entry {dn}")

    def _group_members(self, connection: Connection, dn: str, names: set[str],
                       seen: set[str], depth: int) -> None:
        entry = self._entry(connection, dn, list(MEMBER_ATTRIBUTES))
        for uid in entry.get("memberuid", []):
            self._add(names, uid)
        member_dns = [value.split("#", 1)[0] if "#'" in value else value
                      for value in entry.get("member", []) + entry.get("uniquemember", [])]
        for member_dn in member_dns:
            if member_dn.lower() in seen:
                continue
            seen.add(member_dn.lower())
            name = self._name_from_dn(member_dn)
            if name is not None:
                self._add(names, name)
                continue
            self._resolve_member(connection, member_dn, names, seen, depth)

    def _resolve_member(self, connection: Connection, member_dn: str, names: set[str],
                        seen: set[str], depth: int) -> None:
        attribute = self.settings.user_attribute
        try:
            entry = self._entry(connection, member_dn,
                                [attribute, *MEMBER_ATTRIBUTES])
        except LDAPNoSuchObjectResult:
            log.warning("directory group member %s does not exist; left out", member_dn)
            return
        values = entry.get(attribute.lower(), [])
        if values:
            self._add(names, values[0])
        elif any(entry.get(a.lower()) for a in MEMBER_ATTRIBUTES):
            if depth < MAX_NESTING:
                self._group_members(connection, member_dn, names, seen, depth + 1)
        else:
            log.warning("directory group member %s has no %s; left out", member_dn, attribute)

    def _name_from_dn(self, dn: str) -> str | None:
        try:
            first = parse_dn(dn)[0]
        except (LDAPException, IndexError):
            return None
        attribute, value = str(first[0]), str(first[1])
        if attribute.lower() != self.settings.user_attribute.lower() or "\\" in value:
            return None
        return value

    def _members_in_chain(self, connection: Connection, dn: str) -> set[str]:
        attribute = self.settings.user_attribute
        # the group must exist: a missing one is an error, never "no members"
        self._entry(connection, dn, ["objectClass"])
        names: set[str] = set()
        query = (f"(&({attribute}=*)(memberOf:{IN_CHAIN}:={escape_filter_chars(dn)})"
                 f"{DISABLED_IN_AD})")
        entries = connection.extend.standard.paged_search(
            self.settings.base_dn, query, SUBTREE, attributes=[attribute], paged_size=500,
            generator=True)
        for item in entries:
            if item.get("type") != "searchResEntry":
                continue
            value = (item.get("attributes") or {}).get(attribute)
            value = value[0] if isinstance(value, list) and value else value
            if value:
                self._add(names, str(value))
        return names

    def _add(self, names: set[str], name: str) -> None:
        if valid_user_name(name):
            names.add(name)
        else:
            self.skipped.add(name)


def _reason(exc: LDAPException) -> str:
    text = str(exc).strip() or type(exc).__name__
    if "invalidCredentials" in text or "invalid credentials" in text.lower():
        return "the bind DN or its password is wrong (invalidCredentials)"
    return text


class DirectorySync:
    """One deployment's directory sync: :meth:`sync_now` once, or :meth:`run` on a schedule."""

    def __init__(self, store: Store, settings: LdapSettings, *, profiles: Mapping[str, Any],
                 unidentified_group: str, environ: Mapping[str, str] | None = None,
                 holder: str | None = None) -> None:
        self.store = store
        self.settings = settings
        self.profiles = profiles
        self.unidentified_group = unidentified_group
        self.environ = os.environ if environ is None else environ
        self.holder = holder or f"{socket.gethostname()}:{os.getpid()}:{id(self):x}"

    def _password(self) -> str:
        name = self.settings.password_env
        if not self.settings.bind_dn:
            return ""
        if not name:
            raise DirectoryError("identity.ldap.bind_dn is set but password_env is not: name "
                                 "the environment variable that holds the bind password")
        password = self.environ.get(name, "")
        if not password:
            raise DirectoryError(f"the environment variable {name} (identity.ldap.password_env) "
                                 "is not set: the directory's bind password is read from it")
        return password

    async def sync_now(self) -> SyncReport:
        """Sync once, unless another sync is running. Raises :class:`DirectoryError` (nothing
        changed)."""
        try:
            check_mapping(self.settings, self.profiles)
        except DirectoryConfigError as exc:
            raise DirectoryError(str(exc)) from exc
        if not await self.store.accounts.claim_directory_sync_run(self.holder,
                                                                  RUN_CLAIM_SECONDS):
            raise DirectoryError("another directory sync is running; try again shortly")
        try:
            return await self._sync()
        finally:
            await self.store.accounts.release_directory_sync_run(self.holder)

    async def _sync(self) -> SyncReport:
        reader = DirectoryReader(self.settings, self._password())
        members = await asyncio.to_thread(reader.read)
        accounts = {user.name: user for user in await self.store.accounts.all()}
        plan = plan_sync(self.settings, members, accounts, profiles=self.profiles,
                         unidentified_group=self.unidentified_group, now=time.time())
        self._refuse_empty(plan, accounts)
        for change in plan.changes:
            await self._apply(change)
        report = SyncReport(plan.changes, plan.kept_local, plan.members,
                            tuple(sorted(reader.skipped)))
        for name in report.kept_local:
            log.warning("directory sync: %s is a local account (not managed by the directory); "
                        "left unchanged", name)
        log.info("directory sync: %d people in the mapped groups, %d accounts changed",
                 report.members, len(report.changes))
        return report

    @staticmethod
    def _refuse_empty(plan: SyncPlan, accounts: Mapping[str, Any]) -> None:
        managed = [u for u in accounts.values()
                   if u.managed_by == MANAGED_BY and not u.disabled]
        if plan.members == 0 and managed:
            raise DirectoryError(
                f"the directory listed nobody in any mapped group, but {len(managed)} enabled "
                "accounts come from it: taken as a directory fault, so nobody was disabled")

    async def _apply(self, change: AccountChange) -> None:
        accounts = self.store.accounts
        await accounts.save(change.after)
        if change.kind == "disable" and change.before is not None \
                and not change.before.disabled:
            await accounts.revoke_all_tokens(change.name)
        await self.store.audit.append(
            actor=AUDIT_ACTOR, action=AUDIT_ACTIONS[change.kind], target=change.name,
            before=change.before.public() if change.before else None,
            after=change.after.public())

    async def run(self, stop: asyncio.Event) -> None:
        """Every ``sync_minutes``, on whichever admin host claims the interval."""
        interval = self.settings.sync_minutes * 60
        check = min(CHECK_EVERY_SECONDS, interval)
        while not stop.is_set():
            try:
                if await self.store.accounts.claim_directory_sync_turn(self.holder, interval):
                    report = await self.sync_now()
                    for line in report.lines():
                        log.info("directory sync: %s", line)
            except DirectoryError as exc:
                log.error("directory sync failed, nothing changed (tried again in %.0f s): %s",
                          interval, exc)
            except (RedisError, OSError) as exc:
                log.warning("directory sync could not reach Redis: %s", exc)
            except Exception:  # a fault of ours must not end the schedule
                log.exception("directory sync failed unexpectedly, nothing more changed")
            try:
                await asyncio.wait_for(stop.wait(), timeout=check)
            except TimeoutError:
                pass
