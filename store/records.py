"""Typed records stored in Redis, with their (de)serialisation."""

from __future__ import annotations

import functools
import math
import secrets
from dataclasses import asdict, dataclass, fields
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from deployment.account_roles import ROLES as ROLES

_ID_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"  # Crockford base32: no I, L, O, U


def day_of(ts: float, tz: ZoneInfo) -> str:
    """The local calendar day of an epoch time, as ``YYYYMMDD``."""
    return _day_of_second(math.floor(ts), tz)


@functools.lru_cache(maxsize=8)
def _day_of_second(second: int, tz: ZoneInfo) -> str:
    # Days start on whole seconds, so the second decides the day; a proxy asks many times a
    # second (every logged request), and the zone conversion is most of a hit id's cost.
    return datetime.fromtimestamp(second, tz).strftime("%Y%m%d")


def new_hit_id(ts: float, tz: ZoneInfo) -> str:
    """A reference a learner can read out: ``20261122-7KQ2X9AB`` (day, then 40 random bits)."""
    bits = secrets.randbits(40)
    token = "".join(_ID_ALPHABET[(bits >> shift) & 31] for shift in range(35, -1, -5))
    return f"{day_of(ts, tz)}-{token}"


def hit_id_day(hit_id: str) -> str | None:
    day, sep, token = hit_id.partition("-")
    if not sep or len(day) != 8 or not day.isdigit() or len(token) != 8:
        return None
    if any(c not in _ID_ALPHABET for c in token.upper()):
        return None
    return day


@dataclass(frozen=True, slots=True)
class HitRecord:
    """One logged request. Holds the minimum needed for safeguarding and reports."""

    id: str
    ts: float
    user: str
    """Empty when the device was not identified."""
    group: str
    client_ip: str
    site: str
    """The centre or site id (``off-network`` for the extension's own blocks)."""
    host: str
    path: str
    """Only for plain HTTP and decrypted HTTPS; empty when the proxy saw only the host."""
    action: str
    category: str
    rule: str
    source: str
    """The list or file that matched, e.g. ``ut1/gambling/domains``."""
    severity: str
    alert: bool
    decrypted: bool
    method: str
    search_terms: str = ""
    """Search query text, only when it matched the Prevent watch list."""
    device: str = ""
    """The device's id where known (the MAC address from RADIUS, the extension's install id,
    the Kerberos host)."""
    identified_by: str = ""
    """How the person was identified: ``auth``, ``portal``, ``radius``, ``network`` or
    ``unidentified`` (empty in records written before it was kept)."""

    def to_fields(self) -> list[str]:
        """Values in field order, as strings, for the stream."""
        out = []
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, bool):
                out.append("1" if value else "0")
            elif isinstance(value, float):
                out.append(f"{value:.3f}")
            else:
                out.append(str(value))
        return out

    @classmethod
    def field_names(cls) -> list[str]:
        return [f.name for f in fields(cls)]

    @classmethod
    def from_stream(cls, data: dict[str, str]) -> HitRecord:
        kwargs: dict[str, Any] = {}
        for f in fields(cls):
            raw = data.get(f.name, "")
            if f.name == "ts":
                kwargs[f.name] = float(raw or 0)
            elif f.name in ("alert", "decrypted"):
                kwargs[f.name] = raw == "1"
            else:
                kwargs[f.name] = raw
        return cls(**kwargs)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)




def natural_group(role: str) -> str:
    """The filtering group a role's users get unless told otherwise."""
    return "learner" if role == "learner" else "staff"


@dataclass(frozen=True, slots=True)
class UserRecord:
    name: str
    role: str
    group: str
    """The filtering group (learner, staff, guest, or one from the config)."""
    password_hash: str
    created_at: float
    disabled: bool = False
    display_name: str = ""
    managed_by: str = ""
    """``directory`` for an account the directory sync made and keeps (its group, role and
    enabled state follow the directory groups); empty for a local account."""
    disabled_by: str = ""
    """``directory`` when the directory sync disabled the account (a leaver), so only the sync
    enables it again; empty otherwise."""
    sso_subject: str = ""
    """``issuer|sub`` of the single sign-on person this account is; empty for a local account.
    An SSO account has no password and cannot sign in with one."""

    @property
    def sso(self) -> bool:
        return bool(self.sso_subject)

    def to_hash(self) -> dict[str, str]:
        return {"name": self.name, "role": self.role, "group": self.group,
                "password_hash": self.password_hash, "created_at": f"{self.created_at:.3f}",
                "disabled": "1" if self.disabled else "0", "display_name": self.display_name,
                "managed_by": self.managed_by, "disabled_by": self.disabled_by,
                "sso_subject": self.sso_subject}

    @classmethod
    def from_hash(cls, data: dict[str, str]) -> UserRecord:
        return cls(name=data["name"], role=data["role"], group=data.get("group", ""),
                   password_hash=data.get("password_hash", ""),
                   created_at=float(data.get("created_at", 0) or 0),
                   disabled=data.get("disabled") == "1",
                   display_name=data.get("display_name", ""),
                   managed_by=data.get("managed_by", ""),
                   disabled_by=data.get("disabled_by", ""),
                   sso_subject=data.get("sso_subject", ""))

    def public(self) -> dict[str, Any]:
        """What an API may show about a user (never the password hash)."""
        return {"name": self.name, "role": self.role, "group": self.group,
                "display_name": self.display_name, "disabled": self.disabled,
                "created_at": self.created_at, "managed_by": self.managed_by,
                "disabled_by": self.disabled_by, "sso": self.sso}
