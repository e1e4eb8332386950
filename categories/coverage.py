"""What each prohibited category is filtered with: the built-in starter list only, or an
imported list as well.

A fresh install blocks the best-known sites of each prohibited category from the starter
entries in its definition (see :mod:`categories.definitions`); a full list (UT1, IWF, CTIRU,
a local file) adds to them once imported. :func:`starter_only_categories` names the
categories that still rely on the starter entries alone, so the centre can be told what is
missing.
"""

from __future__ import annotations

from dataclasses import dataclass

from categories.definitions import CategoryKind, CategorySet
from categories.domain_index import DomainIndex


@dataclass(frozen=True, slots=True)
class CategoryCoverage:
    """One prohibited category's sources."""

    category: str
    title: str
    starter_entries: int
    """Built-in starter domains and URL prefixes (0 for the illegal lists, which are never
    written by hand)."""
    imported_lists: tuple[str, ...]
    """Sources of the imported lists that feed the category (``ut1/gambling``...)."""
    illegal: bool

    @property
    def starter_only(self) -> bool:
        """No imported list feeds the category: only its starter entries (if any) apply."""
        return not self.imported_lists


def category_coverage(categories: CategorySet, snapshot: DomainIndex | None
                      ) -> list[CategoryCoverage]:
    """Every prohibited (``kind: block``) category, in id order, with what fills it."""
    imported: dict[str, list[str]] = {}
    if snapshot is not None:
        for info in snapshot.lists:
            for category_id in categories.categories_for_list.get(info.name, ()):
                imported.setdefault(category_id, []).append(info.source)
    return [CategoryCoverage(category.id, category.title, len(category.entries),
                             tuple(sorted(set(imported.get(category.id, ())))),
                             category.illegal)
            for category in sorted(categories.values(), key=lambda c: c.id)
            if category.kind is CategoryKind.BLOCK]


def starter_only_categories(categories: CategorySet, snapshot: DomainIndex | None
                            ) -> tuple[str, ...]:
    """Ids of the prohibited categories no imported list feeds, in id order: they block only
    their built-in starter entries (none, for the illegal lists)."""
    return tuple(c.category for c in category_coverage(categories, snapshot) if c.starter_only)
