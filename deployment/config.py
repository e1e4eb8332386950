"""The deployment's one config file (``esafety.yaml``), its schema and its typed form."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from categories.definitions import CategorySet
from categories.domain_index import DomainIndex
from categories.policy import Policy
from categories.profiles import (
    DEFAULT_TIMEZONE,
    GroupProfile,
    TimeWindow,
    default_profiles,
    default_windows,
    parse_clock,
    parse_days,
)
from categories.validated_yaml import (
    SchemaProblem,
    ValidationFailed,
    line_of_field,
    load_validated_yaml,
)
from deployment.account_roles import ROLES
from deployment.listen_address import (
    LISTEN_PATTERN,
    ListenAddress,
    ListenAddressError,
    parse_listen,
)

_LISTEN = {"type": "string", "pattern": LISTEN_PATTERN,
           "description": "HOST:PORT, e.g. 0.0.0.0:8080 or :8080"}
_NAME = {"type": "string", "pattern": r"^[a-z][a-z0-9_-]{0,40}$",
         "description": "lower-case letters, digits, - and _"}
_PORT_LIST = {"type": "array", "uniqueItems": True,
              "items": {"type": "integer", "minimum": 1, "maximum": 65535,
                        "description": "a TCP port, 1-65535"}}
_CATEGORY_LIST = {"type": "array", "items": {"type": "string"}, "uniqueItems": True}

CONFIG_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "centre_id": {**_NAME, "description": "the centre or site id stamped on every hit"},
        "centre_name": {"type": "string", "minLength": 1, "maxLength": 80,
                        "pattern": r"^[^\x00-\x1f<>]+$",
                        "description": "the centre's name as people read it, e.g. Riverside "
                                       "Training (reports, the CA, the block page)"},
        "listen": {
            "type": "object", "additionalProperties": False,
            "properties": {"proxy": _LISTEN, "admin": _LISTEN, "proxy_status": _LISTEN},
        },
        "data_dir": {"type": "string"},
        "proxy_public_address": {"type": "string", "pattern": r"^[A-Za-z0-9.-]+:[0-9]{1,5}$",
                                 "description": "host:port browsers use for the proxy"},
        "pac_direct_hosts": {"type": "array", "items": {"type": "string"}},
        "admin_public_url": {"type": "string", "pattern": r"^https?://[^\s/]+(/.*)?$",
                             "description": "an http(s) URL learners' browsers can reach"},
        "redis_url": {"type": ["string", "null"],
                      "pattern": r"^(redis|rediss|unix|redis\+sentinel|rediss\+sentinel"
                                 r"|redis\+cluster|rediss\+cluster)://",
                      "description": "a redis://, rediss://, unix://, redis+sentinel:// or "
                                     "redis+cluster:// URL"},
        "redis_prefix": {"type": "string",
                         "pattern": r"^([A-Za-z0-9_.:-]{1,40}|\{[A-Za-z0-9_.:-]{1,40}\}:?)$",
                         "description": "keys are under it as a Redis Cluster hash tag: "
                                        "esafety: gives {esafety}:hits; {name}: is used as is"},
        "timezone": {"type": "string"},
        "time_windows": {
            "type": "object",
            "additionalProperties": {
                "type": "object", "additionalProperties": False,
                "required": ["start", "end"],
                "properties": {
                    "days": {"type": ["string", "array"]},
                    "start": {"type": "string", "pattern": r"^[0-2]?[0-9]:[0-5][0-9]$",
                              "description": "a time like 12:30"},
                    "end": {"type": "string", "pattern": r"^[0-2]?[0-9]:[0-5][0-9]$",
                            "description": "a time like 13:15"},
                },
            },
        },
        "groups": {
            "type": "object",
            "additionalProperties": {
                "type": "object", "additionalProperties": False,
                "properties": {
                    "allow": _CATEGORY_LIST,
                    "block": _CATEGORY_LIST,
                    "allow_during": {"type": "object",
                                     "additionalProperties": {"type": "array",
                                                              "items": {"type": "string"}}},
                    "block_ip_literals": {"type": "boolean"},
                    "block_uncategorised": {"type": "boolean"},
                    "online_during": {"type": "array", "items": {"type": "string"},
                                      "description": "time windows outside which every "
                                                     "request is refused"},
                    "always_allow": {"type": "array", "items": {"type": "string"},
                                     "description": "categories or hosts reachable outside "
                                                    "online_during"},
                },
            },
        },
        "unidentified_group": _NAME,
        "networks": {
            "type": "array",
            "items": {
                "type": "object", "additionalProperties": False, "required": ["cidr", "group"],
                "properties": {"cidr": {"type": "string"}, "group": _NAME, "site": _NAME,
                               "name": {"type": "string"},
                               "online_during": {"type": "array", "items": {"type": "string"},
                                                 "description": "time windows outside which "
                                                                "every request from this "
                                                                "range is refused"},
                               "managed": {"type": "boolean",
                                           "description": "devices here trust the esafety CA, "
                                                          "so blocked HTTPS sites get the block "
                                                          "page"},
                               "auth": {"enum": ["required", "off", "portal", True, False],
                                        "description": "required (devices here must sign in), "
                                                       "portal (unidentified devices are sent "
                                                       "to the Wi-Fi sign-in page) or off "
                                                       "(identified by address)"}},
            },
        },
        "proxy_auth": {
            "type": "object", "additionalProperties": False,
            "properties": {
                "mode": {"enum": ["off", "required", True, False],
                         "description": "required (devices outside networks marked auth: off "
                                        "must sign in) or off (identify by network range)"},
                "realm": {"type": "string"},
                "cache_seconds": {"type": "integer", "minimum": 0, "maximum": 3600},
                "passwords": {"type": "boolean",
                              "description": "true accepts a user's password at the proxy as "
                                             "well as their token; false accepts tokens only"},
            },
        },
        "decryption": {
            "type": "object", "additionalProperties": False,
            "properties": {
                "enabled": {"type": "boolean"},
                "inspect_hosts": {"type": "array", "items": {"type": "string"}},
                "never_decrypt_hosts": {"type": "array", "items": {"type": "string"}},
                "safe_search": {"type": "boolean"},
                "youtube_restrict": {"enum": ["strict", "moderate", "off", False]},
            },
        },
        "logging": {
            "type": "object", "additionalProperties": False,
            "properties": {
                "log_allowed": {"type": "boolean"},
                "level": {"enum": ["debug", "info", "warning", "error"]},
                "format": {"enum": ["json", "text"]},
            },
        },
        "retention": {
            "type": "object", "additionalProperties": False,
            "properties": {
                "hits_days": {"type": "integer", "minimum": 1, "maximum": 3650},
                "counters_days": {"type": "integer", "minimum": 1, "maximum": 3650},
                "audit_days": {"type": "integer", "minimum": 30, "maximum": 3650},
            },
        },
        "alerts": {
            "type": "object", "additionalProperties": False,
            "properties": {
                "webhook_url": {"type": ["string", "null"], "pattern": r"^https?://"},
                "webhook_secret_env": {"type": "string"},
                "email_to": {"type": "array", "items": {"type": "string", "pattern": "@"}},
                "email_from": {"type": "string"},
                "smtp_host": {"type": "string"},
                "smtp_port": {"type": "integer", "minimum": 1, "maximum": 65535},
                "smtp_starttls": {"type": "boolean"},
                "smtp_user_env": {"type": "string"},
                "smtp_password_env": {"type": "string"},
                "group_window_seconds": {"type": "integer", "minimum": 0, "maximum": 86400},
                "prevent_watch_terms": {"type": "array", "items": {"type": "string"}},
                "retry_first_seconds": {"type": "number", "minimum": 0.1, "maximum": 3600},
                "retry_max_seconds": {"type": "number", "minimum": 1, "maximum": 86400},
                "delivery_expiry_hours": {"type": "number", "minimum": 0.01, "maximum": 720},
                "digest_day": {"enum": ["mon", "tue", "wed", "thu", "fri", "sat", "sun"],
                               "description": "the weekday the weekly digest is sent"},
                "digest_time": {"type": "string", "pattern": r"^([01][0-9]|2[0-3]):[0-5][0-9]$",
                                "description": "HH:MM in the centre's time zone"},
            },
        },
        "extension": {
            "type": "object", "additionalProperties": False,
            "properties": {
                "offnetwork_unsigned": {
                    "enum": ["block_prohibited", "block_all"],
                    "description": "off the centre network with nobody signed in: block the "
                                   "prohibited categories (block_prohibited) or every page "
                                   "until someone signs in (block_all)"},
            },
        },
        "class_sessions": {
            "type": "object", "additionalProperties": False,
            "description": "staff opening the network for a lesson",
            "properties": {
                "max_minutes": {"type": "integer", "minimum": 1, "maximum": 720,
                                "description": "the longest session anyone may open"},
                "tutors": {
                    "type": "array",
                    "description": "who may open what (managers and admins may open any)",
                    "items": {
                        "type": "object", "additionalProperties": False, "required": ["staff"],
                        "properties": {
                            "staff": {"type": "array", "minItems": 1,
                                      "items": {"type": "string", "minLength": 1},
                                      "description": "account names, or role:<role> for "
                                                     "every account with that role"},
                            "groups": {"type": "array", "items": {"type": "string"}},
                            "networks": {"type": "array", "items": {"type": "string"}},
                        },
                    },
                },
            },
        },
        "identity": {
            "type": "object", "additionalProperties": False,
            "properties": {
                "radius_accounting": {
                    "type": "object", "additionalProperties": False,
                    "properties": {
                        "listen": _LISTEN,
                        "clients": {"type": "array", "items": {
                            "type": "object", "additionalProperties": False,
                            "required": ["address", "secret_env"],
                            "properties": {
                                "address": {"type": "string",
                                            "description": "the Wi-Fi controller's address "
                                                           "or range"},
                                "secret_env": {"type": "string", "pattern": r"^[A-Z_][A-Z0-9_]*$",
                                               "description": "the environment variable "
                                                              "holding its shared secret"}}}},
                        "binding_hours": {"type": "number", "minimum": 0.01, "maximum": 168},
                        "realms": {"type": "array", "maxItems": 50, "items": {
                            "type": "string", "minLength": 1, "maxLength": 253,
                            "pattern": r"^@?[A-Za-z0-9][A-Za-z0-9.-]*$",
                            "description": "the centre's own realms: alice@REALM and "
                                           "REALM\\alice are the account alice"}},
                    },
                },
                "portal": {
                    "type": "object", "additionalProperties": False,
                    "properties": {"session_hours": {"type": "number", "minimum": 0.1,
                                                     "maximum": 168},
                                   "trusted_proxies": {
                                       "type": "array", "items": {"type": "string"},
                                       "description": "addresses or ranges of proxies whose "
                                                      "X-Forwarded-For the sign-in page "
                                                      "believes (besides this server's own)"},
                                   "sign_in_hosts": {
                                       "type": "array",
                                       "items": {"type": "string",
                                                 "pattern": r"^[A-Za-z0-9.-]+$"},
                                       "description": "hosts (and their subdomains) a device "
                                                      "reaches before signing in: the single "
                                                      "sign-on provider's pages (its issuer's "
                                                      "host is always included)"}},
                },
                "kerberos": {
                    "type": "object", "additionalProperties": False,
                    "required": ["keytab", "service"],
                    "properties": {"keytab": {"type": "string"},
                                   "service": {"type": "string", "pattern": r"^HTTP/[^\s@]+$",
                                               "description": "the proxy's service principal, "
                                                              "e.g. HTTP/proxy.centre.local"}},
                },
                "oidc": {
                    "type": "object", "additionalProperties": False,
                    "required": ["issuer", "client_id"],
                    "properties": {
                        "issuer": {"type": "string", "pattern": r"^https?://"},
                        "client_id": {"type": "string", "minLength": 1},
                        "client_secret_env": {"type": "string", "pattern": r"^[A-Z_][A-Z0-9_]*$"},
                        "name": {"type": "string", "minLength": 1, "maxLength": 40,
                                 "description": "the provider as the sign-in button names "
                                                "it (default: from the issuer)"},
                        "scopes": {"type": "array", "items": {"type": "string"}},
                        "roles": {"type": "object", "propertyNames": {"enum": list(ROLES)},
                                  "additionalProperties": {
                            "type": "array", "items": {"type": "string"},
                            "description": "e-mail addresses, or group:NAME for a group "
                                           "claim"}},
                        "groups": {"type": "object", "additionalProperties": {
                            "type": "array", "items": {"type": "string"}}},
                    },
                },
                "ldap": {
                    "type": "object", "additionalProperties": False,
                    "required": ["url"],
                    "properties": {
                        "url": {"type": "string", "pattern": r"^ldaps?://"},
                        "bind_dn": {"type": "string"},
                        "password_env": {"type": "string", "pattern": r"^[A-Z_][A-Z0-9_]*$"},
                        "base_dn": {"type": "string"},
                        "user_attribute": {"type": "string"},
                        "sync_minutes": {"type": "number", "minimum": 0.05, "maximum": 1440},
                        "groups": {"type": "object", "additionalProperties": _NAME},
                        "roles": {"type": "object",
                                  "additionalProperties": {"enum": list(ROLES)}},
                        "start_tls": {"type": "boolean"},
                        "ca_file": {"type": "string"},
                        "nested_groups": {"type": "boolean"},
                    },
                },
            },
        },
        "upstream": {
            "type": "object", "additionalProperties": False,
            "properties": {
                "connect_ports": _PORT_LIST,
                "http_ports": _PORT_LIST,
                "tunnel_idle_seconds": {
                    "type": "number", "minimum": 1, "maximum": 86400,
                    "description": "close a connection that carried nothing for this long"},
                "allow_internal": {
                    "type": "array", "uniqueItems": True,
                    "items": {"type": "string",
                              "description": "a CIDR or an address, optionally with :port, "
                                             "e.g. 10.2.0.0/16, 10.2.0.5:8443, [fd00::5]:443"}},
            },
        },
        "lists": {
            "type": "object", "additionalProperties": False,
            "properties": {
                "sources": {
                    "type": "array",
                    "items": {
                        "type": "object", "additionalProperties": False,
                        "required": ["name", "url"],
                        "properties": {
                            "name": {"type": "string", "pattern": r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"},
                            "url": {"type": "string", "pattern": r"^(https?|file)://"},
                            "format": {"enum": ["squidguard", "plain", "urls", "hosts", "adblock"]},
                            "list": {"type": "string"},
                        },
                    },
                },
            },
        },
    },
}


@dataclass(frozen=True)
class Network:
    network: ipaddress.IPv4Network | ipaddress.IPv6Network
    group: str
    site: str | None
    auth: str | None = None
    """``required``, ``off``, or None to follow ``proxy_auth.mode``."""
    name: str | None = None
    managed: bool = False
    """Devices on this network trust the esafety CA (pushed by Group Policy, Intune...), so a
    blocked HTTPS host is decrypted only to serve the block page."""
    online_during: tuple[str, ...] = ()
    """Time windows outside which every request from this range is refused, whatever the
    group (the group's own windows must be open too)."""


@dataclass(frozen=True)
class ListSource:
    name: str
    url: str
    format: str | None
    list: str | None


IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True)
class InternalAllowance:
    """An internal destination the proxy may reach: a range, and one port or every port."""

    network: IPNetwork
    port: int | None = None

    def allows(self, address: ipaddress.IPv4Address | ipaddress.IPv6Address, port: int) -> bool:
        return address in self.network and (self.port is None or self.port == port)


