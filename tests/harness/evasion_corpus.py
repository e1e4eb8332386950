"""The evasion corpus: every trick a learner can type, generated from the fixture lists.

Each case is a raw request (or a CONNECT/TLS exchange) aimed at something the fixture lists
block. Run through a real proxy, a case *leaks* when the proxy forwards it instead of blocking
or refusing it.
"""

from __future__ import annotations

import itertools
import random
from dataclasses import dataclass
from pathlib import Path

# Look-alike letters for homoglyph cases (Cyrillic and Greek), by the Latin letter they imitate.
HOMOGLYPHS = {"a": "аα", "c": "сϲ", "e": "еε", "i": "іι", "o": "оο", "p": "рρ", "s": "ѕ",
              "x": "хχ", "y": "уγ"}


@dataclass(frozen=True)
class Case:
    family: str
    description: str
    kind: str
    """``http`` (raw request bytes through the proxy), ``connect`` (a CONNECT line),
    ``sni`` (CONNECT to ``connect_host`` then TLS with ``sni``, or none if ``sni`` is None),
    ``tunnel`` (CONNECT to ``connect_host:port``, then ``payload`` inside the tunnel),
    ``h2`` (curl --http2)."""
    payload: bytes = b""
    connect_host: str = ""
    sni: str | None = ""
    url: str = ""
    as_staff: bool = False
    """Send staff credentials, so an IP literal is blocked by its list entry, not the profile."""
    port: int = 443
    path: str = "/"
    """The path requested inside the TLS tunnel of an ``sni`` case."""


def _domains(lists_dir: Path, skip: tuple[str, ...]) -> list[str]:
    out: list[str] = []
    for path in sorted(lists_dir.glob("*/domains")):
        if path.parent.name in skip:
            continue
        out.extend(line.strip() for line in path.read_text().splitlines() if line.strip())
    return out


def _urls(lists_dir: Path) -> list[str]:
    out: list[str] = []
    for path in sorted(lists_dir.glob("*/urls")):
        out.extend(line.strip() for line in path.read_text().splitlines() if line.strip())
    return out


def _get(url: str, host_header: str | None = None, version: str = "HTTP/1.1",
         extra: str = "") -> bytes:
    lines = [f"GET {url} {version}"]
    if host_header is not None:
        lines.append(f"Host: {host_header}")
    if extra:
        lines.append(extra)
    return ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8", "surrogateescape")


def _host_spellings(domain: str, rng: random.Random) -> list[tuple[str, str]]:
    """(family, host as typed) pairs for a listed name."""
    labels = domain.split(".")
    out = [
        ("case", domain.upper()),
        ("case", "".join(c.upper() if i % 2 else c for i, c in enumerate(domain))),
        ("trailing-dot", domain + "."),
        ("trailing-dot", domain + ".."),
        ("leading-dot", "." + domain),
        ("percent-host", "".join(f"%{ord(c):02x}" for c in domain)),
        ("percent-host", f"%{ord(domain[0]):02X}" + domain[1:]),
        ("subdomain", "www." + domain),
        ("subdomain", "WWW." + domain + "."),
        ("subdomain", ".".join(f"s{rng.randrange(10**6)}" for _ in range(3)) + "." + domain),
        ("fullwidth", "".join(chr(ord(c) + 0xFEE0) if "a" <= c <= "z" else c for c in domain)),
        ("ideographic-dot", domain.replace(".", "\u3002")),
        ("overlong", ".".join(["a" * 63] * 4) + "." + domain),
    ]
    for position, char in enumerate(labels[0]):
        for glyph in HOMOGLYPHS.get(char, ""):
            spoof = ".".join([labels[0][:position] + glyph + labels[0][position + 1:],
                              *labels[1:]])
            out.append(("homoglyph-raw", spoof))
            # What a browser sends for it: the punycode form (encoded here with Python's
            # IDNA 2003 codec, not the product's own code path).
            out.append(("homoglyph", spoof.encode("idna").decode("ascii")))
    return out


_COMBINATIONS = ("upper", "trailing-dot", "www", "subdomain", "port", "path", "query",
                 "fragment", "http10")


