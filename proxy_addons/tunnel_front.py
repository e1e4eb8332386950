"""The CONNECT fast path: the proxy's listening socket, in front of mitmproxy.

A pass-through HTTPS tunnel (most of a centre's traffic) needs only: who is asking, is the
host allowed, and does the TLS server name agree. mitmproxy's layer machinery spends about
3 ms of CPU on such a tunnel; this front answers it with the same ``identify``, the same
tunnel planner (through ``decide``) and the same ``record`` stage, and relays the bytes
itself. It is only a relay: everything else (plain HTTP, hosts to decrypt, other ports,
refusals, sign-in challenges, names that do not resolve, anything malformed) is handed to
mitmproxy on the same connection, untouched, so mitmproxy remains the one place that parses
HTTP, serves block pages and 407s, and answers errors.

The request head is read with ``MSG_PEEK``, so a connection handed over still holds every
byte the client sent: nothing needs to be pushed back into a stream reader.

Flow per connection: peek one request head (parsed by mitmproxy's HTTP/1 reader) → identify →
plan → guard check → record → 200 → plan again on the ClientHello's server name → relay only
if the plan is still a tunnel.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import select
import socket
import time
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from mitmproxy import ctx
from mitmproxy.net.http import http1
from mitmproxy.proxy.layers.tls import parse_client_hello

from deployment.listen_socket import ListenError, bind_listener, describe
from proxy_addons.decide import Decide
from proxy_addons.identify import SIGNED_IN_ON_CONNECTION, Identify, Identity
from proxy_addons.metrics import WorkerCounters
from proxy_addons.record import Record
from proxy_addons.tunnel_plan import ONBOARDING_HOST, TunnelAction
from proxy_addons.tunnel_relay import IdleSweep, TunnelRelay
from proxy_addons.upstream_guard import Destination, UpstreamGuard
from proxy_addons.verdict import OpenTunnel

log = logging.getLogger("esafety.front")

HEAD_LIMIT = 64 * 1024
IDLE_TIMEOUT = 60.0
PEEK_PAUSES = (0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2)
"""Pauses between looks at a request head that is not complete yet (then the last, again)."""
_HANGUP = select.POLLHUP | select.POLLERR | getattr(select, "POLLRDHUP", 0)
CLIENT_HELLO_TIMEOUT = 15.0
CLIENT_HELLO_LIMIT = 32 * 1024
UPSTREAM_TIMEOUT = 10.0
CONNECTION_ESTABLISHED = b"HTTP/1.1 200 Connection established\r\n\r\n"
BAD_GATEWAY = (b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 42\r\nConnection: close\r\n\r\n"
               b"The web filter could not reach this site.\n")
"""Always these bytes: the reason the connection failed stays in the proxy's log."""

Handover = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]
Owner = asyncio.StreamWriter | asyncio.BaseTransport
"""What owns a connection's socket once made: mitmproxy's stream, or the relay's transport."""
ConnectionHandler = Callable[[socket.socket], Coroutine[Any, Any, None]]

_PLAIN_HOST = re.compile(r"[A-Za-z0-9._-]{1,253}")


def connect_target(head: bytes) -> tuple[str, int, str] | None:
    """``(host, port, Proxy-Authorization)`` of a ``CONNECT`` head that names a plain ASCII
    host, read by mitmproxy's HTTP/1 parser; None for anything else.

    Anything unusual (IP literals in odd forms, brackets, non-ASCII, percent signs) is left to
    mitmproxy, which parses it strictly and refuses what it cannot read."""
    try:
        request = http1.read_request_head(head.split(b"\r\n")[:-2])
    except ValueError:
        return None
    if request.method != "CONNECT" or not _PLAIN_HOST.fullmatch(request.host):
        return None
    if not 0 < request.port < 65536:
        return None
    return request.host, request.port, request.headers.get("proxy-authorization", "")


async def _readable(sock: socket.socket) -> None:
    loop = asyncio.get_running_loop()
    ready: asyncio.Future[None] = loop.create_future()

    def wake() -> None:
        if not ready.done():
            ready.set_result(None)

    loop.add_reader(sock.fileno(), wake)
    try:
        await ready
    finally:
        loop.remove_reader(sock.fileno())


def _client_finished(sock: socket.socket) -> bool:
    """True once the client has shut its side (or the connection failed): what it sent is
    all there will be. ``MSG_PEEK`` cannot see the end of a stream behind unread bytes."""
    poller = select.poll()
    poller.register(sock.fileno(), _HANGUP)
    return bool(poller.poll(0))


