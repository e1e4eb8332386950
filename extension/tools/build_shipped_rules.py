"""Build the rules the extension ships with: the strictest profile, from the category
definitions' own hand-curated domains and URL prefixes (never from third-party lists).

These rules are the extension's static declarativeNetRequest ruleset ``shipped``: they filter
from the moment the extension is installed, before anyone signs in and with the backend out
of reach. Once the backend answers, its rules (the strictest profile's, or the signed-in
learner's) replace them.

Run at release time, from the repository root::

    python extension/tools/build_shipped_rules.py          # writes extension/rules/*.json
    python extension/tools/build_shipped_rules.py --check  # fails if they are out of date

(``tools/`` is not part of the packaged extension.)
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from admin_api.extension_rules import (
    HostRule,
    build_ruleset,
    category_hosts,
    category_url_prefixes,
    chrome_rules,
)
from categories.definitions import load_definitions
from categories.policy import Policy
from categories.profiles import GroupProfile, default_profiles

RULES_DIR = Path(__file__).resolve().parent.parent / "rules"
CHROME_RULES = "shipped_rules.json"
HOST_RULES = "shipped_host_rules.json"
STRICTEST = "guest"
"""The profile used for unidentified users: no allowances, no time windows."""
BUILT_AT = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
"""A fixed time, so the same definitions always build the same files."""


def strictest_rules() -> tuple[HostRule, ...]:
    categories = load_definitions()
    profiles: dict[str, GroupProfile] = default_profiles()
    policy = Policy(categories, None, profiles=profiles, unidentified_group=STRICTEST)
    ruleset = build_ruleset(policy, category_hosts(policy), user="", group=STRICTEST,
                            at=BUILT_AT, prefixes=category_url_prefixes(policy))
    return ruleset.rules


def rendered() -> dict[str, str]:
    rules = strictest_rules()
    host_rules: list[dict[str, Any]] = [r.to_dict() for r in rules]
    chrome: list[dict[str, Any]] = [c for r in rules for c in chrome_rules(r)]
    return {HOST_RULES: json.dumps(host_rules, indent=1, sort_keys=True) + "\n",
            CHROME_RULES: json.dumps(chrome, indent=1, sort_keys=True) + "\n"}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true",
                        help="fail (exit 1) if the committed files are out of date")
    parser.add_argument("--out", type=Path, default=RULES_DIR)
    args = parser.parse_args(argv)
    stale = []
    for name, text in rendered().items():
        path = args.out / name
        if args.check:
            if not path.exists() or path.read_text() != text:
                stale.append(name)
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    if stale:
        print(f"out of date: {', '.join(stale)}; run {Path(__file__).name}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
