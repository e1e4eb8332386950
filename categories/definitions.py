"""Category definitions: one YAML file per category, validated against a schema.

A category says what it covers (its UK Safer Internet Centre category), how serious a hit is,
whether a hit raises a safeguarding alert, whether anyone may override it, which imported
list categories feed it, and its own hand-curated domains and URL prefixes: the built-in
starter list, active with no list imported, so that a fresh install blocks the best-known sites
of each prohibited category (an imported list adds to it).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from enum import StrEnum
from importlib import resources
from pathlib import Path
from typing import Any

from categories.list_formats import EntryKind, ListEntry, url_entry
from categories.validated_yaml import (
    SchemaProblem,
    ValidationFailed,
    line_of_field,
    load_validated_yaml,
)


class CategoryKind(StrEnum):
    BLOCK = "block"
    """Prohibited: blocked unless a group profile or an override allows it."""
    ALLOW = "allow"
    """An allow-list (e.g. sex education): beats every block category except illegal lists."""
    NEUTRAL = "neutral"
    """Classification only (e.g. banking): allowed unless a group profile blocks it."""


class Severity(StrEnum):
    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"
    CRITICAL = "critical"

    @property
    def rank(self) -> int:
        return _SEVERITY_RANK[self]


_SEVERITY_RANK = {Severity.LOW: 1, Severity.MEDIUM: 2, Severity.HIGH: 3, Severity.CRITICAL: 4}

UKSIC_CATEGORIES = (
    "child_abuse", "discrimination", "drugs", "extremism", "gambling", "hate_speech",
    "malware_hacking", "pornography", "piracy", "self_harm", "violence",
    "firearms_weapons", "circumvention", "none",
)

CATEGORY_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["id", "title", "description", "uksic", "kind", "severity"],
    "properties": {
        "id": {"type": "string", "pattern": "^[a-z][a-z0-9_]{1,40}$",
               "description": "lower-case letters, digits and _ (e.g. gambling)"},
        "title": {"type": "string", "minLength": 1, "maxLength": 80},
        "description": {"type": "string", "minLength": 1},
        "reason": {"type": "string", "minLength": 1,
                   "description": "plain-English reason shown on the block page"},
        "uksic": {"enum": list(UKSIC_CATEGORIES)},
        "kind": {"enum": [k.value for k in CategoryKind]},
        "severity": {"enum": [s.value for s in Severity]},
        "safeguarding_alert": {"type": "boolean"},
        "overridable": {"type": "boolean"},
        "illegal": {"type": "boolean"},
        "no_decrypt": {"type": "boolean"},
        "lists": {"type": "array", "items": {"type": "string", "pattern": "^[A-Za-z0-9_.-]+$"},
                  "uniqueItems": True},
        "domains": {"type": "array", "items": {"type": "string", "minLength": 1}},
        "urls": {"type": "array", "items": {"type": "string", "minLength": 1}},
    },
}


@dataclass(frozen=True, slots=True)
class Category:
    id: str
    title: str
    description: str
    reason: str
    uksic: str
    kind: CategoryKind
    severity: Severity
    safeguarding_alert: bool
    overridable: bool
    illegal: bool
    no_decrypt: bool
    lists: tuple[str, ...]
    entries: tuple[ListEntry, ...]
    """Hand-curated domains and URL prefixes, with their line in the YAML file."""
    source_file: str

    @property
    def starter_source(self) -> str:
        """How a match on the built-in starter entries names its source, e.g.
        ``built-in categories/definitions/gambling.yaml``."""
        return f"{BUILT_IN_SOURCE_PREFIX}{self.source_file}"


BUILT_IN_SOURCE_PREFIX = "built-in "
"""Starts the source of every match on a category's own (built-in starter) entries."""


