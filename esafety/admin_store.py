"""The store as the admin commands reach it (``esafety users``, ``directory sync``,
``backup``, ``restore``): the admin's Redis user, the deployment's key prefix and time zone.

Only the store's packages are imported here, not the admin service: a command that changes an
account loads in a fraction of the time the whole service takes."""

from __future__ import annotations

from zoneinfo import ZoneInfo

from redis.asyncio import Redis

from deployment.instance import Instance
from store import redis_acl
from store.connection import connect
from store.keys import Keys
from store.redis_store import Store


def admin_client(instance: Instance) -> Redis:
    """A client as the admin's Redis user; :class:`NoStoreError` when there is no Redis."""
    return connect(instance.required_store_url(redis_acl.ADMIN_USER))


def admin_store(instance: Instance) -> Store:
    """The store API over :func:`admin_client`, in the deployment's time zone."""
    return Store(admin_client(instance), Keys(prefix=instance.config.redis_prefix),
                 tz=ZoneInfo(instance.config.timezone))
