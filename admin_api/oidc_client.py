"""The OpenID Connect client of the admin's single sign-on: the provider's discovery document
and keys, the authorization-code request with PKCE (S256), the code exchange, the ID token's
checks, and who the person is to esafety (their role and group from ``identity.oidc``).

HTTP goes through aiohttp; PKCE and the ID token (signature by the provider's JWKS, ``iss``,
``aud``, ``azp``, ``exp``, ``iat``, ``nonce``) are Authlib's. Discovery and keys are cached for
a few minutes per issuer; a token signed with a key not yet seen makes the keys be read again
once (the provider rotated them).
"""

from __future__ import annotations

import hashlib
import ipaddress
import re
import secrets
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode, urlsplit

import aiohttp
from authlib.jose import JsonWebKey, JsonWebToken, KeySet
from authlib.jose.errors import JoseError
from authlib.oauth2.rfc7636 import create_s256_code_challenge
from authlib.oidc.core import CodeIDToken

from deployment.config import OidcSettings
from store.accounts import USER_NAME
from store.records import ROLES

CACHE_SECONDS = 3600.0
KEYS_CACHE_SECONDS = 300.0
"""The provider's keys are read again after this (and at once for a key not yet seen)."""
HTTP_TIMEOUT = aiohttp.ClientTimeout(total=10)
CLOCK_LEEWAY_SECONDS = 60
SIGNING_ALGORITHMS = ["RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384",
                      "ES512", "EdDSA"]
"""Public-key algorithms only: never ``none``, never an HMAC keyed with something public."""
ROLE_RANK = ("admin", "dsl", "manager", "it_support", "staff", "learner")
"""When a person matches several roles, the first of these wins."""
assert set(ROLE_RANK) == set(ROLES)
GROUP_PREFIX = "group:"
_WELL_KNOWN_NAMES = {"accounts.google.com": "Google", "login.microsoftonline.com": "Microsoft",
                     "sts.windows.net": "Microsoft"}


class SingleSignOnError(Exception):
    """A sign-in that cannot go on; ``message`` is for the person signing in (and the log)."""

    def __init__(self, message: str, *, status: int = 400) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


@dataclass(frozen=True)
class ProviderMetadata:
    issuer: str
    authorization_endpoint: str
    token_endpoint: str
    jwks_uri: str
    end_session_endpoint: str | None
    token_auth_methods: tuple[str, ...]


@dataclass(frozen=True)
class SignedInPerson:
    """Who the provider says signed in, from the checked ID token."""

    subject: str
    """``issuer|sub``: the one identity the provider vouches for."""
    email: str
    """The e-mail address, only when the provider says it is verified; else empty."""
    groups: tuple[str, ...]
    display_name: str
    preferred_name: str


def provider_name(settings: OidcSettings) -> str:
    """How the sign-in button names the provider."""
    if settings.name:
        return settings.name
    host = urlsplit(settings.issuer).hostname or settings.issuer
    return _WELL_KNOWN_NAMES.get(host, host)


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_secure_url(url: str, what: str) -> str:
    """``url`` if it is https (or http on loopback, for a provider on this machine)."""
    parts = urlsplit(url)
    if parts.scheme == "https" or (parts.scheme == "http" and _is_loopback(parts.hostname or "")):
        return url
    raise SingleSignOnError(f"The sign-in provider's {what} is not an https address ({url}).",
                            status=502)


_metadata_cache: dict[str, tuple[float, ProviderMetadata]] = {}
_keys_cache: dict[str, tuple[float, KeySet]] = {}


async def _get_json(url: str) -> dict[str, Any]:
    try:
        async with aiohttp.ClientSession(timeout=HTTP_TIMEOUT) as session, \
                session.get(url, headers={"Accept": "application/json"}) as reply:
            if reply.status != 200:
                raise SingleSignOnError(f"The sign-in provider answered {reply.status} at "
                                        f"{url}.", status=502)
            data = await reply.json(content_type=None)
    except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
        raise SingleSignOnError(f"The sign-in provider could not be reached at {url} "
                                f"({type(exc).__name__}).", status=502) from None
    if not isinstance(data, dict):
        raise SingleSignOnError(f"The sign-in provider's {url} is not a JSON object.", status=502)
    return data


