"""Policy sync: hold the live policy in memory and follow every change.

* Overrides and approved unblocks come from Redis. A change bumps ``policy:version`` and is
  published on ``policy:changed``; this addon listens on the channel and also polls the
  version, so a proxy that missed a message (or lost its connection) catches up within one
  poll interval.
* The compiled list snapshot comes from the data directory; a new ``CURRENT`` (after
  ``esafety lists import`` or ``update``) is loaded without a restart.
* When Redis is unreachable the policy already in memory keeps filtering.
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
from esafety.instance import Instance
from store.keys import Keys
from store.policy_state import read_overrides, read_version

log = logging.getLogger("esafety.policy")

POLL_INTERVAL = 0.5
SNAPSHOT_CHECK_INTERVAL = 5.0


class PolicySync:
    """mitmproxy addon (no hooks on flows): owns :attr:`policy`."""

    def __init__(self, instance: Instance, redis: Redis | None, keys: Keys) -> None:
        self.instance = instance
        self.redis = redis
        self.keys = keys
        self.categories: CategorySet = load_definitions()
        self.policy: Policy = self._load_base()
        self.version = -1
        self.redis_ok = redis is not None
        self._snapshot_mark = self._current_mark()
        self._tasks: list[asyncio.Task[None]] = []

    def _load_base(self) -> Policy:
        try:
            return self.instance.load_policy(self.categories)
        except SnapshotError as exc:
            # A warning, not an error: mitmproxy stops on errors logged during start-up, and
            # the built-in entries must keep filtering. /readyz reports it.
            log.warning("no list snapshot loads (%s): filtering with the built-in "
                      "category entries only until a good snapshot is imported", exc)
            return Policy(self.categories, None, profiles=self.instance.config.profiles,
                          windows=self.instance.config.windows,
                          timezone=self.instance.config.timezone,
                          unidentified_group=self.instance.config.unidentified_group)

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
    async def _refresh_overrides(self) -> None:
        assert self.redis is not None
        try:
            version = await read_version(self.redis, self.keys)
            if version == self.version:
                self.redis_ok = True
                return
            overrides = await read_overrides(self.redis, self.keys)
        except (RedisError, OSError) as exc:
            if self.redis_ok:
                log.warning("Redis unavailable (%s): keeping the policy in memory", exc)
            self.redis_ok = False
            return
        self.policy = self.policy.with_overrides(overrides)
        self.version = version
        self.redis_ok = True
        log.info("policy version %d applied (%d overrides)", version, len(overrides))

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
        self.policy = base.with_overrides(self.policy.overrides)
        log.info("list snapshot %s loaded", base.snapshot_version)
