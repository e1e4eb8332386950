"""The signatures the extension and the server must agree on, checked across the two
languages: the proxy's signed probe answer (Python signs, the extension's JavaScript
verifies) and the navigation token of a reported block (the extension mints, the backend
checks). Node runs the extension's own modules."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from proxy_addons.probe_signature import ProbeError, probe_is_genuine, sign_probe
from store.extension_devices import navigation_token
from store.probe_key import load_or_create_probe_key, public_probe_key
from tests.harness.browser import EXTENSION

NODE = shutil.which("node")
KEY = bytes(range(32))
"""A private probe key (as the proxy holds it) and, below, a hit key."""
NONCE = "0123456789abcdef0123456789abcdef"


def _node(script: str) -> str:
    assert NODE is not None, "node is needed for the extension's unit tests"
    done = subprocess.run([NODE, "--input-type=module", "-e", script], cwd=EXTENSION,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def _verify_in_extension(answer: Mapping[str, Any], nonce: str = NONCE,
                         key: bytes = KEY, centre: str = "") -> bool:
    public = public_probe_key(key).hex()  # all the extension ever holds
    script = (f"import {{ probeIsGenuine }} from './lib/signatures.js';"
              f"console.log(await probeIsGenuine({json.dumps(public)}, "
              f"{json.dumps(nonce)}, {json.dumps(dict(answer))}, "
              f"{{ centreId: {json.dumps(centre)} }}));")
    return _node(script) == "true"


def test_the_extension_accepts_only_the_proxys_answer_to_its_own_nonce() -> None:
    body = {"proxy": "esafety", "centre": "north", "site": "main", "user": "learner1"}
    signed = sign_probe(KEY, NONCE, body)
    assert probe_is_genuine(public_probe_key(KEY), NONCE, signed)
    assert _verify_in_extension(signed, centre="north")
    assert not _verify_in_extension(body)  # unsigned, as any fake server answers
    assert not _verify_in_extension(signed, nonce="f" * 32)  # replayed to another probe
    assert not _verify_in_extension(signed, key=b"x" * 32)  # checked with another key
    assert not _verify_in_extension(signed, centre="south")  # another centre's proxy
    assert not _verify_in_extension({**signed, "centre": "south"})  # altered in transit
    stale = sign_probe(KEY, NONCE, body, now=time.time() - 3600)
    assert not probe_is_genuine(public_probe_key(KEY), NONCE, stale)
    assert not _verify_in_extension(stale)
    for bad in ("", "A" * 32, "0" * 31, "../status"):
        with pytest.raises(ProbeError):
            sign_probe(KEY, bad, body)


def test_the_probe_key_file_is_private_and_kept(tmp_path: Path) -> None:
    key = load_or_create_probe_key(tmp_path)
    path = tmp_path / "probe.key"
    assert path.stat().st_mode & 0o777 == 0o600
    assert load_or_create_probe_key(tmp_path) == key  # made once, then read
    assert public_probe_key(key) != key and len(public_probe_key(key)) == 32
    path.write_text("not hex\n")
    with pytest.raises(ValueError):
        load_or_create_probe_key(tmp_path)


def test_the_backend_checks_the_navigation_token_the_extension_mints() -> None:
    ts = 1764600000.123
    url = "https://casino.example/spin?x=1"
    script = ("import { navigationToken } from './lib/signatures.js';"
              f"console.log(await navigationToken({json.dumps(KEY.hex())}, "
              f"'20261201-7KQ2X9AB', {ts}, {json.dumps(url)}));")
    minted = _node(script)
    assert minted == navigation_token(KEY, "20261201-7KQ2X9AB", ts, url)
    assert minted != navigation_token(KEY, "20261201-7KQ2X9AB", ts, "https://other.example/")
    assert minted != navigation_token(b"y" * 32, "20261201-7KQ2X9AB", ts, url)


def test_the_shipped_rules_are_up_to_date_with_the_category_definitions() -> None:
    done = subprocess.run(
        [sys.executable, str(EXTENSION / "tools" / "build_shipped_rules.py"), "--check"],
        capture_output=True, text=True, timeout=120, cwd=EXTENSION.parent,
        env={**os.environ, "PYTHONPATH": str(EXTENSION.parent)})
    assert done.returncode == 0, done.stderr
