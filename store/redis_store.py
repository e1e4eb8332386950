"""The one :class:`Store` over a deployment's Redis: every record kind, with typed methods.

Built from a Redis client and the deployment's :class:`~store.keys.Keys`, so no caller passes
``(redis, keys)`` by hand::

    store = Store(redis, keys, tz=ZoneInfo("Europe/London"))
    user = await store.accounts.get("ada")
    page = await store.unblock_requests.page(equal={"status": "open"}, limit=50)
    state = await store.policy.state()          # overrides + version, cached by version

Groups: ``accounts``, ``sign_in_limits``, ``devices`` (browser extension), ``hits``,
``policy`` (overrides and version), ``audit``, ``unblock_requests``, ``accident_reports``,
``alerts``, ``setup_tokens`` (the first-run set-up link), ``address_bindings``,
``class_sessions`` (staff opening the network for a lesson). The time zone places records in
the centre's calendar quarters for the quarterly
figures. The module functions the proxy uses (``store.accounts``, ``store.policy_state``,
``store.login_limits``, ``store.hits``) stay as they are; the groups are built on them.
"""

from __future__ import annotations

from zoneinfo import ZoneInfo

from redis.asyncio import Redis

from store.accident_reports import AccidentReports
from store.accounts import Accounts
from store.address_bindings import AddressBindings
from store.alerts import Alerts
from store.audit import AuditLog
from store.class_sessions import ClassSessions
from store.extension_devices import ExtensionDevices
from store.hits import Hits
from store.keys import Keys
from store.login_limits import LoginLimits, SignInLimits
from store.policy_state import LivePolicy
from store.setup_token import SetupTokens
from store.unblock_requests import UnblockRequests

UTC = ZoneInfo("UTC")


class Store:
    def __init__(self, redis: Redis, keys: Keys, *, tz: ZoneInfo = UTC,
                 login_limits: LoginLimits | None = None, counters_days: int = 730) -> None:
        self._redis = redis
        self.keys = keys
        self.tz = tz
        self.accounts = Accounts(redis, keys)
        self.sign_in_limits = SignInLimits(redis, keys, login_limits or LoginLimits())
        self.devices = ExtensionDevices(redis, keys)
        self.hits = Hits(redis, keys)
        self.policy = LivePolicy(redis, keys)
        self.audit = AuditLog(redis, keys)
        self.unblock_requests = UnblockRequests(redis, keys, tz)
        self.accident_reports = AccidentReports(redis, keys, tz)
        self.alerts = Alerts(redis, keys, tz)
        self.setup_tokens = SetupTokens(redis, keys)
        self.address_bindings = AddressBindings(redis, keys)
        self.class_sessions = ClassSessions(redis, keys)
        for kind in (self.unblock_requests, self.accident_reports, self.alerts):
            # quarterly figures are counters: kept as long as the proxies' daily counters
            kind.records.figures_seconds = counters_days * 86400

    async def ping(self) -> None:
        """Raises RedisError/OSError when Redis does not answer."""
        await self._redis.ping()

    async def build_indexes(self) -> dict[str, int]:
        """Index the workflow records an older release wrote (once per index format; cheap
        afterwards). Returns how many records of each kind were indexed."""
        return {
            "unblock_requests": await self.unblock_requests.records.build_indexes(),
            "accident_reports": await self.accident_reports.records.build_indexes(),
            "alerts": await self.alerts.records.build_indexes(),
        }

    async def aclose(self) -> None:
        await self._redis.aclose()
