"""A real HTTP receiver on 127.0.0.1 that answers webhook requests from a script.

A receiver is `http.server` in a thread on an ephemeral port. Its script is a list of `Reply`
values, one per request; once the script is used up it answers 200. It records every request it
receives before answering, so a test sees what was sent even when the answer never came.
"""

from __future__ import annotations

import collections
import dataclasses
import http.server
import ssl
import threading
import time
from typing import Any


@dataclasses.dataclass(frozen=True)
class Reply:
    status: int = 200
    delay_s: float = 0.0
    """Wait this long before answering; longer than the attempt timeout makes a hanging receiver."""
    location: str | None = None


@dataclasses.dataclass(frozen=True)
class Received:
    path: str
    headers: dict[str, str]
    body: bytes


class Receiver:
    def __init__(self, script: list[Reply], *, tls: ssl.SSLContext | None = None) -> None:
        self._script = collections.deque(script)
        self._lock = threading.Lock()
        self._closing = threading.Event()
        self.requests: list[Received] = []

        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                reply = receiver._record(
                    Received(path=self.path, headers=dict(self.headers.items()), body=body)
                )
                if reply.delay_s and receiver._closing.wait(reply.delay_s):
                    return
                try:
                    self.send_response(reply.status)
                    if reply.location:
                        self.send_header("Location", reply.location)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                except OSError:
                    pass  # the client gave up waiting, as a timed-out attempt does

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        if tls is not None:
            self._server.socket = tls.wrap_socket(self._server.socket, server_side=True)
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.05,), daemon=True
        )
        self._thread.start()

    def _record(self, received: Received) -> Reply:
        with self._lock:
            self.requests.append(received)
            return self._script.popleft() if self._script else Reply()

    def url(self, path: str = "/hook", *, host: str = "127.0.0.1", scheme: str = "http") -> str:
        return f"{scheme}://{host}:{self.port}{path}"

    def event_ids(self) -> list[str]:
        with self._lock:
            return [request.headers["X-Agent-Growth-Event-Id"] for request in self.requests]

    def wait_for_requests(self, count: int, *, timeout_s: float = 10.0) -> None:
        deadline = time.monotonic() + timeout_s
        while len(self.requests) < count:
            if time.monotonic() > deadline:
                raise AssertionError(f"receiver got {len(self.requests)} requests, not {count}")
            time.sleep(0.01)

    def close(self) -> None:
        self._closing.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()
