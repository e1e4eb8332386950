"""``/setup`` and ``/api/v1/setup``: a centre's first run, from the browser.

``esafety up`` prints a one-time set-up link (``/setup?token=...``) while no admin account
exists (:mod:`store.setup_token`). With it, the set-up page:

1. creates the first admin (the token is consumed; the admin is signed in);
2. names the centre and sets the public addresses, the networks and proxy sign-in: written
   to ``DATA_DIR/settings.yaml`` (:mod:`deployment.site_settings`), which ``esafety up``
   notices and restarts its services for;
3. loads block lists: downloads a configured list source, or takes an uploaded squidGuard
   tarball, in a background job the page polls for its progress;
4. points to the onboarding page (the CA certificate and how devices trust it).

Without a valid token (wrong, expired or used) ``/setup`` is a 403 page that says what to
do; once an admin exists it is the UI's page, which says set-up is done (and lets a signed-in
admin change the settings). Steps 2 and 3 need an admin's session, with the usual CSRF header.
``/api/v1/lists/status`` (public) says whether block lists are loaded, for the UI's banner.
"""

from __future__ import annotations

import asyncio
import html
import logging
import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import aiohttp
import yaml
from aiohttp import web

from admin_api.context import AdminState, state_of, user_of
from admin_api.errors import ApiError, bad_input
from admin_api.first_run_status import admin_exists, block_list_status, forget_admin_check
from admin_api.roles import USER_ADMINS, current_user, requires
from admin_api.routes import audit_trail
from admin_api.routes.http_input import json_body, required_text, text
from admin_api.routes.ui import page_shell
from admin_api.sessions import SESSION_COOKIE, set_session_cookies
from admin_api.web.content_security import UI_PAGE
from categories.list_import import ImportError_
from categories.snapshot import SnapshotError
from deployment.config import ListSource
from deployment.public_address import detected_public_host, url_host
from deployment.site_settings import (
    SiteSettingsError,
    read_site_settings,
    write_site_settings,
)
from store.accounts import MIN_PASSWORD_LENGTH, TOKEN_TTL_SECONDS, USER_NAME, AccountError

routes = web.RouteTableDef()
log = logging.getLogger("admin_api.setup")

MAX_UPLOAD_BYTES = 512 * 1024 * 1024
"""An uploaded list tarball may be this large (UT1's is about 20 MB)."""
DOWNLOAD_TIMEOUT_SECONDS = 600
CHUNK_BYTES = 64 * 1024
BUILTIN_GROUPS = frozenset({"learner", "staff", "guest"})
_SOURCE_CHARS = re.compile(r"[^A-Za-z0-9_.-]+")


@dataclass
class ListJob:
    """One list download or upload and its import, as the page sees it."""

    source: str
    origin: str
    phase: str = "starting"
    """``downloading``, ``importing``, ``done`` or ``failed``."""
    received: int = 0
    total: int | None = None
    message: str = ""
    report: dict[str, Any] | None = None
    started_at: float = field(default_factory=time.time)

    def public(self) -> dict[str, Any]:
        return {"source": self.source, "origin": self.origin, "phase": self.phase,
                "received_bytes": self.received, "total_bytes": self.total,
                "message": self.message, "report": self.report}

    @property
    def running(self) -> bool:
        return self.phase not in ("done", "failed")


SERVICE_ID = f"{os.getpid()}-{time.time_ns()}"
"""Changes when the admin service restarts: the set-up page waits for a new one after saving
settings (``esafety up`` restarts its services when settings.yaml changes)."""

_jobs: dict[str, ListJob] = {}
"""Data directory -> its latest list job (one at a time per admin service)."""
_tasks: set[asyncio.Task[None]] = set()


def _refused_page(reason: str) -> web.Response:
    body = f"""<!DOCTYPE html>
<html lang="en">
<head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>Set-up link not valid – esafety</title>
<link rel="stylesheet" href="/static/css/admin.css"></head>
<body>
<main id="main" class="view">
<h1>This set-up link cannot be used</h1>
<p>{html.escape(reason)}</p>
<p>A set-up link works once, for 24 hours, and only until the first admin account exists.
To get a new one, restart esafety (<code>esafety up</code> or <code>make run</code>) and use
the link it prints. You can also make the first admin on the server with
<code>esafety users add NAME --role admin</code>.</p>
<p><a href="/sign-in">Sign in</a> if an admin account already exists.</p>
</main>
</body>
</html>
"""
    return web.Response(text=body, status=403, content_type="text/html", charset="utf-8")


