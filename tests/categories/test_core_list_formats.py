"""List-format parsers: what each format accepts, and that every refused line is counted."""

from __future__ import annotations

from pathlib import Path

import pytest

from categories.list_formats import (
    EntryKind,
    ListFormat,
    ParseResult,
    detect_format,
    parse_adblock,
    parse_hosts,
    parse_plain,
    parse_urls,
    url_entry,
)

LISTS = Path(__file__).resolve().parent.parent / "fixtures" / "lists"


def lines_of(name: str) -> list[str]:
    return (LISTS / name).read_text(encoding="utf-8").splitlines()


def entries(result: ParseResult) -> list[tuple[str, str, int]]:
    return [(e.kind.value, e.value, e.line) for e in result.entries]


def rejected(result: ParseResult) -> list[tuple[int, str]]:
    return [(r.line, r.reason) for r in result.rejected_examples]


def test_plain_list() -> None:
    result = parse_plain(lines_of("plain.txt"))
    assert entries(result) == [
        ("domain", "plain-one.test", 2),
        ("domain", "plain-two.test", 3),  # case and trailing dot
        ("domain", "plain-three.test", 4),  # *. wildcard
        ("domain", "plain-four.test", 5),  # leading dot
        ("domain", "plain-five.test", 6),  # trailing comment
    ]
    assert result.rejected_count == 3
    assert rejected(result) == [(8, "not a domain"), (9, "not a domain (no dot)"), (10, "not a domain")]
    assert result.ignored_count == 2  # the comment and the blank line
    assert not result.looks_like_garbage


def test_hosts_file() -> None:
    result = parse_hosts(lines_of("hosts.txt"))
    assert entries(result) == [
        ("domain", "tracker-one.test", 6),
        ("domain", "tracker-two.test", 7),
        ("domain", "tracker-three.test", 7),
        ("domain", "ads.banner-farm.test", 8),
        ("domain", "upper-case-host.test", 9),
        ("domain", "ipv6-sinkholed.test", 10),
    ]
    assert rejected(result) == [
        (11, "hosts line needs an address and a name"),
        (12, "nodot: not a domain (no dot)"),
        (13, "bad..label.test: empty label in host"),
        (14, "hosts line does not start with an IP address"),
    ]
    assert result.rejected_count == 4
    # the comment, the blank line, and the localhost / 0.0.0.0 lines
    assert result.ignored_count == 5


def test_hosts_line_whose_first_field_is_a_name_is_refused_not_silently_shortened() -> None:
    """Regression: ``example.test other.test`` used to drop the first name without a count."""
    result = parse_hosts(["first-name.test second-name.test", "0 third-name.test"])
    assert entries(result) == [("domain", "third-name.test", 2)]
    assert rejected(result) == [(1, "hosts line does not start with an IP address")]


def test_adblock_list() -> None:
    result = parse_adblock(lines_of("adblock.txt"))
    assert entries(result) == [
        ("domain", "adblock-one.test", 4),
        ("domain", "adblock-two.test", 5),
        ("domain", "adblock-three.test", 6),
        ("url", "cdn.adblock-four.test/tracker/pixel", 7),
    ]
    assert rejected(result) == [
        (8, "exception rules are not supported"),
        (9, "cosmetic rules are not supported"),
        (10, "rules restricted by options are not supported"),
        (11, "only ||host^ network rules are supported"),
        (12, "wildcards and separators inside a rule are not supported"),
    ]
    assert result.rejected_count == 5
    assert result.ignored_count == 3  # the header and two ! comments


def test_squidguard_urls_list() -> None:
    result = parse_urls([
        "Bad-Site.TEST/Members/Hot/",
        "bad-site.test/page?id=1#frag",
        "bare-host.test",
        "bare-host-with-slash.test/",
        "198.51.100.23/gallery",
        "bad-site.test/a b",
        "www.1.2.3.4/x",
        "# comment",
    ])
    assert entries(result) == [
        ("url", "bad-site.test/members/hot", 1),
        ("url", "bad-site.test/page?id=1", 2),
        ("domain", "bare-host.test", 3),
        ("domain", "bare-host-with-slash.test", 4),
        ("url", "198.51.100.23/gallery", 5),
    ]
    assert rejected(result) == [(6, "white space inside a URL"),
                                (7, "too many parts for an IPv4 literal: 'www.1.2.3.4'")]
    assert result.ignored_count == 1


def test_plain_list_entries_are_canonical_hosts() -> None:
    result = parse_plain(["glücksspiel-palast.test", "3325256727", "[2001:DB8::1]", "%62ad.test"])
    assert [e.value for e in result.entries] == [
        "xn--glcksspiel-palast-32b.test", "198.51.100.23", "2001:db8::1", "bad.test"]
    assert result.rejected_count == 0


def test_percent_encoded_junk_in_a_list_is_refused_and_counted() -> None:
    """Regression: ``%ff`` in a host used to abort the whole import with UnicodeDecodeError."""
    result = parse_plain(["good.test", "%ff.test", "%C0%AE.test"])
    assert [e.value for e in result.entries] == ["good.test"]
    assert [r.line for r in result.rejected_examples] == [2, 3]
    assert result.rejected_count == 2


def test_binary_and_undecodable_lines_are_refused() -> None:
    result = parse_plain(["good.test", "bad\x00.test", "caf\ufffd.test"])
    assert [e.value for e in result.entries] == ["good.test"]
    assert rejected(result) == [(2, "binary or undecodable data"), (3, "binary or undecodable data")]


def test_every_rejected_line_is_counted_beyond_the_examples_kept() -> None:
    result = parse_plain([f"not a domain {i}" for i in range(500)])
    assert result.rejected_count == 500
    assert len(result.rejected_examples) == ParseResult.MAX_EXAMPLES
    assert result.looks_like_garbage


def test_a_few_bad_lines_in_a_good_list_are_not_garbage() -> None:
    result = parse_plain([f"site-{i}.test" for i in range(100)] + [f"bad line {i}" for i in range(20)])
    assert (len(result.entries), result.rejected_count) == (100, 20)
    assert not result.looks_like_garbage


@pytest.mark.parametrize(
    ("text", "expected"),
    [("bad-site.test", (EntryKind.DOMAIN, "bad-site.test")),
     ("http://bad-site.test/A/", (EntryKind.URL, "bad-site.test/a")),
     ("bad-site.test/?", (EntryKind.DOMAIN, "bad-site.test")),
     ("localhost", "not a domain (no dot)")],
)
def test_url_entry(text: str, expected: object) -> None:
    entry = url_entry(text)
    assert (entry if isinstance(entry, str) else (entry.kind, entry.value)) == expected


@pytest.mark.parametrize(
    ("name", "fmt"),
    [("hosts.txt", ListFormat.HOSTS), ("adblock.txt", ListFormat.ADBLOCK),
     ("plain.txt", ListFormat.PLAIN)],
)
def test_detect_format_of_each_fixture(name: str, fmt: ListFormat) -> None:
    assert detect_format(lines_of(name)) is fmt


def test_detect_format_of_a_urls_list_and_of_nothing() -> None:
    assert detect_format(["a.test/x", "b.test/y/z", "c.test"]) is ListFormat.URLS
    assert detect_format(["# only a comment", ""]) is ListFormat.PLAIN
