"""The CONNECT fast path: the proxy's listening socket, in front of mitmproxy.

A pass-through HTTPS tunnel (most of a centre's traffic) needs only: who is asking, is the
host allowed, and does the TLS server name agree. mitmproxy's layer machinery spends about
3 ms of CPU on such a tunnel; this front answers it with the same identify and policy code
and relays the bytes itself. Everything else — plain HTTP, hosts to decrypt, other ports,
anything malformed — is handed to mitmproxy on the same connection, untouched, so mitmproxy
remains the one place that parses HTTP, serves block pages and answers errors.

Flow per connection: read one request head → identify → plan (proxy_addons.tunnel_plan) →
refuse (403), hand over, or tunnel: check the destination (proxy_addons.upstream_guard), 200,
plan again on the ClientHello's server name, and relay only if the plan is still a tunnel.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import socket
import time
from collections.abc import Awaitable, Callable

from mitmproxy import connection
from mitmproxy.proxy import server_hooks
from mitmproxy.proxy.layers.tls import parse_client_hello

from categories.decision import Decision
from deployment.listen_socket import ListenError, bind_listener, describe
from proxy_addons.block_page import connect_refusal
from proxy_addons.enforce import Enforce
from proxy_addons.identify import CHALLENGE_BODY, Identify, Identity
from proxy_addons.tunnel_plan import TunnelAction
from proxy_addons.upstream_guard import Refusal, UpstreamGuard

log = logging.getLogger("esafety.front")

HEAD_LIMIT = 64 * 1024
IDLE_TIMEOUT = 60.0
CLIENT_HELLO_TIMEOUT = 15.0
CLIENT_HELLO_LIMIT = 32 * 1024
UPSTREAM_TIMEOUT = 10.0
RELAY_CHUNK = 256 * 1024
BAD_GATEWAY = b"The web filter could not reach this site.\n"

Handover = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]
UpstreamResolver = Callable[[str, int, str], Awaitable[tuple[str, int] | None]]


def _response(status: int, reason: str, body: bytes, headers: dict[str, str],
              close: bool) -> bytes:
    lines = [f"HTTP/1.1 {status} {reason}"]
    lines += [f"{k}: {v}" for k, v in headers.items()]
    lines.append(f"Content-Length: {len(body)}")
    if close:
        lines.append("Connection: close")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


_PLAIN_TARGET = re.compile(rb"([A-Za-z0-9._-]{1,253}):([0-9]{1,5})")


def split_connect_target(target: bytes) -> tuple[str, int] | None:
    """``host:port`` of a CONNECT line when it is a plain ASCII host name, else None.

    Anything unusual (IP literals in odd forms, brackets, non-ASCII, percent signs) is left to
    mitmproxy, which parses it strictly and refuses what it cannot read."""
    match = _PLAIN_TARGET.fullmatch(target)
    if match is None:
        return None
    port = int(match.group(2))
    if not 0 < port < 65536:
        return None
    return match.group(1).decode("ascii"), port


def header_value(head: bytes, name: bytes) -> str:
    for line in head.split(b"\r\n")[1:]:
        key, sep, value = line.partition(b":")
        if sep and key.strip().lower() == name:
            return value.strip().decode("latin-1")
    return ""


def push_back(reader: asyncio.StreamReader, data: bytes) -> None:
    """Return bytes already read to the front of the reader, for mitmproxy to read again.

    asyncio's StreamReader has no public "unread"; its buffer is a bytearray."""
    buffer: bytearray = reader._buffer  # type: ignore[attr-defined]
    buffer[0:0] = data