def cached_metadata(settings: OidcSettings) -> ProviderMetadata | None:
    """The discovery document read for an earlier sign-in, if still fresh (no network)."""
    cached = _metadata_cache.get(settings.issuer.rstrip("/"))
    if cached is not None and time.monotonic() - cached[0] < CACHE_SECONDS:
        return cached[1]
    return None


async def provider_metadata(settings: OidcSettings) -> ProviderMetadata:
    """The provider's discovery document (``{issuer}/.well-known/openid-configuration``)."""
    issuer = settings.issuer.rstrip("/")
    cached = _metadata_cache.get(issuer)
    if cached is not None and time.monotonic() - cached[0] < CACHE_SECONDS:
        return cached[1]
    check_secure_url(issuer, "issuer")
    data = await _get_json(f"{issuer}/.well-known/openid-configuration")
    if str(data.get("issuer", "")).rstrip("/") != issuer:
        raise SingleSignOnError("The sign-in provider's discovery document names another "
                                f"issuer ({data.get('issuer')!r}, expected {issuer!r}).",
                                status=502)
    try:
        end_session = data.get("end_session_endpoint")
        metadata = ProviderMetadata(
            issuer=str(data["issuer"]),
            authorization_endpoint=check_secure_url(str(data["authorization_endpoint"]),
                                                    "authorization endpoint"),
            token_endpoint=check_secure_url(str(data["token_endpoint"]), "token endpoint"),
            jwks_uri=check_secure_url(str(data["jwks_uri"]), "key set"),
            end_session_endpoint=check_secure_url(str(end_session), "sign-out endpoint")
            if end_session else None,
            token_auth_methods=tuple(data.get("token_endpoint_auth_methods_supported")
                                     or ("client_secret_basic",)))
    except KeyError as missing:
        raise SingleSignOnError(f"The sign-in provider's discovery document has no {missing}.",
                                status=502) from None
    _metadata_cache[issuer] = (time.monotonic(), metadata)
    return metadata


async def _key_set(metadata: ProviderMetadata, *, fresh: bool = False) -> KeySet:
    cached = _keys_cache.get(metadata.jwks_uri)
    if not fresh and cached is not None and time.monotonic() - cached[0] < KEYS_CACHE_SECONDS:
        return cached[1]
    data = await _get_json(metadata.jwks_uri)
    try:
        keys = JsonWebKey.import_key_set(data)
    except (JoseError, ValueError, KeyError, TypeError):
        raise SingleSignOnError("The sign-in provider's key set cannot be read.",
                                status=502) from None
    _keys_cache[metadata.jwks_uri] = (time.monotonic(), keys)
    return keys


def new_code_verifier() -> str:
    """A PKCE code verifier: 43 to 128 unreserved characters (RFC 7636 section 4.1)."""
    return secrets.token_urlsafe(48)


def authorization_url(settings: OidcSettings, metadata: ProviderMetadata, *, redirect_uri: str,
                      state: str, nonce: str, code_verifier: str) -> str:
    query = {"response_type": "code", "client_id": settings.client_id,
             "redirect_uri": redirect_uri, "scope": " ".join(settings.scopes),
             "state": state, "nonce": nonce,
             "code_challenge": create_s256_code_challenge(code_verifier),
             "code_challenge_method": "S256"}
    separator = "&" if "?" in metadata.authorization_endpoint else "?"
    return metadata.authorization_endpoint + separator + urlencode(query)


async def exchange_code(settings: OidcSettings, metadata: ProviderMetadata, client_secret: str,
                        *, code: str, redirect_uri: str, code_verifier: str) -> str:
    """The ID token the token endpoint gives for ``code`` (with the PKCE verifier)."""
    form = {"grant_type": "authorization_code", "code": code, "redirect_uri": redirect_uri,
            "code_verifier": code_verifier, "client_id": settings.client_id}
    auth = None
    if client_secret:
        if "client_secret_basic" in metadata.token_auth_methods:
            auth = aiohttp.BasicAuth(settings.client_id, client_secret)
        else:
            form["client_secret"] = client_secret
    try:
        async with aiohttp.ClientSession(timeout=HTTP_TIMEOUT) as session, \
                session.post(metadata.token_endpoint, data=form, auth=auth,
                             headers={"Accept": "application/json"}) as reply:
            status = reply.status
            data = await reply.json(content_type=None)
    except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
        raise SingleSignOnError("The sign-in provider's token endpoint could not be reached "
                                f"({type(exc).__name__}).", status=502) from None
    if not isinstance(data, dict):
        raise SingleSignOnError("The sign-in provider's token answer is not JSON.", status=502)
    if status != 200:
        error = str(data.get("error", "error"))[:100]
        described = str(data.get("error_description", ""))[:300]
        raise SingleSignOnError("The sign-in provider refused to complete the sign-in: "
                                f"{error}{' (' + described + ')' if described else ''}.",
                                status=502)
    id_token = data.get("id_token")
    if not isinstance(id_token, str) or not id_token:
        raise SingleSignOnError("The sign-in provider sent no ID token.", status=502)
    return id_token


