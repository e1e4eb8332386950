"""The proxy's local copy of the live policy (overrides and approved unblocks, with their
version), kept in the data directory.

A worker started while Redis is unreachable would otherwise filter without any override: a
site IT blocked by override would be allowed again. :class:`~proxy_addons.policy_sync.PolicySync`
writes this copy on every change it applies and loads it when Redis cannot be reached at
start. The file holds user names, so it is written 0600, atomically (a whole old or a whole new
copy, never half of one).
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
from pathlib import Path

from store.policy_state import PolicyState

log = logging.getLogger("esafety.policy")

POLICY_COPY_FILE = "live-policy.json"


def load_policy_copy(path: Path) -> PolicyState | None:
    """The saved copy, or None when there is none or it cannot be read (logged)."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as exc:
        # Warnings, not errors: mitmproxy stops on errors logged during start-up.
        log.warning("local policy copy %s cannot be read (%s)", path, exc)
        return None
    try:
        return PolicyState.from_json(text)
    except ValueError as exc:
        log.warning("local policy copy %s is damaged (%s): not used", path, exc)
        return None


def save_policy_copy(path: Path, state: PolicyState) -> bool:
    """Replace the copy with ``state`` (it follows Redis, even back to a lower version after a
    restore) unless it already holds exactly that; True when written. Raises OSError when the
    disk refuses."""
    if load_policy_copy(path) == state:
        return False
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(f".{path.name}.{os.getpid()}-{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(state.to_json())
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)
    return True