class CategorySet(Mapping[str, Category]):
    """All categories by id, with the list-category → category mapping."""

    def __init__(self, categories: list[Category], digest: str) -> None:
        self._by_id = {c.id: c for c in categories}
        self.digest = digest
        feeds: dict[str, list[str]] = {}
        for category in categories:
            for list_name in category.lists:
                feeds.setdefault(list_name, []).append(category.id)
        self.categories_for_list: dict[str, tuple[str, ...]] = {k: tuple(v) for k, v in feeds.items()}

    def __getitem__(self, key: str) -> Category:
        return self._by_id[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._by_id)

    def __len__(self) -> int:
        return len(self._by_id)

    @property
    def mapped_lists(self) -> frozenset[str]:
        return frozenset(self.categories_for_list)


def builtin_definitions_dir() -> Path:
    return Path(str(resources.files("categories") / "definitions"))


def _category_from(data: dict[str, Any], path: Path, text: str) -> Category:
    name = path.name
    problems: list[SchemaProblem] = []
    if data["id"] != path.stem:
        problems.append(SchemaProblem(name, line_of_field(text, ["id"]), "id",
                                      f"must equal the file name {path.stem!r}"))
    illegal = bool(data.get("illegal", False))
    overridable = bool(data.get("overridable", not illegal))
    if illegal and overridable:
        problems.append(SchemaProblem(name, line_of_field(text, ["overridable"]), "overridable",
                                      "an illegal list can never be overridden"))
    if illegal and data["kind"] != CategoryKind.BLOCK.value:
        problems.append(SchemaProblem(name, line_of_field(text, ["kind"]), "kind",
                                      "an illegal list must be of kind block"))
    entries: list[ListEntry] = []
    for field_name, kind in (("domains", EntryKind.DOMAIN), ("urls", EntryKind.URL)):
        for index, value in enumerate(data.get(field_name, [])):
            line = line_of_field(text, [field_name, index]) or 0
            parsed = url_entry(value)
            if isinstance(parsed, str):
                problems.append(SchemaProblem(name, line, f"{field_name}[{index}]",
                                              f"{value!r} is not valid: {parsed}"))
            elif kind is EntryKind.DOMAIN and parsed.kind is not EntryKind.DOMAIN:
                problems.append(SchemaProblem(name, line, f"{field_name}[{index}]",
                                              f"{value!r} has a path; put it under urls"))
            else:
                entries.append(ListEntry(parsed.kind, parsed.value, line))
    if problems:
        raise ValidationFailed(problems)
    return Category(
        id=data["id"],
        title=data["title"],
        description=data["description"].strip(),
        reason=data.get("reason", data["description"]).strip(),
        uksic=data["uksic"],
        kind=CategoryKind(data["kind"]),
        severity=Severity(data["severity"]),
        safeguarding_alert=bool(data.get("safeguarding_alert", False)),
        overridable=overridable,
        illegal=illegal,
        no_decrypt=bool(data.get("no_decrypt", False)),
        lists=tuple(data.get("lists", [])),
        entries=tuple(entries),
        source_file=f"categories/definitions/{name}",
    )


def load_definitions(directory: Path | None = None) -> CategorySet:
    """Load and validate every ``*.yaml`` in ``directory`` (default: the built-in set).

    Raises :class:`ValidationFailed` listing every problem in every file.
    """
    folder = directory or builtin_definitions_dir()
    files = sorted(folder.glob("*.yaml"))
    if not files:
        raise ValidationFailed([SchemaProblem(str(folder), None, "", "no category files found")])
    categories: list[Category] = []
    problems: list[SchemaProblem] = []
    digest = hashlib.sha256()
    for path in files:
        text = path.read_text(encoding="utf-8", errors="replace")
        digest.update(path.name.encode() + b"\0" + text.encode())
        try:
            data = load_validated_yaml(path, CATEGORY_SCHEMA, display_name=path.name)
            categories.append(_category_from(data, path, text))
        except ValidationFailed as exc:
            problems.extend(exc.problems)
    if problems:
        raise ValidationFailed(problems)
    return CategorySet(categories, digest.hexdigest()[:16])
