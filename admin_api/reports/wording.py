"""Words in the reports and mails people read: plurals and category titles, in one place."""

from __future__ import annotations

from collections.abc import Mapping

NO_FIGURES = "no figures yet"
SPECIAL_TITLES = {
    "": "Not categorised",
    "uncategorised": "Not categorised",
    "prevent_search": "Prevent watch-list search",
    "other": "Other categories",
}


def plural(count: int, one: str, many: str, *, two: str | None = None,
           zero: str | None = None) -> str:
    """``one`` for 1, ``two`` / ``zero`` (when given) for 2 / 0, else ``many``; ``{n}`` in the
    chosen text becomes the count: ``plural(n, "{n} alert was raised", "{n} alerts were
    raised")``, ``plural(n, "once", "{n} times", two="twice")``."""
    if count == 0 and zero is not None:
        chosen = zero
    elif count == 1:
        chosen = one
    elif count == 2 and two is not None:
        chosen = two
    else:
        chosen = many
    return chosen.format(n=count)


def category_title(category: str, titles: Mapping[str, str]) -> str:
    """A category's title from its definition (``hate_discrimination`` -> its ``title``); an
    id no definition names is still written as words, never as the raw id."""
    if category in titles:
        return titles[category]
    if category in SPECIAL_TITLES:
        return SPECIAL_TITLES[category]
    return category.replace("_", " ").replace("-", " ").strip().capitalize()
