"""The C fast path of ``canonical_url`` (``categories._urlfast``) must equal the Python one.

The extension is built by ``pip install -e .`` (the Makefile's install, with a compiler present).
If it was not built, importing it below fails and so does this module: on purpose, so that a
broken build cannot hide behind the pure-Python fallback.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from categories import _urlfast, urlnorm
from categories.urlnorm import CanonicalURL, HostKind, URLError, canonical_url

Fast = Callable[[str], CanonicalURL | None]
SETTINGS = settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def outcome(fast: Fast, target: str) -> tuple[Any, ...] | None:
    """Everything observable about one call: the result's fields and types, or the error."""
    try:
        url = fast(target)
    except URLError as exc:
        return ("URLError", str(exc))
    if url is None:
        return None
    assert type(url) is CanonicalURL
    return ("url", url.scheme, url.host, url.port, type(url.port), url.path, url.host_kind,
            url, hash(url), repr(url), str(url))


def assert_same(target: str) -> None:
    assert outcome(_urlfast.canonical_fast, target) == outcome(urlnorm._canonical_url_fast_py, target)


def test_the_extension_is_wired_into_canonical_url() -> None:
    assert urlnorm._fast_canonical_url is _urlfast.canonical_fast
    url = canonical_url("HTTP://WWW.Example.COM:80/A/B?Q=1#frag")
    assert url == CanonicalURL("http", "www.example.com", None, "/a/b?q=1", HostKind.NAME)


def test_results_are_real_frozen_canonical_urls() -> None:
    url = _urlfast.canonical_fast("https://example.com:8443/x")
    assert url == CanonicalURL("https", "example.com", 8443, "/x")
    assert url is not None and url.host_kind is HostKind.NAME
    with pytest.raises(AttributeError):
        url.host = "other.com"  # type: ignore[misc]
    assert {url: 1}[CanonicalURL("https", "example.com", 8443, "/x")] == 1


def test_rejects_non_strings() -> None:
    with pytest.raises(TypeError):
        _urlfast.canonical_fast(b"http://example.com/")  # type: ignore[arg-type]


def host_of_length(n: int) -> str:
    """A valid host name of exactly ``n`` characters (205 to 267)."""
    return ".".join(["a" * 50] * 4) + "." + "c" * (n - 204)


