"""Paged, rate-aware GETs against the Okta Management API.

Paging (Okta API reference, "Pagination"): list bodies are bare JSON arrays and the
next page is advertised only in a ``Link: <url>; rel="next"`` header (RFC 8288).
Okta sends ``self`` and ``next`` as separate header lines; proxies may fold them
into one comma-joined header (RFC 9110 5.3), in any order, so every Link value is
parsed. No ``next`` link, or an empty page (okta-sdk-python#435), ends the list.

Rate limits ("Rate limits" guide): every answer carries ``X-Rate-Limit-Limit``,
``-Remaining`` and ``-Reset`` (UTC epoch seconds). When the remaining budget falls to
the reserve we leave for the org's other integrations, the next call waits for the
reset instead of running into 429; a 429 (E0000047, no Retry-After) is retried by
HttpClient after the wait this module computes from the same headers.
"""

from __future__ import annotations

import contextlib
import email.utils
import logging
import math
import re
import time
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, datetime
from typing import Any, Protocol
from urllib.parse import urlsplit

from ...errors import IncompleteRead, SourceError
from ...http import RETRY_STATUSES, HttpClient, Response, RetryPolicy, pause
from ..feedkit import ShareBudget

log = logging.getLogger(__name__)

_LINK = re.compile(r'<([^>]*)>((?:\s*;\s*(?:[^;,"]|"[^"]*")*)*)')
_PARAM = re.compile(r';\s*([^=;,\s]+)\s*=\s*(?:"([^"]*)"|([^;,\s]*))')


def next_link(values: list[str]) -> str | None:
    """The ``rel="next"`` target among Link header values (one or many lines, any order)."""
    for value in values:
        for m in _LINK.finditer(value):
            for name, quoted, bare in _PARAM.findall(m.group(2)):
                # rel may hold several space-separated relation types (RFC 8288 3.3).
                if name.lower() == "rel" and "next" in (quoted or bare).lower().split():
                    return m.group(1).strip()
    return None


def link_values(resp: Response) -> list[str]:
    """Every Link header line, repeated headers kept apart."""
    return resp.headers.get_list("Link")


class RateGauge:
    """Reads Okta's rate-limit headers and says how long to hold off."""

    def __init__(self, reserve_ratio: float, max_wait: float,
                 clock: Callable[[], float] = time.time) -> None:
        self.reserve_ratio = reserve_ratio
        self.max_wait = max_wait
        self._clock = clock
        self.resume_at = 0.0
        """Local clock time before which no request should be sent."""
        self.waited = 0.0
        """Seconds spent holding off before reaching zero (for the report)."""
        self.lowest_remaining: int | None = None

    def until_reset(self, resp: Response) -> float | None:
        """Seconds from the server's ``Date`` to ``X-Rate-Limit-Reset``, bounded; None if absent."""
        reset = _min_number(resp.headers.get("X-Rate-Limit-Reset"))
        if reset is None:
            return None
        server_now = self._clock()
        date = resp.headers.get("Date")
        if date:
            with contextlib.suppress(TypeError, ValueError):
                server_now = email.utils.parsedate_to_datetime(date).timestamp()
        # The Date header drops the fraction, so this errs long by under a second,
        # which is the safe side; never retry in a tight loop.
        return min(max(reset - server_now, 0.5), self.max_wait)

    def observe(self, resp: Response) -> None:
        """Note the budget a response reports; schedule a pause when it is nearly spent."""
        limit = _min_number(resp.headers.get("X-Rate-Limit-Limit"))
        remaining = _min_number(resp.headers.get("X-Rate-Limit-Remaining"))
        if limit is None or remaining is None or limit <= 0:
            # Limit 0 and Remaining 0 together mean the concurrent-request limit
            # (okta-sdk-python request_executor): nothing to schedule from it.
            return
        left = int(remaining)
        if self.lowest_remaining is None or left < self.lowest_remaining:
            self.lowest_remaining = left
        if left <= math.floor(limit * self.reserve_ratio):
            wait = self.until_reset(resp)
            if wait is not None:
                self.resume_at = max(self.resume_at, self._clock() + wait)

    def pause(self, sleep: Callable[[float], None]) -> None:
        """Hold off until the scheduled reset, if one is due.

        Not a retry, so not a Backoff: a wait *before* a request, already bounded by
        ``max_wait`` (``until_reset``). It sleeps through the connector's ``sleep``,
        dirconnector.http.pause unless a test injects one, so ``set_testing`` stops it too.
        """
        delay = self.resume_at - self._clock()
        if delay > 0:
            log.info("okta: rate-limit budget nearly spent; waiting %.1fs for the reset", delay)
            sleep(delay)
            self.waited += delay


def _min_number(value: str | None) -> float | None:
    """The smallest number in a header (folded repeats arrive comma-joined)."""
    if not value:
        return None
    numbers = []
    for part in value.split(","):
        try:
            numbers.append(float(part.strip()))
        except ValueError:
            continue
    return min(numbers) if numbers else None


def server_date(resp: Response) -> datetime:
    """The answer's Date header (RFC 9110 6.6.1), else the local clock."""
    try:
        return email.utils.parsedate_to_datetime(resp.headers["Date"]).astimezone(UTC)
    except (KeyError, TypeError, ValueError):
        return datetime.now(UTC)


