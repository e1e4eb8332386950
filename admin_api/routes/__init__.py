"""The admin service's HTTP routes, one module per resource, and the one list of them.

``app.build_app`` mounts :data:`RESOURCES` in this order and ``openapi`` documents the same
modules, so a route cannot be served without being documented, or documented without being
served (``tests/admin_api/test_api_openapi.py``).
"""

from __future__ import annotations

from types import ModuleType

from admin_api.routes import (
    accident_reports,
    alerts,
    audit,
    auth,
    categories,
    class_sessions,
    extension,
    first_run,
    health,
    hits,
    onboarding,
    overrides,
    portal,
    proxy_config,
    reports,
    single_sign_on,
    ui,
    unblock_requests,
    users,
)

RESOURCES: tuple[ModuleType, ...] = (
    health, proxy_config, onboarding, portal, auth, users, unblock_requests, overrides, reports,
    accident_reports, hits, alerts, audit, categories, extension, first_run, ui,
    single_sign_on, class_sessions,
)
