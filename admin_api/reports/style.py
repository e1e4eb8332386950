"""The printable reports' one stylesheet (its hash is allowed by the HTML CSP)."""

REPORT_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", Arial, sans-serif; color: #111;
       margin: 2rem auto; max-width: 60rem; line-height: 1.45; padding: 0 1rem; }
h1 { font-size: 1.8rem; margin-bottom: .2rem; }
h2 { font-size: 1.3rem; margin-top: 2rem; border-bottom: 2px solid #234; padding-bottom: .2rem; }
p.meta { color: #333; margin-top: 0; }
table { border-collapse: collapse; width: 100%; margin: 1rem 0; }
caption { text-align: left; font-weight: 600; padding: .3rem 0; }
th, td { border: 1px solid #666; padding: .3rem .5rem; text-align: left; vertical-align: top; }
th { background: #e8edf2; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
figure { margin: 1rem 0; }
figcaption { font-size: .95rem; color: #222; }
svg text { font-family: inherit; }
@media print { body { margin: 0; max-width: none; } h2 { break-after: avoid; }
               table, figure { break-inside: avoid; } }
"""