def _combined(domain: str, rng: random.Random) -> tuple[str, bytes, bytes]:
    """A random mix of the simple tricks: (description, GET request, CONNECT request)."""
    chosen = {t for t in _COMBINATIONS if rng.random() < 0.4}
    host = domain
    if "www" in chosen:
        host = "www." + host
    if "subdomain" in chosen:
        host = f"cdn{rng.randrange(1000)}.{host}"
    if "upper" in chosen:
        host = "".join(c.upper() if rng.random() < 0.5 else c for c in host)
    if "trailing-dot" in chosen:
        host += "."
    authority = host + (f":{rng.choice((80, 8080, 443, 8443))}" if "port" in chosen else "")
    path = "/" + "/".join(f"p{rng.randrange(100)}" for _ in range(rng.randrange(4))) \
        if "path" in chosen else "/"
    if "query" in chosen:
        path += f"?q={rng.randrange(10**6)}"
    if "fragment" in chosen:
        path += "#top"
    version = "HTTP/1.0" if "http10" in chosen else "HTTP/1.1"
    url = f"http://{authority}{path}"
    get = _get(url, None if version == "HTTP/1.0" else authority, version)
    connect = f"CONNECT {host}:443 HTTP/1.1\r\nHost: {host}:443\r\n\r\n".encode()
    return f"{sorted(chosen)} {url}", get, connect


def _ipv4_spellings(address: str) -> list[str]:
    a, b, c, d = (int(x) for x in address.split("."))
    value = (a << 24) | (b << 16) | (c << 8) | d
    return [
        str(value), hex(value), oct(value).replace("0o", "0"),
        f"{a:#x}.{b:#x}.{c:#x}.{d:#x}", f"0{a:o}.0{b:o}.0{c:o}.0{d:o}",
        f"{a}.{(b << 16) | (c << 8) | d}", f"{a}.{b}.{(c << 8) | d}",
        f"[::ffff:{address}]", f"[::ffff:{(a << 8) | b:x}:{(c << 8) | d:x}]",
        address + ".", f"{a:#010x}".replace("0x", "0x00") + f".{b}.{c}.{d}",
    ]


def _ipv6_spellings(address: str) -> list[str]:
    import ipaddress

    full = ipaddress.IPv6Address(address).exploded
    return [f"[{address.upper()}]", f"[{full}]", f"[{full.upper()}]",
            f"[{address.replace('::', ':0:0:0:0:0:')}]"]


def _path_variants(path: str) -> list[tuple[str, str]]:
    first = path.strip("/").split("/")[0]
    rest = path[len(first) + 1:]
    encoded = "".join(f"%{ord(c):02x}" for c in first)
    return [
        ("path-case", path.upper()),
        ("path-double-slash", "/" + path),
        ("path-double-slash", path.replace("/", "//")),
        ("path-dot-segment", "/." + path),
        ("path-dot-segment", "/x/.." + path),
        ("path-dot-segment", "/%2e" + path),
        ("path-dot-segment", "/x/%2e%2e" + path),
        ("path-encoded", "/" + encoded + rest),
        ("path-double-encoded", "/" + encoded.replace("%", "%25") + rest),
        ("path-params", f"/{first};jsessionid=1{rest}"),
        ("path-trailing", path + "/"),
        ("path-query", path + "?a=1"),
        ("path-fragment", path + "#frag"),
        ("path-backslash", path.replace("/", "\\")),
        ("path-deeper", path + "/deeper/page.html"),
    ]


INTERNAL_LITERALS = ["127.0.0.2", "127.1.2.3", "0", "0.0.0.0", "[::1]", "[::]", "[0:0:0:0:0:0:0:1]",
                     "[::ffff:10.0.0.1]", "[::ffff:169.254.169.254]", "[64:ff9b::a9fe:a9fe]",
                     "[2002:a9fe:a9fe::]", "169.254.169.254", "0xa9fea9fe", "2852039166",
                     "10.0.0.1", "10.1", "012.0.0.1", "172.16.0.1", "192.168.0.1",
                     "100.64.0.1", "198.18.0.1", "224.0.0.1", "255.255.255.255", "[fd00::1]",
                     "[fe80::1]", "[ff02::1]"]
