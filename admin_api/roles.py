"""Who may do what. Each route handler declares its roles with :func:`requires`.

==============  =============================================================================
role            may
==============  =============================================================================
learner         sign in; file unblock requests and accidental-hit reports; see their own
                hits, requests and reports
staff           as learner
it_support      everyone's hits (not export); unblock requests (approve, deny); overrides;
                categories and check; the summary report
manager         everyone's hits and CSV export; accidental-hit reports (review); alerts (read);
                summary and quarterly reports; the audit log
dsl             as manager, plus acknowledging alerts; not the audit log
admin           everything, including user accounts
==============  =============================================================================

Nobody below manager can export the hit log: ``it_support`` can look up hits to answer an
unblock request, but bulk copies of learners' browsing leave only with a manager's, DSL's or
admin's say-so (and every export is in the audit log).
"""

from __future__ import annotations

import functools
from collections.abc import Callable

from aiohttp import web

from admin_api.context import user_of
from admin_api.errors import ApiError, Handler
from store.records import ROLES, UserRecord

ANYONE_SIGNED_IN = frozenset(ROLES)
HIT_READERS = frozenset({"it_support", "manager", "dsl", "admin"})
EXPORTERS = frozenset({"manager", "dsl", "admin"})
APPROVERS = frozenset({"it_support", "admin"})
SAFEGUARDING = frozenset({"manager", "dsl", "admin"})
ALERT_HANDLERS = frozenset({"dsl", "admin"})
QUARTERLY_READERS = frozenset({"manager", "dsl", "admin"})
AUDIT_READERS = frozenset({"manager", "admin"})
POLICY_READERS = frozenset({"it_support", "manager", "dsl", "admin"})
USER_ADMINS = frozenset({"admin"})

_ALLOWED: dict[Handler, frozenset[str]] = {}


def current_user(request: web.Request) -> UserRecord:
    user = user_of(request)
    if user is None:
        raise ApiError(401, "unauthorised", "Sign in first (POST /api/v1/auth/login).",
                       headers={"WWW-Authenticate": 'Bearer realm="esafety"'})
    return user


def user_filter(user: UserRecord, wanted: str | None, readers: frozenset[str],
                what: str) -> str | None:
    """The ``user`` filter a list request may use: anyone's for ``readers``, otherwise only
    the caller's own (asking for someone else's is refused, not silently narrowed)."""
    if user.role in readers:
        return wanted
    if wanted is not None and wanted != user.name:
        raise ApiError(403, "forbidden", f"You can only see your own {what}.")
    return user.name


def requires(roles: frozenset[str]) -> Callable[[Handler], Handler]:
    """Only signed-in users with one of ``roles`` reach the handler (401, else 403)."""
    def wrap(handler: Handler) -> Handler:
        @functools.wraps(handler)
        async def checked(request: web.Request) -> web.StreamResponse:
            user = current_user(request)
            if user.role not in roles:
                raise ApiError(403, "forbidden", "Your role cannot do this.")
            return await handler(request)
        _ALLOWED[checked] = roles
        return checked
    return wrap


def allowed_roles(handler: object) -> frozenset[str] | None:
    """The roles a handler admits; None for a public route."""
    for known, roles in _ALLOWED.items():
        if known is handler:
            return roles
    return None


