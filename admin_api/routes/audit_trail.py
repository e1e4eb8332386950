"""Recording an admin action in the audit log from a request (actor and address included)."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from admin_api.context import state_of, user_of


async def record(request: web.Request, action: str, target: str, *, before: Any = None,
                 after: Any = None, actor: str | None = None) -> str:
    state = state_of(request)
    user = user_of(request)
    who = actor if actor is not None else (user.name if user is not None else "")
    return await state.store.audit.append(actor=who, action=action, target=target,
                                          before=before, after=after, ip=request.remote or "")
