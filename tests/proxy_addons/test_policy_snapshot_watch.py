"""A worker follows the list snapshot without a restart, including an import that finishes
while the worker is still loading its first policy (a worker restarting as the set-up page
uploads the lists): the listed site is blocked within seconds, never left open."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from pathlib import Path

from categories.decision import Action
from categories.definitions import CategorySet, load_definitions
from categories.policy import Policy
from deployment.config import Config
from deployment.instance import Instance
from proxy_addons.policy_sync import PolicySync
from store.keys import Keys
from tests.harness.list_fixtures import list_tree

LISTED = "http://casino-royale.test/"


def _import_lists(instance: Instance) -> None:
    instance.list_store.import_path(list_tree("proxy_lists"), load_definitions(),
                                    source="fixture")


@dataclasses.dataclass(frozen=True)
class _ImportDuringLoad(Instance):
    """The lists are imported by someone else just after this worker read the (empty) list
    store, before its first policy is built."""

    def load_policy(self, categories: CategorySet | None = None) -> Policy:
        policy = super().load_policy(categories)
        _import_lists(self)
        return policy


async def _blocked_within(sync: PolicySync, seconds: float) -> float | None:
    started = time.monotonic()
    await sync.start()
    try:
        while time.monotonic() - started < seconds:
            if sync.policy.decide(LISTED).action is Action.BLOCK:
                return time.monotonic() - started
            await asyncio.sleep(0.1)
        return None
    finally:
        await sync.stop()


def test_an_import_finishing_while_the_worker_loads_is_picked_up(tmp_path: Path) -> None:
    instance = _ImportDuringLoad(Config(), tmp_path, None)
    sync = PolicySync(instance, None, Keys("esafety-test-snapshot-watch:"))
    # The first policy was built before the lists existed: the site is open at this moment...
    assert sync.policy.decide(LISTED).action is Action.ALLOW
    assert instance.list_store.current_version() is not None
    # ...and the watch notices the import that finished meanwhile.
    took = asyncio.run(_blocked_within(sync, 5.0))
    assert took is not None, "the worker never loaded the lists imported during its start"


def test_a_later_import_is_in_force_without_a_restart(tmp_path: Path) -> None:
    instance = Instance(Config(), tmp_path, None)
    sync = PolicySync(instance, None, Keys("esafety-test-snapshot-watch:"))
    assert sync.policy.decide(LISTED).action is Action.ALLOW

    async def run() -> float | None:
        loop = asyncio.get_running_loop()
        loop.call_later(0.3, _import_lists, instance)
        return await _blocked_within(sync, 5.0)

    took = asyncio.run(run())
    assert took is not None, "a list import was not picked up without a restart"
