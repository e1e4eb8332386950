"""The first run through the admin API: the one-time set-up link, the first admin, the
settings file, loading block lists, and ``/readyz`` saying what is missing."""

from __future__ import annotations

import asyncio
import hashlib
import stat
import tarfile
import time
from pathlib import Path
from typing import Any

import yaml

from deployment.config import ListSource
from deployment.instance import Instance
from tests.harness.api import Api, ApiFactory
from tests.harness.list_fixtures import list_tree

ADMIN_PASSWORD = "a long first password"


def list_tarball(directory: Path) -> Path:
    """A squidGuard tarball (as UT1's blacklists.tar.gz is laid out) of the test lists."""
    target = directory / "blacklists.tar.gz"
    with tarfile.open(target, "w:gz") as archive:
        archive.add(list_tree("proxy_lists"), arcname="blacklists")
    return target


async def _create_admin(api: Api, token: str, name: str = "centre.admin",
                        password: str = ADMIN_PASSWORD) -> tuple[int, Any]:
    return await api.call("POST", "/api/v1/setup/admin",
                          json={"token": token, "username": name, "password": password})


async def _audit_actions(api: Api) -> list[str]:
    admin = await api.user("audit.reader", "admin")
    status, body = await api.call("GET", "/api/v1/audit?limit=200", admin)
    assert status == 200, body
    return [entry["action"] for entry in body["items"]]


async def test_the_set_up_link_makes_the_first_admin_once_and_signs_them_in(api: Api) -> None:
    token = await api.state.store.setup_tokens.issue()
    stored = await api.redis.get(api.keys.setup_token)
    assert stored == hashlib.sha256(token.encode()).hexdigest()  # only the digest is kept
    assert len(token) >= 43  # 256 random bits, URL-safe

    for wrong in ("", "?token=" + "x" * 43, "?token=" + token[:-1]):
        status, page = await api.call("GET", f"/setup{wrong}")
        assert status == 403 and "This set-up link cannot be used" in page
        assert "esafety users add NAME --role admin" in page
    status, page = await api.call("GET", f"/setup?token={token}")
    assert status == 200 and 'id="main"' in page  # the UI's page

    status, body = await api.call("GET", f"/api/v1/setup?token={token}")
    assert status == 200 and body["admin_exists"] is False and body["token_valid"] is True
    status, body = await _create_admin(api, "not-the-token")
    assert status == 403 and body["error"]["code"] == "invalid_setup_token"
    status, body = await _create_admin(api, token, password="short")
    assert status == 400 and body["error"]["field"] == "password"  # and the link still works

    async with api.client.post("/api/v1/setup/admin", json={
            "token": token, "username": "centre.admin", "password": ADMIN_PASSWORD}) as reply:
        assert reply.status == 201, await reply.text()
        assert (await reply.json())["user"]["role"] == "admin"
    async with api.client.get("/api/v1/auth/me") as reply:  # signed in by the session cookie
        assert reply.status == 200 and (await reply.json())["user"]["name"] == "centre.admin"
    api.client.session.cookie_jar.clear()

    assert await api.redis.get(api.keys.setup_token) is None  # consumed
    status, body = await _create_admin(api, token, name="second.admin")
    assert status == 409 and body["error"]["code"] == "setup_done"
    status, page = await api.call("GET", f"/setup?token={token}")
    assert status == 200  # the page now says set-up is done
    status, body = await api.call("GET", "/api/v1/setup")
    assert body["admin_exists"] is True and "settings" not in body  # not signed in
    assert "setup.first_admin" in await _audit_actions(api)


async def test_an_expired_set_up_link_is_refused(api: Api) -> None:
    token = await api.state.store.setup_tokens.issue(ttl=1)
    await asyncio.sleep(1.3)
    status, page = await api.call("GET", f"/setup?token={token}")
    assert status == 403 and "This set-up link cannot be used" in page
    status, body = await _create_admin(api, token)
    assert status == 403 and body["error"]["code"] == "invalid_setup_token"
    assert await api.state.store.accounts.names() == []


async def test_set_up_is_refused_once_an_admin_exists(api: Api) -> None:
    await api.user("existing.admin", "admin")
    token = await api.state.store.setup_tokens.issue()  # e.g. issued before the CLI made one
    status, body = await _create_admin(api, token)
    assert status == 409 and body["error"]["code"] == "setup_done"
    assert await api.state.store.accounts.get("centre.admin") is None


