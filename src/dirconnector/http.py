"""One HTTP client for every REST source and target: TLS, timeouts, retries, errors.

Retries 429 and 502/503/504 and connection failures with exponential backoff and
full jitter, honouring ``Retry-After`` in seconds (fractional too: Graph sends
"2.128") or as an HTTP date (RFC 9110 10.2.3). Retries are bounded by count and by
total wait; past the bound the caller gets the project's error, never a partial
answer. Errors are translated here, once, into SourceError or TargetError.

Every back-off wait goes through ``pause``; ``set_testing(True)`` (stamina's testing
switch) makes it return at once, for tests that do not measure back-off. The wait a
retry asks for is still computed, bounded and logged, and a ``sleep`` a test hands
to ``HttpClient`` still receives it.

Requests go out through urllib3 (what requests itself sends with), not through a
requests Session, and come back as requests.Response objects; see HttpClient._send.
"""

from __future__ import annotations

import email.utils
import logging
import os
import random
import ssl
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import urljoin, urlsplit

import requests
import urllib3
from requests.adapters import HTTPAdapter
from requests.structures import CaseInsensitiveDict
from requests.utils import (
    DEFAULT_CA_BUNDLE_PATH,
    default_headers,
    get_encoding_from_headers,
    get_environ_proxies,
    select_proxy,
)
from urllib3.exceptions import MaxRetryError, NewConnectionError

from .errors import AuthError, Conflict, SourceError, TargetError, TransientError

log = logging.getLogger(__name__)

RETRY_STATUSES = frozenset({429, 502, 503, 504})
Side = Literal["source", "target"]

_DEFAULT_HEADERS = {**default_headers(), "Accept": "application/json",
                    "User-Agent": "dirconnector/0.1"}
"""requests' defaults (Accept-Encoding: gzip, deflate; Connection: keep-alive) and ours."""

_testing = False
"""Testing mode: back-off waits return at once (``set_testing``)."""


def set_testing(testing: bool) -> None:
    """Turn testing mode on or off: on, ``pause`` (every back-off wait) returns at once."""
    global _testing
    _testing = testing


def is_testing() -> bool:
    """Whether testing mode is on."""
    return _testing


def pause(seconds: float) -> None:
    """Wait out a back-off of ``seconds``; nothing in testing mode."""
    if not _testing:
        time.sleep(seconds)


_TRANSPORT_RETRIES = urllib3.Retry(total=None, connect=0, read=False, status=0, other=0,
                                   redirect=30)
