"""What the proxy and the admin API share through Redis: the key layout and typed records.

The admin API and the CLI use one :class:`store.redis_store.Store` (not imported here, so the
proxy's imports stay small)."""

from store.keys import DEFAULT_PREFIX, Keys

__all__ = ["DEFAULT_PREFIX", "Keys"]
