"""Canonical form of a request target: the host and path that the matcher looks up.

Every way a learner can spell a URL must come out the same here, because the matcher only
compares canonical forms. The rules follow what browsers do (the WHATWG URL standard) and
lean towards blocking when an input is ambiguous:

* scheme and host are case-folded, trailing and leading dots on the host are dropped;
* userinfo (``http://good.com@bad.com/``) and ports are removed from the host;
* percent-encoding is decoded in the host and (repeatedly, up to a limit) in the path;
* internationalised names become their ASCII (punycode) form, and punycode is validated;
* IPv4 literals in decimal, octal, hex and dotted-short forms become dotted quads, and IPv6
  literals their compressed form (IPv4-mapped IPv6 becomes the IPv4 address);
* backslashes are path separators, duplicate slashes merge, ``.``/``..`` segments resolve,
  ``;params`` are cut from path segments, fragments are dropped and the path is lower-cased.

:func:`canonical_url` has a fast path for the ordinary shape of URL and falls back to the
general parser for anything else; both give the same answer (the fuzz tests check that).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from urllib.parse import unquote

import idna


class URLError(ValueError):
    """The input cannot be read as a URL or host. The policy blocks such requests."""


class HostKind(StrEnum):
    NAME = "name"
    IPV4 = "ipv4"
    IPV6 = "ipv6"


@dataclass(frozen=True, slots=True)
class CanonicalURL:
    """A request target in the form the matcher compares."""

    scheme: str
    host: str
    port: int | None
    path: str
    """Decoded, lower-cased path with the query appended after ``?`` when there is one."""
    host_kind: HostKind = HostKind.NAME

    @property
    def is_ip_literal(self) -> bool:
        return self.host_kind is not HostKind.NAME

    def __str__(self) -> str:
        return f"{self.scheme}://{self.host}{self.path}"


MAX_URL_LENGTH = 16 * 1024
MAX_HOST_LENGTH = 253
_MAX_DECODE_ROUNDS = 4
_DEFAULT_PORTS = {"http": 80, "https": 443, "ws": 80, "wss": 443, "ftp": 21}

# The ordinary URL: http(s), a lower-case ASCII host name whose last label starts with a letter
# (so never an IPv4 literal), an optional port, and a path with nothing to decode or resolve.
_FAST_URL = re.compile(
    r"(https?)://"
    r"((?:[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?\.)*[a-z][a-z0-9-]{0,62})"
    r"(?::([0-9]{1,5}))?"
    r"((?:/[a-z0-9_~!$&'()*+,=:@-][a-z0-9._~!$&'()*+,=:@-]*)*/?)"
    r"(?:\?([^#%]*))?"
    r"(?:#.*)?\Z",
    re.ASCII | re.IGNORECASE | re.DOTALL,
)
_FAST_HOST = re.compile(
    r"(?:[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?\.)*[a-z][a-z0-9-]{0,62}\Z", re.ASCII
)
_SCHEME = re.compile(r"([a-zA-Z][a-zA-Z0-9+.-]{0,15}):")
_HOST_FORBIDDEN = re.compile(r"[\x00-\x20#%/:<>?@\[\\\]^|\x7f]")
_C0_AND_SPACE = "".join(chr(i) for i in range(0x21))
_TAB_AND_NEWLINE = re.compile(r"[\t\n\r]")
_CONTROL_OR_SPACE = re.compile(r"[\x00-\x20\x7f]")


def canonical_url(target: str, default_scheme: str = "http") -> CanonicalURL:
    """Return the canonical form of ``target``: an absolute URL, ``host/path``, or ``host:port``.

    Raises :class:`URLError` when the input is not a URL (the policy blocks those).
    """
    url = _fast_canonical_url(target)
    if url is not None:
        return url
    return _canonical_url_general(target, default_scheme)


def _canonical_url_fast_py(target: str) -> CanonicalURL | None:
    """The fast path for the ordinary shape of URL, or None when the general parser must run.

    ``categories._urlfast`` (an optional C extension) implements exactly this function; the
    equivalence tests in ``tests/categories/test_urlfast_equivalence.py`` hold the two together.
    """
    m = _FAST_URL.match(target)
    if m is not None and len(target) <= MAX_URL_LENGTH:
        scheme, host, port_text, path, query = m.groups()
        host = host.lower()
        if len(host) <= MAX_HOST_LENGTH and "xn--" not in host and not host.startswith("."):
            scheme = scheme.lower()
            port = int(port_text) if port_text else None
            if port is not None and port > 65535:
                raise URLError(f"port out of range: {port_text}")
            if port is not None and port == _DEFAULT_PORTS[scheme]:
                port = None
            path = path.lower() or "/"
            if query:
                path = f"{path}?{query.lower()}"
            return CanonicalURL(scheme, host, port, path)
    return None


try:  # the C fast path, built by ``pip install`` when a compiler is present
    from categories import _urlfast
except ImportError:  # pragma: no cover - exercised where no compiler was available
    _urlfast = None  # type: ignore[assignment]
if _urlfast is not None:
    _urlfast.configure(CanonicalURL, URLError, HostKind.NAME)
    _fast_canonical_url: Callable[[str], CanonicalURL | None] = _urlfast.canonical_fast
else:  # pragma: no cover
    _fast_canonical_url = _canonical_url_fast_py


def _canonical_url_general(target: str, default_scheme: str) -> CanonicalURL:
    if len(target) > MAX_URL_LENGTH:
        raise URLError(f"URL longer than {MAX_URL_LENGTH} characters")
    text = _TAB_AND_NEWLINE.sub("", target.strip(_C0_AND_SPACE))
    if not text:
        raise URLError("empty URL")
    scheme = default_scheme
    rest = text
    m = _SCHEME.match(text)
    if m is not None and (text[m.end() : m.end() + 2] in ("//", "\\\\", "/\\", "\\/")):
        scheme = m.group(1).lower()
        rest = text[m.end() + 2 :]
    elif m is not None and m.group(1).lower() in ("http", "https", "ws", "wss"):
        # "http:example.com" and "http:/example.com": browsers read these as special URLs.
        scheme = m.group(1).lower()
        rest = text[m.end() :].lstrip("/\\")
    elif text.startswith(("//", "\\\\")):
        rest = text[2:]
    # The authority ends at the first of / \ ? # (browsers treat \ as / for web schemes).
    end = len(rest)
    for sep in "/\\?#":
        i = rest.find(sep)
        if i != -1 and i < end:
            end = i
    authority, remainder = rest[:end], rest[end:]
    host_port = authority.rpartition("@")[2]
    host_text, port = _split_port(host_port)
    host, kind = canonical_host_with_kind(host_text)
    if port is not None and port == _DEFAULT_PORTS.get(scheme):
        port = None
    return CanonicalURL(scheme, host, port, canonical_path(remainder), kind)


def _split_port(host_port: str) -> tuple[str, int | None]:
    if host_port.startswith("["):
        close = host_port.find("]")
        if close == -1:
            raise URLError("unterminated IPv6 literal")
        after = host_port[close + 1 :]
        host_text = host_port[: close + 1]
        if not after:
            return host_text, None
        if not after.startswith(":"):
            raise URLError("junk after IPv6 literal")
        port_text = after[1:]
    else:
        host_text, sep, port_text = host_port.rpartition(":")
        if not sep:
            return host_port, None
    if not port_text:
        return host_text, None
    if not port_text.isdigit() or not port_text.isascii() or len(port_text) > 5:
        raise URLError(f"bad port: {port_text[:20]!r}")
    port = int(port_text)
    if port > 65535:
        raise URLError(f"port out of range: {port}")
    return host_text, port


def canonical_host(text: str) -> str:
    """Return the canonical form of a host name or IP literal (see the module docstring)."""
    return canonical_host_with_kind(text)[0]


def canonical_host_with_kind(text: str) -> tuple[str, HostKind]:
    if _FAST_HOST.match(text) and "xn--" not in text and len(text) <= MAX_HOST_LENGTH:
        return text, HostKind.NAME
    host = text.strip()
    if host.startswith("[") and host.endswith("]"):
        return _canonical_ipv6(host[1:-1])
    for _ in range(_MAX_DECODE_ROUNDS):
        if "%" not in host:
            break
        try:
            host = unquote(host, errors="strict")
        except UnicodeDecodeError as exc:
            raise URLError("percent-encoded host is not valid UTF-8") from exc
    if "%" in host:
        raise URLError("host still percent-encoded after repeated decoding")
    # Full stops in other scripts (。．｡) separate labels too, as in browsers.
    host = host.replace("\u3002", ".").replace("\uff0e", ".").replace("\uff61", ".")
    host = host.strip(".").lower()
    if not host:
        raise URLError("empty host")
    if ":" in host:
        return _canonical_ipv6(host)
    ipv4 = _parse_ipv4(host)
    if ipv4 is not None:
        return ipv4, HostKind.IPV4
    if not host.isascii():
        host = _to_ascii(host)
    elif "xn--" in host:
        _check_punycode(host)
    if _HOST_FORBIDDEN.search(host):
        raise URLError(f"forbidden character in host {host[:60]!r}")
    if len(host) > MAX_HOST_LENGTH:
        raise URLError("host name longer than 253 characters")
    if ".." in host:
        raise URLError("empty label in host")
    return host, HostKind.NAME


def _to_ascii(host: str) -> str:
    try:
        return idna.encode(host, uts46=True, transitional=False).decode("ascii").lower()
    except (idna.IDNAError, UnicodeError, ValueError):
        pass
    try:
        # IDNA 2003, which browsers still accept for some symbols that IDNA 2008 refuses.
        return host.encode("idna").decode("ascii").lower()
    except UnicodeError as exc:
        raise URLError(f"host is not a valid international name: {host[:60]!r}") from exc


def _check_punycode(host: str) -> None:
    for label in host.split("."):
        if label.startswith("xn--"):
            try:
                label.encode("ascii").decode("idna")
            except UnicodeError as exc:
                raise URLError(f"invalid punycode label {label[:60]!r}") from exc


def _canonical_ipv6(text: str) -> tuple[str, HostKind]:
    if "%" in text:
        raise URLError("IPv6 zone identifiers are not allowed")
    try:
        addr = ipaddress.IPv6Address(text)
    except ValueError as exc:
        raise URLError(f"invalid IPv6 literal {text[:60]!r}") from exc
    mapped = addr.ipv4_mapped or addr.sixtofour
    if mapped is not None:
        return str(mapped), HostKind.IPV4
    return str(addr), HostKind.IPV6


def _parse_ipv4_part(part: str) -> int | None:
    if not part:
        return None
    if part[:2] in ("0x", "0X"):
        digits = part[2:]
        if digits == "":
            return 0
        return int(digits, 16) if all(c in "0123456789abcdefABCDEF" for c in digits) else None
    if len(part) > 1 and part[0] == "0":
        return int(part, 8) if all(c in "01234567" for c in part) else None
    return int(part) if part.isdigit() and part.isascii() else None


def _ends_in_number(host: str) -> bool:
    last = host.rsplit(".", 1)[-1]
    if last.isdigit() and last.isascii():
        return True
    return last[:2] in ("0x", "0X") and all(c in "0123456789abcdefABCDEF" for c in last[2:])


def _parse_ipv4(host: str) -> str | None:
    """Parse an IPv4 literal the way browsers do, or return None for a host name.

    A host whose last label is a number must be a valid IPv4 literal, as in the WHATWG
    standard; otherwise the input is refused rather than guessed at.
    """
    if not _ends_in_number(host):
        return None
    parts = host.split(".")
    if len(parts) > 4:
        raise URLError(f"too many parts for an IPv4 literal: {host[:60]!r}")
    numbers = []
    for part in parts:
        value = _parse_ipv4_part(part)
        if value is None:
            raise URLError(f"invalid IPv4 literal {host[:60]!r}")
        numbers.append(value)
    if any(n > 255 for n in numbers[:-1]) or numbers[-1] >= 256 ** (5 - len(numbers)):
        raise URLError(f"IPv4 literal out of range {host[:60]!r}")
    address = numbers[-1]
    for i, n in enumerate(numbers[:-1]):
        address += n * 256 ** (3 - i)
    return str(ipaddress.IPv4Address(address))


def canonical_path(remainder: str) -> str:
    """Return the decoded, resolved, lower-case path (plus ``?query``) of a URL's remainder."""
    path, _, _fragment = remainder.partition("#")
    path, qmark, query = path.partition("?")
    for _ in range(_MAX_DECODE_ROUNDS):
        if "%" not in path:
            break
        decoded = unquote(path, errors="replace")
        if decoded == path:
            break
        path = decoded
    path = path.replace("\\", "/")
    segments: list[str] = []
    for segment in path.split("/"):
        segment = segment.partition(";")[0]
        if segment in ("", "."):
            continue
        if segment == "..":
            if segments:
                segments.pop()
            continue
        segments.append(segment)
    trailing = path.endswith(("/", "/.", "/..")) and bool(segments)
    result = "/" + "/".join(segments) + ("/" if trailing else "")
    result = result.lower()
    if qmark and query:
        result += "?" + unquote(query, errors="replace").lower()
    if _CONTROL_OR_SPACE.search(result):
        result = _CONTROL_OR_SPACE.sub(lambda m: f"%{ord(m.group()):02x}", result)
    return result


def registrable_parts(host: str) -> list[str]:
    """Return ``host`` and each parent domain, longest first: a.b.c -> [a.b.c, b.c, c]."""
    parts = [host]
    i = host.find(".")
    while i != -1:
        parts.append(host[i + 1 :])
        i = host.find(".", i + 1)
    return parts