"""urllib3 retries nothing (HttpClient's loop does, with its own rules) but follows up to
30 redirects, as requests did; on another host it drops Authorization and Cookie."""


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How hard to try before giving up."""

    attempts: int = 6
    """Tries in all, the first included."""
    base_delay: float = 0.5
    """First backoff in seconds; doubles each try."""
    max_delay: float = 60.0
    """Cap on one wait."""
    max_total_wait: float = 300.0
    """Cap on the waiting of one request, all tries together."""


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or HTTP-date), or None."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def backoff(attempt: int, policy: RetryPolicy, rng: random.Random | None = None) -> float:
    """Full-jitter exponential backoff for the given 1-based attempt."""
    ceiling = min(policy.max_delay, policy.base_delay * (2 ** (attempt - 1)))
    return (rng or random).uniform(ceiling / 2, ceiling)


class HttpClient:
    """Pooled connections bound to one base URL, with the project's retry and error rules."""

    def __init__(
        self,
        base_url: str,
        *,
        side: Side,
        label: str,
        verify: bool | str = True,
        timeout: float = 30.0,
        headers: Mapping[str, str] | None = None,
        auth: Callable[[], Mapping[str, str]] | None = None,
        retry: RetryPolicy = RetryPolicy(),
        pool_size: int = 16,
        sleep: Callable[[float], None] = pause,
        retry_hint: Callable[[requests.Response], float | None] | None = None,
        sign: Callable[[str, str], Mapping[str, str]] | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/") + "/"
        self.side = side
        self.label = label
        self.timeout = timeout
        self.retry = retry
        self._auth = auth
        self._sleep = sleep
        self._retry_hint = retry_hint
        """Seconds to wait before retrying a response without Retry-After, from the
        vendor's own headers (Okta: X-Rate-Limit-Reset); None falls back to backoff."""
        self._sign = sign
        """Per-attempt headers that depend on the method and URL (a DPoP proof, RFC 9449);
        called after ``auth`` on every try, so a retry never replays a one-time proof."""
        self._rng = random.Random()
        self._lock = threading.Lock()
        self._headers = _merge_headers(_DEFAULT_HEADERS, headers or {})
        self._timeout = urllib3.Timeout(connect=timeout, read=timeout)
        verify = _env_ca_bundle(verify)
        self._tls = _tls_options(verify)
        self._direct = urllib3.PoolManager(num_pools=pool_size, maxsize=pool_size, **self._tls)
        self._proxy_pools = HTTPAdapter(pool_connections=pool_size, pool_maxsize=pool_size)
        """Only its proxy_manager_for: requests' proxy handling (SOCKS, credentials)."""
        self._managers: dict[str, urllib3.PoolManager] = {}
        """Origin (scheme://host:port) -> the pool manager that reaches it, direct or proxied."""
        self.requests_sent = 0
        if verify is False:
            log.warning("%s: TLS certificate verification is OFF (verify_tls = false)", label)

    def _manager(self, url: str) -> urllib3.PoolManager:
        """The pool manager for ``url``: through the environment's proxy, if one applies.

        HTTP(S)_PROXY / ALL_PROXY / NO_PROXY are read with requests' own functions, once
        per origin (a requests Session reads them, and ~/.netrc, on every request: two
        scans of os.environ, a fifth of the CPU of a SCIM POST). A change to the
        environment after a client's first request to a host is not seen by that client.
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

    def _send(self, method: str, url: str, params: Any, json: Any, data: Any,
              headers: dict[str, str]) -> requests.Response:
        """One HTTP exchange through urllib3; the answer as a requests.Response.

        requests' Session is not used on this path: merging session settings, cookies
        and hooks per request cost as much CPU as urllib3 and http.client together
        (0.3 of 0.7 ms per SCIM POST). What it did that matters is kept: the default
        headers, its encoding of params, forms and json (PreparedRequest), its proxies
        and CA bundle, redirects followed (Authorization dropped on another host), and a
        real requests.Response for the callers. No cookies are kept between requests:
        every API here authenticates with a header.
        """
        body: str | bytes | None
        if params is None and json is None and (data is None or isinstance(data, str | bytes)):
            body = data  # nothing to encode: every SCIM write (urllib3 sends str as UTF-8)
        else:
            prepared = requests.PreparedRequest()
            prepared.prepare(method=method, url=url, headers=headers, params=params,
                             data=data, json=json)
            url, body = str(prepared.url), prepared.body
            headers = dict(prepared.headers)
        raw = self._manager(url).urlopen(method, url, body=body, headers=headers,
                                         timeout=self._timeout, retries=_TRANSPORT_RETRIES)
        resp = requests.Response()
        resp.status_code = raw.status
        resp.headers = CaseInsensitiveDict(raw.headers)
        resp.raw = raw
        resp.reason = raw.reason or ""
        resp.url = url
        resp.encoding = get_encoding_from_headers(resp.headers)
        # urllib3 has read the body already (preload_content); requests' own adapter sets
        # _content the same way once Session.send has read it.
        resp._content = raw.data
        resp.request = requests.PreparedRequest()
        resp.request.method, resp.request.url = method, url
        return resp

    def url(self, path: str) -> str:
        if path.startswith(("http://", "https://")):
            return path
        return urljoin(self.base_url, path.lstrip("/"))

    def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | Iterable[tuple[str, Any]] | None = None,
        json: Any = None,
        data: Any = None,
        headers: Mapping[str, str] | None = None,
        ok: Iterable[int] = (200, 201, 202, 204),
        retry_connection_errors: bool = True,
        on_retry: Callable[[int, str], None] | None = None,
        retry_statuses: Iterable[int] = RETRY_STATUSES,
    ) -> requests.Response:
        """Send one request, retrying what is worth retrying; raise the project's errors.

        Statuses in ``ok`` are returned; so is 404 when listed there by the caller.
        ``retry_statuses`` widens the retried set for idempotent reads (500 on a page GET).
        """
        url = self.url(path)
        allowed = frozenset(ok)
        retried = frozenset(retry_statuses)
        waited = 0.0
        attempt = 0
        while True:
            attempt += 1
            hdrs = _merge_headers(self._headers, headers) if headers else dict(self._headers)
            if self._auth is not None:
                hdrs.update(self._auth())
            if self._sign is not None:
                hdrs.update(self._sign(method, url))
            try:
                with self._lock:
                    self.requests_sent += 1
                resp = self._send(method, url, params, json, data, hdrs)
            except (urllib3.exceptions.HTTPError, OSError) as exc:
                cause = exc.reason if isinstance(exc, MaxRetryError) and exc.reason else exc
                if isinstance(cause, urllib3.exceptions.SSLError):
                    raise self._error(f"TLS handshake with {self._where(url)} failed: "
                                      f"{_tls_reason(exc)}",
                                      None, hint="set ca_file to the CA that signed the "
                                      "server's certificate") from exc
                if isinstance(cause, urllib3.exceptions.LocationValueError):
                    raise self._error(f"{method} {url}: not a valid URL ({cause})", None) from exc
                timed_out = (isinstance(cause, urllib3.exceptions.TimeoutError)
                             and not isinstance(cause, NewConnectionError))
                reason = "timed out" if timed_out else "connection failed"
                if not retry_connection_errors or attempt >= self.retry.attempts:
                    raise TransientError(
                        f"{method} {self._where(url)}: {reason} after {attempt} attempt(s)"
                    ) from exc
                delay = backoff(attempt, self.retry, self._rng)
            else:
                if resp.status_code in allowed:
                    return resp
                if resp.status_code not in retried or attempt >= self.retry.attempts:
                    raise self._for_response(method, url, resp, attempt)
                hinted = parse_retry_after(resp.headers.get("Retry-After"))
                if hinted is None and self._retry_hint is not None:
                    hinted = self._retry_hint(resp)
                delay = hinted if hinted is not None else backoff(attempt, self.retry, self._rng)
                delay = min(delay, self.retry.max_delay)
                reason = f"HTTP {resp.status_code}"
            if waited + delay > self.retry.max_total_wait:
                raise TransientError(
                    f"{method} {self._where(url)}: still failing ({reason}) after {attempt} "
                    f"attempt(s) and {waited:.0f}s of waiting")
            log.info("%s %s: %s; retry %d in %.2fs", method, self._where(url), reason, attempt,
                     delay)
            if on_retry is not None:
                on_retry(attempt, reason)
            self._sleep(delay)
            waited += delay

    def get_json(self, path: str, **kwargs: Any) -> Any:
        return _json(self.request("GET", path, **kwargs), self.label)

    def _where(self, url: str) -> str:
        parts = urlsplit(url)
        return f"{parts.netloc}{parts.path}"

    def _error(self, message: str, status: int | None, hint: str = "") -> Exception:
        if self.side == "source":
            return SourceError(f"{self.label}: {message}", hint=hint)
        return TargetError(f"{self.label}: {message}", status=status, hint=hint)

    def _for_response(self, method: str, url: str, resp: requests.Response,
                      attempt: int) -> Exception:
        status = resp.status_code
        detail = error_detail(resp)
        msg = f"{method} {self._where(url)} answered {status}"
        if detail:
            msg += f": {detail}"
        if status in RETRY_STATUSES:
            return TransientError(f"{self.label}: {msg} (gave up after {attempt} attempts)",
                                  retry_after=parse_retry_after(resp.headers.get("Retry-After")))
        if status in (401, 403):
            hint = ("check the credentials and that they have the permissions the guide lists"
                    if status == 401 else "the credentials lack a permission this call needs")
            if self.side == "source":
                return SourceError(f"{self.label}: {msg}", hint=hint)
            return AuthError(f"{self.label}: {msg}", status=status, hint=hint)
        if status == 409 and self.side == "target":
            return Conflict(f"{self.label}: {msg}", status=status)
        return self._error(msg, status)


def error_detail(resp: requests.Response) -> str:
    """The server's own words from an error body (SCIM, Graph, Okta, Google, plain text)."""
    try:
        body = resp.json()
    except ValueError:
        return _short(resp.text)
    if isinstance(body, dict):
        err = body.get("error")
        if isinstance(err, dict):
            return _short(str(err.get("message") or err.get("code") or err))
        for key in ("detail", "errorSummary", "message", "error_description", "error"):
            if body.get(key):
                return _short(str(body[key]))
    return _short(str(body))


def _json(resp: requests.Response, label: str) -> Any:
    try:
        return resp.json()
    except ValueError as exc:
        raise TransientError(
            f"{label}: {resp.request.method} {urlsplit(resp.url).path} answered {resp.status_code} "
            f"with a body that is not JSON ({_short(resp.text, 80)!r})") from exc


def _tls_reason(exc: BaseException) -> str:
    """The ssl module's own words under requests' and urllib3's wrappers.

    requests.SSLError wraps urllib3's MaxRetryError (its ``reason``), which wraps an
    SSLError wrapping ssl.SSLCertVerificationError: their messages repeat the pool and
    URL first, so a cut-short line used to lose "certificate verify failed" itself.
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


def _merge_headers(base: Mapping[str, str], extra: Mapping[str, str]) -> dict[str, str]:
    """``base`` updated with ``extra``, as requests merged them: a name in ``extra``
    replaces it in any letter case, and a None value removes it."""
    out = dict(base)
    for name, value in extra.items():
        lower = name.lower()
        for have in [k for k in out if k.lower() == lower]:
            del out[have]
        if value is not None:
            out[name] = value
    return out


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
    """The requests ``verify`` value from the two options every connector has."""
    if not verify_tls:
        return False
    return ca_file or True
