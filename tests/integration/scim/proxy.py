"""A fault-injecting HTTP proxy for SCIM tests, on 127.0.0.1.

Forwards every request to an upstream server and counts them by (method, path
head). A test schedules faults with ``proxy.inject(method, path_prefix, fault)``;
each scheduled fault is used once, in order, by the first matching request:

- ``Fault.status(429, retry_after="0.1")`` or ``Fault.status(503)``: answer without forwarding;
- ``Fault.status_after(502)``: forward, then answer 502 (the server acted, the answer was lost);
- ``Fault.drop_after()``: forward, then close the connection without answering
  (the server acted; the client sees a dropped connection);
- ``Fault.slow(seconds, after=True)``: forward, then wait before answering (so a
  client timeout fires after the server acted); ``after=False`` waits before forwarding;
- ``Fault.reset_before()``: reset the connection (RST) without forwarding (the server never saw it);
- ``Fault.reset_after()``: forward, then reset the connection (RST) instead of answering;
- ``Fault.truncate()``: forward, then answer the server's status with half of its body;
- ``Fault.malformed()``: forward, then answer the server's status with a body that is not JSON.

Besides the schedule, ``proxy.chooser`` may pick a fault for any request the schedule
leaves alone: it is called with (method, path) in arrival order (the reliability suite
uses it with a seeded random generator and one change in flight at a time).

``rewrite`` and ``filter_response`` let a test dress the server up as another one
(Bitwarden's lower-case /v2/<org>/users routes, groups without members).
With ``ssl_context`` the proxy speaks TLS to the client (trustme certificates).

From its creation the proxy holds its port, but it listens only once started: until
then a client is refused, as by a server that is down (``url`` never changes).
"""

from __future__ import annotations

import contextlib
import http.client
import socket
import ssl
import struct
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

HOP_HEADERS = {"connection", "keep-alive", "transfer-encoding", "proxy-connection", "host",
               "content-length"}


@dataclass(frozen=True)
class Fault:
    kind: str
    status: int = 0
    retry_after: str | None = None
    seconds: float = 0.0
    after: bool = True

    @classmethod
    def status_code(cls, status: int, retry_after: str | None = None) -> Fault:
        return cls("status", status=status, retry_after=retry_after)

    @classmethod
    def status_after(cls, status: int) -> Fault:
        """Forward, then answer ``status`` instead (a gateway that lost the server's answer)."""
        return cls("status_after", status=status)

    @classmethod
    def drop_after(cls) -> Fault:
        return cls("drop_after")

    @classmethod
    def slow(cls, seconds: float, after: bool = True) -> Fault:
        return cls("slow", seconds=seconds, after=after)

    @classmethod
    def reset_before(cls) -> Fault:
        return cls("reset_before")

    @classmethod
    def reset_after(cls) -> Fault:
        return cls("reset_after")

    @classmethod
    def truncate(cls) -> Fault:
        return cls("truncate")

    @classmethod
    def malformed(cls) -> Fault:
        return cls("malformed")

    @property
    def forwards(self) -> bool:
        """Whether the upstream server sees (and acts on) the request."""
        return self.kind not in ("status", "reset_before")


