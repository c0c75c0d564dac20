"""Local receivers for notifications: a webhook endpoint, an SMTP server, a dead port.

``Webhook`` records every POST (path, headers, raw body). ``Mailbox`` is aiosmtpd with
STARTTLS required before AUTH (a trustme CA signs its certificate) and one login; it
records each message with whether TLS and a login were used. ``hanging()`` is a port
that accepts connections and never answers (a receiver that is down but not refusing).
Everything captured can be written to a folder the session's secret-leak check reads.
"""

from __future__ import annotations

import email
import email.policy
import json
import socket
import ssl
import threading
import time
from dataclasses import dataclass
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import trustme
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from tests.integration.scim.conftest import free_port


@dataclass
class Post:
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


class Webhook:
    """An HTTP endpoint on 127.0.0.1 that answers 204 and keeps what it was sent."""

    def __init__(self) -> None:
        self.posts: list[Post] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                receiver.posts.append(Post(self.path, dict(self.headers.items()), body))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *_: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def on(self, prefix: str) -> list[Post]:
        return [p for p in self.posts if p.path.startswith(prefix)]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@dataclass
class Mail:
    message: EmailMessage
    tls: bool
    login: bool
    rcpt: list[str]
    raw: bytes


class Mailbox:
    """aiosmtpd on 127.0.0.1: STARTTLS required, then AUTH as ``user``/``password``."""

    def __init__(self, folder: Path, user: str, password: str) -> None:
        ca = trustme.CA()
        cert = ca.issue_cert("127.0.0.1", "localhost")
        server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        cert.configure_cert(server_ctx)
        self.ca_file = folder / "smtp-ca.pem"
        ca.cert_pem.write_to_path(str(self.ca_file))
        self.mails: list[Mail] = []
        box = self

        class Handler:
            async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
                raw = envelope.original_content or envelope.content
                msg = email.message_from_bytes(raw, policy=email.policy.default)
                box.mails.append(Mail(msg, session.ssl is not None, bool(session.authenticated),
                                      list(envelope.rcpt_tos), raw))
                return "250 OK"

        def authenticator(_server: Any, _session: Any, _envelope: Any, _mechanism: str,
                          data: Any) -> AuthResult:
            ok = isinstance(data, LoginPassword) and data.login == user.encode() \
                and data.password == password.encode()
            return AuthResult(success=ok)

        self.port = free_port()
        self.controller = Controller(Handler(), hostname="127.0.0.1", port=self.port,
                                     tls_context=server_ctx, require_starttls=True,
                                     authenticator=authenticator, auth_require_tls=True,
                                     ready_timeout=10)
        self.controller.start()

    def events(self) -> list[str]:
        return [str(m.message["X-Dirconnector-Event"]) for m in self.mails]

    def close(self) -> None:
        self.controller.stop()


def hanging() -> tuple[socket.socket, str]:
    """A listening socket nobody accepts from: connections open, no answer ever comes."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    return sock, f"http://127.0.0.1:{sock.getsockname()[1]}"


def closed_port() -> str:
    """A URL where nothing listens (connections are refused)."""
    return f"http://127.0.0.1:{free_port()}"


def wait_until(cond: Any, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(0.05)
    raise AssertionError("condition not reached in time")


def save(folder: Path, webhook: Webhook | None, mailbox: Mailbox | None) -> None:
    """Write every captured message under ``folder`` (read by the secret-leak check)."""
    folder.mkdir(parents=True, exist_ok=True)
    for i, post in enumerate(webhook.posts if webhook else []):
        # What was sent: headers and body (the path is the receiver's own URL, its key).
        (folder / f"post-{i:02d}.txt").write_bytes(json.dumps(post.headers).encode()
                                                   + b"\n\n" + post.body)
    for i, mail in enumerate(mailbox.mails if mailbox else []):
        (folder / f"mail-{i:02d}.eml").write_bytes(mail.raw)
