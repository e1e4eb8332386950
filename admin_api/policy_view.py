"""The filtering policy as the admin API sees it: the same decision as ``esafety check``.

The policy (category definitions, list snapshot, group profiles) is loaded once and reloaded
when a newer list snapshot is compiled. The live overrides come from the store's one policy
reader (:class:`store.policy_state.LivePolicy`, cached by policy version), and the policy
with them applied is kept until either the snapshot or the policy version moves: a call
costs one GET of the version, never a re-read of every override.
"""

from __future__ import annotations

import asyncio
import threading
from datetime import datetime

from categories.decision import Decision
from categories.policy import Policy
from deployment.instance import Instance
from store.policy_state import LivePolicy


class PolicyView:
    def __init__(self, instance: Instance, live: LivePolicy) -> None:
        self._instance = instance
        self._live = live
        self._policy: Policy | None = None
        self._version: str | None = None
        self._lock = threading.Lock()
        self._current: tuple[Policy, int, Policy] | None = None
        """(base, policy version, base with that version's overrides)."""

    def base(self) -> Policy:
        """The policy without overrides (reloaded when the list snapshot changes)."""
        version = self._instance.list_store.current_version()
        with self._lock:
            if self._policy is None or version != self._version:
                self._policy = self._instance.load_policy()
                self._version = version
            return self._policy

    async def current(self) -> Policy:
        """The policy with the live overrides applied."""
        base = await asyncio.to_thread(self.base)
        state = await self._live.state()
        cached = self._current
        if cached is not None and cached[0] is base and cached[1] == state.version:
            return cached[2]
        policy = base.with_overrides(list(state.overrides))
        self._current = (base, state.version, policy)
        return policy

    async def decide(self, url: str, *, user: str | None, group: str | None,
                     at: datetime | None = None, with_overrides: bool = True) -> Decision:
        policy = await self.current() if with_overrides else await asyncio.to_thread(self.base)
        return policy.decide(url, user=user, group=group, at=at)

    def locked_categories(self, decision: Decision) -> list[str]:
        """Categories of this decision that nobody may override (illegal lists)."""
        categories = self.base().categories
        return [c for c in decision.categories if c in categories and not categories[c].overridable]
