"""HttpClient: retries, Retry-After, bounds and error translation through a function
transport; the urllib3 transport itself (wire format, proxies, TLS, redirects) against
a real local server."""

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
from dirconnector.http import (
    Backoff,
    Headers,
    HttpClient,
    Request,
    Response,
    RetryPolicy,
    TlsError,
    TransportTimeout,
    is_testing,
    parse_retry_after,
    pause,
    set_testing,
)


class Script:
    """Responses to hand out in order: (status, headers, body); the requests that came."""

    def __init__(self) -> None:
        self.queue: list[tuple[int, dict[str, str] | list[tuple[str, str]], str | bytes]] = []
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
            for k, v in headers.items() if isinstance(headers, dict) else headers:
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


class Replies:
    """A function transport: hands out the given answers (or raises the given errors) in
    order, and keeps every Request it was handed."""

    def __init__(self, *replies: Response | OSError) -> None:
        self.replies = list(replies)
        self.requests: list[Request] = []

    def __call__(self, request: Request) -> Response:
        self.requests.append(request)
        reply = self.replies.pop(0) if self.replies else Response(200, json={})
        if isinstance(reply, OSError):
            raise reply
        return reply


def fake(*replies: Response | OSError, side="target", **kw) -> tuple[HttpClient, Replies,
                                                                     list[float]]:
    """An HttpClient on a function transport, with the sleeps it asks for recorded."""
    slept: list[float] = []
    transport = Replies(*replies)
    c = HttpClient("https://api.example.test/v2", side=side, label="test", sleep=slept.append,
                   retry=RetryPolicy(**kw) if kw else RetryPolicy(), transport=transport)
    return c, transport, slept


def test_429_then_success_honours_retry_after():
    """A 429 with Retry-After: 1.5 waits 1.5 s, then succeeds."""
    c, sent, slept = fake(Response(429, headers={"Retry-After": "1.5"}),
                          Response(200, json={"ok": True}))
    assert c.get_json("/x") == {"ok": True}
    assert slept == [1.5] and len(sent.requests) == 2


def test_retry_after_as_an_http_date_is_waited_for():
    """Retry-After as an HTTP date (RFC 9110 10.2.3) waits until that moment."""
    when = email.utils.formatdate(time.time() + 20, usegmt=True)
    c, _, slept = fake(Response(503, headers={"Retry-After": when}), Response(200, json=[]))
    assert c.get_json("/x") == []
    assert 18 <= slept[0] <= 21


def test_a_retry_after_longer_than_max_delay_is_cut_to_it():
    """One wait never exceeds max_delay, whatever the server asks for."""
    c, _, slept = fake(Response(429, headers={"Retry-After": "3600"}), Response(200, json={}),
                       max_delay=7, max_total_wait=100)
    c.get_json("/x")
    assert slept == [7]


def test_the_vendor_hint_is_used_without_retry_after():
    """With no Retry-After, retry_hint reads the wait from the vendor's headers (Okta)."""
    slept: list[float] = []
    c = HttpClient("https://okta.example.test", side="source", label="okta", sleep=slept.append,
                   retry_hint=lambda resp: float(resp.headers["X-Rate-Limit-Reset"]),
                   transport=Replies(Response(429, headers={"x-rate-limit-reset": "4"}),
                                     Response(200, json={})))
    c.get_json("/api/v1/users")
    assert slept == [4.0]


def test_backoff_without_a_hint_grows_within_jitter():
    """Without a hint each wait is between half and all of base_delay * 2**(try-1)."""
    c, _, slept = fake(*[Response(502)] * 4, Response(200, json={}), base_delay=1)
    c.get_json("/x")
    assert [(lo / 2 <= w <= lo) for w, lo in zip(slept, (1, 2, 4, 8), strict=True)] == [True] * 4


def test_testing_mode_retries_at_once_and_still_logs_the_wait(caplog):
    """With set_testing on, a 429's Retry-After is logged and the retry sent without waiting."""
    transport = Replies(Response(429, headers={"Retry-After": "30"}),
                        Response(200, json={"ok": True}))
    c = HttpClient("https://api.example.test", side="target", label="test",
                   transport=transport)   # the default sleep
    started = time.monotonic()
    with caplog.at_level("INFO", logger="dirconnector.http"):
        assert c.get_json("/x") == {"ok": True}
    assert time.monotonic() - started < 5 and len(transport.requests) == 2
    assert "HTTP 429; retry 1 in 30.00s" in caplog.text


