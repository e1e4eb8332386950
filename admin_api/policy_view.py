"""The filtering policy as the admin API sees it: the same decision as ``esafety check``.

The policy (category definitions, list snapshot, group profiles) is loaded once and reloaded
when a newer list snapshot is compiled; the live overrides are read from Redis per call.
"""

from __future__ import annotations

import asyncio
import threading
from datetime import datetime

from redis.asyncio import Redis

from categories.decision import Decision
from categories.policy import Policy
from deployment.instance import Instance
from store.keys import Keys
from store.policy_state import read_overrides


class PolicyView:
    def __init__(self, instance: Instance) -> None:
        self._instance = instance
        self._policy: Policy | None = None
        self._version: str | None = None
        self._lock = threading.Lock()

    def base(self) -> Policy:
        """The policy without overrides (reloaded when the list snapshot changes)."""
        version = self._instance.list_store.current_version()
        with self._lock:
            if self._policy is None or version != self._version:
                self._policy = self._instance.load_policy()
                self._version = version
            return self._policy

    async def current(self, redis: Redis, keys: Keys) -> Policy:
        base = await asyncio.to_thread(self.base)
        return base.with_overrides(await read_overrides(redis, keys))

    async def decide(self, redis: Redis, keys: Keys, url: str, *, user: str | None,
                     group: str | None, at: datetime | None = None,
                     with_overrides: bool = True) -> Decision:
        policy = (await self.current(redis, keys) if with_overrides
                  else await asyncio.to_thread(self.base))
        return policy.decide(url, user=user, group=group, at=at)

    def locked_categories(self, decision: Decision) -> list[str]:
        """Categories of this decision that nobody may override (illegal lists)."""
        categories = self.base().categories
        return [c for c in decision.categories if c in categories and not categories[c].overridable]