class TunnelFront:
    def __init__(self, identify: Identify, enforce: Enforce, handover: Handover,
                 resolve_upstream: UpstreamResolver, guard: UpstreamGuard) -> None:
        self.identify = identify
        self.enforce = enforce
        self.guard = guard
        self.handover = handover
        self.resolve_upstream = resolve_upstream
        self.tunnels = 0
        self.handed_over = 0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = writer.get_extra_info("peername")
        address = str(peer[0]) if peer else ""
        try:
            await self._serve(reader, writer, address)
        except (ConnectionError, asyncio.IncompleteReadError, TimeoutError):
            pass
        except Exception:  # never let one connection take the worker down
            log.exception("connection from %s failed", address)
        finally:
            if not writer.is_closing():
                writer.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                     address: str) -> None:
        while True:
            try:
                head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), IDLE_TIMEOUT)
            except asyncio.IncompleteReadError as exc:
                if exc.partial:
                    push_back(reader, exc.partial)
                    await self._hand_over(reader, writer)
                return
            except asyncio.LimitOverrunError:
                await self._hand_over(reader, writer)
                return
            request_line = head.split(b"\r\n", 1)[0].split(b" ")
            target = split_connect_target(request_line[1]) if (
                len(request_line) == 3 and request_line[0] == b"CONNECT") else None
            if target is None:
                push_back(reader, head)
                await self._hand_over(reader, writer)
                return
            host, port = target
            identity = await self.identify.resolve(
                header_value(head, b"proxy-authorization"), address, challenge=True)
            if identity is None:
                writer.write(_response(407, "Proxy Authentication Required", CHALLENGE_BODY,
                                       self.identify.challenge_headers(), close=False))
                await writer.drain()
                continue  # the browser asks again with credentials on this connection
            plan = self.enforce.tunnel_plan(host, port, None, identity)
            if plan.action is TunnelAction.REFUSE:
                await self._refuse(writer, address, identity, plan.decision, plan.host)
                return
            if plan.action is TunnelAction.DECRYPT:
                push_back(reader, head)
                await self._hand_over(reader, writer)
                return
            verdict = await self.guard.check(host, port)
            if isinstance(verdict, Refusal):
                if verdict.decision is None:
                    writer.write(_response(502, "Bad Gateway", BAD_GATEWAY, {}, close=True))
                    return
                await self._refuse(writer, address, identity, verdict.decision, plan.host)
                return
            await self._tunnel(reader, writer, address, identity, host, port)
            return

    async def _refuse(self, writer: asyncio.StreamWriter, address: str, identity: Identity,
                      decision: Decision, host: str) -> None:
        hit_id = self.enforce.log_hit(address, "CONNECT", identity, decision, host, "", False)
        writer.write(_response(403, "Forbidden", connect_refusal(decision, hit_id),
                               self.enforce.refusal_headers(hit_id), close=True))
        await writer.drain()

    async def _hand_over(self, reader: asyncio.StreamReader,
                         writer: asyncio.StreamWriter) -> None:
        self.handed_over += 1
        await self.handover(reader, writer)

    async def _tunnel(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                      address: str, identity: Identity, host: str, port: int) -> None:
        upstream_address = await self.resolve_upstream(host, port, address)
        if upstream_address is None:
            writer.write(_response(502, "Bad Gateway", BAD_GATEWAY, {}, close=True))
            return
        try:
            up_reader, up_writer = await asyncio.wait_for(
                asyncio.open_connection(*upstream_address, limit=RELAY_CHUNK), UPSTREAM_TIMEOUT)
        except (OSError, TimeoutError) as exc:
            log.info("cannot reach %s:%d (%s): %s", host, port, upstream_address[0], exc)
            writer.write(_response(502, "Bad Gateway", BAD_GATEWAY, {}, close=True))
            return
        try:
            writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
            hello = await self._client_hello(reader)
            if hello is None:
                return  # not TLS: closed, never forwarded
            first, sni = hello
            plan = self.enforce.tunnel_plan(host, port, sni, identity)
            if plan.action is not TunnelAction.TUNNEL:
                # The TLS name needs a different plan: closed, never relayed undecrypted.
                if plan.decision.blocked:
                    self.enforce.log_hit(address, "CONNECT", identity, plan.decision, plan.host,
                                         "", False)
                return
            self.tunnels += 1
            if self.enforce.config.log_allowed:
                self.enforce.log_hit(address, "CONNECT", identity, plan.decision, plan.host, "",
                                     False)
            up_writer.write(first)
            untrack = None
            if identity.source == "auth" and identity.user:
                # A relayed tunnel ends when its user's sign-in ends (disabled, tokens revoked).
                def close() -> None:
                    writer.close()
                    up_writer.close()

                untrack = self.identify.track_connection(identity.user, close, identity.proof)
            try:
                await _relay(reader, writer, up_reader, up_writer)
            finally:
                if untrack is not None:
                    untrack()
        finally:
            if not up_writer.is_closing():
                up_writer.close()

    async def _client_hello(self, reader: asyncio.StreamReader) -> tuple[bytes, str] | None:
        """The client's first bytes and its TLS server name; None if it is not TLS."""
        data = b""
        deadline = time.monotonic() + CLIENT_HELLO_TIMEOUT
        while len(data) < CLIENT_HELLO_LIMIT:
            chunk = await asyncio.wait_for(reader.read(CLIENT_HELLO_LIMIT),
                                           max(0.1, deadline - time.monotonic()))
            if not chunk:
                return None
            data += chunk
            if data[:1] != b"\x16":
                return None  # a tunnel on port 443 that does not start with TLS
            try:
                hello = parse_client_hello(data)
            except ValueError:
                return None
            if hello is not None:
                return data, hello.sni or ""
        return None


