"""Run one proxy worker: mitmproxy's DumpMaster with the esafety addons, in flow order
identify → decide/enforce → safe search → search watch → log."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mitmproxy import master, options
from mitmproxy.addons import (
    core,
    disable_h2c,
    errorcheck,
    next_layer,
    onboarding,
    proxyserver,
    script,
    tlsconfig,
)
from mitmproxy.proxy import mode_specs

from esafety.instance import Instance
from proxy_addons.enforce import Enforce
from proxy_addons.forward_headers import ForwardHeaders
from proxy_addons.hitlog import HitQueue, Spool
from proxy_addons.identify import Identify
from proxy_addons.policy_sync import PolicySync
from proxy_addons.safe_search import SafeSearch
from proxy_addons.search_watch import SearchWatch
from proxy_addons.service import ProxyService
from proxy_addons.tunnel_contents import TunnelContents
from proxy_addons.tunnel_front import FrontListener, Handover, TunnelFront, make_upstream_resolver
from proxy_addons.upstream_guard import UpstreamGuard, redis_ports
from store.connection import connect
from store.hits import HitWriter
from store.keys import Keys

log = logging.getLogger("esafety.proxy")


def split_listen(text: str, default_port: int) -> tuple[str, int]:
    """``HOST:PORT``, ``:PORT`` or ``[v6]:PORT`` to (host, port); host "" means all."""
    host, sep, port = text.rpartition(":")
    if not sep:
        return text, default_port
    host = host.strip("[]")
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"{text!r} is not HOST:PORT")
    return host, int(port)


def ca_dir(instance: Instance) -> Path:
    return instance.data_dir / "ca"


def protect_ca(directory: Path) -> None:
    """Keep the CA's private key files readable by the owner only."""
    for path in directory.glob("mitmproxy-*"):
        if path.suffix in (".pem", ".p12") and "cert" not in path.name:
            path.chmod(0o600)
    directory.chmod(0o700)


@dataclass
class WorkerSettings:
    listen: str = ":8080"
    status_listen: str | None = "127.0.0.1:9180"
    worker: str = "0"
    scripts: Sequence[str] = ()
    mitm_options: dict[str, str] = field(default_factory=dict)
    reuse_port: bool = False
    fast_path: bool = True
    """Answer pass-through CONNECT tunnels in the front (see proxy_addons.tunnel_front)."""


