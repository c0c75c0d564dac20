"""A call's params, form or JSON made into a Request, byte for byte as requests made it.

HttpClient encoded with requests' PreparedRequest until the transport seam; these are its
rules, kept so nothing changes on the wire (tests/unit/test_http_prepare.py compares the
two on a table of inputs):
- no params, no json, and ``data`` absent, str or bytes: URL and body go as given (every
  SCIM write; urllib3 sends a str as UTF-8, so it is encoded here);
- otherwise the URL is parsed and re-quoted (requests.utils.requote_uri), ``params`` join
  its query (None values dropped, sequences repeated), a mapping ``data`` becomes an
  urlencoded form, ``json`` a JSON body, each with its Content-Type unless one is given,
  and Content-Length is set ("0" on a bodiless method other than GET and HEAD).
"""

from __future__ import annotations

import json as jsonlib
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import quote, urlencode, urlunparse

from urllib3.exceptions import LocationParseError
from urllib3.util import parse_url

from .models import InvalidUrl, Request

Params = Mapping[str, Any] | Iterable[tuple[str, Any]]

_UNRESERVED = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")


def prepare(method: str, url: str, headers: dict[str, str], *, params: Params | None = None,
            json: Any = None, data: Any = None) -> Request:
    """The Request for one try; ``headers`` is not changed."""
    if params is None and json is None and (data is None or isinstance(data, str | bytes)):
        return Request(method, url, headers, data.encode() if isinstance(data, str) else data)
    url = _prepare_url(url, params)
    body: bytes | None = None
    kind = ""
    if not data and json is not None:
        body, kind = jsonlib.dumps(json, allow_nan=False).encode(), "application/json"
    elif data:
        if isinstance(data, str | bytes):
            body = data.encode() if isinstance(data, str) else data
        else:
            body, kind = _encode_pairs(data).encode(), "application/x-www-form-urlencoded"
    out = dict(headers)
    if body:
        _put(out, "Content-Length", str(len(body)))
    elif body is None and method not in ("GET", "HEAD") and not _has(out, "Content-Length"):
        out["Content-Length"] = "0"
    if kind and not _has(out, "Content-Type"):
        out["Content-Type"] = kind
    return Request(method, url, out, body)


def _prepare_url(url: str, params: Params | None) -> str:
    """requests' PreparedRequest.prepare_url: parse, rebuild, add params, re-quote."""
    url = url.lstrip()
    if ":" in url and not url.lower().startswith("http"):
        return url
    try:
        scheme, auth, host, port, path, query, fragment = parse_url(url)
    except LocationParseError as exc:
        raise InvalidUrl(*exc.args) from exc
    if not scheme:
        raise InvalidUrl(f"Invalid URL {url!r}: No scheme supplied. "
                         f"Perhaps you meant https://{url}?")
    if not host:
        raise InvalidUrl(f"Invalid URL {url!r}: No host supplied")
    if not host.isascii() or host.startswith(("*", ".")):
        raise InvalidUrl("URL has an invalid label.")   # urllib3 IDNA-encodes valid ones
    netloc = f"{auth}@{host}" if auth else host
    if port:
        netloc += f":{port}"
    encoded = _encode_pairs(params) if params is not None else ""
    if encoded:
        query = f"{query}&{encoded}" if query else encoded
    return requote_uri(urlunparse((scheme, netloc, path or "/", "", query, fragment)))


def _encode_pairs(data: Params) -> str:
    """requests' _encode_params: None values dropped, a sequence value repeated."""
    pairs: list[tuple[bytes, Any]] = []
    for key, values in (data.items() if isinstance(data, Mapping) else data):
        if isinstance(values, str | bytes) or not hasattr(values, "__iter__"):
            values = [values]
        for value in values:
            if value is not None:
                pairs.append((key.encode() if isinstance(key, str) else key,
                              value.encode() if isinstance(value, str) else value))
    return urlencode(pairs, doseq=True)


def requote_uri(uri: str) -> str:
    """Quote what must be quoted and nothing else (requests.utils.requote_uri)."""
    try:
        return quote(_unquote_unreserved(uri), safe="!#$%&'()*+,/:;=?@[]~")
    except ValueError:   # a '%' that starts no escape: quote it too
        return quote(uri, safe="!#$&'()*+,/:;=?@[]~")


def _unquote_unreserved(uri: str) -> str:
    """Undo the escapes of unreserved characters (RFC 3986 2.3); ValueError on a bad one."""
    parts = uri.split("%")
    for i in range(1, len(parts)):
        h = parts[i][0:2]
        if len(h) == 2 and h.isalnum():
            c = chr(int(h, 16))   # ValueError for "%zz", as requests' InvalidURL
            parts[i] = c + parts[i][2:] if c in _UNRESERVED else f"%{parts[i]}"
        else:
            parts[i] = f"%{parts[i]}"
    return "".join(parts)


def _has(headers: Mapping[str, str], name: str) -> bool:
    low = name.lower()
    return any(have.lower() == low for have in headers)


def _put(headers: dict[str, str], name: str, value: str) -> None:
    """Set ``name`` in any letter case, keeping its place (as CaseInsensitiveDict does)."""
    low = name.lower()
    for have in headers:
        if have.lower() == low:
            items = [(name, value) if k == have else (k, v) for k, v in headers.items()]
            headers.clear()
            headers.update(items)
            return
    headers[name] = value
