"""Parsers for block-list formats: squidGuard/UT1 ``domains`` and ``urls``, hosts, AdBlock, plain.

Each parser is a pure function from text lines to canonical entries plus the lines it
refused, with a reason for each. Nothing is dropped without being counted.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from enum import StrEnum

from categories.urlnorm import HostKind, URLError, canonical_host, canonical_host_with_kind, canonical_url


class ListFormat(StrEnum):
    PLAIN = "plain"
    """One domain per line (squidGuard ``domains``)."""
    URLS = "urls"
    """One ``host/path`` per line (squidGuard ``urls``)."""
    HOSTS = "hosts"
    """``0.0.0.0 example.com`` lines."""
    ADBLOCK = "adblock"
    """``||example.com^`` rules."""


class EntryKind(StrEnum):
    DOMAIN = "domain"
    URL = "url"


@dataclass(frozen=True, slots=True)
class ListEntry:
    kind: EntryKind
    value: str
    """Canonical host for a domain entry; canonical ``host/path`` for a URL entry."""
    line: int


@dataclass(frozen=True, slots=True)
class RejectedLine:
    line: int
    text: str
    reason: str


@dataclass
class ParseResult:
    entries: list[ListEntry] = field(default_factory=list)
    rejected_count: int = 0
    rejected_examples: list[RejectedLine] = field(default_factory=list)
    ignored_count: int = 0
    """Blank lines and comments."""

    MAX_EXAMPLES = 20

    def reject(self, line: int, text: str, reason: str) -> None:
        self.rejected_count += 1
        if len(self.rejected_examples) < self.MAX_EXAMPLES:
            self.rejected_examples.append(RejectedLine(line, text[:200], reason))

    @property
    def looks_like_garbage(self) -> bool:
        """True when most candidate lines were refused: the file is not a list of this format."""
        candidates = len(self.entries) + self.rejected_count
        return self.rejected_count >= 10 and self.rejected_count * 2 > candidates


_HOSTS_IGNORED_NAMES = frozenset(
    {"localhost", "localhost.localdomain", "local", "broadcasthost", "ip6-localhost",
     "ip6-loopback", "ip6-localnet", "ip6-mcastprefix", "ip6-allnodes", "ip6-allrouters",
     "ip6-allhosts", "0.0.0.0"}
)
_ADBLOCK_HEADER = re.compile(r"^\[(?:adblock|ublock|adguard)[^\]]*\]$", re.IGNORECASE)
_ADBLOCK_HARMLESS_OPTIONS = frozenset({"important", "all", "document", "doc", "popup"})


def _check_domain(host: str) -> str | None:
    """Return a reason the canonical host cannot be a list entry, or None when it can."""
    if "." not in host and ":" not in host:
        return "not a domain (no dot)"
    if any(c in host for c in " \t*/"):
        return "not a domain"
    return None


def _domain_entry(text: str) -> str:
    """Canonical host for a domain-list line; raises URLError with the reason."""
    candidate = text
    if candidate.startswith("*."):
        candidate = candidate[2:]
    candidate = candidate.lstrip(".")
    if not candidate or any(c in candidate for c in " \t/*"):
        raise URLError("not a domain")
    host = canonical_host(candidate)
    reason = _check_domain(host)
    if reason is not None:
        raise URLError(reason)
    return host


def url_entry(text: str) -> ListEntry | str:
    """Canonicalise a ``host/path`` entry; a bare host becomes a domain entry.

    Returns the entry with line 0, or the reason it was refused.
    """
    try:
        url = canonical_url(text if "://" in text else "http://" + text)
    except URLError as exc:
        return str(exc)
    reason = _check_domain(url.host)
    if reason is not None:
        return reason
    path = url.path.rstrip("/?&")
    if not path:
        return ListEntry(EntryKind.DOMAIN, url.host, 0)
    return ListEntry(EntryKind.URL, url.host + path, 0)


def _content_lines(lines: Iterable[str], comment: str, result: ParseResult) -> Iterator[tuple[int, str]]:
    for number, raw in enumerate(lines, start=1):
        text = raw.strip().lstrip("\ufeff")
        if not text or text.startswith(comment):
            result.ignored_count += 1
            continue
        if "\x00" in text or "\ufffd" in text:
            result.reject(number, text, "binary or undecodable data")
            continue
        yield number, text


def parse_plain(lines: Iterable[str]) -> ParseResult:
    result = ParseResult()
    for number, text in _content_lines(lines, "#", result):
        text = text.split("#", 1)[0].strip()
        try:
            result.entries.append(ListEntry(EntryKind.DOMAIN, _domain_entry(text), number))
        except URLError as exc:
            result.reject(number, text, str(exc))
    return result


def parse_urls(lines: Iterable[str]) -> ParseResult:
    result = ParseResult()
    for number, text in _content_lines(lines, "#", result):
        if any(c in text for c in " \t"):
            result.reject(number, text, "white space inside a URL")
            continue
        entry = url_entry(text)
        if isinstance(entry, str):
            result.reject(number, text, entry)
        else:
            result.entries.append(ListEntry(entry.kind, entry.value, number))
    return result


def parse_hosts(lines: Iterable[str]) -> ParseResult:
    result = ParseResult()
    for number, text in _content_lines(lines, "#", result):
        fields = text.split("#", 1)[0].split()
        if len(fields) < 2:
            result.reject(number, text, "hosts line needs an address and a name")
            continue
        try:
            is_address = canonical_host_with_kind(fields[0])[1] is not HostKind.NAME
        except URLError:
            is_address = False
        if not is_address:
            result.reject(number, text, "hosts line does not start with an IP address")
            continue
        names = [n for n in fields[1:] if n.lower() not in _HOSTS_IGNORED_NAMES]
        if not names:
            result.ignored_count += 1
            continue
        for name in names:
            try:
                result.entries.append(ListEntry(EntryKind.DOMAIN, _domain_entry(name), number))
            except URLError as exc:
                result.reject(number, text, f"{name[:60]}: {exc}")
    return result


def parse_adblock(lines: Iterable[str]) -> ParseResult:
    """Read network rules of the form ``||host^`` and ``||host/path``.

    Exception (``@@``), cosmetic (``##``) and option-restricted rules are refused and
    counted: blocking a whole host for a rule meant for one resource type would overblock.
    """
    result = ParseResult()
    for number, text in _content_lines(lines, "!", result):
        if _ADBLOCK_HEADER.match(text):
            result.ignored_count += 1
            continue
        if text.startswith("@@"):
            result.reject(number, text, "exception rules are not supported")
            continue
        if "##" in text or "#@#" in text or "#?#" in text or "#$#" in text:
            result.reject(number, text, "cosmetic rules are not supported")
            continue
        if not text.startswith("||"):
            result.reject(number, text, "only ||host^ network rules are supported")
            continue
        body, _, options = text[2:].partition("$")
        if options:
            names = {o.strip().lstrip("~").lower() for o in options.split(",")}
            if not names <= _ADBLOCK_HARMLESS_OPTIONS:
                result.reject(number, text, "rules restricted by options are not supported")
                continue
        body = body.rstrip("|")
        if body.endswith("^"):
            body = body[:-1]
        if "^" in body or "*" in body:
            result.reject(number, text, "wildcards and separators inside a rule are not supported")
            continue
        if "/" in body:
            entry = url_entry(body)
            if isinstance(entry, str):
                result.reject(number, text, entry)
            else:
                result.entries.append(ListEntry(entry.kind, entry.value, number))
            continue
        try:
            result.entries.append(ListEntry(EntryKind.DOMAIN, _domain_entry(body), number))
        except URLError as exc:
            result.reject(number, text, str(exc))
    return result


PARSERS = {
    ListFormat.PLAIN: parse_plain,
    ListFormat.URLS: parse_urls,
    ListFormat.HOSTS: parse_hosts,
    ListFormat.ADBLOCK: parse_adblock,
}

_HOSTS_LINE = re.compile(r"^\s*(?:0\.0\.0\.0|127\.0\.0\.1|::1?|::|0)\s+\S")


def detect_format(sample: Iterable[str]) -> ListFormat:
    """Guess a flat file's format from its first lines."""
    votes = {ListFormat.HOSTS: 0, ListFormat.ADBLOCK: 0, ListFormat.PLAIN: 0, ListFormat.URLS: 0}
    for raw in sample:
        text = raw.strip()
        if not text or text.startswith("#"):
            continue
        if text.startswith("!") or _ADBLOCK_HEADER.match(text):
            votes[ListFormat.ADBLOCK] += 1
        elif text.startswith(("||", "@@")):
            votes[ListFormat.ADBLOCK] += 2
        elif _HOSTS_LINE.match(text):
            votes[ListFormat.HOSTS] += 2
        elif "/" in text:
            votes[ListFormat.URLS] += 1
        else:
            votes[ListFormat.PLAIN] += 1
    best = max(votes.items(), key=lambda kv: kv[1])
    return best[0] if best[1] > 0 else ListFormat.PLAIN
