"""The filtering core: category definitions, list import, URL normalisation and the matcher.

Pure code and data: no network, no Redis. Everything else calls into it.
"""

from categories.decision import Action, Decision, Rule
from categories.definitions import Category, CategoryKind, CategorySet, load_definitions
from categories.overrides import Override, OverrideScope, OverrideSet
from categories.policy import Policy, PolicyError
from categories.profiles import GroupProfile, TimeWindow
from categories.urlnorm import CanonicalURL, URLError, canonical_host, canonical_url

__all__ = [
    "Action",
    "CanonicalURL",
    "Category",
    "CategoryKind",
    "CategorySet",
    "Decision",
    "GroupProfile",
    "Override",
    "OverrideScope",
    "OverrideSet",
    "Policy",
    "PolicyError",
    "Rule",
    "TimeWindow",
    "URLError",
    "canonical_host",
    "canonical_url",
    "load_definitions",
]