EDGE_CASES = [
    "http://a", "http://a/", "https://a.b", "http://a.b/", "HTTP://A.B/", "hTtPs://Ex.Com/Path",
    "http:/a.com/", "http//a.com", "http:\\\\a.com/", "ftp://a.com/", "httpx://a.com/", "https:/",
    "http://", "https://", "http://.", "http://a.", "http://.a", "http://a..b", "http://-a.com/",
    "http://a-.com/", "http://a.-com/", "http://a.com-/", "http://a.c-/", "http://_a.com/",
    "http://a_.com/", "http://a.c_m/", "http://a.1com/", "http://a.com1/", "http://1.2.3.4/",
    "http://1.2.3.4a/", "http://0x7f.1/", "http://127.0.0.1:80/", "http://999.1.1.1/",
    "http://a.b.c.d.e.f.g/", "http://" + "a" * 63 + ".com/", "http://" + "a" * 64 + ".com/",
    "http://a." + "b" * 63 + "/", "http://a." + "b" * 64 + "/",
    "http://" + ".".join(["abcdefghi"] * 25) + ".com/", "http://" + ".".join(["a"] * 126) + "/",
    "http://" + ".".join(["a"] * 127) + "/", "http://" + ".".join(["a"] * 128) + "/",
    "http://xn--nxasmq6b.com/", "http://XN--nxasmq6b.com/", "http://axn--b.com/", "http://xn-.com/",
    "http://a.xn--p1ai/", "http://xn--/", "http://a.com:", "http://a.com:/", "http://a.com:0/",
    "http://a.com:00080/", "http://a.com:80/", "https://a.com:443/", "https://a.com:80/",
    "http://a.com:443/", "http://a.com:65535/", "http://a.com:65536/", "http://a.com:99999/",
    "http://a.com:100000/", "http://a.com:123456/", "http://xn--a.com:99999/", "http://a.com:8x/",
    "http://a.com:8?", "http://a.com:8#", "http://a.com:+8/", "http://a.com:\u0661/",
    "http://a.com//", "http://a.com//x", "http://a.com/x//", "http://a.com/.", "http://a.com/./x",
    "http://a.com/x/.", "http://a.com/x/..", "http://a.com/x/.y", "http://a.com/x.y", "http://a.com/x.",
    "http://a.com/%2e", "http://a.com/x%41", "http://a.com/x;y", "http://a.com/x\\y", "http://a.com\\x",
    "http://a.com/x y", "http://a.com/x\ty", "http://a.com/x\n", "http://a.com/~!$&'()*+,=:@-_",
    "http://a.com/é", "http://a.com/Ä?x", "http://a.com/x\"", "http://a.com/<x>", "http://a.com/[x]",
    "http://a.com/x^", "http://a.com/x|", "http://a.com/x{", "http://a.com/x`",
    "http://a.com?", "http://a.com?#", "http://a.com/?", "http://a.com?x", "http://a.com/?Q=A&B=C",
    "http://a.com/?q=%20", "http://a.com/?q=x#%20", "http://a.com/?q=x#", "http://a.com/#%",
    "http://a.com/?q=x?y", "http://a.com/?q=a b", "http://a.com/?q=\n", "http://a.com/?q=\x00",
    "http://a.com/?q=İ", "http://a.com/?q=ẞ", "http://a.com/?q=ß", "http://a.com/?q=Σ",
    "http://a.com/?q=\ud800", "http://a.com/?q=K", "http://a.com/?q=\U0001f600",
    "http://a.com#", "http://a.com#frag", "http://a.com/#x?y", "http://a.com/#\ud800",
    "http://user@a.com/", "http://a.com@b.com/", "http://a.com/@b", "http://a.com/x@b.com",
    "http://éxample.com/", "http://exämple.com/", "http://example.cöm/", "http://exam\u017fple.com/",
    "http://ex\u212aample.com/", "http://\u0130.com/", "\u0168ttp://a.com/", "h\u0174tp://a.com/",
    "http\u0173://a.com/", "http:\u012f/a.com/", " http://a.com/", "http://a.com/ ", "http://a.com ",
    "http://a.com\x00", "http://[::1]/", "http://a.com%2f/", "http://a%2ecom/", "http://a.com./",
    "http://A.COM./", "https://" + "a" * 16390, "https://a.com/" + "b" * 16370,
    "https://a.com/" + "b" * 16371, "https://a.com/?" + "b" * 16370, "https://a.com/?" + "b" * 16369,
    "https://a.com/#" + "\u00e9" * 20000,
    *(f"http://{host_of_length(n)}/" for n in range(250, 257)),
    *(f"HTTP://{host_of_length(n).upper()}:99999/" for n in (253, 254)),
]


@pytest.mark.parametrize("target", EDGE_CASES)
def test_edge_cases(target: str) -> None:
    assert_same(target)


def test_edge_cases_cover_every_outcome() -> None:
    outcomes = [outcome(urlnorm._canonical_url_fast_py, t) for t in EDGE_CASES]
    assert any(o is None for o in outcomes)
    assert any(o is not None and o[0] == "URLError" for o in outcomes)
    assert any(o is not None and o[0] == "url" for o in outcomes)


# -- generated URLs ---------------------------------------------------------------------------

SCHEMES = st.sampled_from(["http", "https", "HTTP", "Https", "hTTpS", "ftp", "ws", "httpx", "http",
                           "https", "htt", "\u0130ttp"])