@dataclass(frozen=True)
class UpstreamSettings:
    """Where the proxy may connect on a client's behalf (``upstream:`` in the config)."""

    connect_ports: frozenset[int] = frozenset({443})
    """CONNECT to any other port is refused."""
    http_ports: frozenset[int] = frozenset({80})
    """Plain-HTTP requests to any other port are refused."""
    allow_internal: tuple[InternalAllowance, ...] = ()
    """Internal (loopback, private, link-local...) destinations that are allowed anyway."""
    tunnel_idle_seconds: float = 600.0
    """A connection that carries nothing either way for this long is closed (mitmproxy's own
    default, for the tunnels the fast path relays too)."""


def parse_internal_allowance(text: str) -> InternalAllowance:
    """``10.2.0.0/16``, ``10.2.0.5``, ``10.2.0.5:8443``, ``[fd00::5]:443`` or ``fd00::/8``.

    Raises ValueError with a message that says what was expected."""
    spec = text.strip()
    port: int | None = None
    if spec.startswith("["):
        address, sep, rest = spec[1:].partition("]")
        if not sep or (rest and not rest.startswith(":")):
            raise ValueError(f"{text!r}: an IPv6 address with a port is written [addr]:port")
        port_text = rest[1:] if rest else None
    elif spec.count(":") == 1:
        address, _, port_text = spec.partition(":")
    else:
        address, port_text = spec, None
    if port_text is not None:
        if not port_text.isdigit() or not 0 < int(port_text) < 65536:
            raise ValueError(f"{text!r}: the port must be a number from 1 to 65535")
        port = int(port_text)
    try:
        network = ipaddress.ip_network(address, strict=False)
    except ValueError:
        raise ValueError(f"{text!r} is not an address or range like 10.2.0.0/16, "
                         "10.2.0.5:8443 or [fd00::5]:443") from None
    return InternalAllowance(network, port)


