"""A threaded HTTPS server on 127.0.0.1 playing login.microsoftonline.com and Graph.

One origin serves both: the identity endpoints at ``/{tenant}/...`` and Graph at ``/v1.0/...``.
The certificate comes from a throw-away trustme CA whose PEM is written to ``ca_file``.
Tests change the tenant through ``emulator.directory`` and steer failures with
``throttle()`` and ``directory.expire_delta_tokens()``; ``requests`` records every Graph
call so tests can assert what the client asked for.
"""

from __future__ import annotations

import json
import ssl
import threading
import time
import uuid
from dataclasses import dataclass
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import trustme

from .directory import Directory
from .identity import App, TokenIssuer, form_to_dict, openid_configuration
from .resources import GraphApi, GraphError, GraphRequest

JSON_TYPE = ("application/json;odata.metadata=minimal;odata.streaming=true;"
             "IEEE754Compatible=false;charset=utf-8")


@dataclass(frozen=True)
class Seen:
    """One Graph request as the emulator received it."""

    method: str
    path: str                 # after /v1.0/
    query: dict[str, str]
    status: int


class GraphEmulator:
    """Start with ``with GraphEmulator(tmp_path) as em:``; ``em.origin`` is its base URL."""

    def __init__(self, workdir: Path, tenant_id: str = "aaaabbbb-0000-cccc-1111-dddd2222eeee",
                 ) -> None:
        self.directory = Directory(tenant_id=tenant_id)
        self.api = GraphApi(self.directory)
        self.requests: list[Seen] = []
        self.token_requests = 0
        self.discovery_requests = 0
        self._throttle_left: float = 0
        self._throttle_status = 429
        self._throttle_after: str | None = "0.05"
        self._lock = threading.Lock()
        self._ca = trustme.CA()
        self.ca_file = workdir / "graph-emulator-ca.pem"
        self._ca.cert_pem.write_to_path(str(self.ca_file))
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self._ca.issue_cert("127.0.0.1", "localhost").configure_cert(ctx)
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self._server.daemon_threads = True
        self._server.socket = ctx.wrap_socket(self._server.socket, server_side=True)
        self.origin = f"https://127.0.0.1:{self._server.server_address[1]}"
        self.issuer = TokenIssuer(tenant_id, self.origin)
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,),
                                        daemon=True)

    # ------------------------------------------------------------ lifecycle

    def __enter__(self) -> GraphEmulator:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    # ------------------------------------------------------------ test controls

    @property
    def tenant_id(self) -> str:
        return self.directory.tenant_id

    def register_app(self, client_id: str, *, secret: str | None = None,
                     certificate_pem: bytes | None = None, roles: set[str] | None = None) -> App:
        """An app registration with application permissions granted and consented."""
        app = App(client_id, secret, certificate_pem, set(roles or ()))
        self.issuer.apps[client_id] = app
        return app

    def throttle(self, count: float, *, retry_after: str | None = "0.05",
                 status: int = 429) -> None:
        """The next ``count`` Graph requests (``float('inf')``: all) get ``status``."""
        with self._lock:
            self._throttle_left = count
            self._throttle_status = status
            self._throttle_after = retry_after

    def graph_calls(self, path: str | None = None) -> list[Seen]:
        with self._lock:
            return [s for s in self.requests if path is None or s.path == path]

    def reset_log(self) -> None:
        with self._lock:
            self.requests.clear()

    # ------------------------------------------------------------ dispatch

    def _take_throttle(self) -> bool:
        with self._lock:
            if self._throttle_left > 0:
                self._throttle_left -= 1
                return True
            return False

    def dispatch(self, method: str, target: str, headers: dict[str, str], body: bytes,
                 ) -> tuple[int, dict[str, Any], dict[str, str]]:
        url = urlsplit(target)
        parts = [p for p in url.path.split("/") if p]
        if method == "GET" and parts[1:] == ["v2.0", ".well-known", "openid-configuration"]:
            with self._lock:
                self.discovery_requests += 1
            if parts[0] != self.tenant_id:
                return 400, {"error": "invalid_tenant",
                             "error_description": f"AADSTS90002: Tenant '{parts[0]}' not found."
                             }, {}
            return 200, openid_configuration(self.origin, parts[0]), {}
        if method == "POST" and parts[1:] == ["oauth2", "v2.0", "token"]:
            with self._lock:
                self.token_requests += 1
            status, doc = self.issuer.token(parts[0], form_to_dict(body),
                                            f"{self.origin}{url.path}")
            return status, doc, {"Cache-Control": "no-store, no-cache", "Pragma": "no-cache"}
        if parts[:1] == ["v1.0"] and method == "GET":
            return self._graph("/".join(parts[1:]), url.query, headers)
        return 404, {"error": {"code": "NotFound", "message": f"{method} {url.path}"}}, {}

    def _graph(self, path: str, raw_query: str, headers: dict[str, str],
               ) -> tuple[int, dict[str, Any], dict[str, str]]:
        query = dict(parse_qsl(raw_query, keep_blank_values=True))
        extra = {"request-id": str(uuid.uuid4()),
                 "client-request-id": headers.get("client-request-id", str(uuid.uuid4())),
                 "x-ms-ags-diagnostic": '{"ServerInfo":{"DataCenter":"Local","Slice":"E"}}'}
        status, body, more = self._graph_answer(path, query, headers, extra)
        with self._lock:
            self.requests.append(Seen("GET", path, query, status))
        return status, body, {**extra, **more}

    def _graph_answer(self, path: str, query: dict[str, str], headers: dict[str, str],
                      extra: dict[str, str]) -> tuple[int, dict[str, Any], dict[str, str]]:
        auth = headers.get("authorization", "")
        bearer = auth[7:] if auth.lower().startswith("bearer ") else ""
        token = self.issuer.lookup(bearer) if bearer else None
        if token is None:
            # errors.md: 401 InvalidAuthenticationToken, with a WWW-Authenticate challenge.
            msg = "Access token is empty." if not bearer else "Access token validation failure."
            return 401, _error("InvalidAuthenticationToken", msg, extra), {
                "WWW-Authenticate": f'Bearer realm="", authorization_uri='
                f'"{self.origin}/common/oauth2/authorize", client_id="00000003-0000-0000-'
                f'c000-000000000000"'}
        if self._take_throttle():
            # throttling.md: 429 TooManyRequests with Retry-After (may be fractional).
            status = self._throttle_status
            code = {429: "TooManyRequests", 503: "serviceNotAvailable",
                    504: "UnknownError"}.get(status, "UnknownError")
            hdrs = {"Retry-After": self._throttle_after} if self._throttle_after else {}
            if status == 429:
                hdrs["x-ms-throttle-scope"] = "Tenant_Application/ReadWrite/" + self.tenant_id
            return status, _error(code, "Too many requests" if status == 429
                                  else "Service Unavailable", extra), hdrs
        prefer = headers.get("prefer", "")
        max_page = None
        for item in prefer.split(","):
            name, _, value = item.strip().partition("=")
            if name.lower() == "odata.maxpagesize" and value.isdigit():
                max_page = int(value)
        req = GraphRequest(path, query, self.origin, token.roles, max_page)
        try:
            return 200, self.api.handle(req), {}
        except GraphError as exc:
            return exc.status, _error(exc.code, exc.message, extra), {}


def _error(code: str, message: str, extra: dict[str, str]) -> dict[str, Any]:
    """errors.md: {"error": {"code", "message", "innerError": {date, request-id, ...}}}."""
    return {"error": {"code": code, "message": message, "innerError": {
        "date": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime()),
        "request-id": extra["request-id"], "client-request-id": extra["client-request-id"]}}}


def _handler(em: GraphEmulator) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        # Headers and body in one segment: an unbuffered write of each meets the client's
        # delayed ACK and costs ~40 ms per request on keep-alive connections.
        wbufsize = 1 << 16
        disable_nagle_algorithm = True

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def _serve(self, method: str) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            headers = {k.lower(): v for k, v in self.headers.items()}
            status, doc, extra = em.dispatch(method, self.path, headers, body)
            data = json.dumps(doc).encode()
            self.send_response(status)
            self.send_header("Content-Type", JSON_TYPE if "/v1.0/" in self.path
                             else "application/json; charset=utf-8")
            self.send_header("Content-Length", str(len(data)))
            self.send_header("Date", formatdate(usegmt=True))
            self.send_header("Strict-Transport-Security", "max-age=31536000")
            for k, v in extra.items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            self._serve("GET")

        def do_POST(self) -> None:
            self._serve("POST")

    return Handler
