"""HttpClient against a real local server: retries, Retry-After, bounds, error translation."""

from __future__ import annotations

import email.utils
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from dirconnector.errors import AuthError, Conflict, SourceError, TransientError
from dirconnector.http import HttpClient, RetryPolicy, parse_retry_after


class Script:
    """Responses to hand out in order: (status, headers, body)."""

    def __init__(self) -> None:
        self.queue: list[tuple[int, dict[str, str], str]] = []
        self.seen = 0


@pytest.fixture
def server():
    script = Script()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            script.seen += 1
            status, headers, body = script.queue.pop(0) if script.queue else (200, {}, "{}")
            self.send_response(status)
            for k, v in headers.items():
                self.send_header(k, v)
            data = body.encode()
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_POST = do_GET

        def log_message(self, *args):
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", script
    httpd.shutdown()


def client(url: str, side="target", **kw) -> tuple[HttpClient, list[float]]:
    slept: list[float] = []
    c = HttpClient(url, side=side, label="test", sleep=slept.append,
                   retry=RetryPolicy(**kw) if kw else RetryPolicy(), timeout=5)
    return c, slept


def test_retry_after_forms():
    """Seconds, fractional seconds and HTTP dates all parse; junk is None."""
    assert parse_retry_after("3") == 3.0
    assert parse_retry_after("2.128") == pytest.approx(2.128)
    future = email.utils.formatdate(time.time() + 30, usegmt=True)
    assert 28 <= parse_retry_after(future) <= 31
    assert parse_retry_after("soon") is None and parse_retry_after(None) is None


def test_429_then_success_honours_retry_after(server):
    """A 429 with Retry-After: 1.5 waits 1.5 s, then succeeds."""
    url, script = server
    script.queue = [(429, {"Retry-After": "1.5"}, "{}"), (200, {}, '{"ok": true}')]
    c, slept = client(url)
    assert c.get_json("/x") == {"ok": True}
    assert slept == [1.5] and script.seen == 2


def test_503_storm_gives_up_after_the_bound(server):
    """Endless 503s end in a TransientError after the configured attempts."""
    url, script = server
    script.queue = [(503, {}, "busy")] * 10
    c, slept = client(url, attempts=3, base_delay=0.01)
    with pytest.raises(TransientError, match="gave up after 3 attempts"):
        c.get_json("/x")
    assert script.seen == 3 and len(slept) == 2


def test_total_wait_bound(server):
    """A Retry-After beyond the total wait budget fails instead of sleeping for an hour."""
    url, script = server
    script.queue = [(429, {"Retry-After": "50"}, "{}")] * 5
    c, _ = client(url, attempts=5, max_delay=60, max_total_wait=100)
    with pytest.raises(TransientError, match="still failing"):
        c.get_json("/x")


def test_errors_are_translated(server):
    """401 → AuthError, 409 → Conflict on a target; on a source both are SourceError."""
    url, script = server
    script.queue = [(401, {}, json.dumps({"detail": "bad token"})),
                    (409, {}, json.dumps({"detail": "exists"}))]
    c, _ = client(url)
    with pytest.raises(AuthError, match="bad token"):
        c.get_json("/x")
    with pytest.raises(Conflict, match="exists"):
        c.request("POST", "/x")
    script.queue = [(403, {}, json.dumps({"error": {"code": "Forbidden", "message": "no"}}))]
    s, _ = client(url, side="source")
    with pytest.raises(SourceError, match="answered 403: no"):
        s.get_json("/x")


def test_body_that_is_not_json_is_a_clear_error(server):
    """A truncated body names the request and shows its beginning."""
    url, script = server
    script.queue = [(200, {}, '{"Resources": [')]
    c, _ = client(url)
    with pytest.raises(TransientError, match="not JSON"):
        c.get_json("/Users")


def test_connection_refused_is_retried_then_transient():
    """Nobody listening: bounded retries, then one TransientError naming host and path."""
    c, slept = client("http://127.0.0.1:9", attempts=2, base_delay=0.01)
    with pytest.raises(TransientError, match=r"127\.0\.0\.1:9/x: connection failed after 2"):
        c.get_json("/x")
    assert len(slept) == 1
