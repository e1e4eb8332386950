"""Directory groups to esafety accounts: what one sync should change, worked out without
touching the directory or Redis.

The rules (``identity.ldap`` in the config; README "Directory groups"):

* A member of any mapped group (``groups:`` or ``roles:``) gets an account managed by the
  directory (``managed_by: directory``), made without a password: it signs in by single
  sign-on, Kerberos or the Wi-Fi portal, never with a password.
* Its **group** is the esafety group of the first DN under ``groups:`` (in the config's
  order) that lists it, so a person in two mapped groups gets the one listed first: list the
  most restrictive (learners) first. Only in a ``roles:`` group: the role's natural group
  (``learner`` for learners, else ``staff``).
* Its **role** is the most privileged role of the DNs under ``roles:`` that list it
  (learner < staff < it_support < manager < dsl < admin); none: ``learner``, the least. The
  directory never gives a role it was not told to.
* A leaver (a managed account in no mapped group any more) is **disabled**, its sign-ins
  ended, its role set to ``learner`` and its group to the unidentified group: a leaver must lose
  access, and a disabled account cannot be used by any sign-in. Rejoining enables it again,
  unless an administrator disabled it (``disabled_by`` is empty then).
* A local account (no ``managed_by``), such as the first admin or a break-glass account, is
  never changed, even when the directory lists a person of the same name.
* Account names are the directory's user names in **lower case**: directories compare them
  without case (``JSmith`` and ``jsmith`` are one Active Directory account), and a Kerberos
  sign-in or a RADIUS user name reaches the same account whatever case it arrives in.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace

from deployment.config import LdapSettings
from store.accounts import USER_NAME
from store.records import ROLES, UserRecord, natural_group

MANAGED_BY = "directory"
LEAVER_ROLE = "learner"
DEFAULT_ROLE = "learner"


class DirectoryConfigError(ValueError):
    """The ``identity.ldap`` mapping names something esafety does not know."""


@dataclass(frozen=True)
class AccountChange:
    """One account the sync creates, updates, disables (a leaver) or enables (a returner)."""

    kind: str
    """``create``, ``update``, ``disable`` or ``enable``."""
    before: UserRecord | None
    after: UserRecord

    @property
    def name(self) -> str:
        return self.after.name

    def describe(self) -> str:
        after = self.after
        if self.before is None:
            return f"created {after.name} ({after.role}, group {after.group})"
        before = self.before
        parts = [f"{label} {old} -> {new}" for label, old, new in (
            ("role", before.role, after.role), ("group", before.group, after.group))
            if old != new]
        if before.disabled != after.disabled:
            parts.append("disabled (left every mapped group)" if after.disabled else "enabled")
        return f"{'updated' if self.kind == 'update' else self.kind + 'd'} {after.name}: " \
               + ", ".join(parts)


@dataclass(frozen=True)
class SyncPlan:
    changes: tuple[AccountChange, ...]
    kept_local: tuple[str, ...]
    """Directory members whose name belongs to a local account, which is left alone."""
    members: int
    """How many people the mapped groups list."""


def check_mapping(settings: LdapSettings, profiles: Mapping[str, object]) -> None:
    """Raise :class:`DirectoryConfigError` naming a role or group esafety does not have."""
    for dn, role in settings.roles.items():
        if role not in ROLES:
            raise DirectoryConfigError(f"identity.ldap.roles: {dn!r} maps to {role!r}, which is "
                                       f"not a role (one of: {', '.join(ROLES)})")
    for dn, group in settings.groups.items():
        if group not in profiles:
            raise DirectoryConfigError(f"identity.ldap.groups: {dn!r} maps to {group!r}, which "
                                       "is not a group under groups")
    if not settings.groups and not settings.roles:
        raise DirectoryConfigError("identity.ldap maps no directory groups (groups: or roles:)")


def valid_user_name(name: str) -> bool:
    return bool(USER_NAME.match(name))


def plan_sync(settings: LdapSettings, members: Mapping[str, frozenset[str]],
              accounts: Mapping[str, UserRecord], *, profiles: Mapping[str, object],
              unidentified_group: str, now: float) -> SyncPlan:
    """The changes that make ``accounts`` follow ``members`` (mapped DN -> user names, for every
    DN under ``groups:`` and ``roles:``)."""
    wanted: dict[str, tuple[str, str]] = {}
    members = {dn: frozenset(name.lower() for name in names) for dn, names in members.items()}
    names = sorted(set().union(*members.values()) if members else set())
    for name in names:
        groups = [group for dn, group in settings.groups.items() if name in members.get(dn, ())]
        roles = [role for dn, role in settings.roles.items() if name in members.get(dn, ())]
        role = max(roles, key=ROLES.index) if roles else DEFAULT_ROLE
        if groups:
            group = groups[0]
        else:
            natural = natural_group(role)
            group = natural if natural in profiles else unidentified_group
        wanted[name] = (role, group)

    changes: list[AccountChange] = []
    kept_local: list[str] = []
    for name, (role, group) in wanted.items():
        current = accounts.get(name)
        if current is None:
            changes.append(AccountChange("create", None, UserRecord(
                name=name, role=role, group=group, password_hash="", created_at=now,
                managed_by=MANAGED_BY)))
            continue
        if current.managed_by != MANAGED_BY:
            kept_local.append(name)
            continue
        returning = current.disabled and current.disabled_by == MANAGED_BY
        updated = replace(current, role=role, group=group,
                          disabled=False if returning else current.disabled,
                          disabled_by="" if returning else current.disabled_by)
        if updated != current:
            changes.append(AccountChange("enable" if returning else "update", current, updated))

    for name, current in sorted(accounts.items()):
        if current.managed_by != MANAGED_BY or name in wanted:
            continue
        left = replace(current, role=LEAVER_ROLE, group=unidentified_group, disabled=True,
                       disabled_by=current.disabled_by if current.disabled else MANAGED_BY)
        if left != current:
            changes.append(AccountChange("disable", current, left))
    return SyncPlan(tuple(changes), tuple(kept_local), len(wanted))
