"""What the admin app's handlers share, under typed application keys (``web.AppKey``).

:class:`AdminSettings` is fixed when the app is built; :class:`AdminState` holds the live
resources opened by the app's cleanup context: the :class:`~store.redis_store.Store` (every
read and write of Redis goes through it), the log store, the policy view and the workers.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from zoneinfo import ZoneInfo

from aiohttp import web

from admin_api.log_store import LogStore
from admin_api.policy_view import PolicyView
from admin_api.prometheus_metrics import AdminMetrics
from admin_api.pseudonymiser import Pseudonymiser
from admin_api.workers.alert_consumer import AlertConsumer
from admin_api.workers.log_feeder import LogFeeder
from admin_api.workers.weekly_digest import WeeklyDigest
from deployment.config import Config
from deployment.instance import Instance
from store.keys import Keys
from store.login_limits import LoginLimits
from store.records import UserRecord
from store.redis_store import Store


@dataclass(frozen=True)
class AdminSettings:
    instance: Instance
    redis_url: str
    keys: Keys
    run_workers: bool = True
    """Run the log feeder, alert consumer and housekeeping (off only in unit tests)."""
    login_limits: LoginLimits = field(default_factory=LoginLimits)
    environ: dict[str, str] | None = None
    """Where secrets named by the config are read from (default: os.environ)."""

    @property
    def config(self) -> Config:
        return self.instance.config

    @property
    def data_dir(self) -> Path:
        return self.instance.data_dir

    @property
    def timezone(self) -> ZoneInfo:
        return ZoneInfo(self.config.timezone)


@dataclass
class AdminState:
    settings: AdminSettings
    store: Store
    log_store: LogStore
    feeder: LogFeeder
    alerts: AlertConsumer
    policy: PolicyView
    pseudonymiser: Pseudonymiser
    metrics: AdminMetrics
    digest: WeeklyDigest

    @property
    def tz(self) -> ZoneInfo:
        return self.settings.timezone


SETTINGS = web.AppKey("settings", AdminSettings)
STATE = web.AppKey("state", AdminState)
METRICS = web.AppKey("metrics", AdminMetrics)
USER = web.RequestKey("user", UserRecord)
"""The signed-in user; absent for anonymous requests."""
AUTH_VIA = web.RequestKey("auth_via", str)
"""``bearer`` or ``cookie``."""
TOKEN = web.RequestKey("token", str)


def state_of(request: web.Request) -> AdminState:
    return request.app[STATE]


def user_of(request: web.Request) -> UserRecord | None:
    return request.get(USER)
