"""Run one proxy worker: a lean mitmproxy master with the esafety pipeline
(proxy_addons.pipeline: identify → decide → respond → record), behind the tunnel front."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
from collections.abc import Sequence
from dataclasses import dataclass, field

from mitmproxy import exceptions, master, options
from mitmproxy.addons import (
    core,
    disable_h2c,
    errorcheck,
    next_layer,
    proxyserver,
    script,
    tlsconfig,
)
from mitmproxy.proxy import mode_servers
from mitmproxy.proxy import server as mitmproxy_server

from deployment.ca_certificate import CAError, ca_dir, ensure_ca, protect_ca
from deployment.instance import Instance
from deployment.listen_address import parse_listen
from deployment.listen_socket import ListenError, bind_listener, inherited_listener
from proxy_addons.hitlog import HitQueue, Spool
from proxy_addons.identify import Identify
from proxy_addons.kerberos_signin import KerberosSetupError
from proxy_addons.pipeline import build_pipeline, worker_addons
from proxy_addons.policy_sync import PolicySync
from proxy_addons.service import ProxyService
from proxy_addons.tunnel_front import (
    ConnectionHandler,
    FrontListener,
    Handover,
    TunnelFront,
    hand_over_sockets,
)
from proxy_addons.upstream_guard import redis_ports
from store.connection import connect
from store.hits import HitWriter
from store.keys import Keys
from store.probe_key import load_or_create_probe_key

log = logging.getLogger("esafety.proxy")

EXIT_CANNOT_LISTEN = 2
"""Exit code when a port cannot be listened on, or the mitmproxy options are wrong: a
configuration problem that a restart does not fix, so a supervisor must not restart the
worker in a loop."""


@dataclass
class WorkerSettings:
    listen: str = ":8080"
    status_listen: str | None = "127.0.0.1:9180"
    worker: str = "0"
    scripts: Sequence[str] = ()
    mitm_options: dict[str, str] = field(default_factory=dict)
    listen_fd: int | None = None
    """A listening socket inherited from the supervisor (``--listen-fd``) instead of binding
    ``listen``: the workers of one ``esafety proxy --workers N`` share it."""
    fast_path: bool = True
    """Answer pass-through CONNECT tunnels in the front (see proxy_addons.tunnel_front)."""


async def run_worker(instance: Instance, settings: WorkerSettings) -> int:
    # The ports first: one that is in use is one clear line and exit 2 (a supervisor then
    # stops instead of restarting), before anything else starts.
    try:
        defaults = instance.config.listen
        listen = parse_listen(settings.listen, defaults.proxy.port)
        status_address = (parse_listen(settings.status_listen, defaults.proxy_status.port)
                          if settings.status_listen else None)
        host, port = listen.host, listen.port
        status = (status_address.host, status_address.port) if status_address else None
        sock = (inherited_listener(settings.listen_fd) if settings.listen_fd is not None
                else bind_listener(host, port))
        status_sock = bind_listener(*status) if status is not None else None
    except (ListenError, ValueError) as exc:
        log.critical("%s", exc)
        return EXIT_CANNOT_LISTEN
    log.info("worker %s runs on the %s event loop", settings.worker,
             type(asyncio.get_running_loop()).__module__.split(".")[0])
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
    try:
        identify = Identify(config, redis, keys)
    except KerberosSetupError as exc:
        log.critical("%s", exc)
        if redis is not None:
            await redis.aclose()
        return EXIT_CANNOT_LISTEN
    policy_sync = PolicySync(instance, redis, keys)
    pipeline = build_pipeline(config, identify, policy_sync, hits,
                              own_ports(instance, settings),
                              probe_key=load_or_create_probe_key(data_dir))
    service = ProxyService(policy_sync, hits, pipeline.counters, identify, status,
                           settings.worker)
    service.redis_url = instance.redis_url
    service.status_socket = status_sock

    confdir = ca_dir(data_dir)
    try:
        # The centre's own CA, before mitmproxy would make one named after itself.
        ensure_ca(data_dir, config.centre_name)
    except (CAError, OSError) as exc:
        log.critical("the proxy's certificate authority: %s", exc)
        if redis is not None:
            await redis.aclose()
        return EXIT_CANNOT_LISTEN
    use_front = settings.fast_path and settings.mitm_options.get("mode", "regular") == "regular"
    # The public address is always served by FrontListener: with the fast path it runs the
    # TunnelFront, otherwise (--no-fast-path, transparent mode) it hands every connection
    # to mitmproxy. mitmproxy itself listens on a private loopback port; anything reaching
    # it there is still fully filtered.
    opts = options.Options(listen_host="127.0.0.1", listen_port=0, confdir=str(confdir))
    proxy = master.Master(opts)
    # mitmproxy closes a connection idle this long (its module setting, 10 minutes unless
    # told): the same limit as the fast path's relayed tunnels.
    mitmproxy_server.TCP_TIMEOUT = int(config.upstream.tunnel_idle_seconds)
    # Only the mitmproxy addons a filtering proxy needs. Every hook (a dozen per tunnel) is
    # offered to every addon, so mitmdump's forty-odd defaults cost measurable CPU per tunnel.
    server_addon = proxyserver.Proxyserver()  # type: ignore[no-untyped-call]
    proxy.addons.add(  # type: ignore[no-untyped-call]
        core.Core(), server_addon, next_layer.NextLayer(), tlsconfig.TlsConfig(),
        disable_h2c.DisableH2C(), script.ScriptLoader(),  # type: ignore[no-untyped-call]
        errorcheck.ErrorCheck())
    handover = _handover_to(server_addon)
    handler: ConnectionHandler = hand_over_sockets(handover)
    if use_front:
        handler = TunnelFront(identify, pipeline.decide, pipeline.record, handover,
                              pipeline.upstream_guard, pipeline.counters,
                              config.upstream.tunnel_idle_seconds).handle
    front_listener = FrontListener(handler, host, port, sock)
    proxy.addons.add(  # type: ignore[no-untyped-call]
        *worker_addons([policy_sync, service], pipeline, front_listener))
    try:
        # Never relay client bytes as raw TCP (see proxy_addons.tunnel_contents).
        opts.update(connection_strategy="lazy", rawtcp=False,  # type: ignore[no-untyped-call]
                    scripts=list(settings.scripts))
        # As mitmdump --set: each value is parsed for its option's type (lists, numbers, ...).
        opts.set(*(f"{key}={value}" for key, value in settings.mitm_options.items()))
    except (KeyError, TypeError, ValueError, exceptions.OptionsError) as exc:
        # A configuration error: one line and exit 2, so a supervisor does not restart it.
        log.critical("bad --mitm-option or --script: %s", exc.args[0] if exc.args else exc)
        if redis is not None:
            await redis.aclose()
        return EXIT_CANNOT_LISTEN

    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, proxy.shutdown)
    try:
        await proxy.run()
    finally:
        protect_ca(confdir)
        if redis is not None:
            await redis.aclose()
    if front_listener.failed:
        return EXIT_CANNOT_LISTEN
    return 0


STATUS_PORT_SPAN = max(16, 2 * (os.cpu_count() or 1))
"""Worker i answers status on the configured port + i; this many of them are protected."""


def own_ports(instance: Instance, settings: WorkerSettings) -> set[int]:
    """The deployment's own listening ports, never an upstream destination: Redis, the admin
    API, every worker's status port, and the proxy's own."""
    config = instance.config
    ports = redis_ports(instance.redis_url)
    ports.update((config.listen.admin.port, config.listen.proxy.port))
    with contextlib.suppress(ValueError):
        ports.add(parse_listen(settings.listen, 0).port)
    bases = [config.listen.proxy_status.port]
    if settings.status_listen:
        with contextlib.suppress(ValueError):
            own = parse_listen(settings.status_listen, config.listen.proxy_status.port).port
            bases.append(own - int(settings.worker) if settings.worker.isdigit() else own)
    for base in bases:
        ports.update(p for p in range(base, base + STATUS_PORT_SPAN) if p < 65536)
    ports.discard(0)
    return ports


def _handover_to(server_addon: proxyserver.Proxyserver) -> Handover:
    """Give a connection to mitmproxy's server for the configured mode (regular or
    transparent, ...), as if it had accepted it."""

    async def handover(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        for instance in server_addon.servers:
            if isinstance(instance, mode_servers.AsyncioServerInstance):
                await instance.handle_stream(reader, writer)
                return
        writer.close()

    return handover
