"""What a fresh install still lacks, said plainly: no admin account, no block lists.

Read by ``/readyz`` (as reasons it is degraded), the UI's banner and the set-up page. Both
facts are cheap to read: whether an admin exists is remembered once seen (for a minute, so a
deleted last admin is noticed), and the lists' state is a few small files in the data
directory.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

from admin_api.context import AdminState
from categories.definitions import CategoryKind
from store.setup_token import has_admin

ADMIN_SEEN_SECONDS = 60.0
_admin_seen: dict[str, float] = {}
"""Key prefix -> monotonic time an enabled admin account was last seen."""

NO_ADMIN = ("there is no admin account yet: open the set-up link that esafety up printed, "
            "or run esafety users add NAME --role admin")


@dataclass(frozen=True)
class BlockListStatus:
    loaded: bool
    """At least one imported block list feeds a category."""
    categories_without_lists: tuple[str, ...]
    """Titles of the prohibited categories that name block lists of which none is
    imported."""

    @property
    def reason(self) -> str | None:
        """The plain-language reason, or None when lists are loaded."""
        if self.loaded:
            return None
        missing = ", ".join(self.categories_without_lists) or "none"
        return ("no block lists are loaded: only the built-in starter lists are active "
                f"(categories without a list: {missing}); import lists in Set-up or with "
                "esafety lists import")


async def admin_exists(state: AdminState) -> bool:
    prefix = state.store.keys.prefix
    seen = _admin_seen.get(prefix)
    if seen is not None and time.monotonic() - seen < ADMIN_SEEN_SECONDS:
        return True
    if has_admin(await state.store.accounts.all()):
        _admin_seen[prefix] = time.monotonic()
        return True
    _admin_seen.pop(prefix, None)
    return False


def forget_admin_check(state: AdminState) -> None:
    """Check again on the next call (after an account change)."""
    _admin_seen.pop(state.store.keys.prefix, None)


def _block_list_status(state: AdminState) -> BlockListStatus:
    categories = state.policy.base().categories
    store = state.settings.instance.list_store
    missing = store.categories_without_lists(categories)
    loaded = store.current_version() is not None and any(
        category.lists and category.id not in missing for category in categories.values())
    # Only what is missing from the filter: prohibited categories (not the allow-list, nor
    # categories that are only reported).
    return BlockListStatus(loaded, tuple(categories[c].title for c in missing
                                         if categories[c].kind is CategoryKind.BLOCK))


async def block_list_status(state: AdminState) -> BlockListStatus:
    return await asyncio.to_thread(_block_list_status, state)
