"""Creating allow/block overrides safely: the one path both approvals and ``/overrides`` use.

An allow override for a site in a category nobody may override (the illegal IWF and CTIRU
lists) is refused here with a clear 409, before anything is written. Writing goes through
:func:`store.policy_state.save_override`, which bumps the policy version and publishes it,
so every proxy applies the change within a second.
"""

from __future__ import annotations

from admin_api.context import AdminState
from admin_api.errors import ApiError, bad_input
from categories.decision import Rule
from categories.overrides import Override, canonical_target
from store.policy_state import save_override


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
    decision = await state.policy.decide(state.redis, state.keys, url, user=user, group=group,
                                         with_overrides=False)
    host = canonical.split("/", 1)[0]
    if decision.matched and "/" in decision.matched and decision.rule is not Rule.OVERRIDE:
        return decision.matched
    return decision.host or host


async def refuse_locked(state: AdminState, target: str) -> None:
    """Raise 409 when ``target`` is in a category that can never be allowed."""
    decision = await state.policy.decide(state.redis, state.keys, f"http://{target}",
                                         user=None, group=None, with_overrides=False)
    locked = state.policy.locked_categories(decision)
    if decision.rule is Rule.ILLEGAL_LIST or locked:
        categories = state.policy.base().categories
        names = ", ".join(categories[c].title for c in locked if c in categories) or "an illegal list"
        raise ApiError(409, "not_overridable",
                       f"{target} is in {names}, which can never be unblocked by anyone. "
                       "If you think it is listed in error, report it to the list's owner.")


async def apply_override(state: AdminState, override: Override) -> int:
    if override.action == "allow":
        await refuse_locked(state, override.target)
    return await save_override(state.redis, state.keys, override)