async def test_settings_need_an_admin_session_with_csrf_are_validated_and_win_only_where_the_config_is_silent(
        api: Api, tmp_path: Path) -> None:
    token = await api.state.store.setup_tokens.issue()
    async with api.client.post("/api/v1/setup/admin", json={
            "token": token, "username": "centre.admin", "password": ADMIN_PASSWORD}) as reply:
        assert reply.status == 201
        csrf = reply.cookies["esafety_csrf"].value
    settings = {"centre_name": "Riverside Training", "admin_public_url": "http://10.0.0.5:8090",
                "proxy_public_address": "10.0.0.5:8080", "proxy_auth_mode": "required",
                "networks": [{"cidr": "10.0.20.0/24", "group": "learner", "site": "main",
                              "name": "Learner Wi-Fi", "auth": "off", "managed": True}]}
    async with api.client.put("/api/v1/setup/settings", json=settings) as reply:
        assert reply.status == 403  # a cookie session without the CSRF header
        assert (await reply.json())["error"]["code"] == "csrf_failed"
    path = api.data_dir / "settings.yaml"
    assert not path.exists()

    bad = {**settings, "networks": [{"cidr": "10.0.20.0/33", "group": "learner"}]}
    async with api.client.put("/api/v1/setup/settings", json=bad,
                              headers={"X-CSRF-Token": csrf}) as reply:
        body = await reply.json()
        assert reply.status == 400 and "10.0.20.0/33" in body["error"]["message"]
    unknown_group = {**settings, "networks": [{"cidr": "10.0.20.0/24", "group": "wizards"}]}
    async with api.client.put("/api/v1/setup/settings", json=unknown_group,
                              headers={"X-CSRF-Token": csrf}) as reply:
        assert reply.status == 400
        assert (await reply.json())["error"]["field"] == "networks[0].group"
    assert not path.exists()  # nothing half-written

    async with api.client.put("/api/v1/setup/settings", json=settings,
                              headers={"X-CSRF-Token": csrf}) as reply:
        assert reply.status == 200, await reply.text()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    written = yaml.safe_load(path.read_text())
    assert set(written) == {"centre_name", "admin_public_url", "proxy_public_address",
                            "networks", "proxy_auth"}
    assert written["proxy_auth"] == {"mode": "required"}

    learner = await api.user("learner.one", "learner")
    api.client.session.cookie_jar.clear()
    status, body = await api.call("PUT", "/api/v1/setup/settings", learner, json=settings)
    assert status == 403

    # Every service reads the file beneath the config file: the config's keys win.
    resolved = Instance.resolve(data_dir=str(api.data_dir))
    assert resolved.config.centre_name == "Riverside Training"
    assert resolved.config.proxy_auth_mode == "required"
    network = resolved.config.networks[0]
    assert (str(network.network), network.group, network.auth, network.managed) == (
        "10.0.20.0/24", "learner", "off", True)
    config_file = tmp_path / "esafety.yaml"
    config_file.write_text("centre_name: From The Config File\n")
    resolved = Instance.resolve(config_path=str(config_file), data_dir=str(api.data_dir))
    assert resolved.config.centre_name == "From The Config File"
    assert resolved.config.admin_public_url == "http://10.0.0.5:8090"
    assert "setup.settings" in await _audit_actions(api)


async def _wait_for_job(api: Api, token: str) -> dict[str, Any]:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        status, body = await api.call("GET", "/api/v1/setup/lists/job", token)
        assert status == 200
        if body["job"]["phase"] in ("done", "failed"):
            return dict(body["job"])
        await asyncio.sleep(0.1)
    raise AssertionError("the list job did not finish")


async def test_readyz_and_the_banner_say_what_is_missing_until_lists_are_uploaded(
        api: Api, tmp_path: Path) -> None:
    status, body = await api.call("GET", "/readyz")
    assert status == 200 and body["ready"] is True and body["degraded"] is True
    reasons = " | ".join(body["reasons"])
    assert "there is no admin account yet" in reasons
    assert "no block lists are loaded: only the built-in starter lists are active" in reasons
    status, banner = await api.call("GET", "/api/v1/lists/status")
    assert status == 200 and banner["loaded"] is False
    assert "Gambling" in banner["categories_without_lists"]

    admin = await api.user("centre.admin", "admin")
    status, body = await api.call("POST", "/api/v1/setup/lists/upload", admin,
                                  data=b"this is not a tarball",
                                  headers={"Content-Type": "application/gzip"})
    assert status == 400 and "not a .tar.gz" in body["error"]["message"]
    learner = await api.user("learner.one", "learner")
    tarball = list_tarball(tmp_path)
    status, _ = await api.call("POST", "/api/v1/setup/lists/upload", learner,
                               data=tarball.read_bytes(),
                               headers={"Content-Type": "application/gzip"})
    assert status == 403

    status, body = await api.call("POST", "/api/v1/setup/lists/upload", admin,
                                  data=tarball.read_bytes(),
                                  headers={"Content-Type": "application/gzip",
                                           "X-File-Name": "blacklists.tar.gz"})
    assert status == 202, body
    job = await _wait_for_job(api, admin)
    assert job["phase"] == "done" and job["report"]["host_entries"] > 0, job
    status, body = await api.call("GET", "/readyz")
    assert status == 200 and body["degraded"] is False and body["reasons"] == []
    status, banner = await api.call("GET", "/api/v1/lists/status")
    assert banner["loaded"] is True and "Gambling" not in banner["categories_without_lists"]
    status, check = await api.call("GET", "/api/v1/check?url=http://casino-royale.test/", admin)
    assert status == 200 and check["action"] == "block", check
    assert "setup.lists_import" in await _audit_actions(api)


async def test_a_configured_list_source_downloads_with_progress(make_api: ApiFactory,
                                                                tmp_path: Path) -> None:
    tarball = list_tarball(tmp_path)
    api = await make_api(list_sources=(ListSource("ut1", tarball.as_uri(), None, None),))
    admin = await api.user("centre.admin", "admin")
    status, body = await api.call("POST", "/api/v1/setup/lists/download", admin,
                                  json={"source": "elsewhere"})
    assert status == 400 and body["error"]["field"] == "source"
    status, body = await api.call("POST", "/api/v1/setup/lists/download", admin,
                                  json={"source": "ut1"})
    assert status == 202, body
    job = await _wait_for_job(api, admin)
    assert job["phase"] == "done", job
    assert job["received_bytes"] == job["total_bytes"] == tarball.stat().st_size
    status, banner = await api.call("GET", "/api/v1/lists/status")
    assert banner["loaded"] is True