class QueryRefused(SourceError):
    """Okta answered 400 to a list request: usually a search or filter expression it rejects."""


_REFUSED = (400, 401, 403, 404)


class OktaAuth(Protocol):
    """What auth.py's ApiToken and ServiceApp offer."""

    description: str
    hint: str

    def sign(self, method: str, url: str) -> Mapping[str, str]: ...

    def challenged(self, resp: Response) -> bool: ...


class OktaApi:
    """GET pages of an Okta list endpoint through the project's HttpClient."""

    def __init__(self, org_url: str, auth: OktaAuth, *, verify: bool | str, timeout: float,
                 reserve_ratio: float, max_wait: float,
                 sleep: Callable[[float], None] = pause,
                 clock: Callable[[], float] = time.time) -> None:
        self.org_url = org_url
        self.auth = auth
        self.gauge = RateGauge(reserve_ratio, max_wait, clock=clock)
        self._sleep = sleep
        self.http = HttpClient(
            org_url, side="source", label="okta", verify=verify, timeout=timeout,
            sign=auth.sign, retry_hint=self.gauge.until_reset, sleep=sleep,
            retry=RetryPolicy(attempts=6, max_delay=max_wait, max_total_wait=4 * max_wait))
        self.pages_read = 0
        self.server_start: datetime | None = None
        """The server's Date on the first answer since the last ``start_clock()``."""
        self.share: ShareBudget | None = None
        """When set, requests also stay within this share of the rate limit (the feed)."""

    def start_clock(self) -> None:
        self.server_start = None

    def get(self, path: str, params: Mapping[str, Any] | None = None,
            missing_ok: bool = False) -> Response:
        """One GET; ``missing_ok`` hands a 404 back instead of raising (a deleted object)."""
        self.gauge.pause(self._sleep)
        share = self.share
        if share is not None:
            share.pause(self._sleep)
        resp = self._send(path, params)
        if resp.status == 401 and self.auth.challenged(resp):
            resp = self._send(path, params)       # a DPoP nonce or a renewed token
        self.gauge.observe(resp)
        if share is not None:
            share.observe(_min_number(resp.headers.get("X-Rate-Limit-Limit")),
                          self.gauge.until_reset(resp))
        if self.server_start is None:
            self.server_start = server_date(resp)
        if resp.status == 404 and missing_ok:
            return resp
        if resp.status != 200:
            raise self._refused(resp)
        return resp

    def _send(self, path: str, params: Mapping[str, Any] | None) -> Response:
        # Page reads are idempotent, so a 500 is retried like a 503.
        return self.http.request("GET", path, params=params, ok=(200, *_REFUSED),
                                 retry_statuses=RETRY_STATUSES | {500})

    def _refused(self, resp: Response) -> SourceError:
        """Okta's error object (errorCode, errorSummary, errorCauses) as one line."""
        try:
            body = resp.json()
        except ValueError:
            body = {}
        body = body if isinstance(body, dict) else {}
        code = str(body.get("errorCode") or "")
        words = str(body.get("errorSummary") or resp.reason or "")
        causes = [str(c.get("errorSummary")) for c in body.get("errorCauses") or []
                  if isinstance(c, dict) and c.get("errorSummary")]
        if causes:
            words += " (" + "; ".join(causes) + ")"
        status = resp.status
        message = (f"okta: GET {urlsplit(resp.url).path} answered {status}"
                   f"{' ' + code if code else ''}: {words}")
        if status == 400:
            return QueryRefused(message)
        if status == 401:
            return SourceError(message, hint=self.auth.hint)
        if status == 403:
            return SourceError(message, hint="the credential's admin role or OAuth scopes do "
                               "not allow reading users and groups; see connectors/okta.md")
        return SourceError(message)

    def pages(self, path: str, params: Mapping[str, Any]) -> Iterator[list[dict[str, Any]]]:
        """Each page of a list, following ``rel="next"`` until the end."""
        target: str = path
        query: Mapping[str, Any] | None = params
        seen: set[str] = set()
        while True:
            resp = self.get(target, query)
            try:
                body = resp.json()
            except ValueError as exc:
                raise SourceError(f"okta: GET {urlsplit(resp.url).path} answered a body that "
                                  "is not JSON") from exc
            if not isinstance(body, list):
                raise SourceError(f"okta: GET {urlsplit(resp.url).path} answered "
                                  f"{type(body).__name__}, expected a JSON array")
            self.pages_read += 1
            if not body:
                return
            yield body
            link = next_link(link_values(resp))
            if link is None:
                return
            target = self._relative(link)
            if target in seen:
                raise IncompleteRead(f"okta: paging of {path} loops back to {target}; "
                                     "the read stopped")
            seen.add(target)
            query = None

    def relative(self, link: str) -> str:
        """A next link as a request path on org_url (see ``_relative``)."""
        return self._relative(link)

    def _relative(self, link: str) -> str:
        """The next link's path and query, sent to org_url (as okta-sdk-python does).

        Never following a link's host keeps the API credential on the org's own host.
        """
        parts = urlsplit(link)
        if not parts.path.startswith("/api/"):
            raise IncompleteRead(f"okta: unexpected next link {parts.path!r}; the read stopped")
        return parts.path.lstrip("/") + (f"?{parts.query}" if parts.query else "")
