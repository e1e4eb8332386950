"""Benchmark of the browser extension's off-network rules: how many, how fast, how heavy.

This is a benchmark, not a test: it prints figures and never fails on them. For each build
of the extension it is given (``--extension DIR``, repeatable; e.g. an older release
unpacked next to the current ``extension/``), it runs Debian's headless Chromium with the
unpacked extension, off the centre network, against a real admin API and Redis holding
``--domains`` synthetic listed domains (spread over gambling, adult and violence), and
reports:

* ``ready_s``: browser launch to the service worker's first status answer;
* ``unsigned_install_s``: setting the backend to the strictest rules being installed, with
  nobody signed in (builds that have them); ``install_s``: the sign-in click to the
  learner's rules being installed;
* ``dynamic_rules``: Chrome dynamic rules installed; ``domains``: listed domains in them;
* ``sw_heap_mb``: the service worker's JS heap after a garbage collection (CDP
  ``Runtime.getHeapUsage``) once the rules are in, and again after the worker is stopped
  and woken (``sw_heap_wake_mb``; ``wake_s`` is how long the woken worker took to answer);
* ``rss_mb``: resident memory of the extension's renderer process.

Run from the repository root: ``python -m bench.extension_memory --extension extension``.
It needs a Redis (``--redis``, default the local one) and uses a key prefix of its own,
removed afterwards.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import redis as sync_redis
from playwright.sync_api import BrowserContext, Playwright, Worker, sync_playwright

from store.accounts import create_user
from store.connection import connect
from store.keys import Keys
from tests.harness.browser import CHROMIUM, AdminProcess
from tests.harness.proxy import write_config

PASSWORD = "correct horse battery"
CATEGORIES = ("gambling", "adult", "agressif")


def write_lists(root: Path, count: int) -> Path:
    tree = root / "bench_lists"
    for n, category in enumerate(CATEGORIES):
        (tree / category).mkdir(parents=True)
        share = range(n, count, len(CATEGORIES))
        (tree / category / "domains").write_text(
            "".join(f"site{i:07d}-{category}.example\n" for i in share))
    return tree


def esafety(config: Path, data: Path, redis_url: str, *args: str) -> None:
    env = dict(os.environ, ESAFETY_REDIS_URL=redis_url)
    env.pop("ESAFETY_CONFIG", None)
    done = subprocess.run([sys.executable, "-m", "esafety.cli", "--config", str(config),
                           "--data-dir", str(data), *args], env=env, capture_output=True,
                          text=True, timeout=600)
    if done.returncode != 0:
        raise SystemExit(done.stdout + done.stderr)


def sw_heap_mb(context: BrowserContext) -> float:
    """The service worker's used JS heap, through the browser's DevTools protocol."""
    page = context.pages[0] if context.pages else context.new_page()
    cdp = context.new_cdp_session(page)
    targets = cdp.send("Target.getTargets")["targetInfos"]
    worker = next(t for t in targets if t["type"] == "service_worker")
    session = cdp.send("Target.attachToTarget", {"targetId": worker["targetId"],
                                                 "flatten": False})["sessionId"]
    replies: list[dict[str, Any]] = []
    cdp.on("Target.receivedMessageFromTarget",
           lambda event: replies.append(json.loads(event["message"])))
    for n, method in enumerate(("HeapProfiler.collectGarbage", "Runtime.getHeapUsage")):
        cdp.send("Target.sendMessageToTarget", {"sessionId": session, "message": json.dumps(
            {"id": n, "method": method})})
    deadline = time.monotonic() + 10
    while not any(r.get("id") == 1 for r in replies) and time.monotonic() < deadline:
        page.wait_for_timeout(100)
    cdp.send("Target.detachFromTarget", {"sessionId": session})
    cdp.detach()
    reply = next(r for r in replies if r.get("id") == 1)
    return round(float(reply["result"]["usedSize"]) / 1e6, 2)


def extension_rss_mb(profile: Path) -> float:
    """Resident memory of the extension renderer of the browser using ``profile``."""
    marker = f"--user-data-dir={profile}".encode()
    total = 0
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            # Chromium rewrites its processes' titles: one string, spaces between arguments
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
            status = Path(f"/proc/{pid}/status").read_text()
        except OSError:
            continue
        if b"--extension-process" in cmdline and marker in cmdline:
            total += next((int(line.split()[1]) for line in status.splitlines()
                           if line.startswith("VmRSS:")), 0)
    return round(total / 1024, 1)


def status_of(worker: Worker) -> dict[str, Any]:
    return dict(worker.evaluate("() => esafetyStatus()"))


def measure(playwright: Playwright, extension: Path, admin_url: str, user: str,
            profile: Path) -> dict[str, Any]:
    started = time.monotonic()
    context = playwright.chromium.launch_persistent_context(
        str(profile), executable_path=CHROMIUM, headless=True, timeout=60_000,
        args=["--headless=new", "--no-sandbox", f"--disable-extensions-except={extension}",
              f"--load-extension={extension}", "--disable-background-networking",
              "--disable-component-update", "--no-first-run",
              "--host-resolver-rules=MAP esafety-proxy.invalid ~NOTFOUND"])
    try:
        worker = (context.service_workers[0] if context.service_workers
                  else context.wait_for_event("serviceworker", timeout=30_000))
        status_of(worker)
        ready = time.monotonic() - started
        configured = time.monotonic()
        worker.evaluate("s => chrome.storage.local.set({settings: s})",
                        {"backendUrl": admin_url, "centreId": "bench"})
        unsigned = None
        if "rulesSource" in status_of(worker):  # builds that filter before a sign-in
            while time.monotonic() < configured + 300:
                if status_of(worker).get("rulesSource") == "unsigned":
                    unsigned = round(time.monotonic() - configured, 2)
                    break
                time.sleep(0.1)
        page = context.new_page()
        page.goto(worker.url.rsplit("/", 1)[0] + "/popup.html")
        page.get_by_label("User name").fill(user)
        page.get_by_label("Password").fill(PASSWORD)
        clicked = time.monotonic()
        page.get_by_role("button", name="Sign in").click()
        deadline = clicked + 300
        while time.monotonic() < deadline:
            status = status_of(worker)
            if status.get("rulesVersion") and status.get("rulesSource", "signed") == "signed":
                break
            page.wait_for_timeout(100)
        installed = time.monotonic() - clicked
        rules = worker.evaluate("() => chrome.declarativeNetRequest.getDynamicRules()")
        domains = sum(len(r["condition"].get("requestDomains", [])) for r in rules) // 2
        page.wait_for_timeout(2000)
        heap = sw_heap_mb(context)
        rss = extension_rss_mb(profile)
        # stop the worker and wake it, as Chrome does after 30 s idle
        cdp = context.new_cdp_session(page)
        cdp.send("ServiceWorker.enable")
        cdp.send("ServiceWorker.stopAllWorkers")
        page.wait_for_timeout(1000)
        woke = time.monotonic()
        page.reload()
        page.get_by_role("heading").first.wait_for()
        worker = context.service_workers[-1]
        status_of(worker)
        wake = time.monotonic() - woke
        page.wait_for_timeout(1500)
        heap_wake = sw_heap_mb(context)
        return {"ready_s": round(ready, 2), "unsigned_install_s": unsigned,
                "install_s": round(installed, 2),
                "dynamic_rules": len(rules), "domains": domains, "sw_heap_mb": heap,
                "sw_heap_wake_mb": heap_wake, "wake_s": round(wake, 2), "rss_mb": rss}
    finally:
        context.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--extension", action="append", type=Path, required=True)
    parser.add_argument("--domains", type=int, default=195_540)
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/0")
    args = parser.parse_args(argv)
    keys = Keys(prefix=f"esafety-bench-{uuid.uuid4().hex[:8]}:")
    work = Path(tempfile.mkdtemp(prefix="esafety-ext-bench-"))
    admin = None
    try:
        config = write_config(work / "esafety.yaml", keys.prefix)
        data = work / "data"
        esafety(config, data, args.redis, "lists", "import", str(write_lists(work, args.domains)),
                "--source", "bench")
        users = [f"bench{n}" for n in range(len(args.extension))]

        async def make_users() -> None:
            client = connect(args.redis)
            for name in users:
                await create_user(client, keys, name, "learner", "learner", PASSWORD)
            await client.aclose()

        asyncio.run(make_users())
        admin = AdminProcess(config, data, args.redis).start(timeout=120)
        with sync_playwright() as playwright:
            for user, extension in zip(users, args.extension, strict=True):
                figures = measure(playwright, extension.resolve(), admin.url, user,
                                  work / f"profile-{user}")
                print(json.dumps({"extension": str(extension), **figures}), flush=True)
    finally:
        if admin is not None:
            admin.stop()
        client = sync_redis.Redis.from_url(args.redis)
        for key in client.scan_iter(match=keys.prefix + "*"):
            client.delete(key)
        client.close()
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
