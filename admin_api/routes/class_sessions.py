"""``/api/v1/class-sessions``: staff open the network for a lesson, and end it.

A session opens a group, a named network or named learners for a number of minutes (at most
``class_sessions.max_minutes``), optionally only for a list of sites. It reaches every proxy
through the live policy (the same path as overrides), closes by itself, and never opens a
prohibited category: a site in one is refused here, and the proxy's policy would keep it
blocked anyway. Every open and end is in the audit log.

Staff see and end their own sessions; managers, DSLs and admins see and end every one, and
read the hours opened per group.
"""

from __future__ import annotations

import time
from typing import Any

from aiohttp import web

from admin_api.class_session_rights import SESSION_MANAGERS, SESSION_OPENERS, Rooms, rooms_for
from admin_api.context import AdminState, state_of
from admin_api.errors import ApiError, bad_input, not_found
from admin_api.override_rules import refuse_public_suffix
from admin_api.roles import current_user, requires
from admin_api.routes import audit_trail
from admin_api.routes.http_input import json_body, query_params, text, time_range
from categories.class_sessions import ClassSession, SessionTarget, hours_by_group
from categories.definitions import CategoryKind
from categories.overrides import canonical_target
from categories.profiles import describe_windows
from store.class_sessions import SessionNotOpen
from store.records import UserRecord

routes = web.RouteTableDef()
SESSION_ID = "{id:[A-Za-z0-9_.-]{1,64}}"
MAX_NAMES = 50
MAX_SITES = 20


def _windows_text(state: AdminState, names: tuple[str, ...]) -> str:
    config = state.settings.config
    windows = [config.windows[n] for n in names if n in config.windows]
    return describe_windows(windows) if windows else ""


def _status(session: ClassSession, now: float) -> str:
    if session.starts_at > now:
        return "scheduled"
    if session.closes_at > now:
        return "open"
    return "ended" if session.ended_at is not None and session.ended_at < session.ends_at \
        else "expired"


def _view(session: ClassSession, now: float) -> dict[str, Any]:
    return {**session.to_dict(), "status": _status(session, now),
            "minutes_left": max(0, round((session.closes_at - now) / 60))
            if session.closes_at > now else 0,
            "describes": session.describe()}


@routes.get("/api/v1/class-sessions/rooms")
@requires(SESSION_OPENERS)
async def session_rooms(request: web.Request) -> web.Response:
    """What the caller may open: groups and named networks (with their access windows),
    whether named learners, and the longest session."""
    state = state_of(request)
    query_params(request, ())
    config = state.settings.config
    rooms = rooms_for(config, current_user(request))
    groups = [{"name": g, "online_during": _windows_text(state, config.profiles[g].online_during)}
              for g in rooms.groups if g in config.profiles]
    networks = []
    for name in rooms.networks:
        network = next(n for n in config.networks if n.name == name)
        networks.append({"name": name, "group": network.group,
                         "online_during": _windows_text(state, network.online_during)})
    return web.json_response({"groups": groups, "networks": networks,
                              "learners": bool(rooms.groups),
                              "max_minutes": config.class_sessions.max_minutes,
                              "all_rooms": rooms.everything})


async def _check_names(state: AdminState, rooms: Rooms, target: SessionTarget,
                       names: list[str]) -> None:
    if target is not SessionTarget.LEARNERS:
        allowed = rooms.groups if target is SessionTarget.GROUP else rooms.networks
        refused = [n for n in names if n not in allowed]
        if refused:
            raise ApiError(403, "forbidden", f"You cannot open the {target.value} "
                           f"{refused[0]!r}.", field="names")
        return
    for name in names:
        account = await state.store.accounts.get(name)
        if account is None or account.role != "learner":
            raise bad_input(f"{name!r} is not a learner's account", "names")
        if not rooms.everything and account.group not in rooms.groups:
            raise ApiError(403, "forbidden", f"You cannot open sessions for {name!r}: their "
                           f"group {account.group!r} is not one of yours.", field="names")


async def _sites(state: AdminState, raw: Any) -> tuple[str, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list) or len(raw) > MAX_SITES:
        raise bad_input(f"sites must be a list of at most {MAX_SITES} site names", "sites")
    policy = state.policy.base()
    sites: list[str] = []
    for item in raw:
        if not isinstance(item, str) or not item.strip():
            raise bad_input("each site must be a site name such as www.bbc.co.uk", "sites")
        try:
            target = canonical_target(item)
        except ValueError as exc:
            raise bad_input(str(exc), "sites") from exc
        if "/" in target:
            raise bad_input(f"{item[:100]!r}: give a site name, not a page (a session opens "
                            "whole sites)", "sites")
        refuse_public_suffix(target, "sites")
        decision = policy.decide(f"http://{target}/")
        prohibited = [c for c in decision.categories if c in policy.categories
                      and (policy.categories[c].kind is CategoryKind.BLOCK
                           or policy.categories[c].illegal)]
        if prohibited:
            title = policy.categories[prohibited[0]].title
            raise bad_input(f"{target} is in the prohibited category {title}: a class session "
                            "never opens it", "sites")
        sites.append(target)
    return tuple(dict.fromkeys(sites))