@routes.get("/setup")
async def setup_page(request: web.Request) -> web.Response:
    state = state_of(request)
    if not await admin_exists(state):
        token = request.query.get("token", "")
        if not await state.store.setup_tokens.is_valid(token):
            request[UI_PAGE] = True  # the page's stylesheet is the UI's
            return _refused_page("The link is wrong, has expired, or was already used."
                                 if token else "The link has no set-up token.")
    return await page_shell(request)


def _public_url_default(request: web.Request, state: AdminState) -> str:
    """The configured public URL, else the address this browser reached the service at (the
    detected address instead of loopback)."""
    configured = state.settings.config.admin_public_url
    if configured:
        return configured
    port = state.settings.config.listen.admin.port
    host = request.url.host or ""
    if host in ("127.0.0.1", "localhost", "::1", ""):
        return f"http://{url_host(detected_public_host())}:{request.url.port or port}"
    return f"{request.url.scheme}://{request.url.raw_host}:{request.url.port or port}"


async def _settings_view(request: web.Request, state: AdminState) -> dict[str, Any]:
    config = state.settings.config
    written = await asyncio.to_thread(read_site_settings, state.settings.data_dir)
    host = detected_public_host()
    lists = await block_list_status(state)
    return {
        "centre_name": config.centre_name,
        "admin_public_url": written.get("admin_public_url") or _public_url_default(request, state),
        "proxy_public_address": (config.proxy_public_address
                                 or f"{url_host(host)}:{config.listen.proxy.port}"),
        "detected_address": host,
        "networks": [{"cidr": str(n.network), "group": n.group, "site": n.site or "",
                      "name": n.name or "", "auth": n.auth or "", "managed": n.managed}
                     for n in config.networks],
        "proxy_auth_mode": config.proxy_auth_mode,
        "groups": sorted(config.profiles),
        "list_sources": [{"name": s.name, "url": s.url} for s in config.list_sources],
        "lists": {"loaded": lists.loaded,
                  "categories_without_lists": list(lists.categories_without_lists)},
        "from_config_file": sorted(_config_file_keys(state)),
    }


def _config_file_keys(state: AdminState) -> set[str]:
    """The set-up's keys the config file sets (those win over what set-up writes)."""
    path = state.settings.config.path
    if path is None:
        return set()
    data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    found = {key for key in ("centre_name", "admin_public_url", "proxy_public_address",
                             "networks") if key in data}
    if "mode" in (data.get("proxy_auth") or {}):
        found.add("proxy_auth_mode")
    return found


@routes.get("/api/v1/setup")
async def setup_status(request: web.Request) -> web.Response:
    state = state_of(request)
    exists = await admin_exists(state)
    body: dict[str, Any] = {"admin_exists": exists, "service": SERVICE_ID}
    if not exists:
        body["token_valid"] = await state.store.setup_tokens.is_valid(
            request.query.get("token", ""))
        return web.json_response(body)
    user = user_of(request)
    if user is not None and user.role == "admin":
        body["settings"] = await _settings_view(request, state)
    return web.json_response(body)


