"""Small server-side SVG charts for printable reports: no JavaScript, no external files.

Each chart is ``role="img"`` with a ``<title>`` and ``<desc>`` (referenced by
``aria-labelledby``) so screen readers announce what it shows; the same figures are always in
a table next to it. Colours are from a palette that stays distinguishable in greyscale print
and for common colour-vision deficiencies.
"""

from __future__ import annotations

import itertools
from html import escape

PALETTE = ("#1b4f72", "#d35400", "#117a65", "#7d3c98", "#b7950b", "#922b21", "#5d6d7e",
           "#2e86c1")
_ids = itertools.count(1)


def _frame(width: int, height: int, title: str, desc: str, body: list[str]) -> str:
    n = next(_ids)
    return (f'<svg xmlns="http://www.w3.org/2000/svg" role="img" width="{width}" '
            f'height="{height}" viewBox="0 0 {width} {height}" '
            f'aria-labelledby="chart{n}-title chart{n}-desc">'
            f'<title id="chart{n}-title">{escape(title)}</title>'
            f'<desc id="chart{n}-desc">{escape(desc)}</desc>' + "".join(body) + "</svg>")


def _scale_max(value: int) -> int:
    """The axis top: a round number at or above ``value`` that four gridlines divide into
    whole numbers (4, 8, 12, 20, 40, 60, 80, 120, ...), so every tick reads exactly."""
    magnitude = 1
    while True:
        for step in (4, 8, 12, 20, 40, 60, 80):
            if value <= step * magnitude:
                return step * magnitude
        magnitude *= 10


def stacked_bars(title: str, desc: str, labels: list[str], series: dict[str, list[int]],
                 width: int = 760, height: int = 320) -> str:
    """Vertical bars per label, stacked by series, with a legend."""
    left, right, top, bottom = 56, 170, 16, 56
    plot_w, plot_h = width - left - right, height - top - bottom
    totals = [sum(values[i] for values in series.values()) for i in range(len(labels))]
    peak = _scale_max(max(totals, default=0))
    body = [f'<line x1="{left}" y1="{top + plot_h}" x2="{left + plot_w}" y2="{top + plot_h}" '
            'stroke="#333"/>']
    for tick in range(5):
        value = peak * tick // 4
        y = top + plot_h - plot_h * tick / 4
        body.append(f'<line x1="{left}" y1="{y:.1f}" x2="{left + plot_w}" y2="{y:.1f}" '
                    'stroke="#ccc" stroke-width="0.5"/>')
        body.append(f'<text x="{left - 6}" y="{y + 4:.1f}" font-size="11" '
                    f'text-anchor="end">{value}</text>')
    slot = plot_w / max(len(labels), 1)
    bar_w = max(2.0, slot * 0.7)
    for i, label in enumerate(labels):
        x = left + i * slot + (slot - bar_w) / 2
        y = float(top + plot_h)
        for colour, values in zip(itertools.cycle(PALETTE), series.values(), strict=False):
            h = plot_h * values[i] / peak
            if h > 0:
                y -= h
                body.append(f'<rect x="{x:.1f}" y="{y:.1f}" width="{bar_w:.1f}" height="{h:.1f}" '
                            f'fill="{colour}"/>')
        if len(labels) <= 16 or i % 2 == 0:
            cx = x + bar_w / 2
            body.append(f'<text x="{cx:.1f}" y="{top + plot_h + 14}" font-size="10" '
                        f'text-anchor="end" transform="rotate(-40 {cx:.1f} {top + plot_h + 14})">'
                        f'{escape(label)}</text>')
    for j, (colour, name) in enumerate(zip(itertools.cycle(PALETTE), series, strict=False)):
        y = top + 8 + j * 18
        body.append(f'<rect x="{width - right + 14}" y="{y}" width="12" height="12" '
                    f'fill="{colour}"/>')
        body.append(f'<text x="{width - right + 32}" y="{y + 10}" font-size="11">'
                    f'{escape(name[:24])}</text>')
    return _frame(width, height, title, desc, body)


def horizontal_bars(title: str, desc: str, items: list[tuple[str, int]], width: int = 760
                    ) -> str:
    """One bar per item, labelled with its name and value."""
    left, right, row = 230, 60, 24
    height = max(1, len(items)) * row + 16
    peak = _scale_max(max((v for _, v in items), default=0))
    body = []
    for i, (label, value) in enumerate(items):
        y = 8 + i * row
        w = (width - left - right) * value / peak
        body.append(f'<text x="{left - 8}" y="{y + 15}" font-size="12" text-anchor="end">'
                    f'{escape(label[:34])}</text>')
        body.append(f'<rect x="{left}" y="{y + 3}" width="{w:.1f}" height="{row - 8}" '
                    f'fill="{PALETTE[0]}"/>')
        body.append(f'<text x="{left + w + 6:.1f}" y="{y + 15}" font-size="12">{value}</text>')
    if not items:
        body.append(f'<text x="{left}" y="20" font-size="12">No figures yet for this period.</text>')
    return _frame(width, height, title, desc, body)
