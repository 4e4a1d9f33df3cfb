"""An ASGI app served by a real uvicorn in a thread, for tests that need the wire.

The test client hands the app a whole body at once and normalises URLs; what a server
receives from a socket (a body still streaming, ``..`` and ``%2F`` in a path) needs a server.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import uvicorn
from starlette.types import ASGIApp

from devtools.processes import wait_for
from tests.support.tcp_proxy import free_port


@contextmanager
def serving(app: ASGIApp) -> Iterator[tuple[str, int]]:
    """The (host, port) the app is served on while the block runs."""
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=free_port(),
                                           log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, name="uvicorn-test", daemon=True)
    thread.start()
    try:
        wait_for(lambda: server.started, 10, "uvicorn did not start")
        yield server.config.host, server.config.port
    finally:
        server.should_exit = True
        thread.join(10)


def get(address: tuple[str, int], raw_target: bytes, *headers: bytes) -> tuple[int, bytes]:
    """GET a request target sent byte for byte, as no HTTP client library would send it;
    returns the status and the body."""
    request = b"\r\n".join([b"GET " + raw_target + b" HTTP/1.1", b"Host: test",
                             b"Connection: close", *headers, b"", b""])
    with socket.create_connection(address, timeout=10) as connection:
        connection.sendall(request)
        answer = b""
        while chunk := connection.recv(65536):
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), body
