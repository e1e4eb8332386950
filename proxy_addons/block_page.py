"""The page a learner sees when a request is blocked: why, a reference, and what to do next."""

from __future__ import annotations

from datetime import datetime
from html import escape
from urllib.parse import quote, urlencode

from categories.decision import Decision, Rule

_PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="robots" content="noindex">
<title>Blocked: {title}</title>
<style>
body{{font-family:system-ui,-apple-system,"Segoe UI",Arial,sans-serif;margin:0;
background:#f4f6f8;color:#1b1f23}}
main{{max-width:40rem;margin:3rem auto;background:#fff;padding:2rem;border-radius:8px;
border-top:6px solid #b3261e;box-shadow:0 1px 4px rgba(0,0,0,.12)}}
h1{{font-size:1.6rem;margin-top:0}} dl{{display:grid;grid-template-columns:max-content 1fr;gap:.4rem 1rem}}
dt{{font-weight:600}} dd{{margin:0;overflow-wrap:anywhere}}
.actions{{display:flex;flex-wrap:wrap;gap:1rem;margin-top:1.5rem}}
.actions a{{display:inline-block;padding:.7rem 1.1rem;border-radius:6px;text-decoration:none;
font-weight:600;background:#0b57d0;color:#fff}}
.actions a.secondary{{background:#fff;color:#0b57d0;border:2px solid #0b57d0}}
a:focus-visible{{outline:3px solid #f9a825;outline-offset:2px}}
p.note{{color:#444}}
p.centre{{margin:0 0 .5rem;color:#444;font-weight:600}}
</style>
</head>
<body>
<main>
<p class="centre" data-field="centre">{centre} web filter</p>
<h1>This page is blocked</h1>
<p>{reason}</p>
<dl>
<dt>Category</dt><dd data-field="category" data-category="{category_id}">{title}</dd>
<dt>Address</dt><dd data-field="address">{address}</dd>
<dt>Reference</dt><dd data-field="hit-id"><code>{hit_id}</code></dd>
<dt>Date</dt><dd data-field="date"><time datetime="{iso}">{when}</time></dd>
</dl>
<p class="note">You are not in trouble. If you reached this page by accident, please tell us so
that it is logged, as the centre's e-safety policy asks. If you think the site is blocked by
mistake, ask for it to be reviewed by the centre's IT support provider.</p>
<div class="actions">
<a href="{report_url}">I reached this by accident</a>
<a class="secondary" href="{review_url}">Ask for this site to be reviewed</a>
</div>
</main>
</body>
</html>
"""


_OUTSIDE_HOURS_PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="robots" content="noindex">
<title>Not open yet</title>
<style>
body{{font-family:system-ui,-apple-system,"Segoe UI",Arial,sans-serif;margin:0;
background:#f4f6f8;color:#1b1f23}}
main{{max-width:40rem;margin:3rem auto;background:#fff;padding:2rem;border-radius:8px;
border-top:6px solid #0b57d0;box-shadow:0 1px 4px rgba(0,0,0,.12)}}
h1{{font-size:1.6rem;margin-top:0}} dl{{display:grid;grid-template-columns:max-content 1fr;gap:.4rem 1rem}}
dt{{font-weight:600}} dd{{margin:0;overflow-wrap:anywhere}}
</style>
</head>
<body>
<main>
<h1>Not open at the moment</h1>
<p data-field="reason">{reason}</p>
<dl>
<dt>Open at</dt><dd data-field="windows">{windows}</dd>
<dt>Address</dt><dd data-field="address">{address}</dd>
<dt>Reference</dt><dd data-field="hit-id"><code>{hit_id}</code></dd>
<dt>Date</dt><dd data-field="date"><time datetime="{iso}">{when}</time></dd>
</dl>
<p>Please try again then. Nothing is wrong with this site, and you are not in trouble.</p>
</main>
</body>
</html>
"""


def render_block_page(decision: Decision, hit_id: str, when: datetime, url: str,
                      admin_url: str, centre_name: str) -> bytes:
    """HTML for a blocked request, naming the centre whose filter blocked it. Every value is
    escaped; links carry the hit id. A request refused outside the access windows gets a page
    of its own: when it opens next, and no report or review buttons (it is not about the
    site)."""
    if decision.rule is Rule.OUTSIDE_HOURS:
        return _OUTSIDE_HOURS_PAGE.format(
            reason=escape(decision.reason), windows=escape(decision.matched or ""),
            address=escape(url[:300]), hit_id=escape(hit_id),
            iso=escape(when.isoformat(timespec="seconds")),
            when=escape(when.strftime("%A %d %B %Y, %H:%M"))).encode("utf-8")
    title = decision.category_title or "Blocked site"
    query_report = urlencode({"hit_id": hit_id})
    query_review = urlencode({"hit_id": hit_id, "url": url[:2000]})
    page = _PAGE.format(
        centre=escape(centre_name),
        title=escape(title),
        category_id=escape(decision.category or ""),
        reason=escape(decision.reason),
        address=escape(url[:300]),
        hit_id=escape(hit_id),
        iso=escape(when.isoformat(timespec="seconds")),
        when=escape(when.strftime("%A %d %B %Y, %H:%M")),
        report_url=escape(f"{admin_url}/report?{query_report}"),
        review_url=escape(f"{admin_url}/request-review?{query_review}"),
    )
    return page.encode("utf-8")


def connect_refusal(decision: Decision, hit_id: str) -> bytes:
    """The short body of a refused CONNECT (browsers show their own error for it)."""
    if decision.rule is Rule.OUTSIDE_HOURS:
        return f"{decision.reason} Reference {hit_id}.\n".encode("utf-8", "replace")
    title = decision.category_title or "Blocked site"
    return (f"Blocked by the centre's web filter: {title}. Reference {hit_id}.\n"
            ).encode("utf-8", "replace")


def block_headers(decision: Decision, hit_id: str) -> dict[str, str]:
    """Headers that let the browser extension recognise a block and show its own page."""
    return {
        "Content-Type": "text/html; charset=utf-8",
        "Cache-Control": "no-store",
        "X-Esafety-Hit-Id": hit_id,
        "X-Esafety-Category": quote(decision.category or "", safe=""),
        "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'",
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "no-referrer",
    }