def test_pause_sleeps_unless_testing(monkeypatch):
    """http.pause sleeps the given seconds with testing mode off and not at all with it on."""
    slept: list[float] = []
    monkeypatch.setattr(time, "sleep", slept.append)
    set_testing(False)
    pause(0.5)
    set_testing(True)
    pause(0.7)
    assert slept == [0.5] and is_testing()


def test_503_storm_gives_up_after_the_bound():
    """Endless 503s end in a TransientError after the configured attempts."""
    c, sent, slept = fake(*[Response(503, text="busy")] * 10, attempts=3, base_delay=0.01)
    with pytest.raises(TransientError, match="gave up after 3 attempts") as caught:
        c.get_json("/x")
    assert len(sent.requests) == 3 and len(slept) == 2
    assert "answered 503: busy" in str(caught.value)


def test_total_wait_bound():
    """A Retry-After beyond the total wait budget fails instead of sleeping for an hour."""
    c, _, slept = fake(*[Response(429, headers={"Retry-After": "50"})] * 5,
                       attempts=5, max_delay=60, max_total_wait=100)
    with pytest.raises(TransientError, match=r"still failing \(HTTP 429\) after 3 attempt"):
        c.get_json("/x")
    assert slept == [50, 50]


def test_a_status_is_retried_only_where_the_caller_widens_the_set():
    """500 is final by default; an idempotent read that lists it in retry_statuses retries it."""
    c, sent, _ = fake(Response(500), Response(500), Response(200, json={}))
    with pytest.raises(TargetError, match="answered 500"):
        c.get_json("/x")
    assert c.get_json("/x", retry_statuses={500}) == {} and len(sent.requests) == 3


def test_each_retry_is_reported_and_signed_afresh():
    """on_retry hears each retry; auth and sign run on every try (a DPoP proof is single-use)."""
    proofs = iter(["p1", "p2"])
    heard: list[tuple[int, str]] = []
    transport = Replies(Response(503), Response(201, json={"id": "7"}))
    c = HttpClient("https://api.example.test", side="target", label="test", transport=transport,
                   auth=lambda: {"Authorization": "Bearer t"},
                   sign=lambda method, url: {"DPoP": next(proofs)})
    resp = c.request("POST", "Users", data="{}", on_retry=lambda n, why: heard.append((n, why)))
    assert resp.status == 201 and resp.json() == {"id": "7"}
    assert [r.headers["dpop"] for r in transport.requests] == ["p1", "p2"]
    assert all(r.headers["authorization"] == "Bearer t" for r in transport.requests)
    assert heard == [(1, "HTTP 503")]


def test_errors_are_translated():
    """401 → AuthError, 409 → Conflict on a target; on a source both are SourceError."""
    c, _, _ = fake(Response(401, json={"detail": "bad token"}),
                   Response(409, json={"detail": "exists"}))
    with pytest.raises(AuthError, match="bad token"):
        c.get_json("/x")
    with pytest.raises(Conflict, match="exists"):
        c.request("POST", "/x")
    s, _, _ = fake(Response(403, json={"error": {"code": "Forbidden", "message": "no"}}),
                   Response(409, json={"detail": "exists"}), side="source")
    with pytest.raises(SourceError, match="answered 403: no"):
        s.get_json("/x")
    with pytest.raises(SourceError, match="answered 409: exists") as caught:
        s.get_json("/x")
    assert not isinstance(caught.value, Conflict)


def test_body_that_is_not_json_is_a_clear_error():
    """A truncated body names the request and shows its beginning."""
    c, _, _ = fake(Response(200, content=b'{"Resources": ['))
    with pytest.raises(TransientError, match=r"GET /v2/Users answered 200 with a body that is "
                                             r"not JSON \('{\"Resources\": \['\)"):
        c.get_json("/Users")


def test_a_dropped_connection_is_retried_then_transient():
    """A transport's OSError is a connection failure: retried, then a TransientError."""
    c, sent, slept = fake(ConnectionResetError("reset"), ConnectionResetError("reset"),
                          attempts=2, base_delay=0.01)
    with pytest.raises(TransientError, match=r"api\.example\.test/v2/x: connection failed "
                                             r"after 2 attempt"):
        c.get_json("/x")
    assert len(sent.requests) == 2 and len(slept) == 1


