"""Settings made in the admin UI's set-up: ``DATA_DIR/settings.yaml``, beneath the config file.

The set-up page writes only the keys it sets (:data:`SETTINGS_KEYS`), validated with the config
file's own schema and rules (:func:`deployment.config.load_config`), atomically and 0600. Every
service reads it through :func:`with_site_settings` when its instance is resolved: a key the
config file sets wins, and the settings file fills in the rest. ``esafety up`` restarts its
services when the file changes.
"""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path
from typing import Any

import yaml

from categories.validated_yaml import SchemaProblem, ValidationFailed
from deployment.config import Config, load_config

SETTINGS_FILE = "settings.yaml"
SETTINGS_KEYS = ("centre_name", "admin_public_url", "proxy_public_address", "networks",
                 "groups", "proxy_auth")
"""The top-level keys the set-up may write (``proxy_auth`` with ``mode`` only)."""
_TOP_LEVEL = {"centre_name": "centre_name", "admin_public_url": "admin_public_url",
              "proxy_public_address": "proxy_public_address", "networks": "networks"}


class SiteSettingsError(ValueError):
    """Settings that the config schema refuses; ``problems`` name each field."""

    def __init__(self, problems: list[SchemaProblem]) -> None:
        self.problems = problems
        super().__init__("; ".join(f"{p.field or '(top level)'}: {p.message}" for p in problems))


def settings_path(data_dir: Path) -> Path:
    return data_dir / SETTINGS_FILE


def _read_yaml(path: Path) -> dict[str, Any]:
    data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    return data if isinstance(data, dict) else {}


def read_site_settings(data_dir: Path) -> dict[str, Any]:
    """The settings file as written (empty when there is none)."""
    path = settings_path(data_dir)
    return _read_yaml(path) if path.is_file() else {}


def write_site_settings(data_dir: Path, settings: dict[str, Any]) -> Config:
    """Validate ``settings`` as a config file and replace ``settings.yaml`` with it (0600,
    atomically). Raises :class:`SiteSettingsError` and leaves the old file as it was when a
    value is refused. Returns the settings as a :class:`Config` (over the built-in defaults)."""
    unknown = sorted(set(settings) - set(SETTINGS_KEYS))
    if unknown:
        raise SiteSettingsError([SchemaProblem(SETTINGS_FILE, None, key, "set-up does not set "
                                               "this key; put it in the config file")
                                 for key in unknown])
    if set(settings.get("proxy_auth") or {}) - {"mode"}:
        raise SiteSettingsError([SchemaProblem(SETTINGS_FILE, None, "proxy_auth",
                                               "set-up sets only proxy_auth.mode")])
    data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    target = settings_path(data_dir)
    temporary = data_dir / f".{SETTINGS_FILE}.tmp-{os.getpid()}"
    temporary.unlink(missing_ok=True)
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as out:
        out.write("# Written by the admin UI's set-up. Keys in the config file win over these.\n")
        yaml.safe_dump(settings, out, sort_keys=False, allow_unicode=True)
    try:
        config = load_config(temporary)
    except ValidationFailed as exc:
        temporary.unlink(missing_ok=True)
        raise SiteSettingsError([replace(p, file=SETTINGS_FILE) for p in exc.problems]) from None
    os.replace(temporary, target)
    return replace(config, path=None)


def with_site_settings(config: Config, data_dir: Path) -> Config:
    """``config`` with the settings file's values for the keys the config file leaves unset.

    Raises :class:`~categories.validated_yaml.ValidationFailed` naming ``settings.yaml`` when
    the file is not valid."""
    path = settings_path(data_dir)
    if not path.is_file():
        return config
    site = load_config(path)
    written = _read_yaml(path)
    given = _read_yaml(config.path) if config.path is not None else {}
    changes: dict[str, Any] = {name: getattr(site, name) for key, name in _TOP_LEVEL.items()
                               if key in written and key not in given}
    if "mode" in (written.get("proxy_auth") or {}) and "mode" not in (given.get("proxy_auth")
                                                                      or {}):
        changes["proxy_auth_mode"] = site.proxy_auth_mode
    extra_groups = {name: profile for name, profile in site.profiles.items()
                    if name in (written.get("groups") or {}) and name not in config.profiles}
    if extra_groups:
        changes["profiles"] = {**config.profiles, **extra_groups}
    return replace(config, **changes) if changes else config
