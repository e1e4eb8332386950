"""Safe search: force Google, Bing and DuckDuckGo safe search and YouTube restricted mode.

Runs on decrypted requests (the decide stage has these hosts decrypted when safe search is on).
"""

from __future__ import annotations

from mitmproxy import http

from proxy_addons.search_engines import SAFE_SEARCH_PARAMS, engine_of

YOUTUBE_HEADER = "YouTube-Restrict"


class SafeSearch:
    def __init__(self, enabled: bool, youtube_restrict: str) -> None:
        self.enabled = enabled
        self.youtube_restrict = youtube_restrict

    def request(self, flow: http.HTTPFlow) -> None:
        if not self.enabled or flow.response is not None:
            return
        engine = engine_of(flow.request.pretty_host.lower().rstrip("."))
        if engine is None:
            return
        if engine == "youtube":
            if self.youtube_restrict != "off":
                flow.request.headers[YOUTUBE_HEADER] = self.youtube_restrict.capitalize()
            return
        name, value = SAFE_SEARCH_PARAMS[engine]
        query = flow.request.query
        # Replace every spelling of the parameter the client sent with the safe value.
        for key in [k for k in query if k.lower() == name]:
            del query[key]
        query[name] = value