class FaultProxy:
    """Start with ``FaultProxy(upstream_port).start()``; ``url`` is its base URL.

    The port is bound (held) at creation; connections are refused until ``start()``.
    """

    def __init__(self, upstream_port: int, ssl_context: ssl.SSLContext | None = None) -> None:
        self.upstream_port = upstream_port
        self.counts: Counter[tuple[str, str]] = Counter()
        self.log: list[tuple[str, str, int]] = []
        self.requests: list[tuple[str, str, bytes]] = []
        """Every request's (method, path, body), in order."""
        self._faults: list[tuple[str, str, Fault]] = []
        self.rewrite: Callable[[str], str] | None = None
        """Maps the client's request target (path?query) to the upstream one."""
        self.filter_response: Callable[[str, str, bytes], bytes] | None = None
        """Rewrites an upstream body, given (method, upstream path, body)."""
        self.chooser: Callable[[str, str], Fault | None] | None = None
        """Picks a fault for a request no scheduled fault matched, given (method, path)."""
        self.injected: list[tuple[str, str, Fault]] = []
        """Every fault used, in order: (method, path, fault)."""
        self._lock = threading.Lock()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # else delayed ACKs add ~40 ms to every answer

            def log_message(self, format: str, *args: object) -> None:
                pass

            def _handle(self) -> None:
                proxy._serve(self)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _handle

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler, bind_and_activate=False)
        self.server.daemon_threads = True
        self.server.server_bind()
        if ssl_context is not None:
            self.server.socket = ssl_context.wrap_socket(self.server.socket, server_side=True)
        scheme = "https" if ssl_context is not None else "http"
        self.url = f"{scheme}://localhost:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever,
                                        kwargs={"poll_interval": 0.05}, daemon=True)

    def start(self) -> FaultProxy:
        """Listen (clients are refused until now) and serve."""
        self.server.server_activate()
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._thread.is_alive():
            self.server.shutdown()
        self.server.server_close()

    def inject(self, method: str, path_prefix: str, fault: Fault, times: int = 1) -> None:
        with self._lock:
            self._faults.extend([(method.upper(), path_prefix, fault)] * times)

    def reset(self) -> None:
        with self._lock:
            self._faults.clear()
            self.counts.clear()
            self.log.clear()
            self.requests.clear()

    def count(self, method: str, head: str) -> int:
        """Requests seen for a method and the first path segment after /v2 ('Users', 'Bulk')."""
        return self.counts[(method.upper(), head)]

    def _take(self, method: str, path: str) -> Fault | None:
        with self._lock:
            for i, (m, prefix, fault) in enumerate(self._faults):
                if m == method and path.startswith(prefix):
                    del self._faults[i]
                    self.injected.append((method, path, fault))
                    return fault
            chosen = self.chooser(method, path) if self.chooser is not None else None
            if chosen is not None:
                self.injected.append((method, path, chosen))
            return chosen

    def _serve(self, h: BaseHTTPRequestHandler) -> None:
        method = h.command
        target = self.rewrite(h.path) if self.rewrite is not None else h.path
        path = urlsplit(target).path
        parts = path.strip("/").split("/")
        if "v2" in parts:  # /v2/Users or /<tenant>/v2/Users
            parts = parts[parts.index("v2") + 1:]
        head = parts[0] if parts else ""
        length = int(h.headers.get("Content-Length") or 0)
        body = h.rfile.read(length) if length else b""
        with self._lock:
            self.counts[(method, head)] += 1
            self.requests.append((method, path, body))
        fault = self._take(method, path)
        if fault is not None and fault.kind == "status":
            self._answer(h, fault.status, {"Retry-After": fault.retry_after}
                         if fault.retry_after else {}, b'{"detail":"injected"}')
            self.log.append((method, path, fault.status))
            return
        if fault is not None and fault.kind == "reset_before":
            self.log.append((method, path, 0))
            self._reset(h)
            return
        if fault is not None and fault.kind == "slow" and not fault.after:
            time.sleep(fault.seconds)
        status, headers, payload = self._forward(method, target, h.headers, body)
        if self.filter_response is not None and payload:
            payload = self.filter_response(method, path, payload)
        self.log.append((method, path, status))
        if fault is not None and fault.kind == "drop_after":
            h.close_connection = True
            with contextlib.suppress(OSError):
                h.connection.shutdown(socket.SHUT_RDWR)
            return
        if fault is not None and fault.kind == "reset_after":
            self._reset(h)
            return
        if fault is not None and fault.kind == "truncate" and payload:
            payload = payload[: len(payload) // 2]
            h.close_connection = True
        if fault is not None and fault.kind == "malformed" and payload:
            payload = b'{"schemas": ["urn:ietf:params:scim:api:messages:2.0:Error"], <html>'
            h.close_connection = True
        if fault is not None and fault.kind == "status_after":
            status, headers, payload = fault.status, {}, b'{"detail":"injected after forwarding"}'
        if fault is not None and fault.kind == "slow" and fault.after:
            time.sleep(fault.seconds)
        # OSError: the client gave up (its timeout fired); that was the point.
        with contextlib.suppress(OSError):
            self._answer(h, status, headers, payload)

    @staticmethod
    def _reset(h: BaseHTTPRequestHandler) -> None:
        """Close with SO_LINGER 0: the client sees ECONNRESET, not an orderly end."""
        h.close_connection = True
        with contextlib.suppress(OSError):
            h.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                    struct.pack("ii", 1, 0))
            h.connection.close()

    def _forward(self, method: str, target: str, headers: object, body: bytes
                 ) -> tuple[int, dict[str, str], bytes]:
        conn = http.client.HTTPConnection("127.0.0.1", self.upstream_port, timeout=30)
        try:
            fwd = {k: v for k, v in headers.items()  # type: ignore[attr-defined]
                   if k.lower() not in HOP_HEADERS}
            conn.request(method, target, body=body or None, headers=fwd)
            resp = conn.getresponse()
            payload = resp.read()
            out = {k: v for k, v in resp.getheaders() if k.lower() not in HOP_HEADERS}
            return resp.status, out, payload
        finally:
            conn.close()

    @staticmethod
    def _answer(h: BaseHTTPRequestHandler, status: int, headers: dict[str, str],
                payload: bytes) -> None:
        h.send_response(status)
        for k, v in headers.items():
            if k.lower() not in ("server", "date"):
                h.send_header(k, v)
        h.send_header("Content-Length", str(len(payload)))
        h.end_headers()
        if payload:
            h.wfile.write(payload)
