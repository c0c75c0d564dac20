"""HTTPS server on 127.0.0.1 for the emulated Directory API and token endpoint.

TLS uses a throw-away CA from trustme; the connector is given the CA file through
``ca_file`` (httplib2's ``ca_certs``), the same way an operator trusts a proxy's CA.
"""

from __future__ import annotations

import json
import socket
import ssl
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import trustme

from .directory import Directory

TOKEN_PATH = "/token"


class GoogleEmulator:
    """Serves a :class:`Directory` until stopped; use as a context manager."""

    def __init__(self, directory: Directory | None = None, *, tls: bool = True,
                 workdir: Path | None = None, ca: trustme.CA | None = None) -> None:
        self.directory = directory or Directory()
        self.tls = tls
        self._workdir = workdir
        self._ca = ca
        """A CA to reuse across emulators (making one costs ~0.4 s)."""
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.ca_file: Path | None = None

    @property
    def base_url(self) -> str:
        assert self._server is not None, "emulator not started"
        host, port = self._server.server_address[:2]
        return f"{'https' if self.tls else 'http'}://{host!s}:{port}/"

    @property
    def token_uri(self) -> str:
        return self.base_url.rstrip("/") + TOKEN_PATH

    def start(self) -> GoogleEmulator:
        directory = self.directory

        class Handler(_Handler):
            dir = directory

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        server.daemon_threads = True
        if self.tls:
            ca = self._ca or trustme.CA()
            cert = _leaf(ca)
            ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            cert.configure_cert(ctx)
            server.socket = ctx.wrap_socket(server.socket, server_side=True)
            if self._workdir is not None:
                self.ca_file = self._workdir / "google-emulator-ca.pem"
                ca.cert_pem.write_to_path(str(self.ca_file))
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, args=(0.05,),
                                        name="google-emulator", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> GoogleEmulator:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()


_LEAVES: dict[int, tuple[trustme.CA, trustme.LeafCert]] = {}


def _leaf(ca: trustme.CA) -> trustme.LeafCert:
    """The server certificate for 127.0.0.1, made once per CA (key generation is slow)."""
    if id(ca) not in _LEAVES:
        _LEAVES[id(ca)] = (ca, ca.issue_cert("127.0.0.1", "localhost"))
    return _LEAVES[id(ca)][1]


class _Handler(BaseHTTPRequestHandler):
    dir: Directory
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # quiet under pytest
        pass

    def setup(self) -> None:
        # Headers and body leave in two writes; without NODELAY, Nagle plus delayed
        # ACKs add ~40 ms to every response.
        self.request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        super().setup()

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        params = dict(parse_qsl(url.query, keep_blank_values=True))
        status, headers, body = self.dir.handle("GET", url.path, params,
                                                self.headers.get("Authorization"))
        self._send(status, headers, body)

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length).decode()
        url = urlsplit(self.path)
        if url.path != TOKEN_PATH:
            status, headers, body = self.dir.handle("POST", url.path, {}, None)
            self._send(status, headers, body)
            return
        fault = self.dir.fault_for("token")
        if fault is not None:
            self._send(*fault)
            return
        status, body = self.dir.oauth.token(dict(parse_qsl(raw)), self.dir.user_exists)
        self._send(status, {"Cache-Control": "no-cache, no-store, max-age=0"}, body)

    def _send(self, status: int, headers: dict[str, str], body: dict[str, Any]) -> None:
        data = json.dumps(body, indent=2).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=UTF-8")
        self.send_header("Content-Length", str(len(data)))
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)