@dataclass(frozen=True)
class AlertSettings:
    """Safeguarding alert delivery (``alerts:`` in the config)."""

    webhook_url: str | None = None
    webhook_secret_env: str = ""
    """The environment variable holding the webhook's HMAC secret (empty: an empty key)."""
    email_to: tuple[str, ...] = ()
    email_from: str = "esafety@localhost"
    smtp_host: str = ""
    """Empty: no email is sent."""
    smtp_port: int = 25
    smtp_starttls: bool = False
    smtp_user_env: str = ""
    smtp_password_env: str = ""
    group_window_seconds: int = 900
    """Hits of one user and category within this many seconds join one open alert."""
    prevent_watch_terms: tuple[str, ...] = ()
    """Search terms that raise an alert whatever the category."""
    retry_first_seconds: float = 5.0
    """A failed delivery is tried again after this long, doubling each time ..."""
    retry_max_seconds: float = 600.0
    """... up to this long between tries ..."""
    delivery_expiry_hours: float = 48.0
    """... until this long after the alert was raised: then it is given up (and shown so)."""
    digest_day: str = "mon"
    """The weekly digest to the DSL goes out on this day (mon..sun) ..."""
    digest_time: str = "08:00"
    """... at this time (HH:MM, the centre's time zone)."""


@dataclass(frozen=True)
class RadiusClient:
    """A Wi-Fi controller allowed to send RADIUS accounting, and where its secret is."""

    network: IPNetwork
    secret_env: str


