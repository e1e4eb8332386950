"""Single sign-on (OpenID Connect) in a real browser: a real provider process on loopback
(tests/harness/oidc_provider.py), the real ``esafety admin`` process, real Redis and Chromium.

A person the config maps by a group claim signs in with that role and sees its pages; an
unmapped person gets no access; sign-out ends the session and offers the provider's; a tampered
``state``, an ID token made for another application, and a wrong or missing PKCE challenge are
refused with no session; a provider's person cannot take over a local account; an SSO account
cannot sign in with a password. Every outcome is in the audit log.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import subprocess
import sys
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qsl, urlencode, urlsplit

import pytest
from playwright.sync_api import Browser, Page, Response, Route, expect

from store.keys import Keys
from tests.harness.proxy import (
    PROXY_LISTS,
    REPO,
    free_port,
    stop_process,
    wait_until_healthy,
    write_config,
)
from tests.harness.ui import (
    PASSWORD,
    AdminProcess,
    BrowserTab,
    TabFactory,
    UiStack,
    browser,  # noqa: F401
    ensure_ui_vendor,
    tab_factory,
)

CLIENT_ID = "esafety-admin"
SECRET_ENV = "ESAFETY_TEST_OIDC_SECRET"
PROVIDER = "Test Provider"


@dataclass
class SecretAdminProcess(AdminProcess):
    """The admin process with the OIDC client secret in its environment (never the config)."""

    secret: str = ""

    def env(self) -> dict[str, str]:
        env = super().env()
        env[SECRET_ENV] = self.secret
        return env


@dataclass
class SsoStack:
    ui: UiStack
    provider_url: str
    provider: subprocess.Popen[bytes]
    provider_log: Path

    def control(self, **settings: object) -> None:
        request = urllib.request.Request(
            f"{self.provider_url}/test-control", data=json.dumps(settings).encode(),
            headers={"Content-Type": "application/json"}, method="POST")
        with urllib.request.urlopen(request, timeout=5) as reply:
            assert reply.status == 200

    def audit(self, action: str) -> list[dict[str, object]]:
        found = self.ui.api("GET", f"/api/v1/audit?action={action}&limit=100", "sso-auditor")
        items: list[dict[str, object]] = found["items"]
        return items


@pytest.fixture(scope="module")
def sso(tmp_path_factory: pytest.TempPathFactory, redis_url: str) -> Iterator[SsoStack]:
    ensure_ui_vendor()
    directory = tmp_path_factory.mktemp("ui-sso")
    secret = secrets.token_urlsafe(24)
    admin_port, provider_port = free_port(), free_port()
    provider_url = f"http://127.0.0.1:{provider_port}"
    admin_url = f"http://127.0.0.1:{admin_port}"
    provider_log = directory / "provider.log"
    with provider_log.open("ab") as log:
        provider = subprocess.Popen(
            [sys.executable, "-m", "tests.harness.oidc_provider", "--port", str(provider_port),
             "--client-id", CLIENT_ID, "--client-secret-env", SECRET_ENV,
             "--redirect-uri", f"{admin_url}/auth/oidc/callback"],
            cwd=REPO, env={**os.environ, SECRET_ENV: secret}, stdout=log,
            stderr=subprocess.STDOUT)
    keys = Keys(prefix=f"esafety-test-{uuid.uuid4().hex[:10]}:")
    config = write_config(
        directory / "esafety.yaml", keys.prefix, admin_public_url=admin_url,
        identity={"oidc": {
            "issuer": provider_url, "client_id": CLIENT_ID, "client_secret_env": SECRET_ENV,
            "name": PROVIDER, "scopes": ["openid", "email", "profile", "groups"],
            "roles": {"manager": ["group:managers"], "it_support": ["it@centre.example"],
                      "admin": ["clash@centre.example"]},
            "groups": {"staff": ["group:managers", "it@centre.example"]}}})
    admin = SecretAdminProcess(directory / "data", config, redis_url, admin_port, secret=secret)
    stack = UiStack(admin, keys, redis_url)
    try:
        wait_until_healthy(provider, f"{provider_url}/.well-known/openid-configuration",
                           "OIDC provider", lambda: provider_log.read_text(errors="replace"))
        imported = admin.cli("lists", "import", str(PROXY_LISTS), "--source", "fixtures")
        assert imported.returncode == 0, imported.stdout + imported.stderr
        admin.start()
        stack.add_user("sso-auditor", "admin")
        yield SsoStack(stack, provider_url, provider, provider_log)
    finally:
        stack.stop()
        stop_process(provider)


@pytest.fixture
def new_tab(browser: Browser, sso: SsoStack) -> Iterator[TabFactory]:  # noqa: F811
    yield from tab_factory(browser, sso.ui)


def session_status(page: Page) -> int:
    """What ``/api/v1/auth/me`` answers this browser (200 signed in, 401 not)."""
    status: int = page.evaluate("fetch('/api/v1/auth/me').then((r) => r.status)")
    return status


def sign_in_at_provider(tab: BrowserTab, email: str, groups: str = "") -> Response:
    """From the admin's sign-in page, through the provider's form, back to the admin; the
    callback's response."""
    tab.open("/sign-in")
    tab.page.get_by_role("link", name=f"Sign in with {PROVIDER}").click()
    tab.page.get_by_label("E-mail address").fill(email)
    tab.page.get_by_label("Groups").fill(groups)
    with tab.page.expect_response(lambda r: "/auth/oidc/callback" in r.url) as callback:
        tab.page.get_by_role("button", name="Sign in to the test provider").click()
    return callback.value


