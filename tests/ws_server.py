#!/usr/bin/env python3
"""A WebSocket server for the check tests, on 127.0.0.1 at a port the OS picks, printed
as `PORT <n>`. `/echo` sends every message back; `/quiet` says nothing and waits;
any other path is refused with 404 before the handshake. `--tls CERT KEY`: over TLS
(wss), with that certificate and key (PEM)."""

import asyncio
import ssl
import sys
from http import HTTPStatus

from websockets.asyncio.server import serve


async def handler(websocket) -> None:
    if websocket.request.path == "/echo":
        async for message in websocket:
            await websocket.send(message)
    else:
        await websocket.wait_closed()


def refuse_unknown(connection, request):
    if request.path not in ("/echo", "/quiet"):
        return connection.respond(HTTPStatus.NOT_FOUND, "no such socket\n")
    return None


async def main() -> None:
    context = None
    if sys.argv[1:2] == ["--tls"]:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(sys.argv[2], sys.argv[3])
    async with serve(
        handler, "127.0.0.1", 0, process_request=refuse_unknown, ssl=context
    ) as server:
        port = server.sockets[0].getsockname()[1]
        print(f"PORT {port}", flush=True)
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main())