async def verified_person(settings: OidcSettings, metadata: ProviderMetadata, id_token: str,
                          nonce: str) -> SignedInPerson:
    """Check the ID token (signature, issuer, audience, expiry, nonce) and read the person."""
    options = {"iss": {"essential": True, "value": metadata.issuer},
               "aud": {"essential": True, "value": settings.client_id},
               "sub": {"essential": True}, "exp": {"essential": True},
               "iat": {"essential": True}, "nonce": {"essential": True}}
    params = {"nonce": nonce, "client_id": settings.client_id}
    jwt = JsonWebToken(SIGNING_ALGORITHMS)
    claims = None
    for fresh in (False, True):
        keys = await _key_set(metadata, fresh=fresh)
        try:
            claims = jwt.decode(id_token, keys, claims_cls=CodeIDToken, claims_options=options,
                                claims_params=params)
            break
        except ValueError as exc:  # no key with that kid: read the keys again once
            if fresh or "key" not in str(exc).lower():
                raise SingleSignOnError("The sign-in provider's ID token is not signed by "
                                        "its keys.", status=400) from None
        except JoseError as exc:
            raise SingleSignOnError(f"The ID token was refused ({exc.error}).") from None
    assert claims is not None
    try:
        claims.validate(leeway=CLOCK_LEEWAY_SECONDS)
    except JoseError as exc:
        raise SingleSignOnError(f"The ID token was refused ({exc.error}: "
                                f"{exc.description or 'check failed'}).") from None
    audiences = claims["aud"] if isinstance(claims["aud"], list) else [claims["aud"]]
    if settings.client_id not in audiences:  # validate_aud above; kept explicit
        raise SingleSignOnError("The ID token was made for another application.")
    email = claims.get("email")
    verified = claims.get("email_verified") in (True, "true")
    groups = claims.get("groups") or []
    if isinstance(groups, str):
        groups = [groups]
    return SignedInPerson(
        subject=f"{metadata.issuer}|{claims['sub']}",
        email=str(email).strip().lower() if isinstance(email, str) and verified else "",
        groups=tuple(str(g) for g in groups if isinstance(g, str | int)),
        display_name=str(claims.get("name") or "")[:100],
        preferred_name=str(claims.get("preferred_username") or "").strip().lower())


def _matches(person: SignedInPerson, entries: tuple[str, ...]) -> bool:
    for entry in entries:
        if entry.startswith(GROUP_PREFIX):
            if entry[len(GROUP_PREFIX):] in person.groups:
                return True
        elif person.email and entry.strip().lower() == person.email:
            return True
    return False


def role_for(settings: OidcSettings, person: SignedInPerson) -> str | None:
    """The person's role from ``identity.oidc.roles``; None when nothing maps them."""
    matched = {role for role, entries in settings.roles.items() if _matches(person, entries)}
    return next((role for role in ROLE_RANK if role in matched), None)


def group_for(settings: OidcSettings, person: SignedInPerson, default: str) -> str:
    """The person's filtering group from ``identity.oidc.groups`` (first match), else
    ``default``."""
    for group, entries in settings.groups.items():
        if _matches(person, entries):
            return group
    return default


def account_name(person: SignedInPerson) -> str:
    """The esafety user name of a person: their verified e-mail address, else their preferred
    user name, else one made from their subject (names must fit the user-name rules)."""
    for candidate in (person.email, person.preferred_name):
        if candidate and USER_NAME.match(candidate):
            return candidate
    digest = hashlib.sha256(person.subject.encode()).hexdigest()[:16]
    return f"sso-{re.sub(r'[^a-z0-9]', '', digest)}"
