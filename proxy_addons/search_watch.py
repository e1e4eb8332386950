"""Prevent watch list: searches containing configured terms are logged for the DSL.

The search itself is not blocked (the categories do that). This is a fact ``decide`` reads:
a matching search adds a hit with its matched terms to the flow's verdict, and the admin
service raises a safeguarding alert from it.
"""

from __future__ import annotations

from mitmproxy import http

from categories.decision import Action, Decision, Rule
from proxy_addons.search_engines import engine_of, search_query, watch_matches

WATCH_REASON = "A search matched the Prevent watch list."


class SearchWatch:
    def __init__(self, terms: tuple[str, ...]) -> None:
        self.terms = tuple(t for t in terms if t.strip())

    def matches(self, flow: http.HTTPFlow) -> list[str]:
        """The watch-list terms a search request contains (none for anything else)."""
        if not self.terms:
            return []
        engine = engine_of(flow.request.pretty_host.lower().rstrip("."))
        if engine is None:
            return []
        query = search_query(engine, flow.request.path.partition("?")[2])
        if not query:
            return []
        return watch_matches(query, self.terms)


def watch_decision(host: str) -> Decision:
    """An allowed search, logged with a safeguarding alert."""
    return Decision(Action.ALLOW, Rule.WATCH_LIST, host, WATCH_REASON, category="extremism",
                    severity="high", safeguarding_alert=True)