@routes.post("/api/v1/class-sessions")
@requires(SESSION_OPENERS)
async def open_session(request: web.Request) -> web.Response:
    state = state_of(request)
    user = current_user(request)
    body = await json_body(request, ("target", "names", "minutes", "sites", "note"))
    try:
        target = SessionTarget(str(body.get("target")))
    except ValueError:
        raise bad_input("target must be one of: group, network, learners", "target") from None
    names = body.get("names")
    if (not isinstance(names, list) or not names or len(names) > MAX_NAMES
            or not all(isinstance(n, str) and 0 < len(n) <= 64 for n in names)):
        raise bad_input(f"names must list 1 to {MAX_NAMES} {target.value} names", "names")
    names = list(dict.fromkeys(names))
    rooms = rooms_for(state.settings.config, user)
    if rooms.empty:
        raise ApiError(403, "forbidden", "You have no rooms to open. An admin can add you "
                       "under class_sessions.tutors in the config.")
    await _check_names(state, rooms, target, names)
    minutes = body.get("minutes")
    longest = state.settings.config.class_sessions.max_minutes
    if (not isinstance(minutes, int) or isinstance(minutes, bool)
            or not 1 <= minutes <= longest):
        raise bad_input(f"minutes must be a whole number from 1 to {longest}", "minutes")
    sites = await _sites(state, body.get("sites"))
    note = text(body, "note", max_length=500) or ""
    now = time.time()
    session = ClassSession(id=await state.store.class_sessions.new_id(), target=target,
                           names=tuple(names), starts_at=now, ends_at=now + minutes * 60,
                           opened_by=user.name, sites=sites, note=note)
    version = await state.store.class_sessions.open(session)
    await audit_trail.record(request, "class_session.open", session.id,
                             after=session.to_dict())
    return web.json_response({"session": _view(session, now), "policy_version": version},
                             status=201)


def _may_see(user: UserRecord, session: ClassSession) -> bool:
    return user.role in SESSION_MANAGERS or session.opened_by == user.name


@routes.post(f"/api/v1/class-sessions/{SESSION_ID}/end")
@requires(SESSION_OPENERS)
async def end_session(request: web.Request) -> web.Response:
    state = state_of(request)
    user = current_user(request)
    await json_body(request, ())
    session_id = request.match_info["id"]
    found = await state.store.class_sessions.get(session_id)
    if found is None or not _may_see(user, found):
        raise not_found("class session")
    now = time.time()
    try:
        ended, version = await state.store.class_sessions.end(session_id, user.name, now)
    except SessionNotOpen:
        raise ApiError(409, "conflict", "That session has already closed.") from None
    await audit_trail.record(request, "class_session.end", session_id,
                             before=found.to_dict(), after=ended.to_dict())
    return web.json_response({"session": _view(ended, now), "policy_version": version})


@routes.get("/api/v1/class-sessions")
@requires(SESSION_OPENERS)
async def list_sessions(request: web.Request) -> web.Response:
    """Sessions that started in ``from``..``to`` (default: the last 7 days), newest first,
    and every session still open; staff see their own, managers every one (``mine=1`` for
    their own)."""
    state = state_of(request)
    user = current_user(request)
    query = query_params(request, ("from", "to", "mine"))
    start, end = time_range(query, state.tz)
    now = time.time()
    end = now + 1 if end is None else end
    start = end - 7 * 86400 if start is None else start
    mine = query.get("mine") in ("1", "true") or user.role not in SESSION_MANAGERS
    store = state.store.class_sessions
    found = {s.id: s for s in await store.open_now(now)}
    found.update({s.id: s for s in await store.started_between(start, end)})
    items = sorted((s for s in found.values() if not mine or s.opened_by == user.name),
                   key=lambda s: (-s.starts_at, s.id))
    return web.json_response({"items": [_view(s, now) for s in items], "now": now})


@routes.get("/api/v1/class-sessions/hours")
@requires(SESSION_MANAGERS)
async def session_hours(request: web.Request) -> web.Response:
    """Hours opened per group by class sessions in ``from``..``to`` (default: 30 days)."""
    state = state_of(request)
    query = query_params(request, ("from", "to"))
    start, end = time_range(query, state.tz)
    now = time.time()
    end = now if end is None else end
    start = end - 30 * 86400 if start is None else start
    config = state.settings.config
    longest = config.class_sessions.max_minutes * 60
    sessions = await state.store.class_sessions.started_between(start - longest, end)
    networks = {n.name: n.group for n in config.networks if n.name}
    return web.json_response({"from": start, "to": end,
                              "hours": hours_by_group(sessions, start, min(end, now), networks),
                              "sessions": sum(1 for s in sessions
                                              if s.closes_at > start and s.starts_at < end)})
