"""What the proxy knows about search engines: safe-search parameters and the query text."""

from __future__ import annotations

import re
from urllib.parse import parse_qsl

_GOOGLE = re.compile(r"^(?:www\.)?google\.(?:[a-z]{2,3}|co\.[a-z]{2}|com\.[a-z]{2})$")
_BING = re.compile(r"^(?:www\.|cn\.)?bing\.com$")
_DDG = re.compile(r"^(?:www\.|html\.|lite\.)?duckduckgo\.com$")
YOUTUBE_HOSTS = frozenset({
    "youtube.com", "www.youtube.com", "m.youtube.com", "music.youtube.com",
    "youtubei.googleapis.com", "youtube.googleapis.com", "www.youtube-nocookie.com",
})


def engine_of(host: str) -> str | None:
    """``google``, ``bing``, ``duckduckgo`` or ``youtube`` for their hosts, else None."""
    if host in YOUTUBE_HOSTS:
        return "youtube"
    if _GOOGLE.match(host):
        return "google"
    if _BING.match(host):
        return "bing"
    if _DDG.match(host):
        return "duckduckgo"
    return None


SAFE_SEARCH_PARAMS: dict[str, tuple[str, str]] = {
    "google": ("safe", "active"),
    "bing": ("adlt", "strict"),
    "duckduckgo": ("kp", "1"),
}

_QUERY_PARAMS = {"google": "q", "bing": "q", "duckduckgo": "q", "youtube": "search_query"}


def search_query(engine: str, query_string: str) -> str | None:
    """The words searched for, from a search URL's query string."""
    name = _QUERY_PARAMS.get(engine)
    if name is None or not query_string:
        return None
    for key, value in parse_qsl(query_string, keep_blank_values=False):
        if key == name:
            return value
    return None


def watch_matches(query: str, terms: tuple[str, ...]) -> list[str]:
    """Watch-list terms found in a query, compared case-insensitively on word boundaries."""
    text = " " + re.sub(r"[^\w]+", " ", query.casefold()) + " "
    found = []
    for term in terms:
        words = " " + re.sub(r"[^\w]+", " ", term.casefold()).strip() + " "
        if words.strip() and words in text:
            found.append(term)
    return found
