"""Test-only mitmproxy addon: the decide stage's clock reads an ISO time from a file.

The test writes ESAFETY_TEST_CLOCK_FILE to move time across a time-window boundary.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path

from mitmproxy import ctx


class FakeClock:
    def running(self) -> None:
        path = Path(os.environ["ESAFETY_TEST_CLOCK_FILE"])

        def now() -> datetime:
            text = path.read_text().strip() if path.exists() else ""
            return datetime.fromisoformat(text) if text else datetime.now(UTC)

        decide = ctx.master.addons.get("decide")
        decide.clock = now


addons = [FakeClock()]
