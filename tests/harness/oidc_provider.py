"""A small, real OpenID Connect provider for tests, run as a process of its own on loopback.

Built on aiohttp and Authlib's JOSE and PKCE code: discovery
(``/.well-known/openid-configuration``), its key set (``/jwks``, one RSA key made at start),
``/authorize`` (the authorization-code flow, PKCE S256 required, with a sign-in form where the
tester types the person's e-mail address and groups), ``/token`` (client secret, single-use
codes, the redirect URI and the PKCE verifier checked) issuing an RS256 ID token, and
``/logout`` (RP-initiated sign-out).

``POST /test-control`` changes the next ID tokens, as a broken or hostile provider would make
them (``{}`` puts everything back): ``{"id_token_audience": "other-app"}`` names another client,
``{"id_token_lifetime": -600}`` makes them expired already, ``{"id_token_nonce": "x"}`` gives
them another nonce than the one asked for (as a token replayed from another sign-in), and
``{"sign_with_unpublished_key": true}`` signs them with a key that is not in the key set
(under the published key's id).

    python -m tests.harness.oidc_provider --port 9400 --client-id esafety \
        --client-secret-env TEST_OIDC_SECRET --redirect-uri http://127.0.0.1:8090/auth/oidc/callback
"""

from __future__ import annotations

import argparse
import base64
import hmac
import os
import secrets
import time
from dataclasses import dataclass, field
from html import escape
from typing import Any
from urllib.parse import urlencode

from aiohttp import web
from authlib.jose import JsonWebKey, JsonWebToken
from authlib.oauth2.rfc7636 import create_s256_code_challenge

CODE_SECONDS = 60


@dataclass
class Grant:
    client_id: str
    redirect_uri: str
    code_challenge: str
    nonce: str
    email: str
    groups: list[str]
    issued: float


@dataclass
class Provider:
    issuer: str
    client_id: str
    client_secret: str
    redirect_uri: str
    key: Any = field(default_factory=lambda: JsonWebKey.generate_key(
        "RSA", 2048, is_private=True, options={"kid": secrets.token_hex(8)}))
    grants: dict[str, Grant] = field(default_factory=dict)
    id_token_audience: str | None = None
    id_token_lifetime: int = 300
    id_token_nonce: str | None = None
    unpublished_key: Any = None
    """Signs ID tokens instead of ``key`` when set (a forger's key)."""

    def metadata(self) -> dict[str, Any]:
        return {"issuer": self.issuer,
                "authorization_endpoint": f"{self.issuer}/authorize",
                "token_endpoint": f"{self.issuer}/token",
                "jwks_uri": f"{self.issuer}/jwks",
                "end_session_endpoint": f"{self.issuer}/logout",
                "response_types_supported": ["code"],
                "subject_types_supported": ["public"],
                "id_token_signing_alg_values_supported": ["RS256"],
                "code_challenge_methods_supported": ["S256"],
                "token_endpoint_auth_methods_supported": ["client_secret_basic",
                                                          "client_secret_post"],
                "scopes_supported": ["openid", "email", "profile", "groups"]}


def _error_redirect(redirect_uri: str, state: str, error: str, description: str
                    ) -> web.Response:
    query = urlencode({"error": error, "error_description": description, "state": state})
    return web.Response(status=302, headers={"Location": f"{redirect_uri}?{query}"})