@dataclass(frozen=True)
class RadiusAccountingSettings:
    listen: ListenAddress = field(default_factory=lambda: ListenAddress("", 1813))
    clients: tuple[RadiusClient, ...] = ()
    binding_hours: float = 12.0
    """A binding without an Interim-Update or Stop ends after this long."""
    realms: tuple[str, ...] = ()
    """The centre's own realms, lower case: ``alice@college.ac.uk`` and ``COLLEGE\\alice``
    name the account ``alice`` when ``college.ac.uk`` or ``college`` is listed. A name in any
    other realm (a visitor on eduroam) is kept whole, so it never borrows a local account."""


@dataclass(frozen=True)
class PortalSettings:
    session_hours: float = 8.0
    trusted_proxies: tuple[IPNetwork, ...] = ()
    """Proxies on other hosts whose ``X-Forwarded-For`` the portal believes (the server's own
    addresses always are)."""
    sign_in_hosts: tuple[str, ...] = ()
    """Hosts (and subdomains) reachable before signing in, for single sign-on at the portal;
    the OIDC issuer's host is added to them (see :func:`portal_sign_in_hosts`)."""


@dataclass(frozen=True)
class KerberosSettings:
    keytab: str
    service: str


@dataclass(frozen=True)
class OidcSettings:
    issuer: str
    client_id: str
    client_secret_env: str = ""
    scopes: tuple[str, ...] = ("openid", "email", "profile")
    roles: dict[str, tuple[str, ...]] = field(default_factory=dict)
    """role -> e-mail addresses, or ``group:NAME`` for a value of the groups claim."""
    groups: dict[str, tuple[str, ...]] = field(default_factory=dict)
    """esafety group -> e-mail addresses or ``group:NAME``, as ``roles``."""
    name: str = ""
    """The provider as the sign-in button names it; empty: from the issuer's host."""