def rewrite_authorize_query(page: Page, change: Callable[[dict[str, str]], None]) -> None:
    """Change the query of the link to the provider's /authorize that esafety's start sends
    the browser to (as someone meddling with the link would)."""
    def handle(route: Route) -> None:
        response = route.fetch(max_redirects=0)
        parts = urlsplit(response.headers["location"])
        query = dict(parse_qsl(parts.query))
        change(query)
        route.fulfill(response=response, headers={
            **response.headers, "location": parts._replace(query=urlencode(query)).geturl()})
    page.route(re.compile(r"/auth/oidc/start"), handle)


def test_a_person_in_a_mapped_group_signs_in_with_that_role_then_signs_out(
        sso: SsoStack, new_tab: TabFactory) -> None:
    tab = new_tab()
    callback = sign_in_at_provider(tab, "mgr@centre.example", "managers, everyone")
    assert callback.status == 200
    tab.page.wait_for_url("**/dashboard")  # the callback's address (code, state) is left
    tab.page.locator("#signed-in-as", has_text="Signed in as Mgr (Manager)").wait_for()
    tab.wait_until_drawn()
    assert tab.heading() == "Dashboard"
    assert tab.nav_links() == ["Dashboard", "Access log", "Quarterly report", "Alerts",
                               "My sessions", "Audit log"]
    me = tab.page.evaluate("fetch('/api/v1/auth/me').then((r) => r.json())")
    assert me["user"]["role"] == "manager" and me["user"]["group"] == "staff"
    assert me["user"]["sso"] is True
    assert tab.console_errors == []

    logins = [e for e in sso.audit("auth.sso_login") if e["actor"] == "mgr@centre.example"]
    assert logins and logins[0]["after"] == {"role": "manager", "group": "staff",
                                             "provider": sso.provider_url}

    tab.page.locator("#sign-out").click()
    expect(tab.page.locator("main")).to_contain_text("You have signed out.")
    assert session_status(tab.page) == 401
    tab.page.get_by_role("link", name=f"Sign out of {PROVIDER} too").click()
    tab.page.wait_for_url("**/sign-in?signed_out=1")
    assert session_status(tab.page) == 401

    # the SSO account has no password: not even the one its empty hash would stand for
    with pytest.raises(urllib.error.HTTPError) as refused:
        sso.ui._call("POST", "/api/v1/auth/login", None,
                     {"username": "mgr@centre.example", "password": "not a real password"})
    assert refused.value.code == 401


def test_local_accounts_still_sign_in_next_to_single_sign_on(sso: SsoStack,
                                                             new_tab: TabFactory) -> None:
    name = sso.ui.add_user("local-admin", "admin")
    tab = new_tab()
    tab.open("/sign-in")
    expect(tab.page.get_by_role("link", name=f"Sign in with {PROVIDER}")).to_be_visible()
    tab.sign_in(name, PASSWORD)
    assert tab.heading() == "Dashboard"


def test_an_unmapped_person_gets_no_access(sso: SsoStack, new_tab: TabFactory) -> None:
    tab = new_tab()
    callback = sign_in_at_provider(tab, "visitor@elsewhere.example", "visitors")
    assert callback.status == 403
    expect(tab.page.locator("h1")).to_have_text("No access to esafety")
    expect(tab.page.locator("main")).to_contain_text("visitor@elsewhere.example")
    assert session_status(tab.page) == 401
    refused = [e for e in sso.audit("auth.sso_refused")
               if e["target"] == "visitor@elsewhere.example"]
    assert refused and refused[0]["after"] == {"reason": "no role maps this person"}


def test_a_mapped_email_gets_its_role(sso: SsoStack, new_tab: TabFactory) -> None:
    tab = new_tab()
    assert sign_in_at_provider(tab, "it@centre.example").status == 200
    tab.page.locator("#signed-in-as", has_text="Signed in as It (IT support)").wait_for()
    tab.wait_until_drawn()
    assert tab.heading() == "Unblock requests"


