"""HttpClient against a real local server: retries, Retry-After, bounds, error translation."""

from __future__ import annotations

import base64
import email.utils
import gzip
import json
import ssl
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from dirconnector.errors import AuthError, Conflict, SourceError, TargetError, TransientError
from dirconnector.http import HttpClient, RetryPolicy, parse_retry_after


class Script:
    """Responses to hand out in order: (status, headers, body); the requests that came."""

    def __init__(self) -> None:
        self.queue: list[tuple[int, dict[str, str], str | bytes]] = []
        self.seen = 0
        self.requests: list[tuple[str, str, dict[str, str], bytes]] = []
        """(method, request target, headers by lower-case name, body) of each request."""


def serve(script: Script, tls: ssl.SSLContext | None = None) -> tuple[str, ThreadingHTTPServer]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            script.seen += 1
            sent = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            headers = {k.lower(): v for k, v in self.headers.items()}
            script.requests.append((self.command, self.path, headers, sent))
            status, headers, body = script.queue.pop(0) if script.queue else (200, {}, "{}")
            self.send_response(status)
            for k, v in headers.items():
                self.send_header(k, v)
            data = body.encode() if isinstance(body, str) else body
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_POST = do_PUT = do_PATCH = do_GET

        def log_message(self, *args):
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    if tls is not None:
        httpd.socket = tls.wrap_socket(httpd.socket, server_side=True)
    threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05},
                     daemon=True).start()
    scheme = "https" if tls is not None else "http"
    return f"{scheme}://127.0.0.1:{httpd.server_address[1]}", httpd


@pytest.fixture
def server():
    script = Script()
    url, httpd = serve(script)
    yield url, script
    httpd.shutdown()


@pytest.fixture
def no_proxy_env(monkeypatch):
    """No proxy settings from the machine running the tests."""
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)
    return monkeypatch


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


def test_requests_carry_default_headers_and_encoded_bodies(server):
    """Default headers, caller headers (any case), params, forms and json, as requests sent them."""
    url, script = server
    c = HttpClient(url, side="target", label="test", headers={"accept": "application/scim+json"},
                   auth=lambda: {"Authorization": "Bearer tok"})
    c.request("GET", "/Users", params={"filter": 'userName eq "a b"', "count": 5, "skip": None})
    c.request("POST", "/token", data={"grant_type": "client_credentials", "scope": "a b"})
    c.request("PUT", "/Users/1", json={"name": "é"}, headers={"content-type": "application/x"})
    c.request("PATCH", "/Users/1", data='{"op": "x"}', headers={"Content-Type": "application/y"})
    (m1, p1, h1, b1), (_, _, h2, b2), (_, _, h3, b3), (m4, _, h4, b4) = script.requests
    assert (m1, p1, b1) == ("GET", "/Users?filter=userName+eq+%22a+b%22&count=5", b"")
    assert h1["accept"] == "application/scim+json" and h1["authorization"] == "Bearer tok"
    assert h1["user-agent"] == "dirconnector/0.1" and "gzip" in h1["accept-encoding"]
    assert b2 == b"grant_type=client_credentials&scope=a+b"
    assert h2["content-type"] == "application/x-www-form-urlencoded"
    assert json.loads(b3) == {"name": "é"} and h3["content-type"] == "application/x"
    assert (m4, b4, h4["content-type"]) == ("PATCH", b'{"op": "x"}', "application/y")
    assert c.requests_sent == 4


def test_gzip_answers_and_redirects(server):
    """A gzip body is decoded; a redirect on the same host is followed with its credentials."""
    url, script = server
    script.queue = [(302, {"Location": "/moved"}, ""),
                    (200, {"Content-Encoding": "gzip"}, gzip.compress(b'{"ok": 1}'))]
    c = HttpClient(url, side="source", label="test", auth=lambda: {"Authorization": "Bearer t"})
    assert c.get_json("/x") == {"ok": 1}
    assert [(p, h["authorization"]) for _, p, h, _ in script.requests] == [
        ("/x", "Bearer t"), ("/moved", "Bearer t")]


def test_a_netrc_entry_does_not_replace_the_authorization_header(server, tmp_path, monkeypatch):
    """~/.netrc is not consulted (requests let a matching entry overwrite Authorization)."""
    url, script = server
    (tmp_path / ".netrc").write_text("machine 127.0.0.1 login someone password secret\n")
    (tmp_path / ".netrc").chmod(0o600)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("NETRC", str(tmp_path / ".netrc"))
    c = HttpClient(url, side="target", label="test", auth=lambda: {"Authorization": "Bearer t"})
    c.request("GET", "/x")
    assert script.requests[0][2]["authorization"] == "Bearer t"


def test_a_proxy_from_the_environment_is_used(no_proxy_env):
    """HTTP_PROXY (with credentials) carries the requests; the proxy sees the absolute URL."""
    proxy = Script()
    proxy.queue = [(200, {}, '{"via": "proxy"}')]
    proxy_url, httpd = serve(proxy)
    try:
        no_proxy_env.setenv("HTTP_PROXY", proxy_url.replace("//", "//user:pw@"))
        c = HttpClient("http://scim.example.invalid:8080/v2", side="target", label="test",
                       auth=lambda: {"Authorization": "Bearer t"})
        assert c.get_json("Users") == {"via": "proxy"}
    finally:
        httpd.shutdown()
    (_, target, headers, _), = proxy.requests
    assert target == "http://scim.example.invalid:8080/v2/Users"
    assert headers["authorization"] == "Bearer t"
    assert headers["proxy-authorization"] == "Basic " + base64.b64encode(b"user:pw").decode()


def test_no_proxy_sends_past_the_proxy(server, no_proxy_env):
    """A host listed in NO_PROXY is reached directly although HTTP_PROXY is set."""
    url, script = server
    proxy = Script()
    proxy_url, httpd = serve(proxy)
    try:
        no_proxy_env.setenv("HTTP_PROXY", proxy_url)
        no_proxy_env.setenv("NO_PROXY", "localhost,127.0.0.1")
        c, _ = client(url)
        assert c.get_json("/x") == {}
    finally:
        httpd.shutdown()
    assert proxy.requests == [] and [p for _, p, _, _ in script.requests] == ["/x"]


@pytest.fixture
def tls_server(tmp_path):
    """An HTTPS server with a throwaway CA; yields (url, that CA's PEM, another CA's PEM)."""
    trustme = pytest.importorskip("trustme")
    ca, other = trustme.CA(), trustme.CA()
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(ctx)
    ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    other.cert_pem.write_to_path(str(tmp_path / "other.pem"))
    url, httpd = serve(Script(), tls=ctx)
    yield url, str(tmp_path / "ca.pem"), str(tmp_path / "other.pem")
    httpd.shutdown()


def test_requests_ca_bundle_replaces_the_default_trust_not_a_ca_file(tls_server, monkeypatch):
    """REQUESTS_CA_BUNDLE is honoured when no ca_file is set; a ca_file always wins."""
    url, ca, other = tls_server
    monkeypatch.delenv("CURL_CA_BUNDLE", raising=False)
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", ca)
    assert HttpClient(url, side="target", label="test").get_json("/x") == {}
    assert HttpClient(url, side="target", label="test", verify=ca).get_json("/x") == {}
    wrong = HttpClient(url, side="target", label="test", verify=other)
    with pytest.raises(TargetError, match=r"TLS handshake .* certificate verify failed"):
        wrong.get_json("/x")
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", other)
    with pytest.raises(TargetError, match="certificate verify failed"):
        HttpClient(url, side="target", label="test").get_json("/x")
