"""Directory groups (``identity.ldap``) against a real OpenLDAP ``slapd``: the admin service's
scheduled sync and ``esafety directory sync`` set each member's group and role, a member
removed with ``ldapmodify`` loses the group at the next sync, and faults change nothing."""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis
import yaml

from admin_api.workers.directory_sync import DirectoryError, DirectorySync
from deployment.config import IdentitySettings, LdapSettings, default_profiles
from proxy_addons.kerberos_signin import KerberosPrincipal, principal_identity
from store.accounts import create_user, get_user, issue_token
from store.connection import connect
from store.keys import Keys
from store.redis_store import Store
from tests.harness.api import PASSWORD, Api, ApiFactory
from tests.harness.ldap_server import (
    GROUPS,
    PEOPLE,
    SERVICE_DN,
    SERVICE_PASSWORD,
    SUFFIX,
    LdapServer,
    base_tree,
    ldap_server,
)
from tests.harness.proxy import PROXY_LISTS, Origins, ProxyProcess, curl, write_config

PASSWORD_ENV = "ESAFETY_TEST_LDAP_PASSWORD"
LEARNERS = f"cn=Learners,{GROUPS}"
STAFF = f"cn=Staff,{GROUPS}"
IT_SUPPORT = f"cn=IT Support,{GROUPS}"
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def directory(tmp_path: Path) -> Iterator[LdapServer]:
    """alice and bob are learners; carol is in Learners and Staff; dave in IT Support (a posix
    group); erin is in the directory but in no mapped group."""
    tree = base_tree(learners=["alice", "bob", "carol"], staff=["carol"], it_support=["dave"],
                     people=["alice", "bob", "carol", "dave", "erin"])
    with ldap_server(tmp_path / "slapd", tree) as server:
        yield server


def ldap_settings(server: LdapServer, **changes: Any) -> LdapSettings:
    values: dict[str, Any] = {
        "url": server.url, "bind_dn": SERVICE_DN, "password_env": PASSWORD_ENV,
        "base_dn": SUFFIX, "user_attribute": "uid", "sync_minutes": 0.05,
        "groups": {LEARNERS: "learner", STAFF: "staff"},
        "roles": {STAFF: "staff", IT_SUPPORT: "it_support"}}
    values.update(changes)
    return LdapSettings(**values)


def directory_sync(redis: aioredis.Redis, keys: Keys, settings: LdapSettings,
                   password: str = SERVICE_PASSWORD) -> DirectorySync:
    return DirectorySync(Store(redis, keys), settings, profiles=default_profiles(),
                         unidentified_group="guest", environ={PASSWORD_ENV: password})


async def users_by_name(api: Api, token: str) -> dict[str, dict[str, Any]]:
    status, body = await api.call("GET", "/api/v1/users", token)
    assert status == 200, body
    items = body["items"] if isinstance(body, dict) else body
    return {user["name"]: user for user in items}


async def wait_for(api: Api, token: str, done: Any, what: str, within: float = 15.0
                   ) -> dict[str, dict[str, Any]]:
    deadline = time.monotonic() + within
    while True:
        users = await users_by_name(api, token)
        if done(users):
            return users
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: users are {users}")
        await asyncio.sleep(0.2)


def remove_member(server: LdapServer, group_dn: str, attribute: str, value: str) -> None:
    server.modify(f"dn: {group_dn}\nchangetype: modify\ndelete: {attribute}\n"
                  f"{attribute}: {value}\n")


