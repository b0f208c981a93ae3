"""Serving the emulator: the listening socket and what the connections it accepts get."""

from __future__ import annotations

import asyncio
import socket

from ltx_reconcile.emulator.server import bind_socket


async def _nodelay_of_an_accepted_connection(sock: socket.socket) -> int:
    loop = asyncio.get_running_loop()
    seen: asyncio.Future[int] = loop.create_future()

    class _Probe(asyncio.Protocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            accepted = transport.get_extra_info("socket")
            seen.set_result(accepted.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
            transport.close()

    server = await loop.create_server(_Probe, sock=sock)
    async with server:
        host, port = sock.getsockname()[:2]
        _, writer = await asyncio.open_connection(host, port)
        value = await seen
        writer.close()
    return value


def test_connections_accepted_on_the_emulator_socket_have_tcp_nodelay():
    """asyncio sets TCP_NODELAY only on sockets whose proto is TCP; without it each reused
    connection stalls ~40 ms per request (Nagle's algorithm against delayed ACKs)."""
    sock = bind_socket()
    try:
        assert asyncio.run(_nodelay_of_an_accepted_connection(sock)) != 0
    finally:
        sock.close()
