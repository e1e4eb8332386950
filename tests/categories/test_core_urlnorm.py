"""URL normalisation: every spelling of a site must reach the matcher in one canonical form."""

from __future__ import annotations

import pytest

from categories.urlnorm import (
    MAX_URL_LENGTH,
    HostKind,
    URLError,
    _canonical_url_general,
    canonical_host,
    canonical_url,
    registrable_parts,
)

# (input, canonical host, canonical path)
CASES = [
    # scheme and host case
    ("HTTP://BAD-SITE.TEST/", "bad-site.test", "/"),
    ("hTTpS://Bad-Site.Test/Index.HTML", "bad-site.test", "/index.html"),
    # trailing and leading dots
    ("http://bad-site.test./", "bad-site.test", "/"),
    ("http://bad-site.test../", "bad-site.test", "/"),
    ("http://.bad-site.test/", "bad-site.test", "/"),
    # ports
    ("http://bad-site.test:8080/", "bad-site.test", "/"),
    ("https://bad-site.test:443/x", "bad-site.test", "/x"),
    ("http://bad-site.test:/", "bad-site.test", "/"),
    ("bad-site.test:443", "bad-site.test", "/"),
    # userinfo
    ("http://good.test@bad-site.test/", "bad-site.test", "/"),
    ("http://user:pa:ss@bad-site.test:81/p", "bad-site.test", "/p"),
    ("http://good.test%40x@bad-site.test/", "bad-site.test", "/"),
    ("http://a@b@bad-site.test/", "bad-site.test", "/"),
    # percent-encoded host characters, including double encoding
    ("http://%62ad-site.test/", "bad-site.test", "/"),
    ("http://BAD%2dSITE%2eTEST/", "bad-site.test", "/"),
    ("http://%2562ad-site.test/", "bad-site.test", "/"),
    # internationalised names and other scripts' full stops
    ("http://glücksspiel-palast.test/", "xn--glcksspiel-palast-32b.test", "/"),
    ("http://GLÜCKSSPIEL-PALAST.TEST/", "xn--glcksspiel-palast-32b.test", "/"),
    ("http://XN--GLCKSSPIEL-PALAST-32B.test/", "xn--glcksspiel-palast-32b.test", "/"),
    ("http://gl%C3%BCcksspiel-palast.test/", "xn--glcksspiel-palast-32b.test", "/"),
    ("http://bad-site\u3002test/", "bad-site.test", "/"),
    ("http://bad-site\uff0etest/", "bad-site.test", "/"),
    ("http://ＢＡＤ-ＳＩＴＥ.test/", "bad-site.test", "/"),
    # IPv4 literals in every browser spelling
    ("http://198.51.100.23/", "198.51.100.23", "/"),
    ("http://3325256727/", "198.51.100.23", "/"),
    ("http://0xC6336417/", "198.51.100.23", "/"),
    ("http://0306.063.0144.027/", "198.51.100.23", "/"),
    ("http://0xc6.0x33.0x64.0x17/", "198.51.100.23", "/"),
    ("http://198.51.25623/", "198.51.100.23", "/"),
    ("http://198.3367959/", "198.51.100.23", "/"),
    ("http://030614662027/", "198.51.100.23", "/"),
    ("http://198.51.100.23./", "198.51.100.23", "/"),
    ("http://%31%39%38.51.100.23/", "198.51.100.23", "/"),
    # IPv6 literals; IPv4-mapped ones are the IPv4 address
    ("http://[2001:DB8:0:0:0:0:0:1]/", "2001:db8::1", "/"),
    ("http://[2001:db8::1]:8080/x", "2001:db8::1", "/x"),
    ("http://[::ffff:198.51.100.23]/", "198.51.100.23", "/"),
    ("http://[::FFFF:C633:6417]/", "198.51.100.23", "/"),
    # slashes, dot segments, backslashes and params
    ("http://bad-site.test//a//b///c", "bad-site.test", "/a/b/c"),
    ("http://bad-site.test/x/../a/./b", "bad-site.test", "/a/b"),
    ("http://bad-site.test/../../a", "bad-site.test", "/a"),
    ("http://bad-site.test/a/%2e%2e/b", "bad-site.test", "/b"),
    ("http://bad-site.test/a/b/", "bad-site.test", "/a/b/"),
    ("http:\\\\bad-site.test\\a\\b", "bad-site.test", "/a/b"),
    ("http://bad-site.test/a;jsessionid=1/b", "bad-site.test", "/a/b"),
    ("//bad-site.test/a", "bad-site.test", "/a"),
    ("http:bad-site.test/a", "bad-site.test", "/a"),
    ("http:/bad-site.test/a", "bad-site.test", "/a"),
    # percent-encoded and mixed-case paths, queries, fragments
    ("http://bad-site.test/%41dult/%2561", "bad-site.test", "/adult/a"),
    ("http://bad-site.test/Members?ID=7#Top", "bad-site.test", "/members?id=7"),
    ("http://bad-site.test?q=1", "bad-site.test", "/?q=1"),
    ("http://bad-site.test#x", "bad-site.test", "/"),
    # white space that browsers strip
    ("  http://bad-site.test/  ", "bad-site.test", "/"),
    ("http://bad-\tsite.te\nst/", "bad-site.test", "/"),
]


