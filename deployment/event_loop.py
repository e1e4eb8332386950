"""Which asyncio event loop a proxy worker runs on: the standard library's, or uvloop (libuv).

Chosen with ``ESAFETY_EVENT_LOOP`` (``asyncio``, the default, or ``uvloop``); the supervisor's
environment reaches every worker. uvloop is an optional extra (``pip install
'esafety[uvloop]'``). The default stays the standard loop because, measured with
``bench/proxy.py --event-loops asyncio,uvloop`` on mitmproxy 11, uvloop opens new tunnels
faster but serves plain HTTP more slowly (see docs/architecture.md, "Performance").
"""

from __future__ import annotations

import asyncio
import importlib
from collections.abc import Callable, Coroutine, Mapping
from typing import Any, TypeVar

EVENT_LOOP_ENV = "ESAFETY_EVENT_LOOP"
EVENT_LOOPS = ("asyncio", "uvloop")
DEFAULT_EVENT_LOOP = "asyncio"

T = TypeVar("T")


class EventLoopError(ValueError):
    """The chosen event loop is unknown or not installed (a message for the operator)."""


def chosen_event_loop(environ: Mapping[str, str]) -> str:
    """The event loop ``environ`` asks for; an unknown name is an error naming the known."""
    name = environ.get(EVENT_LOOP_ENV, "").strip().lower() or DEFAULT_EVENT_LOOP
    if name not in EVENT_LOOPS:
        raise EventLoopError(f"{EVENT_LOOP_ENV}={name!r} is not an event loop esafety knows; "
                             f"use one of: {', '.join(EVENT_LOOPS)}")
    return name


def event_loop_runner(name: str) -> Callable[[Coroutine[Any, Any, T]], T]:
    """``asyncio.run`` or ``uvloop.run``: checked before any coroutine is made, so a missing
    package is a clear error, never a half-started worker."""
    if name == "asyncio":
        return asyncio.run
    try:
        module = importlib.import_module("uvloop")
    except ImportError as exc:
        raise EventLoopError(f"{EVENT_LOOP_ENV}=uvloop needs the uvloop package: "
                             "pip install 'esafety[uvloop]'") from exc
    runner: Callable[[Coroutine[Any, Any, T]], T] = module.run
    return runner
