"""The container deployment: the compose file validates against the Compose Specification,
and the image's entrypoint commands work when run directly (no Docker engine here)."""

from __future__ import annotations

import asyncio
import json
import os
import shlex
import socket
import subprocess
import sys
import time
import tomllib
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import redis as sync_redis
import yaml
from redis.backoff import NoBackoff
from redis.retry import Retry

from esafety.redis_commands import acl_template
from store import redis_acl
from store.connection import allows_anonymous_access, connect
from store.keys import Keys
from tests.harness.proxy import free_port

REPO = Path(__file__).resolve().parent.parent.parent
DOCKER = REPO / "docker"


def dockerfile_instructions() -> list[tuple[str, str]]:
    text = (DOCKER / "Dockerfile").read_text().replace("\\\n", " ")
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def final_stage() -> list[tuple[str, str]]:
    instructions = dockerfile_instructions()
    last_from = max(i for i, (word, _) in enumerate(instructions) if word == "FROM")
    return instructions[last_from:]


def test_compose_file_validates_against_the_compose_specification() -> None:
    schema = json.loads((REPO / "tests" / "fixtures" / "compose_spec.json").read_text())
    compose = yaml.safe_load((DOCKER / "compose.yaml").read_text())
    validator_class = jsonschema.validators.validator_for(schema)
    errors = sorted(validator_class(schema).iter_errors(compose), key=str)
    assert errors == [], [e.message for e in errors]
    services = compose["services"]
    assert set(services) == {"proxy", "admin", "redis"}
    start_script = (DOCKER / "redis-start.sh").read_text()
    assert "appendonly yes" in start_script and "appendfsync everysec" in start_script
    assert any(v.startswith("redis-data:") for v in services["redis"]["volumes"])
    for name in ("proxy", "admin"):
        assert any(v.startswith("esafety-data:/var/lib/esafety") for v in services[name]["volumes"])
        assert services[name]["healthcheck"]["test"][:3] == ["CMD", "esafety", "healthcheck"]
    assert set(compose["volumes"]) == {"redis-data", "esafety-data"}
    # A broken file is caught: the check is not vacuous.
    broken = dict(compose, services={"proxy": {"ports": "8080"}})
    assert list(validator_class(schema).iter_errors(broken))


def test_image_runs_as_a_non_root_user_on_a_slim_python_base_with_a_healthcheck() -> None:
    stage = final_stage()
    assert stage[0] == ("FROM", "python:3.11-slim")
    users = [rest for word, rest in stage if word == "USER"]
    assert users and users[-1] not in ("root", "0")
    assert any(word == "HEALTHCHECK" for word, _ in stage)