async def test_the_admin_service_syncs_directory_groups_and_a_leaver_loses_access(
        make_api: ApiFactory, directory: LdapServer) -> None:
    api = await make_api(environ={PASSWORD_ENV: SERVICE_PASSWORD},
                         identity=IdentitySettings(ldap=ldap_settings(directory)))
    admin = await api.user("root", "admin")
    users = await wait_for(api, admin, lambda u: {"alice", "bob", "carol", "dave"} <= u.keys(),
                           "the scheduled sync never made the directory's accounts")
    assert (users["alice"]["role"], users["alice"]["group"]) == ("learner", "learner")
    # carol is in Learners and Staff: the first mapped group (learner) and the staff role
    assert (users["carol"]["role"], users["carol"]["group"]) == ("staff", "learner")
    # dave is only in the posix IT Support group: its role and that role's natural group
    assert (users["dave"]["role"], users["dave"]["group"]) == ("it_support", "staff")
    assert all(users[n]["managed_by"] == "directory" and not users[n]["disabled"]
               for n in ("alice", "bob", "carol", "dave"))
    assert "erin" not in users  # in the directory, in no mapped group
    assert (users["root"]["role"], users["root"]["managed_by"]) == ("admin", "")
    # a directory account has no password: it signs in by single sign-on, never with one
    status, _ = await api.call("POST", "/api/v1/auth/login",
                               json={"username": "carol", "password": PASSWORD})
    assert status == 401

    bob_token = await issue_token(api.redis, api.keys, "bob")
    assert (await api.call("GET", "/api/v1/auth/me", bob_token))[0] == 200
    remove_member(directory, LEARNERS, "member", f"uid=bob,{PEOPLE}")
    users = await wait_for(api, admin, lambda u: u["bob"]["disabled"],
                           "bob kept his account after leaving Learners")
    assert (users["bob"]["role"], users["bob"]["group"]) == ("learner", "guest")
    assert (await api.call("GET", "/api/v1/auth/me", bob_token))[0] == 401
    assert not users["alice"]["disabled"] and users["root"]["role"] == "admin"
    # An administrator cannot give the leaver back what the directory took away.
    status, refused = await api.call("POST", "/api/v1/users/bob/enable", admin)
    assert status == 409 and refused["error"]["code"] == "directory_leaver", refused
    assert "Add them back to a mapped group in the directory" in refused["error"]["message"]
    assert (await api.call("GET", "/api/v1/users/bob", admin))[1]["user"]["disabled"] is True

    status, audit = await api.call("GET", "/api/v1/audit?actor=directory:ldap&limit=50", admin)
    assert status == 200, audit
    entries = audit["items"] if isinstance(audit, dict) else audit
    actions = {(e["action"], e["target"]) for e in entries}
    assert {("user.create", "alice"), ("user.disable", "bob")} <= actions


async def test_a_member_who_rejoins_is_enabled_but_an_admins_disable_stands(
        redis: aioredis.Redis, keys: Keys, directory: LdapServer) -> None:
    sync = directory_sync(redis, keys, ldap_settings(directory))
    await sync.sync_now()
    remove_member(directory, LEARNERS, "member", f"uid=bob,{PEOPLE}")
    report = await sync.sync_now()
    assert [line for line in report.lines() if "bob" in line] == [
        "disabled bob: group learner -> guest, disabled (left every mapped group)"]
    # an administrator disables alice; the directory still lists her
    alice = await get_user(redis, keys, "alice")
    assert alice is not None
    await Store(redis, keys).accounts.save(replace(alice, disabled=True))
    directory.modify(f"dn: {LEARNERS}\nchangetype: modify\nadd: member\n"
                     f"member: uid=bob,{PEOPLE}\n")
    report = await sync.sync_now()
    assert report.lines() == ["enabled bob: group guest -> learner, enabled"]
    bob, alice_now = await get_user(redis, keys, "bob"), await get_user(redis, keys, "alice")
    assert bob is not None and not bob.disabled and bob.group == "learner"
    assert alice_now is not None and alice_now.disabled


async def test_account_names_are_the_directorys_in_lower_case(
        redis: aioredis.Redis, keys: Keys, tmp_path: Path) -> None:
    """Active Directory's JSmith is jsmith, the name a Kerberos ticket or a RADIUS user name
    in any case reaches, so the person gets their directory group however they sign in."""
    tree = base_tree(learners=["Gill.Jones"], staff=["Gill.Jones"], it_support=["GILL.JONES"],
                     people=["Gill.Jones"])
    with ldap_server(tmp_path / "slapd", tree) as server:
        report = await directory_sync(redis, keys, ldap_settings(server)).sync_now()
    # One person, whatever case each group spells them in: learner group, the highest role.
    assert report.lines() == ["created gill.jones (it_support, group learner)"]
    assert await get_user(redis, keys, "Gill.Jones") is None
    gill = await get_user(redis, keys, "gill.jones")
    assert gill is not None and (gill.group, gill.managed_by) == ("learner", "directory")
    assert principal_identity("Gill.Jones@CENTRE.TEST", "CENTRE.TEST") == KerberosPrincipal(
        "gill.jones")


async def test_a_wrong_bind_password_changes_nothing(
        redis: aioredis.Redis, keys: Keys, directory: LdapServer) -> None:
    settings = ldap_settings(directory)
    await directory_sync(redis, keys, settings).sync_now()
    before = await Store(redis, keys).accounts.all()
    remove_member(directory, LEARNERS, "member", f"uid=bob,{PEOPLE}")
    with pytest.raises(DirectoryError, match="bind DN or its password is wrong"):
        await directory_sync(redis, keys, settings, password="not the password").sync_now()
    assert await Store(redis, keys).accounts.all() == before