"""Internal addresses in odd spellings; none of them is the test origins' 127.0.0.1."""
TUNNEL_PAYLOADS = [b"\r\nGET /adult-section/x HTTP/1.1\r\nHost: mixed-content.test\r\n\r\n",
                   b"\n\nGET /adult-section/x HTTP/1.1\r\nHost: mixed-content.test\r\n\r\n",
                   b"GET /adult-section/x HTTP/1.1\r\nHost: mixed-content.test\r\n\r\n",
                   b"get /adult-section/x HTTP/1.1\r\nHost: mixed-content.test\r\n\r\n",
                   b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", b"SSH-2.0-OpenSSH_9.6\r\n",
                   b"\x00\x00\x00\x01raw", b"\x17\x03\x03\x00\x05hello", b"\x16\x03\x01\x00\x05junk!"]
"""Bytes that are not a TLS ClientHello, sent inside a tunnel."""


def transport_cases(raw_port: int) -> list[Case]:
    """Internal destinations, ports, and what tunnels carry. ``raw_port`` is a loopback
    listener that records every byte: allowed for 127.0.0.1 only, so a tunnel to it shows
    whether bytes were relayed."""
    cases: list[Case] = []
    for host in INTERNAL_LITERALS:
        for port in (443, raw_port):
            cases.append(Case("internal-connect", f"CONNECT {host}:{port}", "connect",
                              f"CONNECT {host}:{port} HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n"
                              .encode(), as_staff=True))
        for port in (80, raw_port):
            url = f"http://{host}:{port}/"
            cases.append(Case("internal-http", url, "http", _get(url, f"{host}:{port}"),
                              as_staff=True))
    for host in ("allowed.test", "mixed-content.test", "www.google.com"):
        for port in (80, 22, 25, 3306, 6379, 8080, 8443):
            trick = b"\r\nGET /adult-section/x HTTP/1.1\r\nHost: mixed-content.test\r\n\r\n"
            cases.append(Case("connect-port", f"CONNECT {host}:{port} + CRLF request", "connect",
                              f"CONNECT {host}:{port} HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n"
                              .encode() + trick))
        for port in (443, 8080, 8443, 3128):
            url = f"http://{host}:{port}/adult-section/x"
            cases.append(Case("http-port", url, "http", _get(url, f"{host}:{port}")))
    for host in ("allowed.test", "mixed-content.test", "www.google.com", "localhost"):
        for index, payload in enumerate(TUNNEL_PAYLOADS):
            cases.append(Case("tunnel-not-tls", f"CONNECT {host}:raw + payload {index}",
                              "tunnel", payload, connect_host=host, port=raw_port))
    for connect_host in ("allowed.test", "origin.test"):
        for sni, path in (("mixed-content.test", "/adult-section/x"),
                          ("mixed-content.test", "/"), ("www.google.com", "/search?q=x"),
                          ("duckduckgo.com", "/?q=x&kp=-2"), ("www.bing.com", "/search?q=x"),
                          ("www.youtube.com", "/results?search_query=x"),
                          ("doh.unknown-resolver.test", "/dns-query?dns=AAAB")):
            cases.append(Case("sni-plan", f"CONNECT {connect_host}, SNI {sni} {path}", "sni",
                              connect_host=connect_host, sni=sni, path=path))
    for connect_host in ("mixed-content.test", "www.google.com", "doh.unknown-resolver.test"):
        cases.append(Case("no-sni", f"CONNECT {connect_host}, no SNI", "sni",
                          connect_host=connect_host, sni=None, path="/adult-section/x"))
    for foreign in ("allowed.test", "origin.test", "casino-royale.test", "mitm.it.evil.test"):
        cases.append(Case("onboarding", f"mitm.it with Host {foreign}", "http",
                          _get("http://mitm.it/x", foreign)))
        cases.append(Case("onboarding", f"{foreign} with Host mitm.it", "http",
                          _get(f"http://{foreign}/x", "mitm.it")))
    return cases


