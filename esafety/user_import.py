"""Importing user accounts from a CSV file (``esafety users import learners.csv``).

Columns, with a header row: ``username``, ``password`` (blank: one is generated and printed
once), ``role`` (default ``learner``) and ``group`` (default: the role's natural group).
Every row is checked before any account is written, so a bad file changes nothing.
"""

from __future__ import annotations

import csv
import secrets
from collections.abc import Iterable
from dataclasses import dataclass

from store.accounts import MIN_PASSWORD_LENGTH, USER_NAME
from store.records import ROLES, natural_group

REQUIRED_COLUMNS = ("username",)
KNOWN_COLUMNS = ("username", "password", "role", "group", "display_name")


class UserImportError(ValueError):
    pass


@dataclass(frozen=True)
class ImportRow:
    line: int
    username: str
    password: str
    generated: bool
    role: str
    group: str
    display_name: str


def parse_rows(lines: Iterable[str], groups: Iterable[str], *, default_role: str | None = None,
               default_group: str | None = None) -> list[ImportRow]:
    """The rows of a CSV file, every one checked. A row without a role gets
    ``default_role`` (else ``learner``); one without a group gets ``default_group`` (else
    the role's natural group)."""
    known_groups = list(groups)
    reader = csv.DictReader(lines)
    columns = [c.strip().lower() for c in reader.fieldnames or []]
    missing = [c for c in REQUIRED_COLUMNS if c not in columns]
    if missing:
        raise UserImportError(f"the header row needs a {missing[0]!r} column")
    unknown = [c for c in columns if c not in KNOWN_COLUMNS]
    if unknown:
        raise UserImportError(f"unknown column {unknown[0]!r}; expected {', '.join(KNOWN_COLUMNS)}")
    reader.fieldnames = columns
    rows: list[ImportRow] = []
    problems: list[str] = []
    seen: set[str] = set()
    for number, raw in enumerate(reader, start=2):
        record = {k: (v or "").strip() for k, v in raw.items() if k is not None}
        name = record.get("username", "")
        if not name and not any(record.values()):
            continue
        role = record.get("role") or default_role or "learner"
        group = record.get("group") or default_group or natural_group(role)
        password = record.get("password", "")
        generated = not password
        if generated:
            password = secrets.token_urlsafe(12)
        if not USER_NAME.match(name):
            problems.append(f"line {number}: {name!r} is not a user name (1-64 letters, digits, "
                            ". _ @ -)")
        elif name.lower() in seen:
            problems.append(f"line {number}: {name!r} appears twice")
        if role not in ROLES:
            problems.append(f"line {number}: unknown role {role!r}; known roles: "
                            f"{', '.join(ROLES)}")
        if group not in known_groups:
            problems.append(f"line {number}: unknown group {group!r}; known groups: "
                            f"{', '.join(known_groups)}")
        if len(password) < MIN_PASSWORD_LENGTH:
            problems.append(f"line {number}: the password is shorter than "
                            f"{MIN_PASSWORD_LENGTH} characters")
        seen.add(name.lower())
        rows.append(ImportRow(number, name, password, generated, role, group,
                              record.get("display_name", "")))
    if problems:
        raise UserImportError("nothing was imported:\n  " + "\n  ".join(problems))
    return rows
