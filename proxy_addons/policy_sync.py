"""Policy sync: hold the live policy in memory and follow every change.

* Overrides, approved unblocks and class sessions come from Redis. A change bumps ``policy:version`` and is
  published on ``policy:changed``; this addon listens on the channel and also polls the
  version, so a proxy that missed a message (or lost its connection) catches up within one
  poll interval.
* The compiled list snapshot comes from the data directory; a new ``CURRENT`` (after
  ``esafety lists import`` or ``update``) is loaded without a restart.
* When Redis is unreachable the policy already in memory keeps filtering.
* Every change applied is also written to a local copy in the data directory
  (:mod:`proxy_addons.policy_copy`). A worker that starts while Redis is unreachable loads
  that copy, so overrides and approved unblocks stay in force. When Redis returns, the newer
  version wins: Redis's state replaces the copy unless Redis holds an older version (restored
  from an older backup, say), in which case the copy stays until Redis catches up.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from pathlib import Path

from redis.asyncio import Redis
from redis.exceptions import RedisError

from categories.definitions import CategorySet, load_definitions
from categories.policy import Policy
from categories.snapshot import SnapshotError
from deployment.config import build_policy
from deployment.instance import Instance
from proxy_addons.policy_copy import POLICY_COPY_FILE, load_policy_copy, save_policy_copy
from store.keys import Keys
from store.policy_state import LivePolicy, PolicyState

log = logging.getLogger("esafety.policy")

POLL_INTERVAL = 0.5
SNAPSHOT_CHECK_INTERVAL = 1.0
"""A new list snapshot is in force within this many seconds (one stat and one small read)."""


class PolicySync:
    """mitmproxy addon (no hooks on flows): owns :attr:`policy`."""

    def __init__(self, instance: Instance, redis: Redis | None, keys: Keys) -> None:
        self.instance = instance
        self.redis = redis
        self.keys = keys
        self._live = LivePolicy(redis, keys) if redis is not None else None
        self.categories: CategorySet = load_definitions()
        # The mark is read before the snapshot is loaded: an import that finishes while this
        # worker is loading (a worker restarting as the set-up page uploads lists, say) then
        # changes the mark, and the watch loads it. Read after, it would be missed for good.
        self._snapshot_mark = self._current_mark()
        self.policy: Policy = self._load_base()
        self.version = -1
        self.redis_ok = redis is not None
        self.copy_path = instance.data_dir / POLICY_COPY_FILE
        self._copy_version: int | None = None
        """The version loaded from the local copy, until Redis's state replaces it."""
        self._copy_ahead_reported = False
        self._tasks: list[asyncio.Task[None]] = []

    def _load_base(self) -> Policy:
        try:
            return self.instance.load_policy(self.categories)
        except SnapshotError as exc:
            # A warning, not an error: mitmproxy stops on errors logged during start-up, and
            # the built-in entries must keep filtering. /readyz reports it.
            log.warning("no list snapshot loads (%s): filtering with the built-in "
                      "category entries only until a good snapshot is imported", exc)
            return build_policy(self.instance.config, self.categories)

    def _current_mark(self) -> tuple[str | None, float]:
        path: Path = self.instance.list_store.snapshots_dir / "CURRENT"
        try:
            return path.read_text().strip(), path.stat().st_mtime
        except OSError:
            return None, 0.0

    # -- lifecycle ---------------------------------------------------------------------------
    async def start(self) -> None:
        if self.redis is not None:
            await self._refresh_overrides()
            if self.version < 0:
                self._load_copy()
            loop = asyncio.get_running_loop()
            self._tasks.append(loop.create_task(self._listen(), name="esafety-policy-listen"))
            self._tasks.append(loop.create_task(self._poll(), name="esafety-policy-poll"))
        self._tasks.append(asyncio.get_running_loop().create_task(
            self._watch_snapshot(), name="esafety-snapshot-watch"))

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks.clear()

    # -- overrides ---------------------------------------------------------------------------
    def _load_copy(self) -> None:
        copy = load_policy_copy(self.copy_path)
        if copy is None:
            log.warning("Redis unreachable at start and no local policy copy: filtering "
                        "without overrides until Redis returns")
            return
        self.policy = self.policy.with_overrides(copy.overrides, copy.sessions)
        self.version = copy.version
        self._copy_version = copy.version
        log.warning("Redis unreachable at start: policy version %d applied from the local "
                    "copy (%d overrides, %d class sessions)", copy.version,
                    len(copy.overrides), len(copy.sessions))

    async def _refresh_overrides(self) -> None:
        assert self._live is not None
        try:
            state = await self._live.changed_since(self.version)
            if state is None:
                self.redis_ok = True
                return
            version, overrides, sessions = state.version, state.overrides, state.sessions
            if self._copy_version is not None and version < self._copy_version:
                # The newer version wins: the copy's, until Redis catches up.
                if not self._copy_ahead_reported:
                    log.warning("Redis holds policy version %d, older than the local copy's "
                                "%d: keeping the copy until Redis catches up", version,
                                self._copy_version)
                    self._copy_ahead_reported = True
                self.redis_ok = True
                return
        except (RedisError, OSError) as exc:
            if self.redis_ok:
                log.warning("Redis unavailable (%s): keeping the policy in memory", exc)
            self.redis_ok = False
            return
        self.policy = self.policy.with_overrides(overrides, sessions)
        self.version = version
        self._copy_version = None
        self.redis_ok = True
        log.info("policy version %d applied (%d overrides, %d class sessions)", version,
                 len(overrides), len(sessions))
        await self._save_copy(state)

    async def _save_copy(self, state: PolicyState) -> None:
        try:
            await asyncio.to_thread(save_policy_copy, self.copy_path, state)
        except OSError as exc:
            log.warning("local policy copy %s not written (%s): a restart while Redis is "
                        "unreachable would start from an older copy", self.copy_path, exc)

    async def _listen(self) -> None:
        assert self.redis is not None
        while True:
            try:
                pubsub = self.redis.pubsub(ignore_subscribe_messages=True)
                await pubsub.subscribe(self.keys.policy_channel)
                # A change made while we were (re)subscribing is caught here.
                await self._refresh_overrides()
                async for _message in pubsub.listen():
                    await self._refresh_overrides()
            except asyncio.CancelledError:
                raise
            except (RedisError, OSError):
                await asyncio.sleep(1.0)

    async def _poll(self) -> None:
        while True:
            await asyncio.sleep(POLL_INTERVAL)
            await self._refresh_overrides()

    # -- snapshot ----------------------------------------------------------------------------
    async def _watch_snapshot(self) -> None:
        while True:
            await asyncio.sleep(SNAPSHOT_CHECK_INTERVAL)
            mark = self._current_mark()
            if mark != self._snapshot_mark:
                self._snapshot_mark = mark
                self.reload_snapshot()

    def reload_snapshot(self) -> None:
        try:
            base = self.instance.load_policy(self.categories)
        except SnapshotError as exc:
            log.error("new list snapshot does not load (%s): keeping the current one", exc)
            return
        self.policy = base.with_overrides(self.policy.overrides, self.policy.sessions)
        log.info("list snapshot %s loaded", base.snapshot_version)
