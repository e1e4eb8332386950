"""The process ``esafety up`` becomes once it has prepared everything.

``esafety up`` runs as the full command line (every package imported, about 100 MB): it binds
the two public ports, starts the embedded Redis, makes the CA, records the endpoints and works
out the start-up notice. Then it replaces itself (``exec``, same process id) with this small
supervisor, which imports only the standard library and :mod:`deployment`'s light modules. It
reads its :class:`UpPlan` from a pipe (never from its command line or environment, which
other users can read: the children's environment names the Redis credentials), starts the
children, restarts any that dies, and at the end removes the endpoints file and stops the
embedded Redis.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from deployment.endpoints import remove_endpoints
from deployment.json_logging import configure_logging
from esafety.supervisor import BOOTSTRAP, PACKAGE_ROOT, Child, ReadyNotice, Supervisor

log = logging.getLogger("esafety.supervisor")

SETTINGS_COMMAND_TIMEOUT = 60.0
REDIS_STOP_TIMEOUT = 10.0


@dataclass(frozen=True)
class ChildSpec:
    name: str
    argv: list[str]
    env: dict[str, str]
    pass_fds: list[int] = field(default_factory=list)


@dataclass(frozen=True)
class UpPlan:
    """Everything the supervisor of ``esafety up`` needs, worked out before it starts."""

    children: list[ChildSpec]
    data_dir: str
    notice_text: str
    notice_services: list[tuple[str, int]]
    watched: str | None = None
    """A settings file: when it changes, every child restarts to read it."""
    on_settings_changed: list[str] | None = None
    """A command run (while the children are stopped) when ``watched`` changes."""
    settings_env: dict[str, str] = field(default_factory=dict)
    redis_pid: int | None = None
    """The embedded Redis (a child of this process), stopped at the end."""
    listen_fds: list[int] = field(default_factory=list)
    log_level: str = "info"
    log_format: str = "json"

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @staticmethod
    def from_json(text: str) -> UpPlan:
        data = json.loads(text)
        data["children"] = [ChildSpec(**c) for c in data["children"]]
        data["notice_services"] = [(str(h), int(p)) for h, p in data["notice_services"]]
        return UpPlan(**data)


def become_up_supervisor(plan: UpPlan) -> None:
    """Replace this process with the supervisor of ``plan``; returns only if that fails."""
    read_end, write_end = os.pipe()
    payload = plan.to_json().encode()
    try:
        # Written before the exec: the plan is small, far below a pipe's buffer.
        with os.fdopen(write_end, "wb") as pipe:
            pipe.write(payload)
    except BaseException:
        os.close(read_end)
        raise
    for fd in (read_end, *plan.listen_fds):
        os.set_inheritable(fd, True)
    sys.stdout.flush()
    sys.stderr.flush()
    logging.shutdown()
    # This interpreter again, with a fixed bootstrap and this module: no shell, no input.
    os.execv(sys.executable, [sys.executable, "-P", "-c", BOOTSTRAP, PACKAGE_ROOT,  # noqa: S606
                              __name__, str(read_end)])


def _read_plan(fd: int) -> UpPlan:
    with os.fdopen(fd, "rb") as pipe:
        return UpPlan.from_json(pipe.read().decode())


def _stop_pid(pid: int, timeout: float) -> None:
    """Stop a child of this process that no Popen object knows any more."""
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            done, _status = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            return
        if done:
            return
        time.sleep(0.05)
    log.error("embedded Redis (pid %d) did not stop in time; killing it", pid)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)


def run_plan(plan: UpPlan) -> int:
    children = [Child(c.name, c.argv, c.env, tuple(c.pass_fds)) for c in plan.children]

    def settings_changed() -> None:
        if plan.on_settings_changed:
            subprocess.run(plan.on_settings_changed, env=plan.settings_env,
                           stdin=subprocess.DEVNULL, timeout=SETTINGS_COMMAND_TIMEOUT,
                           check=False)

    try:
        return Supervisor(children, watched=Path(plan.watched) if plan.watched else None,
                          on_tick=ReadyNotice(plan.notice_services, plan.notice_text),
                          on_settings_changed=settings_changed).run()
    finally:
        remove_endpoints(Path(plan.data_dir), pid=os.getpid())
        for fd in plan.listen_fds:
            try:
                os.close(fd)
            except OSError:
                pass
        if plan.redis_pid is not None:
            _stop_pid(plan.redis_pid, REDIS_STOP_TIMEOUT)


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    plan = _read_plan(int(args[0]))
    configure_logging("supervisor", plan.log_level, plan.log_format)
    return run_plan(plan)


if __name__ == "__main__":
    sys.exit(main())
