"""Idle tunnels and memory at start, for ``bench/proxy.py`` (its ``concurrency`` and
``startup_memory`` workloads).

A centre's browsers keep many HTTPS connections open and idle: 500 learners with 20 each is
10,000 sockets. The concurrency workload opens that many tunnels through a proxy, each a
``CONNECT``, a TLS handshake with the origin through it and one request (so that every proxy
has connected upstream, as it has for a browser's idle keep-alive connection), and leaves
them open. It reports the proxy's resident memory per idle tunnel (its whole process tree,
before and after, divided by the tunnels that stayed open) and the p50 and p99 of a request on
a fresh connection with none open and with all of them open.

Memory at start is the resident and proportional set size of a whole deployment's process
tree once it answers (``esafety up``: the supervisor, the admin service, the proxy's
supervisor and workers, and the embedded Redis), with a line per process.
"""

from __future__ import annotations

import asyncio
import resource
import ssl
import time
from collections.abc import Sequence
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path

OPEN_AT_ONCE = 64
"""Tunnels being opened at the same time (the rest wait their turn)."""
STEP_TIMEOUT = 30.0
SPARE_DESCRIPTORS = 600
"""Descriptors a proxy keeps for its own files, listeners and Redis besides its tunnels."""


def raise_descriptor_limit() -> int:
    """Raise this process's soft limit on open files to the hard limit (children inherit it);
    return the limit now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY:
        hard = 1_048_576
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


def tunnels_possible(wanted: int, limit: int) -> int:
    """How many tunnels fit: a proxy holds two sockets per tunnel (client and upstream)."""
    return max(0, min(wanted, (limit - SPARE_DESCRIPTORS) // 2))


def _status_kb(pid: int, field_name: str) -> int:
    with suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field_name + ":"):
                return int(line.split()[1])
    return 0


def _pss_kb(pid: int) -> int:
    with suppress(OSError):
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1])
    return 0


def _command(pid: int) -> str:
    """A short name for a process: the esafety subcommand (and worker id), or the program."""
    with suppress(OSError):
        words = [p.decode(errors="replace")
                 for p in Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0") if p]
        if "esafety.up_supervisor_process" in words:
            return "esafety up (supervisor)"
        for name in ("up", "proxy", "admin"):
            if name in words:
                worker = (f" worker {words[words.index('--worker-id') + 1]}"
                          if "--worker-id" in words else "")
                return f"esafety {name}{worker}"
        return " ".join([Path(words[0]).name, *words[1:3]]) if words else ""
    return ""


@dataclass
class ProcessMemory:
    pid: int
    command: str
    rss_kb: int
    pss_kb: int


def tree_memory(pids: Sequence[int]) -> list[ProcessMemory]:
    """Resident and proportional set size of each process in ``pids``."""
    return [ProcessMemory(pid, _command(pid), _status_kb(pid, "VmRSS"), _pss_kb(pid))
            for pid in pids]


@dataclass
class IdleRun:
    wanted: int
    opened: int = 0
    failed: int = 0
    still_open: int = 0
    open_seconds: float = 0.0
    rss_before_kb: int = 0
    rss_after_kb: int = 0
    pss_before_kb: int = 0
    pss_after_kb: int = 0
    fresh_none_ms: list[float] = field(default_factory=list)
    fresh_open_ms: list[float] = field(default_factory=list)
    first_error: str = ""

    def as_dict(self) -> dict[str, object]:
        def pct(values: list[float], q: float) -> float | None:
            if not values:
                return None
            ordered = sorted(values)
            return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 3)

        per = self.still_open or 1
        p99_none, p99_open = pct(self.fresh_none_ms, 0.99), pct(self.fresh_open_ms, 0.99)
        return {
            "tunnels_wanted": self.wanted,
            "tunnels_open": self.still_open,
            "tunnels_failed": self.failed,
            "open_seconds": round(self.open_seconds, 1),
            "rss_before_mb": round(self.rss_before_kb / 1024, 1),
            "rss_after_mb": round(self.rss_after_kb / 1024, 1),
            "rss_kb_per_tunnel": round((self.rss_after_kb - self.rss_before_kb) / per, 2),
            "pss_kb_per_tunnel": round((self.pss_after_kb - self.pss_before_kb) / per, 2),
            "fresh_p50_ms_none_open": pct(self.fresh_none_ms, 0.5),
            "fresh_p99_ms_none_open": p99_none,
            "fresh_p50_ms_all_open": pct(self.fresh_open_ms, 0.5),
            "fresh_p99_ms_all_open": p99_open,
            "p99_ratio": (round(p99_open / p99_none, 2) if p99_none and p99_open is not None
                          else None),
            "first_error": self.first_error,
        }


class Tunnel:
    """One open tunnel: CONNECT, TLS with the origin through it, one request answered."""

    def __init__(self, writer: asyncio.StreamWriter) -> None:
        self.writer = writer

    def alive(self) -> bool:
        return not self.writer.is_closing() and not self.writer.transport.is_closing()

    def close(self) -> None:
        self.writer.close()


async def _read_head(reader: asyncio.StreamReader) -> bytes:
    return await reader.readuntil(b"\r\n\r\n")


async def open_tunnel(proxy_port: int, host: str, port: int, context: ssl.SSLContext
                      ) -> Tunnel:
    reader, writer = await asyncio.open_connection("127.0.0.1", proxy_port)
    try:
        writer.write(f"CONNECT {host}:{port} HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n".encode())
        head = await _read_head(reader)
        if b" 200 " not in head.split(b"\r\n", 1)[0] + b" ":
            raise ConnectionError("CONNECT refused: " + head.split(b"\r\n", 1)[0].decode())
        await writer.start_tls(context, server_hostname=host)
        writer.write(f"GET /idle HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
        head = await _read_head(reader)
        length = 0
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        await reader.readexactly(length)
        if not head.startswith(b"HTTP/1.1 200"):
            raise ConnectionError("origin answered " + head.split(b"\r\n", 1)[0].decode())
    except BaseException:
        writer.close()
        raise
    return Tunnel(writer)


async def fresh_latencies(proxy_port: int, host: str, port: int, context: ssl.SSLContext,
                          samples: int) -> list[float]:
    """Milliseconds for a request on a fresh connection (CONNECT, TLS, GET, answer), one at a
    time."""
    out: list[float] = []
    for _ in range(samples):
        start = time.perf_counter()
        tunnel = await asyncio.wait_for(open_tunnel(proxy_port, host, port, context),
                                        STEP_TIMEOUT)
        out.append((time.perf_counter() - start) * 1000)
        tunnel.close()
    return out


async def idle_run(proxy_port: int, host: str, port: int, ca_file: Path, count: int,
                   tree_pids: Sequence[int], samples: int = 200) -> IdleRun:
    """Open ``count`` idle tunnels through the proxy and measure what they cost it."""
    context = ssl.create_default_context(cafile=str(ca_file))
    run = IdleRun(wanted=count)
    run.fresh_none_ms = await fresh_latencies(proxy_port, host, port, context, samples)
    await asyncio.sleep(1.0)
    before = tree_memory(tree_pids)
    run.rss_before_kb = sum(p.rss_kb for p in before)
    run.pss_before_kb = sum(p.pss_kb for p in before)
    tunnels: list[Tunnel] = []
    gate = asyncio.Semaphore(OPEN_AT_ONCE)

    async def one() -> None:
        async with gate:
            try:
                tunnels.append(await asyncio.wait_for(
                    open_tunnel(proxy_port, host, port, context), STEP_TIMEOUT))
            except (OSError, TimeoutError, ConnectionError, ssl.SSLError,
                    asyncio.IncompleteReadError, asyncio.LimitOverrunError) as exc:
                run.failed += 1
                if not run.first_error:
                    run.first_error = f"{type(exc).__name__}: {exc}"[:300]

    start = time.perf_counter()
    await asyncio.gather(*(one() for _ in range(count)))
    run.open_seconds = time.perf_counter() - start
    run.opened = len(tunnels)
    try:
        await asyncio.sleep(2.0)  # let the proxy settle (buffers released, tasks parked)
        after = tree_memory(tree_pids)
        run.rss_after_kb = sum(p.rss_kb for p in after)
        run.pss_after_kb = sum(p.pss_kb for p in after)
        run.fresh_open_ms = await fresh_latencies(proxy_port, host, port, context, samples)
        run.still_open = sum(1 for t in tunnels if t.alive())
    finally:
        for tunnel in tunnels:
            tunnel.close()
        await asyncio.sleep(0.5)
    return run