async def run_worker(instance: Instance, settings: WorkerSettings) -> int:
    config = instance.config
    data_dir = instance.ensure_data_dir()
    keys = Keys(config.redis_prefix)
    redis = connect(instance.redis_url) if instance.redis_url else None
    if redis is None:
        log.warning("no Redis configured: filtering works, but hits are only spooled locally "
                    "and overrides are not applied")
    writer = (HitWriter(redis, keys, hits_days=config.retention_hits_days,
                        counters_days=config.retention_counters_days) if redis else None)
    spool = Spool(data_dir / "spool" / f"hits-{settings.worker}.log")
    hits = HitQueue(spool, writer.write_batch if writer else None,
                    worker_id=f"{os.uname().nodename}-{settings.worker}")
    identify = Identify(config, redis, keys)
    policy_sync = PolicySync(instance, redis, keys)
    enforce = Enforce(config, identify, policy_sync, hits)
    status = (split_listen(settings.status_listen, 9180) if settings.status_listen else None)
    guard = UpstreamGuard(config.upstream, enforce, own_ports(instance, settings))
    service = ProxyService(policy_sync, hits, enforce, identify, status, settings.worker)

    host, port = split_listen(settings.listen, 8080)
    confdir = ca_dir(instance)
    confdir.mkdir(parents=True, exist_ok=True, mode=0o700)
    use_front = settings.fast_path and settings.mitm_options.get("mode", "regular") == "regular"
    # With the fast path, mitmproxy listens on a private loopback port and the front owns the
    # public address; anything reaching mitmproxy directly is still fully filtered.
    opts = options.Options(listen_host="127.0.0.1" if use_front else host,
                           listen_port=0 if use_front else port, confdir=str(confdir))
    proxy = master.Master(opts)
    # Only the mitmproxy addons a filtering proxy needs. Every hook (a dozen per tunnel) is
    # offered to every addon, so mitmdump's forty-odd defaults cost measurable CPU per tunnel.
    server_addon = proxyserver.Proxyserver()  # type: ignore[no-untyped-call]
    proxy.addons.add(  # type: ignore[no-untyped-call]
        core.Core(), server_addon, next_layer.NextLayer(), tlsconfig.TlsConfig(),
        disable_h2c.DisableH2C(), onboarding.Onboarding(),  # type: ignore[no-untyped-call]
        script.ScriptLoader(), errorcheck.ErrorCheck())  # type: ignore[no-untyped-call]
    front_listener = None
    if use_front:
        front = TunnelFront(identify, enforce, _handover_to(server_addon),
                            make_upstream_resolver(proxy.addons), guard)
        front_listener = FrontListener(front, host, port, settings.reuse_port)
        service.front = front
    proxy.addons.add(  # type: ignore[no-untyped-call]
                      identify, policy_sync, enforce, guard,
                      SafeSearch(config.safe_search, config.youtube_restrict),
                      SearchWatch(tuple(config.alerts.get("prevent_watch_terms", [])), enforce),
                      service, *([front_listener] if front_listener else []),
                      TunnelContents(enforce),
                      ForwardHeaders())  # last: nothing after it adds a header
    updates: dict[str, object] = {
        "connection_strategy": "lazy",
        # Never relay client bytes as raw TCP (see proxy_addons.tunnel_contents).
        "rawtcp": False,
        "scripts": list(settings.scripts),
    }
    updates.update(settings.mitm_options)
    opts.update(**updates)  # type: ignore[no-untyped-call]
    if settings.reuse_port and not use_front:
        _enable_reuse_port()

    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, proxy.shutdown)
    try:
        await proxy.run()
    finally:
        protect_ca(confdir)
        if redis is not None:
            await redis.aclose()
    if front_listener is not None and front_listener.failed:
        return 1
    return 0


STATUS_PORT_SPAN = max(16, 2 * (os.cpu_count() or 1))
"""Worker i answers status on the configured port + i; this many of them are protected."""


def own_ports(instance: Instance, settings: WorkerSettings) -> set[int]:
    """The deployment's own listening ports, never an upstream destination: Redis, the admin
    API, every worker's status port, and the proxy's own."""
    config = instance.config
    ports = redis_ports(instance.redis_url)
    listens = [config.admin_listen, config.proxy_listen, settings.listen]
    for text in listens:
        with contextlib.suppress(ValueError):
            ports.add(split_listen(text, 0)[1])
    bases = []
    with contextlib.suppress(ValueError):
        bases.append(split_listen(config.proxy_status_listen, 9180)[1])
    if settings.status_listen:
        with contextlib.suppress(ValueError):
            own = split_listen(settings.status_listen, 9180)[1]
            bases.append(own - int(settings.worker) if settings.worker.isdigit() else own)
    for base in bases:
        ports.update(p for p in range(base, base + STATUS_PORT_SPAN) if p < 65536)
    ports.discard(0)
    return ports


def _handover_to(server_addon: proxyserver.Proxyserver) -> Handover:
    """Give a connection to mitmproxy's regular-mode server, as if it had accepted it."""

    async def handover(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        for instance in server_addon.servers:
            if isinstance(instance.mode, mode_specs.RegularMode):
                await instance.handle_stream(reader, writer)
                return
        writer.close()

    return handover


def _enable_reuse_port() -> None:
    """Let several workers listen on one port; the kernel spreads connections between them.

    mitmproxy has no option for SO_REUSEPORT, and it creates its listening sockets with
    ``asyncio.start_server``; in a worker process that call defaults to ``reuse_port=True``.
    """
    original = asyncio.start_server

    async def start_server(*args: Any, **kwargs: Any) -> asyncio.Server:
        kwargs.setdefault("reuse_port", True)
        return await original(*args, **kwargs)

    asyncio.start_server = start_server