@dataclass(frozen=True)
class LdapSettings:
    url: str
    bind_dn: str = ""
    password_env: str = ""
    base_dn: str = ""
    user_attribute: str = "uid"
    """The attribute holding the esafety user name (``sAMAccountName`` on Active Directory)."""
    sync_minutes: float = 15.0
    groups: dict[str, str] = field(default_factory=dict)
    """Directory group DN -> esafety group."""
    roles: dict[str, str] = field(default_factory=dict)
    """Directory group DN -> esafety role."""
    start_tls: bool = False
    """Upgrade an ``ldap://`` connection with StartTLS before binding."""
    ca_file: str = ""
    """The CA certificate(s) that sign the directory's TLS certificate (default: the system's)."""
    nested_groups: bool = False
    """Active Directory: read members of nested groups too (the ``LDAP_MATCHING_RULE_IN_CHAIN``
    rule, one search per mapped group)."""


@dataclass(frozen=True)
class TutorRooms:
    """Staff who may open class sessions, and the groups and named networks they may open
    (for named learners: learners whose group is one of ``groups``)."""

    staff: tuple[str, ...]
    """Account names, or ``role:<role>`` for every account with that role."""
    groups: tuple[str, ...] = ()
    networks: tuple[str, ...] = ()

    def includes(self, user: str, role: str) -> bool:
        return user in self.staff or f"role:{role}" in self.staff


@dataclass(frozen=True)
class ClassSessionSettings:
    max_minutes: int = 240
    tutors: tuple[TutorRooms, ...] = ()


@dataclass(frozen=True)
class IdentitySettings:
    radius_accounting: RadiusAccountingSettings | None = None
    portal: PortalSettings = field(default_factory=PortalSettings)
    kerberos: KerberosSettings | None = None
    oidc: OidcSettings | None = None
    ldap: LdapSettings | None = None


def portal_sign_in_hosts(identity: IdentitySettings) -> frozenset[str]:
    """Hosts a device on a portal network reaches before anyone signs in on it: the single
    sign-on provider's (its issuer's host, and ``portal.sign_in_hosts``)."""
    hosts = set(identity.portal.sign_in_hosts)
    if identity.oidc is not None:
        issuer_host = urlsplit(identity.oidc.issuer).hostname
        if issuer_host:
            hosts.add(issuer_host.lower())
    return frozenset(hosts)