@pytest.mark.parametrize(("url", "host", "path"), CASES)
def test_spellings_of_a_url_have_one_canonical_form(url: str, host: str, path: str) -> None:
    canonical = canonical_url(url)
    assert (canonical.host, canonical.path) == (host, path)


@pytest.mark.parametrize("url", [u for u, _h, _p in CASES])
def test_fast_path_and_general_parser_agree(url: str) -> None:
    fast = canonical_url(url)
    general = _canonical_url_general(url, "http")
    assert (fast.scheme, fast.host, fast.port, fast.path) == (
        general.scheme, general.host, general.port, general.path)


@pytest.mark.parametrize(
    "url", ["http://bad-site.test/", "https://www.bad-site.test:8443/a/b?x=1#f",
            "http://a.b.c.bad_site.test/a-b/c.d/~e", "HTTPS://BAD.TEST/A/B/"])
def test_ordinary_urls_take_the_fast_path_with_the_same_answer(url: str) -> None:
    assert canonical_url(url) == _canonical_url_general(url, "http")


@pytest.mark.parametrize(
    ("url", "kind"),
    [("http://bad-site.test/", HostKind.NAME), ("http://3325256727/", HostKind.IPV4),
     ("http://[::ffff:198.51.100.23]/", HostKind.IPV4), ("http://[2001:db8::1]/", HostKind.IPV6)])
def test_ip_literals_are_recognised_as_such(url: str, kind: HostKind) -> None:
    canonical = canonical_url(url)
    assert canonical.host_kind is kind
    assert canonical.is_ip_literal is (kind is not HostKind.NAME)


def test_ports_are_kept_apart_from_the_host_and_defaults_dropped() -> None:
    assert canonical_url("http://bad-site.test:8080/").port == 8080
    assert canonical_url("http://bad-site.test:80/").port is None
    assert canonical_url("https://bad-site.test:443/").port is None
    assert canonical_url("https://bad-site.test:80/").port == 80


@pytest.mark.parametrize(
    "url",
    [
        "",
        "   ",
        "http:///",
        "http://www.1.2.3.4/",  # a host ending in a number must be an IPv4 literal
        "http://1.2.3.4.5/",
        "http://256.1.1.1/",
        "http://1.2.3.08/",
        "http://4294967296/",
        "http://bad-site.test:99999/",
        "http://bad-site.test:8o/",
        "http://[2001:db8::1/",
        "http://[2001:db8::zz]/",
        "http://[fe80::1%25eth0]/",
        "http://[::1]x/",
        "http://bad site.test/",
        "http://bad<site>.test/",
        "http://bad..site.test/",
        "http://good.test%2fbad-site.test/",
        "http://xn--a.test/",  # invalid punycode
        "http://%25%32%35%32%35%32%35%32%35/",  # still encoded after repeated decoding
        "http://%ff.test/",  # regression: not UTF-8 once decoded, used to raise UnicodeDecodeError
        "http://%C0%AE.test/",
        "http://" + "a" * 250 + ".test/",
        "http://bad-site.test/" + "a" * MAX_URL_LENGTH,
    ],
)
def test_unreadable_urls_are_refused(url: str) -> None:
    with pytest.raises(URLError):
        canonical_url(url)


def test_control_characters_in_paths_cannot_hide_segment_boundaries() -> None:
    assert canonical_url("http://bad-site.test/a%00b").path == "/a%00b"
    assert canonical_url("http://bad-site.test/a%20b").path == "/a%20b"


@pytest.mark.parametrize(
    ("text", "host"),
    [("Bad-Site.TEST.", "bad-site.test"), ("[2001:db8::1]", "2001:db8::1"), ("0x7f.1", "127.0.0.1"),
     ("bücher.test", "xn--bcher-kva.test"), ("%62ad.test", "bad.test")],
)
def test_canonical_host(text: str, host: str) -> None:
    assert canonical_host(text) == host


def test_registrable_parts_lists_the_host_and_every_parent() -> None:
    assert registrable_parts("a.b.bad-site.test") == [
        "a.b.bad-site.test", "b.bad-site.test", "bad-site.test", "test"]