def test_a_provider_person_cannot_take_over_a_local_account(sso: SsoStack,
                                                            new_tab: TabFactory) -> None:
    sso.ui.add_user("clash@centre.example", "learner")
    tab = new_tab()
    callback = sign_in_at_provider(tab, "clash@centre.example")
    assert callback.status == 403
    expect(tab.page.locator("main")).to_contain_text("a local account has this name")
    assert session_status(tab.page) == 401
    local = sso.ui.api("GET", "/api/v1/users?role=learner", "sso-auditor")["items"]
    assert [u["role"] for u in local if u["name"] == "clash@centre.example"] == ["learner"]


def test_a_tampered_state_is_refused(sso: SsoStack, new_tab: TabFactory) -> None:
    tab = new_tab()
    rewrite_authorize_query(tab.page, lambda q: q.update(state=q["state"][:-4] + "AAAA"))
    callback = sign_in_at_provider(tab, "mgr@centre.example", "managers")
    assert callback.status == 400
    expect(tab.page.locator("h1")).to_have_text("This sign-in cannot be finished")
    assert session_status(tab.page) == 401
    assert any(e["after"] == {"reason": "state not valid for this browser"}
               for e in sso.audit("auth.sso_refused"))


@pytest.mark.parametrize(("provider_fault", "refusal"), [
    ({"id_token_audience": "another-application"}, "The ID token was refused (invalid_claim"),
    ({"id_token_lifetime": -600}, "The ID token was refused (expired_token"),
    ({"sign_with_unpublished_key": True}, "The ID token was refused (bad_signature"),
    ({"id_token_nonce": "a-nonce-from-another-sign-in"},
     "The ID token was refused (invalid_claim: Invalid claim 'nonce'"),
], ids=["made-for-another-application", "expired", "signed-with-an-unpublished-key",
        "another-nonce"])
def test_an_id_token_made_for_another_application_is_refused(
        sso: SsoStack, new_tab: TabFactory, provider_fault: dict[str, object],
        refusal: str) -> None:
    """Also an expired one, one not signed with the provider's published keys, and one with
    another sign-in's nonce."""
    sso.control(**provider_fault)
    try:
        tab = new_tab()
        callback = sign_in_at_provider(tab, "mgr@centre.example", "managers")
    finally:
        sso.control()
    assert callback.status == 400
    expect(tab.page.locator("main")).to_contain_text(refusal)
    assert session_status(tab.page) == 401


def test_a_wrong_pkce_challenge_makes_the_provider_refuse(sso: SsoStack,
                                                          new_tab: TabFactory) -> None:
    tab = new_tab()
    other = "A" * 43  # a well-formed challenge of a verifier esafety does not hold
    rewrite_authorize_query(tab.page, lambda q: q.update(code_challenge=other))
    callback = sign_in_at_provider(tab, "mgr@centre.example", "managers")
    assert callback.status == 502
    expect(tab.page.locator("main")).to_contain_text(
        "refused to complete the sign-in: invalid_grant (PKCE code_verifier does not match)")
    assert session_status(tab.page) == 401


def test_a_missing_pkce_challenge_makes_the_provider_refuse(sso: SsoStack,
                                                            new_tab: TabFactory) -> None:
    tab = new_tab()
    tab.open("/sign-in")
    rewrite_authorize_query(tab.page, lambda q: q.pop("code_challenge"))
    with tab.page.expect_response(lambda r: "/auth/oidc/callback" in r.url) as callback:
        tab.page.get_by_role("link", name=f"Sign in with {PROVIDER}").click()
    assert callback.value.status == 400
    expect(tab.page.locator("h1")).to_have_text("The sign-in provider did not sign you in")
    expect(tab.page.locator("main")).to_contain_text("PKCE with S256 is required")
    assert session_status(tab.page) == 401


def test_a_callback_link_taken_to_another_browser_is_refused(sso: SsoStack,
                                                             new_tab: TabFactory) -> None:
    """The state is bound to the browser that started: someone who gets hold of the provider's
    answer (its code and state) cannot finish the sign-in in their own browser."""
    victim, thief = new_tab(), new_tab()
    caught: list[str] = []

    def catch(route: Route) -> None:  # the provider's redirect back, kept and not followed
        if route.request.method != "POST":
            route.continue_()
            return
        response = route.fetch(max_redirects=0)
        caught.append(response.headers["location"])
        route.fulfill(status=200, body="caught", content_type="text/plain")
    victim.page.route(re.compile(r"/authorize"), catch)
    victim.open("/sign-in")
    victim.page.get_by_role("link", name=f"Sign in with {PROVIDER}").click()
    victim.page.get_by_label("E-mail address").fill("mgr@centre.example")
    victim.page.get_by_label("Groups").fill("managers")
    victim.page.get_by_role("button", name="Sign in to the test provider").click()
    expect(victim.page.locator("body")).to_have_text("caught")
    assert len(caught) == 1 and "/auth/oidc/callback?code=" in caught[0]
    reply = thief.page.goto(caught[0])
    assert reply is not None and reply.status == 400
    expect(thief.page.locator("main")).to_contain_text("started in another browser")
    assert session_status(thief.page) == 401