SEPARATORS = st.sampled_from(["://", "://", "://", ":/", ":", "//", ":\\\\", "://\\", ":///"])
LABEL_ALPHABET = "abcxyzABCXYZ019_-"
LABELS = st.one_of(
    st.text(alphabet=LABEL_ALPHABET, min_size=1, max_size=12),
    st.text(alphabet=LABEL_ALPHABET, min_size=60, max_size=66),
    st.sampled_from(["www", "xn--nxasmq6b", "XN--80AK6AA92E", "com", "co", "uk", "1", "0x7f", "255",
                     "example", "a-b", "-a", "a-", "_", "é", "ß", "K", "\u017f", "", "Ex\u00e4mple"]),
)
HOSTS = st.one_of(
    st.lists(LABELS, min_size=1, max_size=6).map(".".join),
    st.lists(LABELS, min_size=30, max_size=45).map(".".join),
    st.tuples(*[st.integers(0, 300)] * 4).map(lambda t: ".".join(map(str, t))),
    st.integers(240, 267).map(host_of_length),
    st.tuples(st.integers(60, 66), st.integers(60, 66)).map(lambda t: f"{'a' * t[0]}.{'b' * t[1]}"),
    st.sampled_from(["[::1]", "user@a.com", "a.com@b.com", "a.com.", ".a.com", "a..com", "a%2ecom"]),
)
PORTS = st.one_of(
    st.just(""),
    st.integers(0, 130_000).map(lambda p: f":{p}"),
    st.integers(65_530, 65_540).map(lambda p: f":{p}"),
    st.sampled_from([":80", ":443", ":00443", ":0", ":99999", ":65535", ":65536"]),
    st.sampled_from([":", ":080", ":0443", ":00000", ":123456", ":8a", ":-1", ":\u0661\u0662"]),
)
SEGMENT_ALPHABET = "abAB09._~!$&'()*+,=:@-;%\\ \t\"<>[]^|{}`é\u0130/"
SEGMENTS = st.one_of(
    st.text(alphabet="abAB09._~!$&'()*+,=:@-", max_size=8),
    st.text(alphabet=SEGMENT_ALPHABET, max_size=8),
    st.sampled_from([".", "..", "%2e", "%2E%2e", "index.html", "A;b", "x%41"]),
)
PATHS = st.one_of(
    st.just(""),
    st.lists(SEGMENTS, max_size=6).map(lambda s: "/" + "/".join(s)),
    st.lists(SEGMENTS, min_size=1, max_size=6).map(lambda s: "/" + "/".join(s) + "/"),
    st.text(alphabet=SEGMENT_ALPHABET, max_size=20),
)
QUERY_ALPHABET = st.one_of(st.sampled_from(list("aZ09=&?/ .%#+İßΣ\n\x00")), st.characters())
QUERIES = st.one_of(
    st.just(""),
    st.just("?"),
    st.text(alphabet="abcABC012=&_-.", max_size=20).map(lambda q: "?" + q),
    st.lists(QUERY_ALPHABET, max_size=20).map(lambda q: "?" + "".join(q)),
)
FRAGMENTS = st.one_of(st.just(""), st.text(max_size=10).map(lambda f: "#" + f))


@SETTINGS
@given(SCHEMES, SEPARATORS, HOSTS, PORTS, PATHS, QUERIES, FRAGMENTS)
def test_generated_urls(scheme: str, sep: str, host: str, port: str, path: str, query: str,
                        fragment: str) -> None:
    assert_same(scheme + sep + host + port + path + query + fragment)


@SETTINGS
@given(HOSTS, PATHS, QUERIES)
def test_generated_ordinary_urls(host: str, path: str, query: str) -> None:
    for scheme in ("http://", "https://"):
        assert_same(scheme + host + path + query)


@SETTINGS
@given(st.sampled_from(["http://", "https://", "HTTP://", "http:", ""]), st.text(max_size=40))
def test_arbitrary_text(prefix: str, rest: str) -> None:
    assert_same(prefix + rest)


@SETTINGS
@given(st.text(alphabet=st.characters(codec="utf-8"), max_size=60))
def test_arbitrary_text_after_a_host(rest: str) -> None:
    assert_same("http://example.com" + rest)
    assert_same("https://Example.Co.UK" + rest)


@SETTINGS
@given(st.text(alphabet="httpsHTTPS:/\\.aB0_-%@?#:[]", max_size=30))
def test_url_punctuation_soup(text: str) -> None:
    assert_same(text)
    assert_same("http://" + text)
