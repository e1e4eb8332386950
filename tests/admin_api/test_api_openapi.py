"""The OpenAPI document matches the router; schemathesis fuzzes ``esafety admin`` (started as a
subprocess, with accounts made by ``esafety users``) and no input may cause a 5xx."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from admin_api.openapi import build_document
from admin_api.roles import allowed_roles
from esafety.embedded_redis import free_port
from store.keys import Keys
from store.records import ROLES
from tests.harness.api import Api

REPO = Path(__file__).resolve().parent.parent.parent
EXAMPLES_PER_OPERATION = 25
SKIPPED = {("POST", "/api/v1/auth/logout"), ("POST", "/api/v1/auth/revoke-tokens")}
"""They end the fuzzer's own session; test_api_auth covers them."""


async def test_every_route_is_documented_and_nothing_else(api: Api) -> None:
    router = set()
    handlers = {}
    for route in api.client.server.app.router.routes():  # type: ignore[union-attr]
        if route.method == "HEAD":
            continue
        path = route.resource.canonical  # type: ignore[union-attr]
        router.add((route.method, path))
        handlers[(route.method, path)] = route.handler
    document = build_document()
    documented = {(method.upper(), path) for path, item in document["paths"].items()
                  for method in item}
    assert router - documented == set(), "routes missing from the OpenAPI document"
    assert documented - router == set(), "documented operations the app does not have"
    for (method, path), handler in handlers.items():
        operation = document["paths"][path][method.lower()]
        declared = allowed_roles(handler)
        expected = ["public"] if declared is None else [r for r in ROLES if r in declared]
        assert operation["x-roles"] == expected, (method, path)
    status, served = await api.call("GET", "/api/v1/openapi.json")
    assert status == 200 and served["paths"].keys() == document["paths"].keys()


def _esafety(env: dict[str, str], *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "esafety.cli", *args], input=stdin, env=env,
                          capture_output=True, text=True, timeout=60, cwd=REPO)


@pytest.fixture
def admin_process(redis_url: str, keys: Keys, tmp_path: Path) -> Iterator[tuple[str, dict[str, str]]]:
    config = tmp_path / "esafety.yaml"
    config.write_text(f"redis_prefix: \"{keys.prefix}\"\n")
    env = {**os.environ, "ESAFETY_CONFIG": str(config), "ESAFETY_DATA_DIR": str(tmp_path / "data"),
           "ESAFETY_REDIS_URL": redis_url}
    port = free_port()
    # the server's log goes to a file: an unread pipe would fill up and stall the server
    log = (tmp_path / "admin.log").open("wb")
    process = subprocess.Popen([sys.executable, "-m", "esafety.cli", "admin", "--listen",
                                f"127.0.0.1:{port}"], env=env, cwd=REPO,
                               stdout=subprocess.DEVNULL, stderr=log)
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):
            try:
                with urllib.request.urlopen(f"{base}/readyz", timeout=1) as response:
                    if response.status == 200:
                        break
            except OSError:
                if process.poll() is not None:
                    raise RuntimeError((tmp_path / "admin.log").read_text()) from None
                time.sleep(0.05)
        yield base, env
    finally:
        process.terminate()
        process.wait(timeout=15)
        log.close()


def _login(base: str, name: str, password: str) -> str:
    request = urllib.request.Request(f"{base}/api/v1/auth/login", method="POST",
                                     data=json.dumps({"username": name,
                                                      "password": password}).encode(),
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return str(json.loads(response.read())["token"])


def test_cli_user_commands_and_the_admin_server(admin_process: tuple[str, dict[str, str]],
                                                tmp_path: Path) -> None:
    base, env = admin_process
    done = _esafety(env, "users", "add", "head.it", "--role", "admin", "--password-stdin",
                    stdin="a long admin password\n")
    assert done.returncode == 0, done.stderr
    learners = tmp_path / "learners.csv"
    learners.write_text("username,password,role,group\nlearner.a,first password,,\n"
                        "learner.b,,,\nteacher.c,third password,staff,\n")
    done = _esafety(env, "users", "import", str(learners))
    assert done.returncode == 0, done.stderr
    generated = {line.split("\t")[0]: line.split("\t")[3] for line in done.stdout.splitlines()
                 if line.count("\t") == 3}
    assert list(generated) == ["learner.b"] and len(generated["learner.b"]) >= 12
    done = _esafety(env, "users", "list", "--json")
    users = {u["name"]: (u["role"], u["group"]) for u in json.loads(done.stdout)}
    assert users == {"head.it": ("admin", "staff"), "learner.a": ("learner", "learner"),
                     "learner.b": ("learner", "learner"), "teacher.c": ("staff", "staff")}
    bad = tmp_path / "bad.csv"
    bad.write_text("username,role\nok.user,learner\nbad user,wizard\n")
    done = _esafety(env, "users", "import", str(bad))
    assert done.returncode == 2 and "line 3" in done.stderr
    assert "ok.user" not in _esafety(env, "users", "list").stdout  # nothing half-imported

    token = _login(base, "learner.b", generated["learner.b"])
    assert token
    assert _esafety(env, "users", "revoke-tokens", "learner.b").returncode == 0
    assert _esafety(env, "users", "disable", "learner.a").returncode == 0
    with pytest.raises(urllib.error.HTTPError) as refused:
        _login(base, "learner.a", "first password")
    assert refused.value.code == 401


def test_schemathesis_finds_no_server_errors(admin_process: tuple[str, dict[str, str]],
                                            security_figures: dict[str, str]) -> None:
    base, env = admin_process
    password = "fuzzing admin password"
    done = _esafety(env, "users", "add", "fuzz-admin", "--role", "admin", "--password-stdin",
                    stdin=password + "\n")
    assert done.returncode == 0, done.stderr
    token = _login(base, "fuzz-admin", password)
    with urllib.request.urlopen(f"{base}/api/v1/openapi.json", timeout=10) as response:
        document = json.loads(response.read())
    schema = schemathesis.from_dict(document, base_url=base)
    tried = 0
    failures: list[str] = []
    operations = 0
    for result in schema.get_all_operations():
        operation = result.ok()
        if (operation.method.upper(), operation.path) in SKIPPED:
            continue
        operations += 1

        @settings(max_examples=EXAMPLES_PER_OPERATION, deadline=None, database=None,
                  phases=[Phase.explicit, Phase.generate],
                  suppress_health_check=list(HealthCheck))
        @given(case=operation.as_strategy(), data=st.data())
        def run(case: schemathesis.Case, data: st.DataObject) -> None:
            nonlocal tried
            tried += 1
            response = case.call(headers={"Authorization": f"Bearer {token}"}, timeout=30)
            if response.status_code >= 500:
                failures.append(f"{case.method} {case.formatted_path} -> "
                                f"{response.status_code}: {response.text[:200]}")

        run()
    print(f"schemathesis: {tried} inputs over {operations} operations")
    security_figures["fuzz inputs: admin API (schemathesis)"] = (
        f"{tried} inputs over {operations} operations, {len(failures)} server errors")
    assert operations >= 35
    assert failures == []
