"""Names a command line may give that must already exist: filtering groups and roles.

An unknown one is a usage error (exit 2) whose message names every known one, so a typo is
never stored (a user in a group nobody defined gets no sensible policy) nor silently decided
on (``esafety check --group``).
"""

from __future__ import annotations

from collections.abc import Iterable

from deployment.config import Config
from store.records import ROLES


class UnknownNameError(ValueError):
    """A group or role name that is not defined."""


def _known(kind: str, name: str, known: Iterable[str]) -> str:
    names = list(known)
    if name not in names:
        raise UnknownNameError(f"unknown {kind} {name!r}; known {kind}s: {', '.join(names)}")
    return name


def known_group(config: Config, name: str) -> str:
    """``name`` if the config defines that group (``groups:``, or a built-in one)."""
    return _known("group", name, config.profiles)


def known_role(name: str) -> str:
    """``name`` if it is one of the account roles."""
    return _known("role", name, ROLES)
