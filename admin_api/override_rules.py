"""Creating allow/block overrides safely: the one path both approvals and ``/overrides`` use.

An allow override for a site in a category nobody may override (the illegal IWF and CTIRU
lists) is refused here with a clear 409, before anything is written. Writing goes through
the store's live policy (:meth:`store.policy_state.LivePolicy.save_override`), which bumps
the policy version and publishes it, so every proxy applies the change within a second.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from admin_api.context import AdminState
from admin_api.errors import ApiError, bad_input
from categories.decision import Decision, Rule
from categories.overrides import Override, canonical_target
from categories.policy import ListedEntry
from categories.public_suffix import is_public_suffix

SHOWN_ENTRIES = 10
"""Listed entries an approval names one by one; the rest are counted."""
COUNTED_ENTRIES = 10_000


def target_of(url: str, field: str = "url") -> str:
    try:
        return canonical_target(url)
    except ValueError as exc:
        raise bad_input(f"{field} is not a web address or site name: {exc}", field) from exc


async def unblock_target(state: AdminState, url: str, user: str, group: str) -> str:
    """What approving a request for ``url`` should open: the entry that blocks it.

    A site blocked by a domain entry is opened whole (its host); one blocked by a URL entry
    only below that entry's path. So approving ``https://site.example/a/b`` opens the site
    when the site itself is listed, not just the one page the learner happened to be on."""
    canonical = target_of(url)
    decision = await state.policy.decide(url, user=user, group=group, with_overrides=False)
    host = canonical.split("/", 1)[0]
    if decision.matched and "/" in decision.matched and decision.rule is not Rule.OVERRIDE:
        return decision.matched
    if decision.host and is_public_suffix(decision.host):
        # A list that names a public suffix (blogspot.com, say) blocks every site under it;
        # an approval opens the one site asked for, never all of them.
        return host
    return decision.host or host


async def refuse_locked(state: AdminState, target: str) -> None:
    """Raise 409 when ``target`` is in a category that can never be allowed."""
    decision = await state.policy.decide(f"http://{target}", user=None, group=None,
                                         with_overrides=False)
    locked = state.policy.locked_categories(decision)
    if decision.rule is Rule.ILLEGAL_LIST or locked:
        categories = state.policy.base().categories
        names = ", ".join(categories[c].title for c in locked if c in categories) or "an illegal list"
        raise ApiError(409, "not_overridable",
                       f"{target} is in {names}, which can never be unblocked by anyone. "
                       "If you think it is listed in error, report it to the list's owner.")


def refuse_public_suffix(target: str, field: str = "target") -> None:
    """Raise 400 when ``target`` (a canonical site, maybe with a path) is a public suffix
    (``co.uk``, ``github.io``): opening it, by an allow rule or a class session, would open
    every site under it rather than one site."""
    host = target.split("/", 1)[0]
    if is_public_suffix(host):
        raise bad_input(f"{host} is a public suffix, not a site: opening it would open every "
                        f"site under .{host}. Name the site itself, such as www.example.{host}",
                        field)


async def apply_override(state: AdminState, override: Override) -> int:
    if override.action == "allow":
        refuse_public_suffix(override.target)
        await refuse_locked(state, override.target)
    return await state.store.policy.save_override(override)


@dataclass(frozen=True, slots=True)
class ApprovalScope:
    """What approving a request opens: its target, and the other listed entries under it."""

    target: str
    blocked_by: str | None
    """The list entry that blocks the request (None when no list entry does)."""
    also_opens: list[ListedEntry]
    """Block-list entries under the target other than the one the request is about."""

    @property
    def wider(self) -> bool:
        """True when the approval opens more than the entry that blocked the request."""
        return bool(self.also_opens)

    @property
    def message(self) -> str:
        host, slash, _ = self.target.partition("/")
        paths = [e for e in self.also_opens if "/" in e.entry]
        subdomains = [e for e in self.also_opens if "/" not in e.entry]
        parts = [_listed(paths, "listed path"), _listed(subdomains, "listed subdomain")]
        including = " and ".join(p for p in parts if p)
        if slash:
            opens = f"This opens {self.target} and every page below it"
        else:
            opens = f"This opens the whole site {host}, every page and subdomain of it"
        if not including:
            return opens + "."
        if len(self.also_opens) == 1:
            those = "That entry is blocked by its own list entry today"
        else:
            count = (f"more than {COUNTED_ENTRIES:,}" if len(self.also_opens) >= COUNTED_ENTRIES
                     else f"{len(self.also_opens):,}")
            those = f"Those {count} entries are each blocked by their own list entry today"
        return f"{opens}, including {including}. {those}, not by the entry this request is about."

    def to_dict(self) -> dict[str, Any]:
        return {"target": self.target, "blocked_by": self.blocked_by, "wider": self.wider,
                "message": self.message,
                "also_opens": [e._asdict() for e in self.also_opens[:SHOWN_ENTRIES * 10]],
                "also_opens_count": len(self.also_opens)}


def _listed(entries: list[ListedEntry], noun: str) -> str:
    if not entries:
        return ""
    named = ", ".join(f"{e.entry} ({e.category_title})" for e in entries[:SHOWN_ENTRIES])
    more = (f" and {len(entries) - SHOWN_ENTRIES:,} more" if len(entries) > SHOWN_ENTRIES
            else "")
    plural = "" if len(entries) == 1 else "s"
    return f"{len(entries):,} {noun}{plural}: {named}{more}"


async def approval_scope(state: AdminState, target: str, url: str, user: str, group: str
                         ) -> ApprovalScope:
    """What an allow override on ``target`` for this request would open (see
    :class:`ApprovalScope`); the decision is the lists' own, without overrides."""
    base = await asyncio.to_thread(state.policy.base)
    decision: Decision = base.decide(url, user=user, group=group)
    listed = await asyncio.to_thread(base.block_entries_under, target, COUNTED_ENTRIES)
    blocked_by = decision.matched if decision.rule is not Rule.OVERRIDE else None
    also = [e for e in listed if e.entry not in (target, blocked_by)]
    return ApprovalScope(target, blocked_by, also)