def parse_identity(spec: dict[str, Any]) -> IdentitySettings:
    """The ``identity:`` section (already schema-checked). Raises ValueError naming a bad
    RADIUS client address."""
    radius_spec = spec.get("radius_accounting")
    radius = None
    if radius_spec is not None:
        clients = []
        for client in radius_spec.get("clients") or []:
            try:
                network = ipaddress.ip_network(client["address"], strict=False)
            except ValueError:
                raise ValueError(f"radius_accounting client {client['address']!r} is not an "
                                 "address or range like 10.0.0.2 or 10.0.0.0/24") from None
            clients.append(RadiusClient(network, client["secret_env"]))
        radius = RadiusAccountingSettings(
            listen=parse_listen(radius_spec["listen"]) if "listen" in radius_spec
            else RadiusAccountingSettings().listen,
            clients=tuple(clients),
            binding_hours=float(radius_spec.get("binding_hours", 12.0)),
            realms=tuple(realm.lower().lstrip("@") for realm in radius_spec.get("realms") or ()))
    portal_spec = spec.get("portal") or {}
    trusted = []
    for entry in portal_spec.get("trusted_proxies") or []:
        try:
            trusted.append(ipaddress.ip_network(entry, strict=False))
        except ValueError:
            raise ValueError(f"portal trusted_proxies entry {entry!r} is not an address or "
                             "range like 10.0.0.3 or 10.0.0.0/28") from None
    portal = PortalSettings(float(portal_spec.get("session_hours", PortalSettings.session_hours)),
                            tuple(trusted),
                            tuple(h.lower().rstrip(".") for h in
                                  portal_spec.get("sign_in_hosts") or ()))
    kerberos = KerberosSettings(**spec["kerberos"]) if spec.get("kerberos") else None
    oidc_spec = spec.get("oidc")
    oidc = None
    if oidc_spec:
        oidc = OidcSettings(
            **{k: v for k, v in oidc_spec.items() if k not in ("scopes", "roles", "groups")},
            scopes=tuple(oidc_spec.get("scopes") or OidcSettings.scopes),
            roles={k: tuple(v) for k, v in (oidc_spec.get("roles") or {}).items()},
            groups={k: tuple(v) for k, v in (oidc_spec.get("groups") or {}).items()})
    ldap = LdapSettings(**spec["ldap"]) if spec.get("ldap") else None
    return IdentitySettings(radius, portal, kerberos, oidc, ldap)


@dataclass(frozen=True)
class ListenSettings:
    """Where each service listens (``listen:`` in the config)."""

    proxy: ListenAddress = field(default_factory=lambda: ListenAddress("", 8080))
    """Browsers' proxy address (every interface)."""
    admin: ListenAddress = field(default_factory=lambda: ListenAddress("", 8090))
    """The admin API and UI."""
    proxy_status: ListenAddress = field(default_factory=lambda: ListenAddress("127.0.0.1", 9180))
    """Proxy worker 0's /healthz, /readyz and /metrics (worker i: the port + i)."""


@dataclass(frozen=True)
class Config:
    """The whole config, every default given here and nowhere else."""

    path: Path | None = None
    centre_id: str = "main"
    centre_name: str = "esafety"
    """The centre's name as people read it (reports, the CA's subject, the block page)."""
    listen: ListenSettings = field(default_factory=ListenSettings)
    data_dir: str | None = None
    admin_public_url: str | None = None
    """The admin's URL as learners' browsers reach it; None: detected (see
    :func:`deployment.public_address.admin_public_url`, which every user of it asks)."""
    proxy_public_address: str | None = None
    """``host:port`` of the proxy for browsers; None: detected (see
    :func:`deployment.public_address.proxy_public_address`)."""
    pac_direct_hosts: tuple[str, ...] = ()
    redis_url: str | None = None
    redis_prefix: str = "esafety:"
    timezone: str = DEFAULT_TIMEZONE
    windows: dict[str, TimeWindow] = field(default_factory=default_windows)
    profiles: dict[str, GroupProfile] = field(default_factory=default_profiles)
    unidentified_group: str = "guest"
    networks: tuple[Network, ...] = ()
    proxy_auth_mode: str = "off"
    proxy_auth_realm: str = "esafety"
    proxy_auth_cache_seconds: int = 60
    proxy_auth_passwords: bool = True
    """Accept passwords at the proxy's 407 sign-in (tokens are always accepted)."""
    decryption_enabled: bool = True
    inspect_hosts: tuple[str, ...] = ()
    never_decrypt_hosts: tuple[str, ...] = ()
    safe_search: bool = True
    youtube_restrict: str = "moderate"
    log_allowed: bool = False
    log_level: str = "info"
    log_format: str = "json"
    retention_hits_days: int = 90
    retention_counters_days: int = 730
    retention_audit_days: int = 2190
    alerts: AlertSettings = field(default_factory=AlertSettings)
    list_sources: tuple[ListSource, ...] = ()
    upstream: UpstreamSettings = field(default_factory=UpstreamSettings)
    offnetwork_unsigned: str = "block_prohibited"
    """What the browser extension blocks off the centre network with nobody signed in."""
    identity: IdentitySettings = field(default_factory=lambda: IdentitySettings())
    """Ways to know who is browsing without a browser prompt (``identity:`` in the config)."""
    class_sessions: ClassSessionSettings = field(default_factory=ClassSessionSettings)
    """Who may open the network for a lesson, and for how long (``class_sessions:``)."""