async def test_the_directory_down_or_a_missing_group_changes_nothing(
        redis: aioredis.Redis, keys: Keys, directory: LdapServer) -> None:
    settings = ldap_settings(directory)
    await directory_sync(redis, keys, settings).sync_now()
    before = await Store(redis, keys).accounts.all()
    missing = ldap_settings(directory, groups={LEARNERS: "learner",
                                               f"cn=Gone,{GROUPS}": "staff"})
    with pytest.raises(DirectoryError, match=r"cn=Gone.* does not exist"):
        await directory_sync(redis, keys, missing).sync_now()
    directory.stop()
    with pytest.raises(DirectoryError, match=re.escape(directory.url)):
        await directory_sync(redis, keys, settings).sync_now()
    after = await Store(redis, keys).accounts.all()
    assert after == before and not any(u.disabled for u in after)


async def test_a_directory_listing_nobody_disables_nobody(
        redis: aioredis.Redis, keys: Keys, directory: LdapServer) -> None:
    settings = ldap_settings(directory, groups={}, roles={IT_SUPPORT: "it_support"})
    await directory_sync(redis, keys, settings).sync_now()
    remove_member(directory, IT_SUPPORT, "memberUid", "dave")
    with pytest.raises(DirectoryError, match="listed nobody"):
        await directory_sync(redis, keys, settings).sync_now()
    dave = await get_user(redis, keys, "dave")
    assert dave is not None and not dave.disabled and dave.role == "it_support"


async def test_nested_groups_count_and_people_deleted_from_the_directory_do_not(
        redis: aioredis.Redis, keys: Keys, directory: LdapServer) -> None:
    # erin is in Evening, a group inside Learners; "ghost" is listed by IT Support but has no
    # entry; alice is deleted from the directory but Learners still lists her DN
    directory.add(f"dn: cn=Evening,{GROUPS}\nobjectClass: groupOfNames\ncn: Evening\n"
                  f"member: uid=erin,{PEOPLE}\n\n")
    directory.modify(f"dn: {LEARNERS}\nchangetype: modify\nadd: member\n"
                     f"member: cn=Evening,{GROUPS}\n\n"
                     f"dn: {IT_SUPPORT}\nchangetype: modify\nadd: memberUid\n"
                     "memberUid: ghost\n")
    sync = directory_sync(redis, keys, ldap_settings(directory))
    await sync.sync_now()
    erin = await get_user(redis, keys, "erin")
    assert erin is not None and (erin.role, erin.group) == ("learner", "learner")
    assert await get_user(redis, keys, "ghost") is None
    directory.modify(f"dn: uid=alice,{PEOPLE}\nchangetype: delete\n")
    report = await sync.sync_now()
    assert [change.name for change in report.changes] == ["alice"]
    alice = await get_user(redis, keys, "alice")
    assert alice is not None and alice.disabled and alice.group == "guest"
    wrong_base = ldap_settings(directory, base_dn=f"ou=nowhere,{SUFFIX}")
    with pytest.raises(DirectoryError, match=r"base_dn .* does not exist"):
        await directory_sync(redis, keys, wrong_base).sync_now()
    erin = await get_user(redis, keys, "erin")
    assert erin is not None and not erin.disabled

def run_cli(config: Path, redis_url: str, data_dir: Path, password: str, *args: str
            ) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, PASSWORD_ENV: password, "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-m", "esafety.cli", "--config", str(config),
                           "--redis-url", redis_url, "--data-dir", str(data_dir), *args],
                          capture_output=True, text=True, timeout=60, env=env, check=False)


