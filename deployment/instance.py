"""One esafety instance: where its config, data and Redis are, and its policy from them.

Every command resolves these three the same way, so several instances can run side by side:

* data directory: ``--data-dir``, else ``ESAFETY_DATA_DIR``, else the config's ``data_dir``,
  else ``$XDG_DATA_HOME/esafety`` (``~/.local/share/esafety``);
* config file: ``--config``, else ``ESAFETY_CONFIG``, else none (built-in defaults);
* Redis URL: ``--redis-url``, else ``ESAFETY_REDIS_URL``, else the config's ``redis_url``,
  else none (``esafety up`` then starts an embedded Redis). ``ESAFETY_REDIS_PASSWORD_FILE``
  names a file holding the password for a URL that has none (see ``store.connection``).

While ``esafety up`` runs on the data directory, its endpoints file
(:mod:`deployment.endpoints`) fills in what was not given: the Redis it uses (embedded or
configured) and, when no config file was named, the config file it runs with. So every
command needs only ``--data-dir`` (or ``ESAFETY_DATA_DIR``, or the default) to act on it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path

from categories.definitions import CategorySet, load_definitions
from categories.policy import Policy
from categories.snapshot import ListStore
from deployment.config import Config, build_policy, load_config
from deployment.endpoints import Endpoints, live_endpoints
from deployment.listen_address import ListenAddress, parse_listen
from deployment.redis_url import running_embedded_url, with_password_file
from deployment.site_settings import with_site_settings

LISTEN_ENV = {"proxy": "ESAFETY_PROXY_LISTEN", "admin": "ESAFETY_ADMIN_LISTEN"}
"""Listen addresses ``esafety up`` gives its children when its command line overrides the
config's (``--proxy-listen``, ``--admin-listen``), so every process knows the real ports:
the proxy lets browsers through to the admin's, and links and the PAC file name them."""


def with_listen(config: Config, proxy: ListenAddress | None = None,
                admin: ListenAddress | None = None) -> Config:
    """``config`` listening on ``proxy`` and ``admin`` where they are given."""
    listen = replace(config.listen, proxy=proxy or config.listen.proxy,
                     admin=admin or config.listen.admin)
    return replace(config, listen=listen)


def with_listen_from_env(config: Config) -> Config:
    """``config`` with the listen addresses named in :data:`LISTEN_ENV`, if any."""
    given = {name: parse_listen(os.environ[variable], getattr(config.listen, name).port)
             for name, variable in LISTEN_ENV.items() if os.environ.get(variable)}
    return with_listen(config, **given) if given else config


def default_data_dir() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "esafety"


class NoStoreError(Exception):
    """No Redis is configured and no running ``esafety up`` on this data directory names one."""


@dataclass(frozen=True)
class Instance:
    config: Config
    data_dir: Path
    redis_url: str | None

    @classmethod
    def resolve(cls, config_path: str | None = None, data_dir: str | None = None,
                redis_url: str | None = None) -> Instance:
        path = config_path or os.environ.get("ESAFETY_CONFIG") or None
        config = load_config(Path(path) if path else None)
        directory = (data_dir or os.environ.get("ESAFETY_DATA_DIR") or config.data_dir
                     or str(default_data_dir()))
        if path is None:
            # No config named: the one the running `esafety up` on this directory uses, so
            # that its key prefix, groups and addresses apply here too.
            running = live_endpoints(Path(directory).expanduser())
            if running is not None and running.config and Path(running.config).is_file():
                config = load_config(Path(running.config))
        url = redis_url or os.environ.get("ESAFETY_REDIS_URL") or config.redis_url or None
        password_file = os.environ.get("ESAFETY_REDIS_PASSWORD_FILE")
        if url and password_file:
            url = with_password_file(url, password_file)
        data_path = Path(directory).expanduser()
        return cls(with_listen_from_env(with_site_settings(config, data_path)), data_path, url)

    def store_url(self, user: str) -> str | None:
        """The configured Redis URL, else the one the ``esafety up`` running on this data
        directory uses (embedded or configured; its admin user's, from its endpoints file),
        else an embedded Redis answering in ``DATA_DIR/redis`` without one (such as one an
        older version started) as ``user``, else None."""
        if self.redis_url:
            return self.redis_url
        running = self.running_up()
        if running is not None:
            return running.redis_url
        return running_embedded_url(self.data_dir / "redis", user)

    def required_store_url(self, user: str) -> str:
        """:meth:`store_url`, or :class:`NoStoreError` saying how to name one."""
        url = self.store_url(user)
        if not url:
            raise NoStoreError("no Redis configured: set --redis-url, ESAFETY_REDIS_URL or "
                               "redis_url in the config, or run this while esafety up runs on "
                               "the same data directory (it starts an embedded Redis that the "
                               "commands find)")
        return url

    def running_up(self) -> Endpoints | None:
        """The endpoints of the ``esafety up`` running on this data directory, if any."""
        return live_endpoints(self.data_dir)

    @property
    def list_store(self) -> ListStore:
        return ListStore(self.data_dir)

    def ensure_data_dir(self) -> Path:
        self.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        return self.data_dir

    def load_policy(self, categories: CategorySet | None = None) -> Policy:
        """The policy from the category definitions, the current snapshot and the config."""
        categories = categories or load_definitions()
        loaded = self.list_store.load_current()
        snapshot, version = (loaded[1], loaded[0]) if loaded else (None, None)
        return build_policy(self.config, categories, snapshot, version)