def build_policy(config: Config, categories: CategorySet, snapshot: DomainIndex | None = None,
                 snapshot_version: str | None = None) -> Policy:
    """The filtering policy the config describes (groups, time windows, time zone), over
    ``categories`` and, when there is one, the compiled list ``snapshot``. Every service and
    command builds its policy here."""
    return Policy(categories, snapshot, profiles=config.profiles, windows=config.windows,
                  timezone=config.timezone, unidentified_group=config.unidentified_group,
                  snapshot_version=snapshot_version)


_SECTIONS: dict[str, dict[str, str]] = {
    # config file section -> {key in the file: Config field}; "" is the top level
    "": {"centre_id": "centre_id", "centre_name": "centre_name", "data_dir": "data_dir",
         "admin_public_url": "admin_public_url", "proxy_public_address": "proxy_public_address",
         "pac_direct_hosts": "pac_direct_hosts", "redis_url": "redis_url",
         "redis_prefix": "redis_prefix"},
    "proxy_auth": {"mode": "proxy_auth_mode", "realm": "proxy_auth_realm",
                   "cache_seconds": "proxy_auth_cache_seconds",
                   "passwords": "proxy_auth_passwords"},
    "decryption": {"enabled": "decryption_enabled", "inspect_hosts": "inspect_hosts",
                   "never_decrypt_hosts": "never_decrypt_hosts", "safe_search": "safe_search",
                   "youtube_restrict": "youtube_restrict"},
    "logging": {"log_allowed": "log_allowed", "level": "log_level", "format": "log_format"},
    "retention": {"hits_days": "retention_hits_days", "counters_days": "retention_counters_days",
                  "audit_days": "retention_audit_days"},
    "extension": {"offnetwork_unsigned": "offnetwork_unsigned"},
}


def _given(data: dict[str, Any]) -> dict[str, Any]:
    """The Config fields the file sets, as the file gives them (lists become tuples); fields it
    leaves out are not in the result, so they keep the defaults declared on :class:`Config`."""
    given: dict[str, Any] = {}
    for section, fields in _SECTIONS.items():
        values = data if section == "" else (data.get(section) or {})
        for key, name in fields.items():
            if key in values:
                value = values[key]
                given[name] = tuple(value) if isinstance(value, list) else value
    return given


def _on_off(value: object, default: str) -> str:
    """YAML reads a bare ``off`` as false and ``on`` as true; accept both spellings."""
    if value is None:
        return default
    if value is True:
        return "required"
    if value is False:
        return "off"
    return str(value)


def _problem(path: Path, text: str, keys: list[str | int], message: str) -> SchemaProblem:
    dotted = ".".join(str(k) for k in keys)
    return SchemaProblem(str(path), line_of_field(text, keys), dotted, message)


