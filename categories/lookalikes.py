"""Look-alike host names: internationalised names that imitate a listed ASCII name.

``pοrnhub.com`` with a Greek omicron is a different domain from the listed one, so no list
covers it. Its *skeleton* (after Unicode compatibility folding, with accents stripped and
letters that look like Latin letters replaced by them, as in Unicode TR39) is the listed name,
and the policy blocks it in the listed name's category.
"""

from __future__ import annotations

import unicodedata

# Letters from other scripts (and Latin variants) that render like a basic Latin letter.
# A subset of Unicode's confusables table, limited to look-alikes of a-z.
_CONFUSABLES: dict[str, str] = {
    # Cyrillic
    "а": "a", "Ь": "b", "в": "b", "с": "c", "ԁ": "d", "е": "e", "ё": "e", "һ": "h", "н": "h",
    "і": "i", "ї": "i", "ӏ": "l", "ј": "j", "к": "k", "м": "m", "п": "n", "о": "o", "р": "p",
    "ԛ": "q", "г": "r", "ѕ": "s", "т": "t", "ц": "u", "ѵ": "v", "ԝ": "w", "х": "x", "у": "y",
    "ү": "y", "ɡ": "g",
    # Greek
    "α": "a", "β": "b", "ε": "e", "η": "n", "ι": "i", "κ": "k", "ν": "v", "ο": "o", "ρ": "p",
    "τ": "t", "υ": "u", "χ": "x", "γ": "y", "ω": "w", "ϲ": "c", "ϳ": "j", "ς": "c",
    # Armenian and others
    "օ": "o", "ս": "u", "ց": "g", "հ": "h", "ո": "n", "ք": "q",
    # Latin variants that do not decompose
    "ı": "i", "ł": "l", "ø": "o", "đ": "d", "ħ": "h", "ŀ": "l", "ɑ": "a", "ɩ": "i",
    "ɪ": "i", "ʏ": "y", "ʀ": "r", "ɴ": "n", "ᴄ": "c", "ᴅ": "d", "ᴇ": "e", "ᴋ": "k",
    "ᴍ": "m", "ᴏ": "o", "ᴘ": "p", "ᴛ": "t", "ᴜ": "u", "ᴠ": "v", "ᴡ": "w", "ᴢ": "z",
    "ƅ": "b", "ɓ": "b", "ƈ": "c", "ɗ": "d", "ƒ": "f", "ɠ": "g", "ɦ": "h", "ƙ": "k",
    "ɱ": "m", "ɲ": "n", "ƥ": "p", "ʠ": "q", "ʂ": "s", "ƭ": "t", "ʋ": "v", "ƴ": "y",
    "ȥ": "z", "ß": "ss", "æ": "ae", "œ": "oe",
}
_TABLE = str.maketrans(_CONFUSABLES)
# Letters that imitate more than one Latin letter. IDNA maps the lunate sigma (ϲ, like "c")
# to σ, which also passes for "o": both readings are tried.
_AMBIGUOUS: dict[str, str] = {"σ": "co", "ϲ": "co", "г": "rl", "п": "nh"}
MAX_CANDIDATES = 32


def _fold(name: str) -> str:
    folded = unicodedata.normalize("NFKC", name).casefold()
    return "".join(c for c in unicodedata.normalize("NFD", folded)
                   if unicodedata.category(c) != "Mn")


def skeleton(name: str) -> str:
    """The ASCII look-alike of a Unicode host name, or the name unchanged when it has none."""
    return _fold(name).translate(_TABLE)


def skeletons(name: str) -> list[str]:
    """Every ASCII reading of a name whose letters imitate more than one Latin letter."""
    readings = [""]
    for char in _fold(name):
        alternatives = _AMBIGUOUS.get(char)
        if alternatives is None:
            replacement = char.translate(_TABLE)
            readings = [r + replacement for r in readings]
        elif len(readings) * len(alternatives) <= MAX_CANDIDATES:
            readings = [r + a for r in readings for a in alternatives]
        else:
            readings = [r + alternatives[0] for r in readings]
    return readings


def ascii_lookalikes(host: str) -> list[str]:
    """For a canonical host with punycode labels, the ASCII names it may imitate."""
    if "xn--" not in host:
        return []
    labels = []
    for label in host.split("."):
        if label.startswith("xn--"):
            try:
                label = label.encode("ascii").decode("idna")
            except UnicodeError:
                return []
        labels.append(label)
    return [c for c in skeletons(".".join(labels)) if c != host and c.isascii()]