async def peek_head(sock: socket.socket) -> bytes | None:
    """The request head the connection starts with, left unread in the socket.

    ``b""`` when the client closed without sending anything; None when the client ended its
    side, or sent ``HEAD_LIMIT`` bytes, without a complete head (the connection goes to
    mitmproxy, which reads what there is). Raises TimeoutError after ``IDLE_TIMEOUT``
    without a complete head. Bytes that are not yet a head are looked at again after a
    growing pause: the socket stays readable while they are unread, so readiness cannot say
    when more arrive (a head in pieces is rare: clients write it at once)."""
    async with asyncio.timeout(IDLE_TIMEOUT):
        await _readable(sock)
        pauses = 0
        while True:
            try:
                data = sock.recv(HEAD_LIMIT, socket.MSG_PEEK)
            except BlockingIOError:
                data = None
            if data == b"":
                return b""
            if data:
                end = data.find(b"\r\n\r\n")
                if end >= 0:
                    return data[:end + 4]
                if len(data) >= HEAD_LIMIT:
                    return None
            if _client_finished(sock):
                return None
            await asyncio.sleep(PEEK_PAUSES[min(pauses, len(PEEK_PAUSES) - 1)])
            pauses += 1


async def streams(sock: socket.socket, limit: int = HEAD_LIMIT
                  ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection(sock=sock, limit=limit)


def hand_over_sockets(handover: Handover) -> ConnectionHandler:
    """A connection handler that gives every connection to mitmproxy (no fast path)."""

    async def handle(sock: socket.socket) -> None:
        try:
            reader, writer = await streams(sock)
        except OSError:
            sock.close()
            return
        try:
            await handover(reader, writer)
        finally:
            if not writer.is_closing():
                writer.close()

    return handle


class TunnelFront:
    def __init__(self, identify: Identify, decide: Decide, record: Record, handover: Handover,
                 guard: UpstreamGuard, counters: WorkerCounters, idle_seconds: float) -> None:
        self.identify = identify
        self.decide = decide
        self.record = record
        self.guard = guard
        self.handover = handover
        self.counters = counters
        self.idle = IdleSweep(idle_seconds, counters.tunnels_closed_idle)

    async def handle(self, sock: socket.socket) -> None:
        address = ""
        with contextlib.suppress(OSError):
            address = str(sock.getpeername()[0])
        owners: list[Owner] = []
        try:
            await self._serve(sock, address, owners)
        except (ConnectionError, asyncio.IncompleteReadError, TimeoutError):
            pass
        except Exception:  # never let one connection take the worker down
            log.exception("connection from %s failed", address)
        finally:
            for writer in owners:
                if not writer.is_closing():
                    writer.close()
            if not owners:
                sock.close()

    async def _serve(self, sock: socket.socket, address: str, owners: list[Owner]) -> None:
        """Relay the connection or hand it over; ``owners`` gets the stream writer that
        owns the socket from then on."""
        head = await peek_head(sock)
        if head == b"":
            return
        target = connect_target(head) if head else None
        if head is None or target is None or target[0].rstrip(".").lower() == ONBOARDING_HOST:
            await self._hand_over(sock, owners)
            return
        host, port, authorization = target
        identity = await self.identify.resolve_before_handover(authorization, address)
        if identity is None:
            await self._hand_over(sock, owners)  # mitmproxy's identify answers the 407
            return
        if self.decide.needs_portal(identity, address, host):
            await self._hand_over(sock, owners)  # decide answers the Wi-Fi sign-in's 403
            return
        plan = self.decide.connect_plan(host, port, identity, address)
        if plan.action is not TunnelAction.TUNNEL:
            await self._hand_over(sock, owners)  # refused, or to decrypt
            return
        destination = await self.guard.check(host, port)
        if not isinstance(destination, Destination):
            await self._hand_over(sock, owners)  # refused, or the name does not resolve
            return
        sock.recv(len(head))  # the head was only peeked; this CONNECT is answered here
        self.record.record(self.decide.tunnel_verdict(plan, identity, address))
        await self._tunnel(sock, owners, address, identity,
                           OpenTunnel(host, port, plan.host, plan.action, identity),
                           destination)

    async def _hand_over(self, sock: socket.socket, owners: list[Owner]) -> None:
        self.counters.handed_over += 1
        reader, writer = await streams(sock)
        owners.append(writer)
        await self.handover(reader, writer)

    async def _tunnel(self, sock: socket.socket, owners: list[Owner], address: str,
                      identity: Identity, tunnel: OpenTunnel, destination: Destination) -> None:
        loop = asyncio.get_running_loop()
        relay = TunnelRelay()
        try:
            upstream, _ = await asyncio.wait_for(
                loop.create_connection(lambda: relay.upstream, *destination.address),
                UPSTREAM_TIMEOUT)
        except (OSError, TimeoutError) as exc:
            log.info("cannot reach %s:%d (%s): %s", tunnel.connect_host, tunnel.port,
                     destination.address[0], exc)
            await loop.sock_sendall(sock, BAD_GATEWAY)
            return
        try:
            await loop.sock_sendall(sock, CONNECTION_ESTABLISHED)
            hello = await self._client_hello(sock)
            if hello is None:
                return  # not TLS: closed, never forwarded
            first, sni = hello
            action, closed = self.decide.hello_plan(tunnel, sni, address)
            if closed is not None:
                self.record.record(closed)
            if action is not TunnelAction.TUNNEL:
                return  # the TLS name needs a different plan: closed, never relayed
            self.counters.fast_tunnels += 1
            client, _ = await loop.connect_accepted_socket(lambda: relay.client, sock)
            owners.append(client)
            relay.start(first)
            self.idle.watch(relay)
            untrack = None
            if identity.source in SIGNED_IN_ON_CONNECTION and identity.user:
                # A relayed tunnel ends when its user's sign-in ends (disabled, tokens revoked).
                untrack = self.identify.track_connection(identity.user, relay.close,
                                                         identity.proof)
            try:
                await relay.finished()
            finally:
                self.idle.forget(relay)
                if untrack is not None:
                    untrack()
        finally:
            if not upstream.is_closing():
                upstream.close()

    async def _client_hello(self, sock: socket.socket) -> tuple[bytes, str] | None:
        """The client's first bytes and its TLS server name; None if it is not TLS."""
        loop = asyncio.get_running_loop()
        data = b""
        deadline = time.monotonic() + CLIENT_HELLO_TIMEOUT
        while len(data) < CLIENT_HELLO_LIMIT:
            chunk = await asyncio.wait_for(loop.sock_recv(sock, CLIENT_HELLO_LIMIT),
                                           max(0.1, deadline - time.monotonic()))
            if not chunk:
                return None
            data += chunk
            if data[:1] != b"\x16":
                return None  # a tunnel that does not start with TLS
            try:
                hello = parse_client_hello(data)
            except ValueError:
                return None
            if hello is not None:
                return data, hello.sni or ""
        return None


ACCEPT_RETRY_SECONDS = 0.1


class FrontListener:
    """mitmproxy addon: serves the public listening socket, and closes it.

    ``handler`` is the fast path's ``TunnelFront.handle``, or a plain hand-over to
    mitmproxy (no fast path, transparent mode), so the public socket is always this one.
    ``sock`` is a socket inherited from a supervisor (``--listen-fd``); without it the
    listener binds ``host:port`` itself, never with SO_REUSEPORT, so a second instance on
    the same port fails with "address in use" instead of sharing it.
    """

    def __init__(self, handler: ConnectionHandler, host: str, port: int,
                 sock: socket.socket | None = None) -> None:
        self.handler = handler
        self.host = host
        self.port = port
        self.sock = sock
        self.failed: str | None = None
        self._listening: socket.socket | None = None
        self._accepting: asyncio.Task[None] | None = None
        self._connections: set[asyncio.Task[None]] = set()

    async def running(self) -> None:
        try:
            sock = self.sock or bind_listener(self.host, self.port)
            sock.setblocking(False)
        except (ListenError, OSError) as exc:
            self.failed = (str(exc) if isinstance(exc, ListenError) else
                           f"cannot listen on {describe(self.host, self.port)}: {exc}")
            log.critical("%s", self.failed)
            ctx.master.shutdown()  # type: ignore[no-untyped-call]
            return
        self._listening = sock
        self._accepting = asyncio.get_running_loop().create_task(
            self._accept(sock), name="esafety-front-accept")
        where = sock.getsockname()
        log.info("filtering proxy listening at %s", describe(str(where[0]), int(where[1])))

    async def _accept(self, sock: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        while True:
            try:
                conn, _peer = await loop.sock_accept(sock)
            except OSError as exc:  # out of descriptors, ...: wait, do not spin
                log.warning("cannot accept a connection: %s", exc)
                await asyncio.sleep(ACCEPT_RETRY_SECONDS)
                continue
            self._nodelay(conn)
            conn.setblocking(False)
            task: asyncio.Task[None] = loop.create_task(self.handler(conn))
            self._connections.add(task)
            task.add_done_callback(self._connections.discard)

    @staticmethod
    def _nodelay(conn: socket.socket) -> None:
        """Every connection without Nagle's algorithm. asyncio only switches it off for
        sockets made with ``IPPROTO_TCP``, and a listening socket from ``socket.create_server``
        or a supervisor's descriptor need not be one; with Nagle on, each small response
        waited for the client's delayed ACK (about 40 ms a request on keep-alive)."""
        if conn.family in (socket.AF_INET, socket.AF_INET6):
            with contextlib.suppress(OSError):
                conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    async def done(self) -> None:
        if self._accepting is not None:
            self._accepting.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._accepting
        if self._listening is not None:
            self._listening.close()