async def test_esafety_directory_sync_prints_changes_and_leaves_local_accounts_alone(
        redis: aioredis.Redis, redis_url: str, keys: Keys, directory: LdapServer,
        tmp_path: Path) -> None:
    # a local break-glass admin who shares a name with a directory member, and a local user
    await create_user(redis, keys, "carol", "admin", "staff", PASSWORD)
    await create_user(redis, keys, "frank", "learner", "learner", PASSWORD)
    config = tmp_path / "esafety.yaml"
    config.write_text(yaml.safe_dump({"redis_prefix": keys.prefix, "identity": {"ldap": {
        "url": directory.url, "bind_dn": SERVICE_DN, "password_env": PASSWORD_ENV,
        "base_dn": SUFFIX, "groups": {LEARNERS: "learner", STAFF: "staff"},
        "roles": {STAFF: "staff", IT_SUPPORT: "it_support"}}}}))

    wrong = run_cli(config, redis_url, tmp_path / "data", "wrong", "directory", "sync")
    assert wrong.returncode == 1, wrong
    assert "nothing was changed" in wrong.stderr
    assert "the bind DN or its password is wrong" in wrong.stderr
    assert await get_user(redis, keys, "alice") is None

    done = run_cli(config, redis_url, tmp_path / "data", SERVICE_PASSWORD, "directory", "sync")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert "created alice (learner, group learner)" in lines
    assert "created dave (it_support, group staff)" in lines
    assert any(line.startswith("kept carol: a local account") for line in lines)
    assert lines[-1] == "4 people in the mapped directory groups; 3 accounts changed"
    carol, frank = await get_user(redis, keys, "carol"), await get_user(redis, keys, "frank")
    assert carol is not None and (carol.role, carol.managed_by, carol.disabled) == (
        "admin", "", False)
    assert frank is not None and not frank.disabled and frank.group == "learner"
    # The directory sets a synced account's role and group: the CLI says so instead of making
    # a change the next sync would undo. Its display name is the centre's to set.
    moved = run_cli(config, redis_url, tmp_path / "data", SERVICE_PASSWORD, "users", "edit",
                    "dave", "--group", "learner")
    assert moved.returncode == 1 and "follow the directory groups" in moved.stderr, moved
    named = run_cli(config, redis_url, tmp_path / "data", SERVICE_PASSWORD, "users", "edit",
                    "dave", "--display-name", "Dave (IT)")
    assert named.returncode == 0, named.stderr
    dave = await get_user(redis, keys, "dave")
    assert dave is not None and (dave.group, dave.display_name) == ("staff", "Dave (IT)")

    remove_member(directory, LEARNERS, "member", f"uid=alice,{PEOPLE}")
    again = run_cli(config, redis_url, tmp_path / "data", SERVICE_PASSWORD, "directory", "sync",
                    "--json")
    assert again.returncode == 0, again.stderr
    report = json.loads(again.stdout)
    assert [(c["kind"], c["user"], c["after"]["group"]) for c in report["changes"]] == [
        ("disable", "alice", "guest")]
    alice, frank = await get_user(redis, keys, "alice"), await get_user(redis, keys, "frank")
    assert alice is not None and alice.disabled
    assert frank is not None and not frank.disabled


async def test_plain_ldap_to_another_host_is_warned_about_and_a_failure_is_one_clear_error(
        redis: aioredis.Redis, keys: Keys, directory: LdapServer,
        caplog: pytest.LogCaptureFixture) -> None:
    settings = ldap_settings(directory, url="ldap://directory.invalid:389")
    with pytest.raises(DirectoryError, match=re.escape(
            "cannot sign in to the directory at ldap://directory.invalid:389")):
        await directory_sync(redis, keys, settings).sync_now()
    assert any("plain ldap:// without start_tls" in r.getMessage() for r in caplog.records)
    assert await Store(redis, keys).accounts.all() == []
    caplog.clear()
    await directory_sync(redis, keys, ldap_settings(directory)).sync_now()  # loopback: no warning
    assert not any("plain ldap://" in r.getMessage() for r in caplog.records)


# Learners get social networks at break and lunch by default; a learner group without those
# windows keeps this test's answers the same at any time of day.
NO_WINDOWS = {"learner": {}}
PROBE = "http://esafety-proxy.invalid/status"
STAFF_ONLY = "http://friendface.test/feed"  # social networks: allowed to staff, not learners


def test_a_real_proxy_filters_a_synced_user_by_their_directory_group_until_they_leave(
        directory: LdapServer, redis_url: str, keys: Keys, origins: Origins,
        tmp_path: Path) -> None:
    async def sync_and_token() -> str:
        client = connect(redis_url)
        try:
            await directory_sync(client, keys, ldap_settings(directory)).sync_now()
            return await issue_token(client, keys, "dave")  # as single sign-on would
        finally:
            await client.aclose()

    async def sync() -> None:
        client = connect(redis_url)
        try:
            await directory_sync(client, keys, ldap_settings(directory)).sync_now()
        finally:
            await client.aclose()

    token = asyncio.run(sync_and_token())
    config = write_config(tmp_path / "proxy.yaml", keys.prefix, groups=NO_WINDOWS, networks=[
        {"cidr": "127.0.0.0/8", "group": "learner", "site": "test-wifi"}])
    proxy = ProxyProcess(tmp_path / "proxy-data", config, redis_url, origins)
    imported = proxy.cli("lists", "import", str(PROXY_LISTS), "--source", "fixtures")
    assert imported.returncode == 0, imported.stdout + imported.stderr
    proxy.start()
    try:
        who = curl(proxy, PROBE, user=("dave", token)).json()
        assert (who["user"], who["group"], who["identified_by"]) == ("dave", "staff", "auth")
        assert curl(proxy, STAFF_ONLY, user=("dave", token)).status == 200
        assert curl(proxy, STAFF_ONLY).status == 403  # the network's learners may not

        remove_member(directory, IT_SUPPORT, "memberUid", "dave")
        asyncio.run(sync())
        deadline = time.monotonic() + 5
        while True:
            who = curl(proxy, PROBE, user=("dave", token)).json()
            if who["user"] is None or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert (who["user"], who["group"], who["identified_by"]) == (None, "learner", "network")
        assert curl(proxy, STAFF_ONLY, user=("dave", token)).status == 403
    finally:
        proxy.stop()