@routes.post("/api/v1/setup/admin")
async def create_first_admin(request: web.Request) -> web.Response:
    """The first admin account, with the one-time token (no session exists yet)."""
    state = state_of(request)
    body = await json_body(request, ("token", "username", "password", "display_name"))
    token = text(body, "token", max_length=200) or ""
    if await admin_exists(state):
        raise ApiError(409, "setup_done", "Set-up is done: an admin account exists. Sign in.")
    if not await state.store.setup_tokens.is_valid(token):
        await audit_trail.record(request, "setup.token_refused", "setup", actor="")
        raise ApiError(403, "invalid_setup_token", "The set-up link is wrong, has expired or "
                       "was already used. Restart esafety for a new link.")
    name = required_text(body, "username", max_length=64)
    if not USER_NAME.match(name):
        raise bad_input("user name must be 1-64 letters, digits, and . _ @ -", "username")
    password = body.get("password")
    if not isinstance(password, str) or not MIN_PASSWORD_LENGTH <= len(password) <= 1024:
        raise bad_input(f"password must be {MIN_PASSWORD_LENGTH} to 1024 characters",
                        "password")
    display_name = text(body, "display_name", max_length=100) or ""
    if await state.store.accounts.get(name) is not None:
        raise ApiError(409, "exists", "A user with that name already exists.")
    if not await state.store.setup_tokens.consume(token):  # used by a concurrent request
        raise ApiError(403, "invalid_setup_token", "The set-up link was already used.")
    try:
        user = await state.store.accounts.create(name, "admin", "staff", password, display_name)
    except AccountError as exc:
        raise bad_input(str(exc)) from exc
    forget_admin_check(state)
    await audit_trail.record(request, "setup.first_admin", name, actor=name,
                             after=user.public())
    log.info("the first admin account, %s, was made with the set-up link", name)
    previous = request.cookies.get(SESSION_COOKIE)
    if previous:
        await state.store.accounts.revoke_token(previous)
    session = await state.store.accounts.issue_token(user.name)
    response = web.json_response({"user": user.public()}, status=201)
    set_session_cookies(response, request, session, TOKEN_TTL_SECONDS)
    return response


def _network(spec: Any, index: int, groups: set[str]) -> dict[str, Any]:
    where = f"networks[{index}]"
    if not isinstance(spec, dict):
        raise bad_input(f"{where} must be an object", where)
    allowed = {"cidr", "group", "site", "name", "auth", "managed"}
    if set(spec) - allowed:
        raise bad_input(f"{where} has unknown fields: {', '.join(sorted(set(spec) - allowed))}",
                        where)
    cidr = required_text(spec, "cidr", max_length=50)
    group = required_text(spec, "group", max_length=41)
    if group not in groups:
        raise bad_input(f"{where}.group must be one of: {', '.join(sorted(groups))}",
                        f"{where}.group")
    out: dict[str, Any] = {"cidr": cidr, "group": group}
    site = text(spec, "site", max_length=41)
    if site:
        out["site"] = site
    name = text(spec, "name", max_length=80)
    if name:
        out["name"] = name
    auth = spec.get("auth") or None
    if auth is not None:
        if auth not in ("required", "off"):
            raise bad_input(f"{where}.auth must be required or off", f"{where}.auth")
        out["auth"] = auth
    managed = spec.get("managed", False)
    if not isinstance(managed, bool):
        raise bad_input(f"{where}.managed must be true or false", f"{where}.managed")
    out["managed"] = managed
    return out


@routes.put("/api/v1/setup/settings")
@requires(USER_ADMINS)
async def save_settings(request: web.Request) -> web.Response:
    """The centre's name, public addresses, networks and proxy sign-in, into settings.yaml."""
    state = state_of(request)
    body = await json_body(request, ("centre_name", "admin_public_url", "proxy_public_address",
                                     "networks", "proxy_auth_mode"))
    groups = set(state.settings.config.profiles)
    settings: dict[str, Any] = {}
    centre = text(body, "centre_name", max_length=80)
    if centre:
        settings["centre_name"] = centre
    for key in ("admin_public_url", "proxy_public_address"):
        value = text(body, key, max_length=300)
        if value:
            settings[key] = value
    networks = body.get("networks", [])
    if not isinstance(networks, list) or len(networks) > 200:
        raise bad_input("networks must be a list (at most 200)", "networks")
    if networks:
        settings["networks"] = [_network(spec, i, groups) for i, spec in enumerate(networks)]
        custom = sorted({n["group"] for n in settings["networks"]} - BUILTIN_GROUPS)
        if custom:  # defined in the config file, which wins; named here so this file loads
            settings["groups"] = {name: {} for name in custom}
    mode = body.get("proxy_auth_mode")
    if mode is not None:
        if mode not in ("off", "required"):
            raise bad_input("proxy_auth_mode must be off or required", "proxy_auth_mode")
        settings["proxy_auth"] = {"mode": mode}
    before = await asyncio.to_thread(read_site_settings, state.settings.data_dir)
    try:
        await asyncio.to_thread(write_site_settings, state.settings.data_dir, settings)
    except SiteSettingsError as exc:
        first = exc.problems[0]
        raise bad_input(str(exc), first.field or None) from exc
    await audit_trail.record(request, "setup.settings", "settings.yaml", before=before,
                             after=settings)
    log.info("set-up settings saved by %s: %s", current_user(request).name,
             ", ".join(settings) or "nothing")
    return web.json_response({"settings": settings, "restarting": True})