def _form_page(params: dict[str, str]) -> str:
    hidden = "".join(f'<input type="hidden" name="{escape(k)}" value="{escape(v)}">'
                     for k, v in params.items())
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>Test provider sign-in</title></head>
<body><h1>Test provider sign-in</h1>
<form method="post" action="/authorize">{hidden}
<label>E-mail address <input name="email" autocomplete="off"></label>
<label>Groups <input name="groups" autocomplete="off"></label>
<button type="submit">Sign in to the test provider</button>
</form></body></html>"""


def build_app(provider: Provider) -> web.Application:
    routes = web.RouteTableDef()

    @routes.get("/.well-known/openid-configuration")
    async def discovery(request: web.Request) -> web.Response:
        return web.json_response(provider.metadata())

    @routes.get("/jwks")
    async def jwks(request: web.Request) -> web.Response:
        return web.json_response({"keys": [provider.key.as_dict(is_private=False)]})

    @routes.get("/authorize")
    async def authorize(request: web.Request) -> web.Response:
        query = request.query
        if query.get("client_id") != provider.client_id:
            return web.Response(status=400, text="unknown client_id")
        if query.get("redirect_uri") != provider.redirect_uri:
            return web.Response(status=400, text="redirect_uri not registered")
        state = query.get("state", "")
        if query.get("response_type") != "code":
            return _error_redirect(provider.redirect_uri, state, "unsupported_response_type",
                                   "only code")
        if not query.get("code_challenge") or query.get("code_challenge_method") != "S256":
            return _error_redirect(provider.redirect_uri, state, "invalid_request",
                                   "PKCE with S256 is required")
        params = {k: query.get(k, "") for k in ("client_id", "redirect_uri", "state", "nonce",
                                                "code_challenge")}
        return web.Response(text=_form_page(params), content_type="text/html")

    @routes.post("/authorize")
    async def authorize_form(request: web.Request) -> web.Response:
        form = await request.post()
        values = {k: str(form.get(k, "")) for k in ("client_id", "redirect_uri", "state",
                                                     "nonce", "code_challenge", "email",
                                                     "groups")}
        if values["client_id"] != provider.client_id or \
                values["redirect_uri"] != provider.redirect_uri:
            return web.Response(status=400, text="bad client")
        code = secrets.token_urlsafe(24)
        provider.grants[code] = Grant(
            client_id=values["client_id"], redirect_uri=values["redirect_uri"],
            code_challenge=values["code_challenge"], nonce=values["nonce"],
            email=values["email"].strip(),
            groups=[g.strip() for g in values["groups"].split(",") if g.strip()],
            issued=time.time())
        query = urlencode({"code": code, "state": values["state"]})
        return web.Response(status=302, headers={"Location": f"{values['redirect_uri']}?{query}"})

    def _client_authenticated(request: web.Request, form: dict[str, str]) -> bool:
        header = request.headers.get("Authorization", "")
        if header.lower().startswith("basic "):
            decoded = base64.b64decode(header[6:]).decode()
            client_id, _, secret = decoded.partition(":")
        else:
            client_id, secret = form.get("client_id", ""), form.get("client_secret", "")
        return client_id == provider.client_id and hmac.compare_digest(
            secret.encode(), provider.client_secret.encode())

    def _token_error(error: str, description: str, status: int = 400) -> web.Response:
        return web.json_response({"error": error, "error_description": description},
                                 status=status)

    @routes.post("/token")
    async def token(request: web.Request) -> web.Response:
        form = {k: str(v) for k, v in (await request.post()).items()}
        if not _client_authenticated(request, form):
            return _token_error("invalid_client", "client authentication failed", 401)
        if form.get("grant_type") != "authorization_code":
            return _token_error("unsupported_grant_type", "only authorization_code")
        grant = provider.grants.pop(form.get("code", ""), None)
        if grant is None or time.time() - grant.issued > CODE_SECONDS:
            return _token_error("invalid_grant", "unknown, used or expired code")
        if form.get("redirect_uri") != grant.redirect_uri:
            return _token_error("invalid_grant", "redirect_uri does not match")
        verifier = form.get("code_verifier", "")
        if not verifier or create_s256_code_challenge(verifier) != grant.code_challenge:
            return _token_error("invalid_grant", "PKCE code_verifier does not match")
        now = int(time.time())
        claims: dict[str, Any] = {
            "iss": provider.issuer, "sub": f"subject-{grant.email}",
            "aud": provider.id_token_audience or grant.client_id, "iat": now,
            "exp": now + provider.id_token_lifetime,
            "nonce": provider.id_token_nonce or grant.nonce, "email": grant.email,
            "email_verified": True, "groups": grant.groups,
            "name": grant.email.split("@")[0].title()}
        header = {"alg": "RS256", "kid": provider.key.as_dict()["kid"]}
        signing_key = provider.unpublished_key or provider.key
        id_token = JsonWebToken(["RS256"]).encode(header, claims, signing_key).decode()
        return web.json_response({"access_token": secrets.token_urlsafe(24),
                                  "token_type": "Bearer", "expires_in": 300,
                                  "id_token": id_token})

    @routes.get("/favicon.ico")
    async def favicon(request: web.Request) -> web.Response:
        return web.Response(status=204)

    @routes.get("/logout")
    async def logout(request: web.Request) -> web.Response:
        target = request.query.get("post_logout_redirect_uri", "")
        if target:
            return web.Response(status=302, headers={"Location": target})
        return web.Response(text="Signed out of the test provider.")

    @routes.post("/test-control")
    async def control(request: web.Request) -> web.Response:
        body = await request.json()
        audience = body.get("id_token_audience")
        provider.id_token_audience = str(audience) if audience else None
        provider.id_token_lifetime = int(body.get("id_token_lifetime", 300))
        provider.id_token_nonce = str(body["id_token_nonce"]) if body.get("id_token_nonce") \
            else None
        provider.unpublished_key = JsonWebKey.generate_key(
            "RSA", 2048, is_private=True, options={"kid": provider.key.as_dict()["kid"]}
        ) if body.get("sign_with_unpublished_key") else None
        return web.json_response({"changed": sorted(body)})

    app = web.Application()
    app.add_routes(routes)
    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--client-id", required=True)
    parser.add_argument("--client-secret-env", required=True)
    parser.add_argument("--redirect-uri", required=True)
    parser.add_argument("--host-name", default="127.0.0.1",
                        help="the name in the issuer URL (it listens on 127.0.0.1 either way)")
    args = parser.parse_args()
    provider = Provider(issuer=f"http://{args.host_name}:{args.port}", client_id=args.client_id,
                        client_secret=os.environ[args.client_secret_env],
                        redirect_uri=args.redirect_uri)
    web.run_app(build_app(provider), host="127.0.0.1", port=args.port, print=None)


if __name__ == "__main__":
    main()
