"""The real ``esafety admin`` process logs one JSON object per line on stderr (the default
``logging.format: json``), through the same set-up as every other esafety process."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import yaml

from store.keys import Keys
from tests.harness.proxy import REPO, free_port


def _status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return exc.code
    except OSError:
        return 0


def _run_admin(tmp_path: Path, redis_url: str, keys: Keys, settings: dict[str, Any]) -> str:
    """Start ``esafety admin``, make a few requests, stop it with SIGTERM; its stderr."""
    config = tmp_path / "esafety.yaml"
    config.write_text(yaml.safe_dump({"redis_prefix": keys.prefix, **settings}))
    port = free_port()
    stderr_file = tmp_path / "admin.stderr"
    env = {k: v for k, v in os.environ.items() if not k.startswith("ESAFETY_")}
    with stderr_file.open("wb") as stderr:
        admin = subprocess.Popen(
            [sys.executable, "-m", "esafety.cli", "--config", str(config), "--redis-url",
             redis_url, "--data-dir", str(tmp_path / "data"), "admin", "--listen",
             f"127.0.0.1:{port}"], cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=stderr)
        try:
            deadline = time.monotonic() + 30
            while _status(f"http://127.0.0.1:{port}/healthz") != 200:
                assert admin.poll() is None, stderr_file.read_text()
                assert time.monotonic() < deadline, stderr_file.read_text()
                time.sleep(0.2)
            assert _status(f"http://127.0.0.1:{port}/metrics") == 200
            assert _status(f"http://127.0.0.1:{port}/api/v1/no-such-thing") == 404
        finally:
            admin.send_signal(signal.SIGTERM)
            admin.wait(20)
    return stderr_file.read_text()


def test_the_admin_process_logs_json_objects_on_stderr(tmp_path: Path, redis_url: str,
                                                       keys: Keys) -> None:
    stderr = _run_admin(tmp_path, redis_url, keys, {})
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert lines, "the admin logged nothing"
    records = []
    for line in lines:
        record = json.loads(line)  # a line that is not JSON fails here, with the line shown
        assert isinstance(record, dict), line
        records.append(record)
    for record in records:
        assert record["service"] == "admin"
        assert record["level"] in {"debug", "info", "warning", "error", "critical"}
        assert {"ts", "logger", "msg"} <= record.keys()
    assert any("Running on" in str(r["msg"]) for r in records), records


def test_the_admin_process_logs_text_when_the_config_asks(tmp_path: Path, redis_url: str,
                                                         keys: Keys) -> None:
    stderr = _run_admin(tmp_path, redis_url, keys, {"logging": {"format": "text"}})
    started = [line for line in stderr.splitlines() if "Running on" in line]
    assert started and " admin INFO " in started[0], stderr
