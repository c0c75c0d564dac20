"""One HTTP client for every REST source and target: TLS, timeouts, retries, errors.

Retries 429 and 502/503/504 and connection failures with exponential backoff and
full jitter, honouring ``Retry-After`` in seconds (fractional too: Graph sends
"2.128") or as an HTTP date (RFC 9110 10.2.3). Retries are bounded by count and by
total wait; past the bound the caller gets the project's error, never a partial
answer. Errors are translated here, once, into SourceError or TargetError.
"""

from __future__ import annotations

import email.utils
import logging
import random
import ssl
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import urljoin, urlsplit

import requests
from requests.adapters import HTTPAdapter

from .errors import AuthError, Conflict, SourceError, TargetError, TransientError

log = logging.getLogger(__name__)

RETRY_STATUSES = frozenset({429, 502, 503, 504})
Side = Literal["source", "target"]


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
    """A pooled session bound to one base URL, with the project's retry and error rules."""

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
        sleep: Callable[[float], None] = time.sleep,
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
        self.session = requests.Session()
        self.session.verify = verify
        self.session.headers.update({"Accept": "application/json",
                                     "User-Agent": "dirconnector/0.1"})
        self.session.headers.update(headers or {})
        adapter = HTTPAdapter(pool_connections=pool_size, pool_maxsize=pool_size, max_retries=0)
        self.session.mount("https://", adapter)
        self.session.mount("http://", adapter)
        self.requests_sent = 0
        if verify is False:
            log.warning("%s: TLS certificate verification is OFF (verify_tls = false)", label)

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
            hdrs = dict(headers or {})
            if self._auth is not None:
                hdrs.update(self._auth())
            if self._sign is not None:
                hdrs.update(self._sign(method, url))
            try:
                with self._lock:
                    self.requests_sent += 1
                # verify is passed per request because requests lets REQUESTS_CA_BUNDLE /
                # CURL_CA_BUNDLE override session.verify (psf/requests#3829), which would
                # silently ignore ca_file.
                resp = self.session.request(method, url, params=params, json=json, data=data,
                                            headers=hdrs, timeout=self.timeout,
                                            verify=self.session.verify)
            except requests.exceptions.SSLError as exc:
                raise self._error(f"TLS handshake with {self._where(url)} failed: "
                                  f"{_tls_reason(exc)}",
                                  None, hint="set ca_file to the CA that signed the server's "
                                  "certificate") from exc
            except (requests.ConnectionError, requests.Timeout) as exc:
                reason = "timed out" if isinstance(exc, requests.Timeout) else "connection failed"
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


def tls_verify(verify_tls: bool, ca_file: str | None) -> bool | str:
    """The requests ``verify`` value from the two options every connector has."""
    if not verify_tls:
        return False
    return ca_file or True
