"""Relaying a pass-through tunnel's bytes both ways, with asyncio protocols.

Each side of the tunnel (the client's connection and the upstream one) is an
``asyncio.Protocol`` whose ``data_received`` writes the bytes straight into the other side's
transport: one call per chunk, with no stream reader, no buffer copy, no future and no task
switch in between. The event loop reads up to 256 KiB at a time.

Flow control: when one side's transport holds more than ``HIGH_WATER`` bytes not yet sent,
the other side stops reading until it has drained (``pause_writing``/``resume_writing``), so
a slow reader never makes the proxy buffer a fast writer's whole stream.

Ends: when one side ends its stream (EOF), the other side's is ended too (a half-close, which
TLS and HTTP/1 clients use) and the other direction gets ``grace`` seconds to finish; when
either connection is lost (reset or closed), the other is closed once what was already
written to it has been sent. :meth:`TunnelRelay.finished` resolves when both are gone.

Idle tunnels: a tunnel that carries no byte either way for ``upstream.tunnel_idle_seconds``
(10 minutes by default, as mitmproxy does for the connections it handles) is closed by
:class:`IdleSweep`: one timer per worker, not one per tunnel, so a chunk costs only a counter
increment and an idle tunnel a dictionary entry.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import cast

HIGH_WATER = 256 * 1024
"""Bytes queued for one side before the other side stops being read."""
HALF_CLOSE_GRACE = 10.0
"""Seconds the other direction may go on once one direction has ended."""
IDLE_SWEEPS = 4
"""Sweeps per idle timeout: a tunnel is closed between 1 and 1.25 timeouts after its last byte."""


class RelaySide(asyncio.Protocol):
    """One connection of a tunnel; ``peer`` is the other one."""

    def __init__(self, relay: TunnelRelay) -> None:
        self.relay = relay
        self.transport: asyncio.Transport | None = None
        self.peer: RelaySide | None = None
        self.lost = False
        self.ended = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # A TCP transport (uvloop's is not an asyncio.Transport subclass, but has its API).
        self.transport = cast(asyncio.Transport, transport)
        self.transport.set_write_buffer_limits(high=HIGH_WATER)
        if not self.relay.started:
            self.transport.pause_reading()  # nothing is read before the other side is there

    def data_received(self, data: bytes) -> None:
        self.relay.activity += 1
        peer = self.peer.transport if self.peer is not None else None
        if peer is not None and not peer.is_closing():
            peer.write(data)

    def eof_received(self) -> bool:
        self.ended = True
        peer = self.peer.transport if self.peer is not None else None
        if peer is not None and not peer.is_closing() and peer.can_write_eof():
            peer.write_eof()
        self.relay.direction_ended()
        return True  # keep this connection open: the other direction may still be talking

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        self.relay.side_lost()

    def pause_writing(self) -> None:
        peer = self.peer.transport if self.peer is not None else None
        if peer is not None and not peer.is_closing():
            peer.pause_reading()

    def resume_writing(self) -> None:
        peer = self.peer.transport if self.peer is not None else None
        if peer is not None and not peer.is_closing():
            peer.resume_reading()


class TunnelRelay:
    """The two sides of one relayed tunnel. Make it, connect upstream with
    :attr:`upstream` as the protocol, adopt the client's socket with :attr:`client`, then
    :meth:`start`."""

    def __init__(self, grace: float = HALF_CLOSE_GRACE) -> None:
        self.grace = grace
        self.started = False
        self.activity = 0
        """Chunks relayed so far, either way (what :class:`IdleSweep` watches)."""
        self.client = RelaySide(self)
        self.upstream = RelaySide(self)
        self.client.peer, self.upstream.peer = self.upstream, self.client
        self._finished: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._grace_timer: asyncio.TimerHandle | None = None

    def start(self, first: bytes) -> None:
        """Send ``first`` (the client's bytes read so far) upstream, and relay from now on."""
        self.started = True
        up, client = self.upstream.transport, self.client.transport
        if up is None or client is None or up.is_closing() or client.is_closing():
            self.close()
            return
        up.write(first)
        up.resume_reading()
        client.resume_reading()

    def direction_ended(self) -> None:
        if self.client.ended and self.upstream.ended:
            self.close()
        elif self._grace_timer is None:
            self._grace_timer = asyncio.get_running_loop().call_later(self.grace, self.close)

    def side_lost(self) -> None:
        for side in (self.client, self.upstream):
            if side.transport is not None and not side.transport.is_closing():
                side.transport.close()  # sends what is already queued, then closes
        if all(side.lost or side.transport is None for side in (self.client, self.upstream)):
            self._done()

    def close(self) -> None:
        """End the tunnel now (both connections closed once their queued bytes are sent)."""
        for side in (self.client, self.upstream):
            if side.transport is not None and not side.transport.is_closing():
                side.transport.close()
        if all(side.transport is None or side.lost for side in (self.client, self.upstream)):
            self._done()

    def _done(self) -> None:
        if self._grace_timer is not None:
            self._grace_timer.cancel()
        if not self._finished.done():
            self._finished.set_result(None)

    async def finished(self) -> None:
        await asyncio.shield(self._finished)


class IdleSweep:
    """Closes the relayed tunnels that carried nothing for ``timeout`` seconds. Its timer runs
    only while it watches a tunnel."""

    def __init__(self, timeout: float, on_closed: Callable[[int], None] | None = None) -> None:
        self.timeout = timeout
        self.on_closed = on_closed
        """Told how many tunnels each sweep closed (the worker's metrics)."""
        self._watched: dict[TunnelRelay, tuple[int, float]] = {}
        """Each tunnel, with its activity count at the last sweep and when that count was
        first seen."""
        self._task: asyncio.Task[None] | None = None

    def watch(self, relay: TunnelRelay) -> None:
        loop = asyncio.get_running_loop()
        self._watched[relay] = (relay.activity, loop.time())
        if self._task is None or self._task.done():
            self._task = loop.create_task(self._run(), name="esafety-idle-tunnels")

    def forget(self, relay: TunnelRelay) -> None:
        self._watched.pop(relay, None)

    def __len__(self) -> int:
        return len(self._watched)

    def sweep(self, now: float) -> int:
        """Close the tunnels idle for ``timeout`` seconds at ``now``; how many were closed."""
        idle = []
        for relay, (seen, since) in self._watched.items():
            if relay.activity != seen:
                self._watched[relay] = (relay.activity, now)
            elif now - since >= self.timeout:
                idle.append(relay)
        for relay in idle:
            del self._watched[relay]
            relay.close()
        if idle and self.on_closed is not None:
            self.on_closed(len(idle))
        return len(idle)

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while self._watched:
            await asyncio.sleep(self.timeout / IDLE_SWEEPS)
            self.sweep(loop.time())
