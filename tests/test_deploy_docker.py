"""The container deployment: the compose file validates against the Compose Specification,
and the image's entrypoint commands work when run directly (no Docker engine here)."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from tests.proxy_harness import free_port

REPO = Path(__file__).resolve().parent.parent
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
    redis_command = " ".join(services["redis"]["command"])
    assert "--appendonly yes" in redis_command and "--appendfsync everysec" in redis_command
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