def test_the_image_builds_from_every_package_and_needs_no_node() -> None:
    """The build stage copies every package the project installs (a missing one would build
    an image that fails at its first import), and fetches the UI's library with the same
    checked standard-library step as `make`, not npm."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text())
    packages = {name.rstrip("*") for name in
                project["tool"]["setuptools"]["packages"]["find"]["include"]}
    instructions = dockerfile_instructions()
    copied = {rest.split()[0] for word, rest in instructions
              if word == "COPY" and not rest.startswith("--from")}
    assert packages <= copied, f"not copied into the image: {sorted(packages - copied)}"
    assert all((REPO / name / "__init__.py").is_file() for name in packages)
    runs = " ".join(rest for word, rest in instructions if word == "RUN")
    assert "python -m esafety.ui_vendor" in runs
    assert not any("node" in rest or "npm" in rest for word, rest in instructions
                   if word in ("FROM", "RUN"))


def _exec_form(rest: str) -> list[str]:
    value: list[str] = json.loads(rest[rest.index("["):])
    return value


def _image_env() -> dict[str, str]:
    env: dict[str, str] = {}
    for word, rest in final_stage():
        if word == "ENV":
            for item in shlex.split(rest):
                key, _, value = item.partition("=")
                env[key] = value
    return env


def test_entrypoint_commands_work_when_run_directly(tmp_path: Path, redis_url: str) -> None:
    stage = dict((w, r) for w, r in final_stage() if w in ("ENTRYPOINT", "CMD", "HEALTHCHECK"))
    entrypoint, command = _exec_form(stage["ENTRYPOINT"]), _exec_form(stage["CMD"])
    health = _exec_form(stage["HEALTHCHECK"])
    assert entrypoint == ["esafety"] and command == ["proxy"]
    image_env = _image_env()
    assert image_env["ESAFETY_DATA_DIR"] and image_env["ESAFETY_CONFIG"]
    # The image's own config, with this machine's free ports and Redis in place of compose's.
    config: dict[str, Any] = yaml.safe_load((DOCKER / "esafety.yaml").read_text())
    proxy_port, status_port = free_port(), free_port()
    config["listen"] = {"proxy": f"127.0.0.1:{proxy_port}", "admin": f"127.0.0.1:{free_port()}",
                        "proxy_status": f"127.0.0.1:{status_port}"}
    config["redis_url"] = redis_url
    config["redis_prefix"] = f"esafety-test-docker-{os.getpid()}:"
    config_file = tmp_path / "esafety.yaml"
    config_file.write_text(yaml.safe_dump(config))
    env = dict(os.environ, ESAFETY_DATA_DIR=str(tmp_path / "data"),
               ESAFETY_CONFIG=str(config_file), PYTHONUNBUFFERED="1")
    env.pop("ESAFETY_REDIS_URL", None)
    binary = str(Path(sys.executable).parent / entrypoint[0])
    process = subprocess.Popen([binary, *command, "--workers", "1"], env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 30
        healthy = None
        while time.monotonic() < deadline:
            healthy = subprocess.run([str(Path(sys.executable).parent / health[0]), *health[1:]],
                                     env=env, capture_output=True, text=True)
            if healthy.returncode == 0:
                break
            assert process.poll() is None, process.stdout.read().decode() if process.stdout else ""
            time.sleep(0.2)
        assert healthy is not None and healthy.returncode == 0, healthy.stderr
        assert "proxy: healthy" in healthy.stdout
    finally:
        process.terminate()
        process.wait(20)
    assert process.returncode == 0
    # Stopped: the health check now fails, as the orchestrator needs.
    stopped = subprocess.run([str(Path(sys.executable).parent / health[0]), *health[1:]],
                             env=env, capture_output=True, text=True)
    assert stopped.returncode != 0


def test_compose_redis_is_locked_with_passwords_from_docker_secrets() -> None:
    compose = yaml.safe_load((DOCKER / "compose.yaml").read_text())
    services = compose["services"]
    redis = services["redis"]
    secrets = compose["secrets"]
    assert set(secrets) == {"redis_admin_password", "redis_proxy_password"}
    assert all(set(s) == {"file"} and s["file"].startswith("./secrets/") for s in secrets.values())
    assert set(redis["secrets"]) == set(secrets)
    # No password and no unlocking on any command line; protected mode stays on.
    everything = json.dumps(compose) + (DOCKER / "redis-start.sh").read_text()
    for forbidden in ("requirepass", "--protected-mode", "protected-mode no", "nopass",
                      "REDIS_PASSWORD="):
        assert forbidden not in everything, forbidden
    assert "protected-mode yes" in (DOCKER / "redis-start.sh").read_text()
    assert redis["entrypoint"] == ["/bin/sh", "/usr/local/etc/esafety/redis-start.sh"]
    mounts = {v.split(":")[1]: v.split(":")[0] for v in redis["volumes"]}
    assert mounts["/usr/local/etc/esafety/redis-start.sh"] == "./redis-start.sh"
    assert mounts["/usr/local/etc/esafety/redis-users.acl.template"] == "./redis-users.acl.template"
    # The health check signs in without putting the password on redis-cli's command line.
    health = " ".join(redis["healthcheck"]["test"])
    assert "REDISCLI_AUTH=" in health and "-a " not in health and "--pass" not in health
    # Each esafety service signs in as its own user with its own secret, and only that one.
    for name, user in (("proxy", redis_acl.PROXY_USER), ("admin", redis_acl.ADMIN_USER)):
        env = services[name]["environment"]
        secret = f"redis_{name}_password"
        assert services[name]["secrets"] == [secret]
        assert env["ESAFETY_REDIS_PASSWORD_FILE"] == f"/run/secrets/{secret}"
        assert env["ESAFETY_REDIS_URL"] == f"redis://{user}@redis:6379/0"
    assert "redis_url" not in yaml.safe_load((DOCKER / "esafety.yaml").read_text())
    # The ACL rules come from one place: the template is what esafety generates.
    assert (DOCKER / "redis-users.acl.template").read_text() == acl_template("esafety:")


def test_compose_redis_start_script_locks_a_real_redis(tmp_path: Path) -> None:
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    admin_password, proxy_password = "admin-" + "a" * 40, "proxy-" + "p" * 40
    (secrets / "redis_admin_password").write_text(admin_password + "\n")
    (secrets / "redis_proxy_password").write_text(proxy_password)
    (tmp_path / "data").mkdir()
    port = free_port()
    env = dict(os.environ, ESAFETY_SECRETS_DIR=str(secrets),
               ESAFETY_ACL_TEMPLATE=str(DOCKER / "redis-users.acl.template"),
               ESAFETY_REDIS_CONF_DIR=str(tmp_path / "conf"), REDIS_PORT=str(port),
               REDIS_DATA_DIR=str(tmp_path / "data"), REDIS_ENTRYPOINT="")
    server = subprocess.Popen(["/bin/sh", str(DOCKER / "redis-start.sh")], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 15
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    break
            except OSError:
                assert time.monotonic() < deadline and server.poll() is None
                time.sleep(0.1)
        time.sleep(0.3)
        acl = (tmp_path / "conf" / "users.acl").read_text()
        assert admin_password not in acl and proxy_password not in acl
        assert (tmp_path / "conf" / "users.acl").stat().st_mode & 0o777 == 0o600
        cmdline = Path(f"/proc/{server.pid}/cmdline").read_bytes().decode()
        assert admin_password not in cmdline and proxy_password not in cmdline
        anonymous = sync_redis.Redis(port=port, socket_timeout=5,
                                     retry=Retry(NoBackoff(), 0))  # refused is final
        with pytest.raises(sync_redis.AuthenticationError):
            anonymous.set("esafety:overrides", "allow everything")
        proxy_file = secrets / "redis_proxy_password"

        async def as_services() -> None:
            proxy = connect(f"redis://{redis_acl.PROXY_USER}@127.0.0.1:{port}/0",
                            password_file=proxy_file)
            admin = connect(f"redis://{redis_acl.ADMIN_USER}@127.0.0.1:{port}/0",
                            password_file=secrets / "redis_admin_password")
            keys = Keys()  # the template's prefix, esafety: -> {esafety}:
            await admin.set(keys.policy_version, "4")
            assert await proxy.get(keys.policy_version) == "4"
            with pytest.raises(sync_redis.exceptions.NoPermissionError):
                await proxy.hset(keys.overrides, "x", "allow gambling")
            assert not await allows_anonymous_access(f"redis://127.0.0.1:{port}/0")
            await proxy.aclose()
            await admin.aclose()

        asyncio.run(as_services())
    finally:
        server.terminate()
        server.wait(10)