def load_config(path: Path | None) -> Config:
    """Read and validate ``path``; None gives the built-in defaults.

    Raises :class:`ValidationFailed` whose problems name each key and what it expects.
    """
    if path is None:
        return Config()
    data = load_validated_yaml(path, CONFIG_SCHEMA) or {}
    text = path.read_text(encoding="utf-8")
    problems: list[SchemaProblem] = []
    timezone = data.get("timezone", Config.timezone)
    try:
        ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError):
        problems.append(_problem(path, text, ["timezone"], f"unknown time zone {timezone!r}; "
                                 "expected a name like Europe/London"))
    windows = default_windows()
    for name, spec in (data.get("time_windows") or {}).items():
        try:
            windows[name] = TimeWindow(name, parse_days(spec.get("days", "mon-fri")),
                                       parse_clock(spec["start"]), parse_clock(spec["end"]))
        except ValueError as exc:
            problems.append(_problem(path, text, ["time_windows", name], str(exc)))
    profiles = default_profiles()
    for name, spec in (data.get("groups") or {}).items():
        spec = spec or {}
        profiles[name] = GroupProfile(
            name=name,
            allow=frozenset(spec.get("allow", [])),
            block=frozenset(spec.get("block", [])),
            allow_during={k: tuple(v) for k, v in (spec.get("allow_during") or {}).items()},
            online_during=tuple(spec.get("online_during") or ()),
            always_allow=frozenset(str(e).strip().lower().rstrip(".")
                                   for e in spec.get("always_allow") or ()),
            **{key: spec[key] for key in ("block_ip_literals", "block_uncategorised")
               if key in spec},
        )
    unidentified = data.get("unidentified_group", Config.unidentified_group)
    if unidentified not in profiles:
        problems.append(_problem(path, text, ["unidentified_group"],
                                 f"group {unidentified!r} is not defined under groups"))
    networks = []
    for i, spec in enumerate(data.get("networks") or []):
        try:
            net = ipaddress.ip_network(spec["cidr"], strict=False)
        except ValueError:
            problems.append(_problem(path, text, ["networks", i, "cidr"],
                                     f"{spec['cidr']!r} is not an address range like 10.0.20.0/24"))
            continue
        if spec["group"] not in profiles:
            problems.append(_problem(path, text, ["networks", i, "group"],
                                     f"group {spec['group']!r} is not defined under groups"))
        auth_mode = _on_off(spec.get("auth"), "") or None
        online_during = tuple(spec.get("online_during") or ())
        for window in online_during:
            if window not in windows:
                problems.append(_problem(path, text, ["networks", i, "online_during"],
                                         f"time window {window!r} is not defined under "
                                         "time_windows"))
        networks.append(Network(net, spec["group"], spec.get("site"), auth_mode,
                                spec.get("name"), bool(spec.get("managed", False)),
                                online_during))
    upstream_spec = data.get("upstream") or {}
    allowances = []
    for i, entry in enumerate(upstream_spec.get("allow_internal") or []):
        try:
            allowances.append(parse_internal_allowance(entry))
        except ValueError as exc:
            problems.append(_problem(path, text, ["upstream", "allow_internal", i], str(exc)))
    upstream = UpstreamSettings(
        **{key: frozenset(upstream_spec[key]) for key in ("connect_ports", "http_ports")
           if key in upstream_spec},
        allow_internal=tuple(allowances),
        tunnel_idle_seconds=float(upstream_spec.get("tunnel_idle_seconds", 600)))
    identity = IdentitySettings()
    try:
        identity = parse_identity(data.get("identity") or {})
    except (ValueError, ListenAddressError) as exc:
        problems.append(_problem(path, text, ["identity"], str(exc)))
    mapped = [(["identity", "ldap", "groups", dn], group)
              for dn, group in (identity.ldap.groups.items() if identity.ldap else ())]
    mapped += [(["identity", "oidc", "groups", group], group)
               for group in (identity.oidc.groups if identity.oidc else ())]
    for keys, group in mapped:
        if group not in profiles:
            problems.append(_problem(path, text, list(keys), f"group {group!r} is not defined "
                                     "under groups"))
    sessions_spec = data.get("class_sessions") or {}
    named_networks = {n.name for n in networks if n.name}
    tutors = []
    for i, entry in enumerate(sessions_spec.get("tutors") or []):
        rooms = TutorRooms(tuple(entry["staff"]), tuple(entry.get("groups") or ()),
                           tuple(entry.get("networks") or ()))
        for group in rooms.groups:
            if group not in profiles:
                problems.append(_problem(path, text, ["class_sessions", "tutors", i, "groups"],
                                         f"group {group!r} is not defined under groups"))
        for network_name in rooms.networks:
            if network_name not in named_networks:
                problems.append(_problem(
                    path, text, ["class_sessions", "tutors", i, "networks"],
                    f"no network under networks has the name {network_name!r}"))
        tutors.append(rooms)
    class_sessions = ClassSessionSettings(
        int(sessions_spec.get("max_minutes", ClassSessionSettings.max_minutes)), tuple(tutors))
    listen: dict[str, ListenAddress] = {}
    for name, listen_text in (data.get("listen") or {}).items():
        try:
            listen[name] = parse_listen(listen_text)
        except ListenAddressError as exc:
            problems.append(_problem(path, text, ["listen", name], str(exc)))
    if problems:
        raise ValidationFailed(problems)
    given = _given(data)
    if "proxy_auth_mode" in given:
        given["proxy_auth_mode"] = _on_off(given["proxy_auth_mode"], Config.proxy_auth_mode)
    if given.get("youtube_restrict") is False:
        given["youtube_restrict"] = "off"
    if "admin_public_url" in given:
        given["admin_public_url"] = given["admin_public_url"].rstrip("/")
    alerts: dict[str, Any] = {key: tuple(value) if isinstance(value, list) else value
              for key, value in (data.get("alerts") or {}).items()}
    return Config(
        path=path,
        listen=ListenSettings(**listen),
        timezone=timezone,
        windows=windows,
        profiles=profiles,
        unidentified_group=unidentified,
        networks=tuple(networks),
        alerts=AlertSettings(**alerts),
        identity=identity,
        class_sessions=class_sessions,
        list_sources=tuple(ListSource(s["name"], s["url"], s.get("format"), s.get("list"))
                           for s in (data.get("lists") or {}).get("sources", [])),
        upstream=upstream,
        **given,
    )