def test_a_timeout_says_so_and_a_write_that_may_have_landed_is_not_resent():
    """With retry_connection_errors off a timeout fails at once, named a timeout."""
    c, sent, slept = fake(TransportTimeout("read timed out"))
    with pytest.raises(TransientError, match="timed out after 1 attempt"):
        c.request("POST", "Users", data="{}", retry_connection_errors=False)
    assert len(sent.requests) == 1 and slept == []


def test_a_tls_failure_is_not_retried_and_says_what_to_set():
    """A failed TLS handshake is the side's error at once, with the ca_file hint."""
    c, sent, _ = fake(TlsError("certificate verify failed: self-signed certificate"))
    with pytest.raises(TargetError, match=r"TLS handshake with api\.example\.test/v2/x failed: "
                                          r"certificate verify failed") as caught:
        c.get_json("/x")
    assert "ca_file" in caught.value.hint and len(sent.requests) == 1


def test_the_transport_gets_the_prepared_request():
    """Method, absolute URL with params, headers and the encoded body reach the transport."""
    c, sent, _ = fake()
    c.request("PUT", "Users/1", params={"attributes": "id"}, json={"name": "é"},
              headers={"If-Match": 'W/"1"'})
    (req,) = sent.requests
    assert (req.method, req.url) == ("PUT", "https://api.example.test/v2/Users/1?attributes=id")
    assert req.json() == {"name": "é"} and req.headers["if-match"] == 'W/"1"'
    assert req.headers["Content-Type"] == "application/json"
    assert req.headers["User-Agent"] == "dirconnector/0.1"


def test_a_response_without_url_gets_the_one_asked_for():
    """HttpClient fills in Response.url when a function transport leaves it empty."""
    c, _, _ = fake(Response(200, json={}))
    assert c.request("GET", "Groups", params={"count": 1}).url == \
        "https://api.example.test/v2/Groups?count=1"


def test_response_and_headers():
    """Headers are case-insensitive and keep repeats apart; json and text read the body."""
    h = Headers([("Link", "<a>; rel=self"), ("link", "<b>; rel=next"), ("ETag", 'W/"2"')])
    assert h["LINK"] == "<a>; rel=self, <b>; rel=next" and h.get("etag") == 'W/"2"'
    assert h.get_list("Link") == ["<a>; rel=self", "<b>; rel=next"] and "x" not in h
    r = Response(200, json={"a": [1]})
    assert r.json() == {"a": [1]} and r.headers["content-type"] == "application/json"
    latin = Response(400, content="né".encode("latin-1"),
                     headers={"Content-Type": "text/plain; charset=ISO-8859-1"})
    assert latin.text == "né"
    with pytest.raises(AttributeError):
        r.status = 500  # type: ignore[misc]


def test_backoff_counts_tries_and_total_wait():
    """Backoff stops at the last try and before the total wait would pass its cap."""
    slept: list[float] = []
    waits = Backoff(RetryPolicy(attempts=3, max_delay=10, max_total_wait=15), sleep=slept.append)
    assert waits.again(1, hinted=10) and not waits.again(2, hinted=6)
    assert waits.again(2, hinted=5) and not waits.again(3, hinted=0)
    assert slept == [10, 5] and waits.waited == 15


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


def test_a_redirect_to_another_host_drops_the_credentials(server, no_proxy_env):
    """Authorization goes to the host it was meant for, never to the one a redirect names."""
    url, script = server
    other = Script()
    other_url, httpd = serve(other)
    try:
        script.queue = [(307, {"Location": other_url.replace("127.0.0.1", "localhost") + "/y"},
                         "")]
        c = HttpClient(url, side="target", label="test", auth=lambda: {"Authorization": "Bearer t"})
        assert c.get_json("/x") == {}
    finally:
        httpd.shutdown()
    assert script.requests[0][2]["authorization"] == "Bearer t"
    (_, path, headers, _), = other.requests
    assert path == "/y" and "authorization" not in headers


def test_repeated_header_lines_stay_apart(server):
    """Two Link lines (Okta sends self and next apart) come back as two values."""
    url, script = server
    script.queue = [(200, [("Link", '<a>; rel="self"'), ("Link", '<b>; rel="next"')], "[]")]
    resp = HttpClient(url, side="source", label="test").request("GET", "/x")
    assert resp.headers.get_list("link") == ['<a>; rel="self"', '<b>; rel="next"']
    assert resp.url == url + "/x" and resp.reason == "OK"


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
