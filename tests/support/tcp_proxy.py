"""A TCP proxy in front of a real server, to take it "down" without touching the server.

``stop()`` closes the listener and every live connection, the way a crashed server or a cut
network looks to a client; ``start()`` listens again on the same port, so URLs that point at
the proxy keep working once it is back.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from types import TracebackType


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class TcpProxy:
    def __init__(self, target_host: str, target_port: int, port: int | None = None):
        self.target = (target_host, target_port)
        self.port = port or free_port()
        self._listener: socket.socket | None = None
        self._accepting: threading.Thread | None = None
        self._live: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._running = threading.Event()

    @property
    def address(self) -> tuple[str, int]:
        return "127.0.0.1", self.port

    def start(self) -> TcpProxy:
        if self._running.is_set():
            return self
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        # The same port again at once, although the last connections may be in TIME_WAIT.
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(self.address)
        listener.listen(64)
        # accept() is not woken by close() from another thread; a short timeout lets the
        # loop notice stop() instead.
        listener.settimeout(0.05)
        self._listener = listener
        self._running.set()
        self._accepting = threading.Thread(target=self._accept_loop, args=(listener,),
                                           name=f"proxy-{self.port}", daemon=True)
        self._accepting.start()
        return self

    def stop(self) -> None:
        self._running.clear()
        if self._accepting is not None:
            self._accepting.join(5)
            self._accepting = None
        if self._listener is not None:
            self._listener.close()
            self._listener = None
        with self._lock:
            live, self._live = self._live, set()
        for connection in live:
            _close(connection)

    def __enter__(self) -> TcpProxy:
        return self.start()

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self.stop()

    def _accept_loop(self, listener: socket.socket) -> None:
        while self._running.is_set():
            try:
                client, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            client.settimeout(None)
            try:
                upstream = socket.create_connection(self.target, timeout=5)
                upstream.settimeout(None)
            except OSError:
                _close(client)
                continue
            with self._lock:
                if not self._running.is_set():  # stop() came while we were connecting
                    _close(client)
                    _close(upstream)
                    return
                self._live.update((client, upstream))
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(source, sink), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        # One side is gone: so is the other, as with a real connection.
        with self._lock:
            self._live.discard(source)
            self._live.discard(sink)
        _close(source)
        _close(sink)


def _close(connection: socket.socket) -> None:
    with contextlib.suppress(OSError):
        connection.shutdown(socket.SHUT_RDWR)
    connection.close()