def generate_cases(lists_dir: Path, seed: int = 7, raw_port: int | None = None) -> list[Case]:
    rng = random.Random(seed)
    cases: list[Case] = []
    # Banking is not blocked, and social networks open for learners at lunch time.
    names = [d for d in _domains(lists_dir, ("bank", "social_networks"))
             if not d[0].isdigit() and ":" not in d]
    addresses = [d for d in _domains(lists_dir, ()) if d[0].isdigit() and ":" not in d]
    v6 = [d for d in _domains(lists_dir, ()) if ":" in d]
    for domain in names:
        for family, host in _host_spellings(domain, rng):
            for scheme_path in ("/", "/index.html?x=1"):
                url = f"http://{host}{scheme_path}"
                cases.append(Case(family, url, "http", _get(url, host)))
            cases.append(Case(family, f"CONNECT {host}:443", "connect",
                              f"CONNECT {host}:443 HTTP/1.1\r\nHost: {host}:443\r\n\r\n".encode()))
        for _ in range(40):
            description, get, connect = _combined(domain, rng)
            cases.append(Case("combined", description, "http", get))
            cases.append(Case("combined", "CONNECT " + description, "connect", connect))
        for port in (80, 8080, 443, 65535):
            url = f"http://{domain}:{port}/"
            cases.append(Case("port", url, "http", _get(url, f"{domain}:{port}")))
        for userinfo in ("allowed.test", "user:pass", "allowed.test:80", "a%40b"):
            url = f"http://{userinfo}@{domain}/"
            cases.append(Case("userinfo", url, "http", _get(url, domain)))
        # Host header and authority disagree (both orders).
        cases.append(Case("host-mismatch", f"allowed authority, Host {domain}", "http",
                          _get("http://allowed.test/", domain)))
        cases.append(Case("host-mismatch", f"authority {domain}, Host allowed", "http",
                          _get(f"http://{domain}/", "allowed.test")))
        cases.append(Case("http10-no-host", f"HTTP/1.0 {domain}", "http",
                          _get(f"http://{domain}/", None, "HTTP/1.0")))
        cases.append(Case("origin-form", f"origin form Host {domain}", "http",
                          _get("/", domain)))
        cases.append(Case("websocket", f"upgrade to {domain}", "http",
                          _get(f"http://{domain}/socket", domain,
                               extra="Connection: Upgrade\r\nUpgrade: websocket\r\n"
                                     "Sec-WebSocket-Version: 13\r\n"
                                     "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==")))
        cases.append(Case("sni-mismatch", f"CONNECT allowed.test, SNI {domain}", "sni",
                          connect_host="allowed.test", sni=domain))
        cases.append(Case("sni-mismatch", f"CONNECT {domain} by IP, SNI {domain}", "sni",
                          connect_host="127.0.0.1", sni=domain, as_staff=True))
    for address in addresses:
        for host in _ipv4_spellings(address):
            url = f"http://{host}/"
            cases.append(Case("ipv4", url, "http", _get(url, host), as_staff=True))
            cases.append(Case("ipv4", f"CONNECT {host}", "connect",
                              f"CONNECT {host}:443 HTTP/1.1\r\nHost: {host}\r\n\r\n".encode(),
                              as_staff=True))
    for address in v6:
        for host in _ipv6_spellings(address):
            url = f"http://{host}/"
            cases.append(Case("ipv6", url, "http", _get(url, host), as_staff=True))
    for entry in _urls(lists_dir):
        host, _, path = entry.partition("/")
        for family, variant in _path_variants("/" + path):
            url = f"http://{host}{variant}"
            cases.append(Case(family, url, "http", _get(url, host)))
            cases.append(Case(family, "https " + url, "h2",
                              url=f"https://{host}{variant.replace(chr(92), '/')}"))
    resolvers = ("doh.known-resolver.test", "doh.unknown-resolver.test",
                 "dns.other-resolver.test", "allowed.test")
    for resolver, method in itertools.product(resolvers, ("GET", "POST")):
        if method == "GET":
            url = f"http://{resolver}/dns-query?dns=AAABAAABAAAAAAAAA3d3dwdleGFtcGxlA2NvbQAAAQAB"
            payload = _get(url, resolver, extra="Accept: application/dns-message")
        else:
            url = f"http://{resolver}/dns-query"
            payload = (f"POST {url} HTTP/1.1\r\nHost: {resolver}\r\n"
                       "Content-Type: application/dns-message\r\nContent-Length: 4\r\n\r\nabcd"
                       ).encode()
        cases.append(Case("doh", f"{method} {url}", "http", payload))
        if resolver != "allowed.test":
            cases.append(Case("doh", f"{method} https://{resolver}/dns-query", "h2",
                              url=f"https://{resolver}/dns-query?dns=AAABAAABAAAAAAAAA3d3dwdleGF"
                                  f"tcGxlA2NvbQAAAQAB"))
    if raw_port is not None:
        cases.extend(transport_cases(raw_port))
    return cases
