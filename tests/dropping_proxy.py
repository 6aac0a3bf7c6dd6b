"""A TCP proxy in front of an app host that cuts a connection mid-answer: a dropped connection, on real sockets."""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterator
from urllib.parse import urlsplit


class DroppingProxy:
    """Forwards every connection to ``upstream``; the first answer that carries ``marker`` is cut after it has
    passed ``events`` blank-line-terminated SSE events (the client sees the connection close mid-stream)."""

    def __init__(self, upstream: str, *, marker: bytes = b"text/event-stream", events: int = 2) -> None:
        parts = urlsplit(upstream)
        self._upstream = (parts.hostname or "127.0.0.1", parts.port or 80)
        self._path = parts.path
        self._marker, self._events = marker, events
        self._server = socket.create_server(("127.0.0.1", 0))
        self.connections = 0
        self.dropped = 0
        self._lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.getsockname()[1]}{self._path}"

    def serve(self) -> None:
        while True:
            try:
                client, _ = self._server.accept()
            except OSError:
                return
            with self._lock:
                self.connections += 1
            threading.Thread(target=self._handle, args=(client,), daemon=True).start()

    def _handle(self, client: socket.socket) -> None:
        upstream = socket.create_connection(self._upstream)
        threading.Thread(target=_pump, args=(client, upstream), daemon=True).start()
        seen, cut = b"", False
        try:
            while chunk := upstream.recv(65536):
                with self._lock:
                    armed = self.dropped == 0
                if armed:
                    seen += chunk
                    # The headers end with CRLF CRLF; each SSE event with LF LF (inside the chunked body).
                    if self._marker in seen and seen.count(b"\n\n") >= self._events:
                        end = _nth(seen, b"\n\n", self._events)
                        client.sendall(chunk[: max(0, len(chunk) - (len(seen) - end))])
                        with self._lock:
                            self.dropped += 1
                        cut = True
                        break
                client.sendall(chunk)
        except OSError:
            pass
        finally:
            for sock in (client, upstream):
                if cut:
                    with contextlib.suppress(OSError):
                        sock.shutdown(socket.SHUT_RDWR)
                sock.close()

    def close(self) -> None:
        self._server.close()


def _nth(data: bytes, needle: bytes, n: int) -> int:
    """The index just after the ``n``-th occurrence of ``needle``."""
    index = -len(needle)
    for _ in range(n):
        index = data.index(needle, index + len(needle))
    return index + len(needle)


def _pump(source: socket.socket, target: socket.socket) -> None:
    try:
        while chunk := source.recv(65536):
            target.sendall(chunk)
    except OSError:
        pass


@contextlib.contextmanager
def dropping_proxy(upstream: str, **options: object) -> Iterator[DroppingProxy]:
    proxy = DroppingProxy(upstream, **options)  # type: ignore[arg-type]
    thread = threading.Thread(target=proxy.serve, daemon=True)
    thread.start()
    try:
        yield proxy
    finally:
        proxy.close()
