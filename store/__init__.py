"""What the proxy and the admin API share through Redis: the key layout and typed records."""

from store.keys import DEFAULT_PREFIX, Keys

__all__ = ["DEFAULT_PREFIX", "Keys"]
