"""Real components for the extension's browser tests: the admin API as a subprocess (so it
can be stopped and started again), Debian's Chromium with the unpacked extension (through
Playwright), a loopback origin that records every request it receives, and small API
clients."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from playwright.sync_api import BrowserContext, Page, Playwright, Worker

from tests.harness.proxy import REPO, free_port, stop_process, wait_until_healthy

EXTENSION = REPO / "extension"
CHROMIUM = "/usr/bin/chromium"
MANAGED_POLICY_DIR = Path("/etc/chromium/policies/managed")
"""The only place Chromium on Linux reads managed (mandatory) policy from."""


def unpacked_extension_id(path: Path) -> str:
    """The id Chromium gives an extension loaded unpacked from ``path``."""
    digest = hashlib.sha256(str(path).encode()).hexdigest()[:32]
    return "".join(chr(ord("a") + int(c, 16)) for c in digest)


@contextmanager
def managed_policy(policy: dict[str, Any]) -> Iterator[Path]:
    """Chromium's managed policy for the duration of the block: the file (and any folder
    made for it) is removed afterwards, even on failure."""
    made = [d for d in (MANAGED_POLICY_DIR.parent, MANAGED_POLICY_DIR) if not d.exists()]
    MANAGED_POLICY_DIR.mkdir(parents=True, exist_ok=True)
    path = MANAGED_POLICY_DIR / f"esafety-test-{os.getpid()}.json"
    path.write_text(json.dumps(policy))
    try:
        yield path
    finally:
        path.unlink(missing_ok=True)
        for directory in reversed(made):
            try:
                directory.rmdir()
            except OSError:
                pass  # something else was put there meanwhile: leave it


@dataclass
class AdminProcess:
    """``esafety admin`` on a loopback port, sharing the proxy's config and data directory."""

    config_file: Path
    data_dir: Path
    redis_url: str
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 30.0) -> AdminProcess:
        env = dict(os.environ, ESAFETY_REDIS_URL=self.redis_url)
        env.pop("ESAFETY_CONFIG", None)
        log = (self.data_dir / f"admin-{self.port}.log").open("ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "esafety.cli", "--config", str(self.config_file),
             "--data-dir", str(self.data_dir), "admin", "--listen", f"127.0.0.1:{self.port}"],
            env=env, stdout=log, stderr=subprocess.STDOUT)
        wait_until_healthy(self.process, self.url + "/healthz", "admin API", self.log_text,
                           timeout)
        return self

    def stop(self) -> None:
        stop_process(self.process)

    def log_text(self) -> str:
        path = self.data_dir / f"admin-{self.port}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def call(self, method: str, path: str, token: str | None = None,
             body: dict[str, Any] | None = None) -> tuple[int, Any]:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(self.url + path, data=data, method=method)
        if data is not None:
            request.add_header("Content-Type", "application/json")
        if token:
            request.add_header("Authorization", f"Bearer {token}")
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return response.status, json.loads(response.read() or b"null")
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read() or b"null")

    def login(self, name: str, password: str) -> str:
        status, body = self.call("POST", "/api/v1/auth/login",
                                 body={"username": name, "password": password})
        assert status == 200, body
        return str(body["token"])


@dataclass
class ExtensionBrowser:
    context: BrowserContext
    worker: Worker

    @property
    def extension_id(self) -> str:
        return self.worker.url.split("/")[2]

    def page_url(self, name: str) -> str:
        return f"chrome-extension://{self.extension_id}/{name}"

    def configure(self, backend_url: str, off_network_filtering: bool = True) -> None:
        """The unpacked-load fallback for the managed policy (see extension/README.md)."""
        self.worker.evaluate(
            "s => chrome.storage.local.set({settings: s})",
            {"backendUrl": backend_url, "centreId": "test-centre",
             "offNetworkFiltering": off_network_filtering})

    def status(self) -> dict[str, Any]:
        return dict(self.worker.evaluate("() => esafetyStatus()"))

    def memory(self) -> dict[str, float]:
        """The service worker's JS heap (MB), from Chrome's own performance.memory."""
        used = self.worker.evaluate("() => performance.memory ? performance.memory.usedJSHeapSize"
                                    " : 0")
        return {"sw_heap_mb": round(float(used) / 1e6, 2)}

    def sign_in(self, name: str, password: str) -> Page:
        """Sign in through the popup page, opened in a tab, as a learner would."""
        page = self.context.new_page()
        page.goto(self.page_url("popup.html"))
        page.get_by_label("User name").fill(name)
        page.get_by_label("Password").fill(password)
        page.get_by_role("button", name="Sign in").click()
        page.get_by_role("heading", name=f"Signed in as {name}").wait_for(timeout=15_000)
        return page


@contextmanager
def extension_browser(playwright: Playwright, user_data_dir: Path, *extra_args: str
                      ) -> Iterator[ExtensionBrowser]:
    """Chromium with the unpacked extension (one Playwright driver may run several)."""
    context = playwright.chromium.launch_persistent_context(
        str(user_data_dir), executable_path=CHROMIUM, headless=True,
        ignore_https_errors=True, timeout=30_000,
        args=["--headless=new", "--no-sandbox",
              f"--disable-extensions-except={EXTENSION}", f"--load-extension={EXTENSION}",
              "--disable-background-networking", "--disable-component-update",
              "--no-first-run", *extra_args])
    context.set_default_timeout(20_000)
    try:
        worker = (context.service_workers[0] if context.service_workers
                  else context.wait_for_event("serviceworker", timeout=20_000))
        yield ExtensionBrowser(context, worker)
    finally:
        context.close()


Answer = Callable[[str, str, dict[str, str]], tuple[int, dict[str, str], bytes]]


def _echo(method: str, path: str, headers: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
    body = json.dumps({"method": method, "path": path, "host": headers.get("host", "")})
    return 200, {"Content-Type": "application/json"}, body.encode()


class RecordingOrigin:
    """A loopback HTTP server that logs every request it receives as ``(host, path)``: a
    leak shows up here, where it would happen. ``answer`` makes the response (an echo by
    default)."""

    def __init__(self, answer: Answer = _echo) -> None:
        self.requests: list[tuple[str, str]] = []
        origin = self

        class Handler(BaseHTTPRequestHandler):
            def _serve(self) -> None:
                host = (self.headers.get("Host") or "").rsplit(":", 1)[0]
                origin.requests.append((host, self.path))
                status, headers, body = answer(self.command, self.path,
                                               {k.lower(): v for k, v in self.headers.items()})
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = do_HEAD = _serve

            def log_message(self, format: str, *args: Any) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        self.port = int(self.server.server_address[1])
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def hosts(self) -> set[str]:
        return {host for host, _path in self.requests}

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