# -- block lists ---------------------------------------------------------------------------

def _job_of(state: AdminState) -> ListJob | None:
    return _jobs.get(str(state.settings.data_dir))


def _start_job(request: web.Request, job: ListJob, work: Any) -> None:
    state = state_of(request)
    current = _job_of(state)
    if current is not None and current.running:
        raise ApiError(409, "busy", "Block lists are already being loaded; wait for that first.")
    _jobs[str(state.settings.data_dir)] = job
    actor, address = current_user(request).name, request.remote or ""
    task = asyncio.create_task(_run_job(state, job, work, actor, address),
                               name=f"list-job-{job.source}")
    _tasks.add(task)
    task.add_done_callback(_tasks.discard)


async def _run_job(state: AdminState, job: ListJob, work: Any, actor: str, address: str
                   ) -> None:
    directory = state.settings.data_dir / "downloads"
    try:
        await asyncio.to_thread(directory.mkdir, parents=True, exist_ok=True, mode=0o700)
        path: Path = await work(job, directory)
        job.phase = "importing"
        categories = (await asyncio.to_thread(state.policy.base)).categories
        try:
            report = await asyncio.to_thread(
                state.settings.instance.list_store.import_path, path, categories,
                source=job.source, origin=job.origin)
        finally:
            await asyncio.to_thread(path.unlink, missing_ok=True)
        job.report = {"snapshot_version": report.snapshot_version,
                      "host_entries": report.host_entries, "url_entries": report.url_entries,
                      "lists": len(report.lists),
                      "refused": [r.name for r in report.lists if r.refused]}
        job.phase = "done"
        job.message = (f"Loaded {report.host_entries} sites and {report.url_entries} addresses "
                       f"from {len(report.lists)} lists.")
        await state.store.audit.append(actor=actor, action="setup.lists_import",
                                       target=job.source, before=None,
                                       after={"origin": job.origin, **job.report}, ip=address)
        log.info("block lists from %s loaded: snapshot %s", job.source, report.snapshot_version)
    except (ImportError_, SnapshotError, OSError, aiohttp.ClientError, TimeoutError,
            ValueError) as exc:
        job.phase = "failed"
        job.message = (f"The lists could not be loaded: {exc}. The lists already loaded are "
                       "kept.")
        log.warning("loading block lists from %s failed: %s", job.origin, exc)


async def _download(source: ListSource, job: ListJob, directory: Path) -> Path:
    suffix = ".tar.gz" if source.url.endswith((".tar.gz", ".tgz")) else ".txt"
    target = directory / f"{source.name}{suffix}"
    job.phase = "downloading"
    parts = urlsplit(source.url)
    if parts.scheme == "file":
        local = Path(unquote(parts.path))
        job.total = (await asyncio.to_thread(local.stat)).st_size
        await asyncio.to_thread(_copy_counting, local, target, job)
        return target
    timeout = aiohttp.ClientTimeout(total=DOWNLOAD_TIMEOUT_SECONDS)
    async with aiohttp.ClientSession(timeout=timeout) as session, \
            session.get(source.url) as response:
        response.raise_for_status()
        job.total = response.content_length
        with target.open("wb") as out:
            async for chunk in response.content.iter_chunked(CHUNK_BYTES):
                out.write(chunk)
                job.received += len(chunk)
    return target


