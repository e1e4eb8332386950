"""The fast path's own parts: which heads it may relay, and that a peeked head stays unread
for mitmproxy. Its behaviour end to end is in test_proxy_transport.py and
test_proxy_enforcement.py (both run with the fast path on and off)."""

from __future__ import annotations

import asyncio
import socket

import pytest

from proxy_addons.tunnel_front import connect_target, peek_head


@pytest.mark.parametrize(("head", "expected"), [
    (b"CONNECT allowed.test:443 HTTP/1.1\r\nHost: allowed.test:443\r\n\r\n",
     ("allowed.test", 443, "")),
    (b"CONNECT a.test:443 HTTP/1.1\r\nProxy-Authorization: Basic eDp5\r\n\r\n",
     ("a.test", 443, "Basic eDp5")),
    (b"GET http://allowed.test/ HTTP/1.1\r\nHost: allowed.test\r\n\r\n", None),
    (b"CONNECT [::1]:443 HTTP/1.1\r\n\r\n", None),
    (b"CONNECT caf\xc3\xa9.test:443 HTTP/1.1\r\n\r\n", None),
    (b"CONNECT a%2e.test:443 HTTP/1.1\r\n\r\n", None),
    (b"CONNECT allowed.test:99999 HTTP/1.1\r\n\r\n", None),
    (b"CONNECT allowed.test HTTP/1.1\r\n\r\n", None),
    (b"CONNECT :::: HTTP/1.1\r\n\r\n", None),
    (b"GARBAGE\r\n\r\n", None),
])
def test_only_a_plain_connect_is_for_the_fast_path(
        head: bytes, expected: tuple[str, int, str] | None) -> None:
    assert connect_target(head) == expected


def test_a_peeked_head_is_still_there_for_mitmproxy() -> None:
    async def run() -> tuple[bytes | None, bytes]:
        left, right = socket.socketpair()
        with left, right:
            right.setblocking(False)
            data = b"CONNECT allowed.test:443 HTTP/1.1\r\n\r\n\x16\x03\x01"
            left.sendall(data)
            head = await peek_head(right)
            reader, writer = await asyncio.open_connection(sock=right)
            rest = await reader.readexactly(len(data))
            writer.close()
            return head, rest

    head, rest = asyncio.run(run())
    assert head == b"CONNECT allowed.test:443 HTTP/1.1\r\n\r\n"
    assert rest == b"CONNECT allowed.test:443 HTTP/1.1\r\n\r\n\x16\x03\x01"


def test_a_head_in_pieces_is_waited_for() -> None:
    async def run() -> bytes | None:
        left, right = socket.socketpair()
        with left, right:
            right.setblocking(False)
            left.sendall(b"CONNECT allowed.te")
            loop = asyncio.get_running_loop()
            loop.call_later(0.05, left.sendall, b"st:443 HTTP/1.1\r\n\r\n")
            return await peek_head(right)

    assert asyncio.run(run()) == b"CONNECT allowed.test:443 HTTP/1.1\r\n\r\n"


def test_a_head_cut_short_by_the_client_is_left_to_mitmproxy() -> None:
    async def run() -> tuple[bytes | None, bytes]:
        left, right = socket.socketpair()
        with left, right:
            right.setblocking(False)
            left.sendall(b"GET http://a.test/ HTTP/1.1\r\nHost: a.test\n\r\n")
            left.shutdown(socket.SHUT_WR)
            head = await peek_head(right)
            return head, right.recv(100)

    head, unread = asyncio.run(run())
    assert head is None
    assert unread == b"GET http://a.test/ HTTP/1.1\r\nHost: a.test\n\r\n"
