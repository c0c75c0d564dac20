"""http.prepare sends what requests' PreparedRequest sent, byte for byte: URL, headers, body."""

from __future__ import annotations

from typing import Any

import pytest
import requests
from requests.utils import default_headers

from dirconnector.http import InvalidUrl
from dirconnector.http.client import _DEFAULT_HEADERS
from dirconnector.http.prepare import prepare

BASE = {"User-Agent": "dirconnector/0.1", "Accept": "application/json",
        "Authorization": "Bearer t"}

CASES: list[tuple[str, str, dict[str, Any]]] = [
    ("GET", "https://h.test/scim/v2/Users", {"params": {"filter": 'userName eq "a b"',
                                                       "count": 5, "skip": None}}),
    ("GET", "https://h.test/v1.0/users?$select=id", {"params": {"$top": "999"}}),
    ("GET", "https://h.test/api/v1/users", {"params": [("search", 'status eq "ACTIVE"'),
                                                       ("limit", 200)]}),
    ("GET", "https://h.test/api/2/users", {"params": {"fields": ["id", "email"], "flag": True}}),
    ("GET", "https://H.test:8443/a b/é?x=1#frag", {"params": {"q": "ü~*'()"}}),
    ("GET", "https://h.test/x%2Fy/%41%7e%zz", {"params": {"a": "1"}}),
    ("GET", "https://h.test", {"params": {}}),
    ("POST", "https://h.test/connect/token", {"data": {"grant_type": "client_credentials",
                                                       "scope": "api.organization a+b"}}),
    ("POST", "https://h.test/oauth2/v1/token", {"data": [("a", "1"), ("a", "2")]}),
    ("POST", "https://h.test/token", {"json": {"grant_type": "client_credentials"},
                                      "headers": {"content-type": "application/x"}}),
    ("PUT", "https://h.test/public/members/1", {"json": {"name": "é", "n": [1, None]}}),
    ("POST", "https://h.test/public/members/1/revoke", {"data": {}}),
    ("POST", "https://h.test/p", {"json": {}, "data": {}}),
    ("DELETE", "https://h.test/p", {"params": {"force": "1"}}),
    ("PATCH", "https://h.test/p", {"params": {"a": "1"}, "data": '{"op": "é"}'}),
    ("POST", "https://h.test/p", {"params": {"a": "1"}, "data": b"raw"}),
]


def _requests(method: str, url: str, headers: dict[str, str], **kw: Any
              ) -> tuple[str, list[tuple[str, str]], bytes | None]:
    p = requests.PreparedRequest()
    p.prepare(method=method, url=url, headers=headers, **kw)
    body = p.body.encode() if isinstance(p.body, str) else p.body
    return str(p.url), list(p.headers.items()), body


@pytest.mark.parametrize(("method", "url", "kw"), CASES)
def test_prepared_like_requests(method: str, url: str, kw: dict[str, Any]) -> None:
    """URL, headers (names, order, values) and body equal requests' PreparedRequest's."""
    headers = {**BASE, **kw.pop("headers", {})}
    ours = prepare(method, url, headers, **kw)
    assert (ours.url, list(ours.headers.items()), ours.content) == _requests(
        method, url, headers, **kw)


def test_no_params_no_json_sends_url_and_body_as_given() -> None:
    """The SCIM write path: nothing re-encoded, a str body sent as UTF-8, headers untouched."""
    req = prepare("POST", "https://h.test/Users", dict(BASE), data='{"userName": "é"}')
    assert req.url == "https://h.test/Users" and req.content == '{"userName": "é"}'.encode()
    assert dict(req.headers) == BASE
    assert prepare("DELETE", "https://h.test/Users/1", dict(BASE)).content is None


def test_a_url_without_a_host_is_invalid() -> None:
    """A URL that names no host is refused before anything is sent."""
    with pytest.raises(InvalidUrl, match="No host"):
        prepare("GET", "https:///x", {}, params={"a": "1"})


def test_default_headers_are_requests_own_with_ours() -> None:
    """User-Agent and Accept are ours; Accept-Encoding and Connection are requests' defaults."""
    expected = {**default_headers(), "Accept": "application/json",
                "User-Agent": "dirconnector/0.1"}
    assert list(_DEFAULT_HEADERS.items()) == list(expected.items())