def _copy_counting(source: Path, target: Path, job: ListJob) -> None:
    with source.open("rb") as reader, target.open("wb") as out:
        while chunk := reader.read(CHUNK_BYTES):
            out.write(chunk)
            job.received += len(chunk)


@routes.post("/api/v1/setup/lists/download")
@requires(USER_ADMINS)
async def download_lists(request: web.Request) -> web.Response:
    """Download a configured list source (``lists.sources``) and import it, in the background."""
    state = state_of(request)
    body = await json_body(request, ("source",))
    sources = {s.name: s for s in state.settings.config.list_sources}
    if not sources:
        raise bad_input("no list sources are configured (lists.sources in the config file); "
                        "upload a tarball instead", "source")
    name = text(body, "source", max_length=64) or next(iter(sources))
    source = sources.get(name)
    if source is None:
        raise bad_input(f"source must be one of: {', '.join(sources)}", "source")

    async def work(job: ListJob, directory: Path) -> Path:
        return await _download(source, job, directory)

    job = ListJob(source=source.name, origin=source.url)
    _start_job(request, job, work)
    await audit_trail.record(request, "setup.lists_download", source.name,
                             after={"url": source.url})
    return web.json_response({"job": job.public()}, status=202)


@routes.post("/api/v1/setup/lists/upload")
@requires(USER_ADMINS)
async def upload_lists(request: web.Request) -> web.Response:
    """A squidGuard list tarball (``.tar.gz``, e.g. UT1's ``blacklists.tar.gz``) as the
    body, imported in the background."""
    state = state_of(request)
    if request.content_type not in ("application/gzip", "application/x-gzip",
                                    "application/octet-stream"):
        raise ApiError(415, "unsupported_media_type",
                       "Send the tarball as application/gzip.")
    if request.content_length is not None and request.content_length > MAX_UPLOAD_BYTES:
        raise ApiError(413, "body_too_large", f"The file is over {MAX_UPLOAD_BYTES} bytes.")
    file_name = request.headers.get("X-File-Name", "")
    stem = _SOURCE_CHARS.sub("-", os.path.basename(file_name).split(".")[0]).strip("-._")
    source = (stem or "uploaded")[:64]
    current = _job_of(state)
    if current is not None and current.running:
        raise ApiError(409, "busy", "Block lists are already being loaded; wait for that first.")
    directory = state.settings.data_dir / "downloads"
    await asyncio.to_thread(directory.mkdir, parents=True, exist_ok=True, mode=0o700)
    target = directory / f"{source}.tar.gz"
    size = 0
    first = b""
    with target.open("wb") as out:
        async for chunk in request.content.iter_chunked(CHUNK_BYTES):
            size += len(chunk)
            if size > MAX_UPLOAD_BYTES:
                out.close()
                target.unlink(missing_ok=True)
                raise ApiError(413, "body_too_large",
                               f"The file is over {MAX_UPLOAD_BYTES} bytes.")
            if len(first) < 2:
                first += chunk[:2]
            out.write(chunk)
    if first[:2] != b"\x1f\x8b":
        target.unlink(missing_ok=True)
        raise bad_input("the file is not a .tar.gz (gzip) tarball of block lists", "file")

    async def work(job: ListJob, _directory: Path) -> Path:
        job.received = job.total = size
        return target

    job = ListJob(source=source, origin=f"upload:{os.path.basename(file_name) or source}")
    _start_job(request, job, work)
    await audit_trail.record(request, "setup.lists_upload", source,
                             after={"file": file_name[:200], "bytes": size})
    return web.json_response({"job": job.public()}, status=202)


@routes.get("/api/v1/setup/lists/job")
@requires(USER_ADMINS)
async def list_job(request: web.Request) -> web.Response:
    job = _job_of(state_of(request))
    return web.json_response({"job": job.public() if job is not None else None})


@routes.get("/api/v1/lists/status")
async def lists_status(request: web.Request) -> web.Response:
    """Whether block lists are loaded (public: the UI's banner shows it on every page)."""
    status = await block_list_status(state_of(request))
    return web.json_response({"loaded": status.loaded, "message": status.reason,
                              "categories_without_lists": list(status.categories_without_lists)})
