"""Prevent watch list: searches containing configured terms are logged for the DSL.

The search itself is not blocked (the categories do that); a matching search becomes a hit
with its matched terms, and the admin service raises a safeguarding alert from it.
"""

from __future__ import annotations

from mitmproxy import http

from proxy_addons.enforce import Enforce
from proxy_addons.search_engines import engine_of, search_query, watch_matches


class SearchWatch:
    def __init__(self, terms: tuple[str, ...], enforce: Enforce) -> None:
        self.terms = tuple(t for t in terms if t.strip())
        self.enforce = enforce

    def request(self, flow: http.HTTPFlow) -> None:
        if not self.terms or flow.response is not None:
            return
        engine = engine_of(flow.request.pretty_host.lower().rstrip("."))
        if engine is None:
            return
        query_string = flow.request.path.partition("?")[2]
        query = search_query(engine, query_string)
        if not query:
            return
        found = watch_matches(query, self.terms)
        if found:
            self.enforce.log_search_terms(flow, found)
