"""Run several esafety processes together, restart any that dies, stop all on a signal.

Used by ``esafety proxy --workers N`` (N workers on one inherited port) and by the process
``esafety up`` becomes once it has prepared everything (:mod:`esafety.up_supervisor_process`).
It imports nothing but the standard library, so a supervisor holds little memory.
"""

from __future__ import annotations

import ctypes
import logging
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType

log = logging.getLogger("esafety.supervisor")

RESTART_BACKOFF_MAX = 10.0

EXIT_CONFIG = 2
"""A child's exit code for a problem a restart cannot fix (its port is taken, bad config):
the supervisor stops everything and exits with it instead of restarting in a loop."""

PACKAGE_ROOT = str(Path(__file__).resolve().parent.parent)
"""The folder holding the esafety packages, from this file's own location."""

BOOTSTRAP = ("import sys, importlib; sys.path.insert(0, sys.argv.pop(1)); "
             "sys.exit(importlib.import_module(sys.argv.pop(1)).main())")
"""How a child starts: ``python -P -c BOOTSTRAP PACKAGE_ROOT MODULE args...`` imports esafety
from PACKAGE_ROOT whatever the working directory (``-P``: never from the working directory),
then runs MODULE's ``main`` with ``args``."""


@dataclass
class Child:
    name: str
    argv: list[str]
    env: dict[str, str]
    pass_fds: tuple[int, ...] = ()
    process: subprocess.Popen[bytes] | None = None
    started_at: float = 0.0
    backoff: float = field(default=0.5)

    def start(self) -> None:
        self.process = subprocess.Popen(self.argv, env=self.env, stdin=subprocess.DEVNULL,
                                        pass_fds=self.pass_fds,
                                        preexec_fn=die_with_parent(os.getpid()))
        self.started_at = time.monotonic()
        log.info("started %s (pid %d)", self.name, self.process.pid)


PR_SET_PDEATHSIG = 1


def die_with_parent(parent: int) -> Callable[[], None] | None:
    """On Linux, a function for ``preexec_fn`` that has the kernel send the child SIGTERM
    when its parent dies, even by SIGKILL: no orphaned worker goes on serving the inherited
    port, and no orphaned embedded Redis keeps the data directory, with nobody to stop them.
    The kernel watches the thread that started the child: start it from the main thread."""
    if not sys.platform.startswith("linux"):
        return None
    libc = ctypes.CDLL(None, use_errno=True)

    def arrange() -> None:
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
        if os.getppid() != parent:  # the supervisor died before the call took effect
            os._exit(1)

    return arrange


class Supervisor:
    def __init__(self, children: Sequence[Child], watched: Path | None = None,
                 on_tick: Callable[[], None] | None = None,
                 on_settings_changed: Callable[[], None] | None = None) -> None:
        """``watched``: a settings file; when it changes, every child is restarted to read it,
        and ``on_settings_changed`` runs while they are stopped. ``on_tick`` is called every
        turn of the watch loop (esafety up announces itself from there once its services
        answer); it must return quickly."""
        self.on_settings_changed = on_settings_changed
        self.children = list(children)
        self.on_tick = on_tick
        self._stopping = False
        self.watched = watched
        """A settings file: when it changes, every child is restarted to read it."""
        self._watched_stamp = _file_stamp(watched)

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        self._stopping = True

    def run(self) -> int:
        """Run until a signal (exit 0) or a child fails with :data:`EXIT_CONFIG` (exit 2)."""
        previous = {s: signal.signal(s, self._on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
        status = 0
        try:
            for child in self.children:
                child.start()
            while not self._stopping:
                time.sleep(0.2)
                self._restart_if_settings_changed()
                if self.on_tick is not None and not self._stopping:
                    self.on_tick()
                for child in self.children:
                    assert child.process is not None
                    code = child.process.poll()
                    if code is None or self._stopping:
                        continue
                    if code == EXIT_CONFIG:
                        log.critical("%s cannot run (exit %d, see its message above); stopping "
                                     "everything instead of restarting it", child.name, code)
                        self._stopping = True
                        status = EXIT_CONFIG
                        break
                    lived = time.monotonic() - child.started_at
                    child.backoff = 0.5 if lived > 30 else min(RESTART_BACKOFF_MAX,
                                                               child.backoff * 2)
                    log.error("%s exited with %s; restarting in %.1fs", child.name, code,
                              child.backoff)
                    time.sleep(child.backoff)
                    child.start()
        finally:
            self.stop()
            for s, handler in previous.items():
                signal.signal(s, handler)
        return status

    def _restart_if_settings_changed(self) -> None:
        stamp = _file_stamp(self.watched)
        if stamp == self._watched_stamp or self._stopping:
            return
        self._watched_stamp = stamp
        log.info("%s changed: restarting the services to use it", self.watched)
        self.stop()
        if self.on_settings_changed is not None:
            try:
                self.on_settings_changed()
            except Exception:  # the services must come back whatever happened
                log.exception("applying the changed settings failed")
        for child in self.children:
            child.start()

    def stop(self, timeout: float = 15.0) -> None:
        for child in self.children:
            if child.process is not None and child.process.poll() is None:
                child.process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for child in self.children:
            if child.process is None:
                continue
            try:
                child.process.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.error("%s did not stop in time; killing it", child.name)
                child.process.kill()
                child.process.wait()


def _file_stamp(path: Path | None) -> tuple[int, int, int] | None:
    try:
        found = path.stat() if path is not None else None
    except OSError:
        return None
    return (found.st_mtime_ns, found.st_size, found.st_ino) if found is not None else None


def _answers(host: str, port: int, path: str) -> bool:
    url = f"http://{f'[{host}]' if ':' in host else host}:{port}{path}"
    try:
        with urllib.request.urlopen(url, timeout=0.5) as response:
            return int(response.status) == 200
    except (OSError, ValueError):
        return False


class ReadyNotice:
    """Prints ``text`` (the "what now" block) once, when every one of ``services`` (host,
    port) answers /healthz, or after ``patience`` seconds in any case."""

    def __init__(self, services: Sequence[tuple[str, int]], text: str,
                 patience: float = 60.0) -> None:
        self.services = list(services)
        self.text = text
        self.deadline = time.monotonic() + patience
        self.printed = False

    def __call__(self) -> None:
        if self.printed:
            return
        waiting = [s for s in self.services if not _answers(*s, "/healthz")]
        self.services = waiting
        if waiting and time.monotonic() < self.deadline:
            return
        self.printed = True
        try:
            sys.stdout.write(self.text)
            sys.stdout.flush()
        except OSError as exc:  # nobody reads the output (a closed pipe): keep serving
            log.warning("cannot print the start-up summary: %s", exc)

