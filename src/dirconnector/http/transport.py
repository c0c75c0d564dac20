"""The real transport: a Request sent through urllib3, the way requests sent it.

requests' Session is not used: merging session settings, cookies and hooks per request
cost as much CPU as urllib3 and http.client together (0.3 of 0.7 ms per SCIM POST).
What it did that matters is kept:
- proxies from the environment (HTTP(S)_PROXY, ALL_PROXY, NO_PROXY), read with requests'
  own functions (CIDR entries in NO_PROXY, SOCKS and proxy credentials included);
- its CA bundle (certifi's), or REQUESTS_CA_BUNDLE / CURL_CA_BUNDLE in place of it,
  never in place of a ca_file or of verification turned off;
- redirects followed, up to 30, with Authorization and Cookie dropped on another host
  (urllib3's Retry.remove_headers_on_redirect);
- bodies with Content-Encoding gzip or deflate decoded.
No cookies are kept between requests: every API here authenticates with a header.
urllib3 retries nothing: HttpClient does, by the project's rules.
"""

from __future__ import annotations

import os
import ssl
import threading
from typing import Any
from urllib.parse import urlsplit

import urllib3
from requests.adapters import HTTPAdapter
from requests.utils import DEFAULT_CA_BUNDLE_PATH, get_environ_proxies, select_proxy
from urllib3.exceptions import MaxRetryError, NewConnectionError

from .models import (
    Headers,
    InvalidUrl,
    Request,
    Response,
    TlsError,
    TransportError,
    TransportTimeout,
)

_TRANSPORT_RETRIES = urllib3.Retry(total=None, connect=0, read=False, status=0, other=0,
                                   redirect=30)
"""urllib3 retries nothing (HttpClient's loop does, with its own rules) but follows up to
30 redirects, as requests did; on another host it drops Authorization and Cookie."""


class Urllib3Transport:
    """Pooled connections to any host, direct or through the environment's proxy."""

    def __init__(self, *, verify: bool | str = True, timeout: float = 30.0,
                 pool_size: int = 16) -> None:
        """``verify``: False, True (the default CA bundle) or a CA file or directory."""
        self._timeout = urllib3.Timeout(connect=timeout, read=timeout)
        self._tls = _tls_options(_env_ca_bundle(verify))
        self._lock = threading.Lock()
        self._direct = urllib3.PoolManager(num_pools=pool_size, maxsize=pool_size, **self._tls)
        self._proxy_pools = HTTPAdapter(pool_connections=pool_size, pool_maxsize=pool_size)
        """Only its proxy_manager_for: requests' proxy handling (SOCKS, credentials)."""
        self._managers: dict[str, urllib3.PoolManager] = {}
        """Origin (scheme://host:port) -> the pool manager that reaches it, direct or proxied."""

    def __call__(self, request: Request) -> Response:
        """One exchange; a failure below HTTP raises TransportError (or a subclass)."""
        url = request.url
        try:
            raw = self._manager(url).urlopen(
                request.method, url, body=request.content,
                headers=dict(request.headers.multi_items()),
                timeout=self._timeout, retries=_TRANSPORT_RETRIES)
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise _failure(exc) from exc
        # urllib3 has read (and decoded) the body already: preload_content.
        return Response(raw.status, headers=Headers(raw.headers.iteritems()), content=raw.data,
                        url=url, reason=raw.reason or "")

    def _manager(self, url: str) -> urllib3.PoolManager:
        """The pool manager for ``url``: through the environment's proxy, if one applies.

        HTTP(S)_PROXY / ALL_PROXY / NO_PROXY are read with requests' own functions, once
        per origin (a requests Session reads them, and ~/.netrc, on every request: two
        scans of os.environ, a fifth of the CPU of a SCIM POST). A change to the
        environment after a transport's first request to a host is not seen by it.
        """
        parts = urlsplit(url)
        origin = f"{parts.scheme}://{parts.netloc}"
        manager = self._managers.get(origin)
        if manager is None:
            proxy = select_proxy(url, get_environ_proxies(url))
            if proxy:
                with self._lock:  # proxy_manager_for caches in a plain dict
                    manager = self._proxy_pools.proxy_manager_for(
                        proxy if "://" in proxy else f"http://{proxy}", **self._tls)
            else:
                manager = self._direct
            self._managers[origin] = manager
        return manager


def _failure(exc: BaseException) -> TransportError:
    """urllib3's (and requests' proxy set-up's) exceptions as the transport's own."""
    cause = exc.reason if isinstance(exc, MaxRetryError) and exc.reason else exc
    if isinstance(cause, urllib3.exceptions.SSLError):
        return TlsError(_tls_reason(exc))
    if isinstance(cause, urllib3.exceptions.LocationValueError):
        return InvalidUrl(str(cause))
    if (isinstance(cause, urllib3.exceptions.TimeoutError)
            and not isinstance(cause, NewConnectionError)):
        return TransportTimeout(str(exc))
    return TransportError(str(exc))


def _tls_reason(exc: BaseException) -> str:
    """The ssl module's own words under urllib3's wrappers.

    urllib3's MaxRetryError wraps (its ``reason``) an SSLError wrapping
    ssl.SSLCertVerificationError: their messages repeat the pool and URL first, so a
    cut-short line used to lose "certificate verify failed" itself.
    """
    seen: set[int] = set()
    todo: list[BaseException] = [exc]
    while todo:
        cur = todo.pop(0)
        if id(cur) in seen:
            continue
        seen.add(id(cur))
        if isinstance(cur, ssl.SSLCertVerificationError):
            return f"certificate verify failed: {cur.verify_message or cur.reason}"
        if isinstance(cur, ssl.SSLError) and cur.reason:
            return _short(f"{cur.reason}: {cur.strerror or cur}")
        nested = [getattr(cur, "reason", None), cur.__cause__, cur.__context__, *cur.args]
        todo.extend(n for n in nested if isinstance(n, BaseException))
    return _short(exc)


def _short(value: object, limit: int = 200) -> str:
    text = " ".join(str(value).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _tls_options(verify: bool | str) -> dict[str, Any]:
    """urllib3's pool options for ``verify``, as requests' HTTPAdapter.cert_verify sets them
    (its default CA bundle is certifi's; a directory is a c_rehash'd CA directory)."""
    if verify is False:
        return {"cert_reqs": "CERT_NONE"}
    where = DEFAULT_CA_BUNDLE_PATH if verify is True else verify
    key = "ca_cert_dir" if os.path.isdir(where) else "ca_certs"
    return {"cert_reqs": "CERT_REQUIRED", key: where}


def _env_ca_bundle(verify: bool | str) -> bool | str:
    """``verify`` with requests' environment override applied once: REQUESTS_CA_BUNDLE or
    CURL_CA_BUNDLE replace the default trust (verify True), never a ca_file or verify off."""
    if verify is True:
        return os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE") or True
    return verify


def tls_verify(verify_tls: bool, ca_file: str | None) -> bool | str:
    """The ``verify`` value from the two options every connector has."""
    if not verify_tls:
        return False
    return ca_file or True