async def _pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
    try:
        while data := await source.read(RELAY_CHUNK):
            sink.write(data)
            if sink.transport.get_write_buffer_size() > RELAY_CHUNK:
                await sink.drain()
        if sink.can_write_eof():
            sink.write_eof()
    except (ConnectionError, OSError):
        pass


HALF_CLOSE_GRACE = 10.0


async def _relay(client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter,
                 up_reader: asyncio.StreamReader, up_writer: asyncio.StreamWriter) -> None:
    """Copy both ways. When one direction ends, the other gets a short grace period, so a
    reset on one side never leaves a tunnel open forever."""
    tasks = {asyncio.ensure_future(_pipe(client_reader, up_writer)),
             asyncio.ensure_future(_pipe(up_reader, client_writer))}
    _done, pending = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    if pending:
        _done, pending = await asyncio.wait(pending, timeout=HALF_CLOSE_GRACE)
    for task in pending:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    with contextlib.suppress(ConnectionError, OSError):
        await client_writer.drain()


def make_upstream_resolver(master_addons: object) -> UpstreamResolver:
    """Upstream address for a tunnel, after mitmproxy's ``server_connect`` hook, so addons and
    scripts that redirect upstream connections apply to the fast path too."""

    async def resolve(host: str, port: int, client_address: str) -> tuple[str, int] | None:
        server = connection.Server(address=(host, port))
        client = connection.Client(peername=(client_address, 0), sockname=("", 0),
                                   timestamp_start=time.time())
        data = server_hooks.ServerConnectionHookData(server=server, client=client)
        await master_addons.handle_lifecycle(  # type: ignore[attr-defined]
            server_hooks.ServerConnectHook(data))
        if server.error or server.address is None:
            return None
        return str(server.address[0]), int(server.address[1])

    return resolve


class FrontListener:
    """mitmproxy addon: serves the public listening socket, and closes it.

    ``handler`` is the fast path's ``TunnelFront.handle``, or a plain hand-over to
    mitmproxy (no fast path, transparent mode), so the public socket is always this one.
    ``sock`` is a socket inherited from a supervisor (``--listen-fd``); without it the
    listener binds ``host:port`` itself, never with SO_REUSEPORT, so a second instance on
    the same port fails with "address in use" instead of sharing it.
    """

    def __init__(self, handler: Handover, host: str, port: int,
                 sock: socket.socket | None = None) -> None:
        self.handler = handler
        self.host = host
        self.port = port
        self.sock = sock
        self.failed: str | None = None
        self._server: asyncio.Server | None = None

    async def running(self) -> None:

        try:
            sock = self.sock or bind_listener(self.host, self.port)
            self._server = await asyncio.start_server(self._accepted, sock=sock,
                                                      limit=HEAD_LIMIT)
        except (ListenError, OSError) as exc:
            self.failed = (str(exc) if isinstance(exc, ListenError) else
                           f"cannot listen on {describe(self.host, self.port)}: {exc}")
            log.critical("%s", self.failed)
            from mitmproxy import ctx

            ctx.master.shutdown()  # type: ignore[no-untyped-call]
            return
        where = self._server.sockets[0].getsockname() if self._server.sockets else ()
        log.info("filtering proxy listening at %s", describe(str(where[0]), int(where[1]))
                 if where else describe(self.host, self.port))

    async def _accepted(self, reader: asyncio.StreamReader,
                        writer: asyncio.StreamWriter) -> None:
        """Every connection without Nagle's algorithm. asyncio only switches it off for
        sockets made with ``IPPROTO_TCP``, and a listening socket from ``socket.create_server``
        or a supervisor's descriptor need not be one; with Nagle on, each small response
        waited for the client's delayed ACK (about 40 ms a request on keep-alive)."""
        sock = writer.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        await self.handler(reader, writer)

    async def done(self) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 5)
