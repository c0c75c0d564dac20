"""HttpClient: one base URL, the project's headers, retries and error translation.

Retries 429 and 502/503/504 (wider for idempotent reads when the caller says so) and
connection failures, waiting through a Backoff (retry.py): the server's Retry-After or
the vendor's own hint, else exponential back-off with jitter, bounded by count and by
total wait. Past the bound the caller gets the project's error, never a partial answer.
Errors are translated here, once, into SourceError or TargetError (TargetError's
AuthError and Conflict, or TransientError when retrying did not help).

Each try is prepared as a Request (prepare.py) and handed to the transport: by default
Urllib3Transport (transport.py: proxies, TLS trust, redirects), or any function from
Request to Response a test passes in.
"""

from __future__ import annotations

import logging
import random
import threading
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Literal
from urllib.parse import urljoin, urlsplit

from urllib3.util import make_headers

from ..errors import AuthError, Conflict, SourceError, TargetError, TransientError
from .models import InvalidUrl, Response, TlsError, Transport
from .prepare import Params, prepare
from .retry import (
    DEFAULT_POLICY,
    RETRY_STATUSES,
    Backoff,
    RetryPolicy,
    parse_retry_after,
    pause,
)
from .transport import Urllib3Transport

log = logging.getLogger("dirconnector.http")  # the name it logged under as one module

Side = Literal["source", "target"]

_DEFAULT_HEADERS = {
    "User-Agent": "dirconnector/0.1",
    # requests' default: urllib3's list (brotli, zstd when installed) spaced out.
    "Accept-Encoding": ", ".join(make_headers(accept_encoding=True)["accept-encoding"]
                                 .split(",")),
    "Accept": "application/json",
    "Connection": "keep-alive",
}
"""requests' default headers (in its order) with our User-Agent and Accept."""


class HttpClient:
    """Requests to one base URL, with the project's retry and error rules."""

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
        retry: RetryPolicy = DEFAULT_POLICY,
        pool_size: int = 16,
        sleep: Callable[[float], None] = pause,
        retry_hint: Callable[[Response], float | None] | None = None,
        sign: Callable[[str, str], Mapping[str, str]] | None = None,
        transport: Transport | None = None,
    ) -> None:
        """``verify``, ``timeout`` and ``pool_size`` configure the default transport;
        ``transport`` replaces it (a test's function from Request to Response)."""
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
        self._transport: Transport = transport or Urllib3Transport(
            verify=verify, timeout=timeout, pool_size=pool_size)
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
        params: Params | None = None,
        json: Any = None,
        data: Any = None,
        headers: Mapping[str, str] | None = None,
        ok: Iterable[int] = (200, 201, 202, 204),
        retry_connection_errors: bool = True,
        on_retry: Callable[[int, str], None] | None = None,
        retry_statuses: Iterable[int] = RETRY_STATUSES,
    ) -> Response:
        """Send one request, retrying what is worth retrying; raise the project's errors.

        Statuses in ``ok`` are returned; so is 404 when listed there by the caller.
        ``retry_statuses`` widens the retried set for idempotent reads (500 on a page GET).
        """
        url = self.url(path)
        allowed = frozenset(ok)
        retried = frozenset(retry_statuses)
        waits = self.backoff()
        attempt = 0
        while True:
            attempt += 1
            hdrs = _merge_headers(self._headers, headers) if headers else dict(self._headers)
            if self._auth is not None:
                hdrs.update(self._auth())
            if self._sign is not None:
                hdrs.update(self._sign(method, url))
            hinted: float | None = None
            try:
                with self._lock:
                    self.requests_sent += 1
                sent = prepare(method, url, hdrs, params=params, json=json, data=data)
                resp = self._transport(sent)
            except OSError as exc:
                if isinstance(exc, TlsError):
                    raise self._error(f"TLS handshake with {self._where(url)} failed: {exc}",
                                      None, hint="set ca_file to the CA that signed the "
                                      "server's certificate") from exc
                if isinstance(exc, InvalidUrl):
                    raise self._error(f"{method} {url}: not a valid URL ({exc})", None) from exc
                reason = "timed out" if isinstance(exc, TimeoutError) else "connection failed"
                if not retry_connection_errors or waits.gives_up(attempt):
                    raise TransientError(
                        f"{method} {self._where(url)}: {reason} after {attempt} attempt(s)"
                    ) from exc
            else:
                if not resp.url:
                    resp = resp.with_url(sent.url)
                if resp.status in allowed:
                    return resp
                if resp.status not in retried or waits.gives_up(attempt):
                    raise self._for_response(method, url, resp, attempt)
                hinted = parse_retry_after(resp.headers.get("Retry-After"))
                if hinted is None and self._retry_hint is not None:
                    hinted = self._retry_hint(resp)
                reason = f"HTTP {resp.status}"
            delay = waits.delay(attempt, hinted)
            if not waits.fits(delay):
                raise TransientError(
                    f"{method} {self._where(url)}: still failing ({reason}) after {attempt} "
                    f"attempt(s) and {waits.waited:.0f}s of waiting")
            log.info("%s %s: %s; retry %d in %.2fs", method, self._where(url), reason, attempt,
                     delay)
            if on_retry is not None:
                on_retry(attempt, reason)
            waits.wait(delay)

    def backoff(self, policy: RetryPolicy | None = None) -> Backoff:
        """A Backoff with this client's sleep and jitter, for a loop around its requests
        (by this client's policy unless given another)."""
        return Backoff(policy or self.retry, sleep=self._sleep, rng=self._rng)

    def get_json(self, path: str, **kwargs: Any) -> Any:
        return _json(self.request("GET", path, **kwargs), "GET", self.label)

    def _where(self, url: str) -> str:
        parts = urlsplit(url)
        return f"{parts.netloc}{parts.path}"

    def _error(self, message: str, status: int | None, hint: str = "") -> Exception:
        if self.side == "source":
            return SourceError(f"{self.label}: {message}", hint=hint)
        return TargetError(f"{self.label}: {message}", status=status, hint=hint)

    def _for_response(self, method: str, url: str, resp: Response, attempt: int) -> Exception:
        status = resp.status
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


def error_detail(resp: Response) -> str:
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


def _json(resp: Response, method: str, label: str) -> Any:
    try:
        return resp.json()
    except ValueError as exc:
        raise TransientError(
            f"{label}: {method} {urlsplit(resp.url).path} answered {resp.status} "
            f"with a body that is not JSON ({_short(resp.text, 80)!r})") from exc


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
