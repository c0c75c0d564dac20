"""OneLogin REST plumbing: the client-credentials token and the two paging styles.

- Token: ``POST /auth/oauth2/v2/token`` with HTTP Basic ``client_id:client_secret`` and
  ``{"grant_type": "client_credentials"}`` (api-docs/2/oauth20-tokens/generate-tokens).
  A token lives 10 hours; the same credentials get the same token until it expires, so
  it is cached and asked for again shortly before ``expires_in`` runs out. A 401 on a
  resource call (token revoked, clock skew) drops the cache and retries once.
- ``/api/2/*`` lists: a bare JSON array per page; the next page is ``?cursor=`` the
  ``After-Cursor`` response header, absent or empty on the last page
  (api-docs/2/getting-started/using-query-parameters; onelogin-go-sdk stops on an empty
  After-Cursor too). Filters are sent again with every cursor.
- ``/api/1/*`` lists: the ``{"status", "pagination", "data"}`` envelope; follow
  ``pagination.next_link`` until it is null (api-docs/1/getting-started/using-query-parameters).

Every page is retried by HttpClient (429 with Retry-After, 5xx, resets); a page that still
fails raises IncompleteRead. The read never ends early and pretends to be complete.
"""

from __future__ import annotations

import base64
import logging
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from ...errors import DirconnectorError, IncompleteRead, SourceError
from ...http import RETRY_STATUSES, HttpClient, Response, RetryPolicy, error_detail, pause
from ..feedkit import ShareBudget

log = logging.getLogger(__name__)

LABEL = "onelogin"
TOKEN_PATH = "/auth/oauth2/v2/token"
CREDENTIAL_HINT = ("check client_id and client_secret of the API credential "
                   "(OneLogin admin: Developers > API Credentials; scope 'Read users')")
# A page GET is idempotent, so a 500 is worth another try as well (DESIGN: retries).
PAGE_RETRY_STATUSES = RETRY_STATUSES | {500}
# Statuses a page GET hands back to us instead of raising, so we can word the error.
_ANSWERED = (200, 400, 401, 403, 404)
DEFAULT_RETRY = RetryPolicy()


class TokenError(SourceError):
    """The token endpoint refused or failed; its message is already the one line to show."""


def onelogin_message(resp: Response) -> str:
    """OneLogin's own words from any of its three error shapes (v2, v1 envelope, flat)."""
    try:
        body = resp.json()
    except ValueError:
        return error_detail(resp)
    if isinstance(body, dict):
        status = body.get("status")
        if isinstance(status, dict) and status.get("message"):
            msg = status["message"]
            if isinstance(msg, dict):   # v1 400: {"attribute": ..., "description": ...}
                msg = msg.get("description") or msg
            return str(msg)
    return error_detail(resp)


class OneLoginApi:
    """A token cache and page iterators over one OneLogin account."""

    def __init__(
        self,
        base_url: str,
        client_id: str,
        client_secret: str,
        *,
        verify: bool | str,
        timeout: float,
        page_size: int,
        retry: RetryPolicy = DEFAULT_RETRY,
        sleep: Callable[[float], None] = pause,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.page_size = page_size
        self._client_id = client_id
        self._basic = "Basic " + base64.b64encode(
            f"{client_id}:{client_secret}".encode()).decode("ascii")
        common: dict[str, Any] = dict(side="source", label=LABEL, verify=verify,
                                      timeout=timeout, retry=retry, sleep=sleep)
        self._token_http = HttpClient(base_url, **common)
        self.http = HttpClient(base_url, auth=self._auth_header, **common)
        self._clock = clock
        self._lock = threading.Lock()
        self._token: str | None = None
        self._refresh_at = 0.0
        self.tokens_fetched = 0
        self.pages_read = 0
        self.totals: list[str] = []
        """``Total-Count`` of each page of the last v2 list read (to notice a moving list)."""
        self._sleep = sleep
        self.share: ShareBudget | None = None
        """When set, requests also stay within this share of the rate limit (the feed)."""
        self.first_date: str | None = None
        """The ``Date`` header of the first answer since ``start_clock`` (the server's clock)."""

    # ------------------------------------------------------------------ token

    def token(self) -> str:
        """A bearer token valid for a while yet; fetched or refreshed when needed."""
        with self._lock:
            if self._token is None or self._clock() >= self._refresh_at:
                self._token, lifetime = self._fetch_token()
                # Refresh a minute before expiry, or half-way for short-lived tokens.
                self._refresh_at = self._clock() + max(lifetime - 60.0, lifetime / 2.0)
            return self._token

    def forget_token(self) -> None:
        with self._lock:
            self._token = None

    def _auth_header(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token()}"}

    def _fetch_token(self) -> tuple[str, float]:
        where = f"{self.base_url}{TOKEN_PATH}"
        try:
            resp = self._token_http.request(
                "POST", TOKEN_PATH, json={"grant_type": "client_credentials"},
                headers={"Authorization": self._basic, "Content-Type": "application/json"},
                ok=(200, 400, 401, 403, 404, 500))
        except DirconnectorError as exc:
            inner = str(exc).removeprefix(f"{LABEL}: ")
            raise TokenError(f"{LABEL}: cannot get a token from {where}: {inner}",
                              hint=exc.hint) from exc
        self.tokens_fetched += 1
        if resp.status in (400, 401, 403):
            raise TokenError(
                f"{LABEL}: API credential rejected: POST {TOKEN_PATH} answered "
                f"{resp.status} ({onelogin_message(resp)}) for client_id "
                f"{self._client_id!r}; check client_id and client_secret",
                hint=CREDENTIAL_HINT)
        if resp.status == 404:
            raise TokenError(f"{LABEL}: {where} answered 404; check subdomain, region or "
                              f"base_url", hint="the API host is https://<subdomain>.onelogin.com")
        if resp.status == 500:
            # generate-tokens: credentials of a deleted user fail with HTTP 500.
            raise TokenError(f"{LABEL}: POST {TOKEN_PATH} answered 500 "
                              f"({onelogin_message(resp)})",
                              hint="OneLogin answers 500 when the admin who created the API "
                                   "credential was deleted; create a new credential")
        try:
            body = resp.json()
            token = str(body["access_token"])
            lifetime = float(body.get("expires_in") or 0)
        except (ValueError, KeyError, TypeError) as exc:
            raise TokenError(f"{LABEL}: POST {TOKEN_PATH} answered 200 without an "
                              f"access_token") from exc
        if not token:
            raise TokenError(f"{LABEL}: POST {TOKEN_PATH} answered an empty access_token")
        return token, lifetime

    # ------------------------------------------------------------------ requests

    def start_clock(self) -> None:
        self.first_date = None

    def get(self, path: str, params: Mapping[str, Any] | None, what: str) -> Response:
        """GET one page; retried by HttpClient; re-authenticates once on 401."""
        for attempt in (1, 2):
            share = self.share
            if share is not None:
                share.pause(self._sleep)
            try:
                resp = self.http.request("GET", path, params=params, ok=_ANSWERED,
                                         retry_statuses=PAGE_RETRY_STATUSES)
            except (IncompleteRead, TokenError):
                raise
            except DirconnectorError as exc:
                inner = str(exc).removeprefix(f"{LABEL}: ")
                raise IncompleteRead(f"{LABEL}: could not read {what}: {inner}",
                                     hint=exc.hint) from exc
            if self.first_date is None:
                self.first_date = resp.headers.get("Date")
            if share is not None:
                # get-rate-limit: X-RateLimit-Reset is the seconds left in the window.
                share.observe(_number(resp.headers.get("X-RateLimit-Limit")),
                              _number(resp.headers.get("X-RateLimit-Reset")))
            if resp.status == 200:
                self.pages_read += 1
                return resp
            if resp.status == 401 and attempt == 1:
                log.info("%s: %s answered 401; getting a new token", LABEL, path)
                self.forget_token()
                continue
            break
        words = onelogin_message(resp)
        if resp.status == 401:
            raise SourceError(f"{LABEL}: reading {what} answered 401 ({words}) with a fresh "
                              f"token", hint=CREDENTIAL_HINT)
        if resp.status == 403:
            raise SourceError(f"{LABEL}: reading {what} answered 403 ({words})",
                              hint="give the API credential the 'Read users' scope")
        raise IncompleteRead(f"{LABEL}: reading {what} answered {resp.status} ({words})")

    def v2_pages(self, path: str, params: Mapping[str, str], what: str,
                 limit: int | None = None) -> Iterator[list[dict[str, Any]]]:
        """Every page of a v2 list, following ``After-Cursor`` to the end."""
        page_size = limit or self.page_size
        query: dict[str, Any] = {**params, "limit": page_size}
        seen: set[str] = set()
        page = 1
        self.totals = []
        while True:
            resp = self.get(path, query, f"{what} (page {page})")
            self.totals.append(resp.headers.get("Total-Count", ""))
            body = _json(resp, f"{what} (page {page})")
            if not isinstance(body, list):
                raise IncompleteRead(f"{LABEL}: {path} page {page} is not a JSON array")
            yield [row for row in body if isinstance(row, dict)]
            cursor = (resp.headers.get("After-Cursor") or "").strip()
            if not cursor:
                return
            if cursor in seen:
                raise IncompleteRead(f"{LABEL}: {path} sent the same After-Cursor twice; "
                                     f"stopping instead of looping")
            seen.add(cursor)
            query = {**params, "limit": page_size, "cursor": cursor}
            page += 1

    def v1_pages(self, path: str, what: str, query: Mapping[str, Any] | None = None,
                 ) -> Iterator[list[dict[str, Any]]]:
        """Every page of a v1 list, following ``pagination.next_link`` to the end."""
        url = path
        # get-groups documents 50 per page and no limit parameter of its own; send limit
        # (a shared v1 query parameter) only when asked for smaller pages.
        params: dict[str, Any] | None = (
            {"limit": self.page_size} if self.page_size < 50 else None)
        if query:
            params = {**(params or {}), **query}
        seen: set[str] = set()
        page = 1
        while True:
            resp = self.get(url, params, f"{what} (page {page})")
            body = _json(resp, f"{what} (page {page})")
            data = body.get("data") if isinstance(body, dict) else None
            if not isinstance(data, list):
                raise IncompleteRead(f"{LABEL}: {path} page {page} has no data list")
            yield [row for row in data if isinstance(row, dict)]
            pagination = body.get("pagination") or {}
            link = pagination.get("next_link") if isinstance(pagination, dict) else None
            if not link:
                return
            url = self._on_our_host(str(link))
            if url in seen:
                raise IncompleteRead(f"{LABEL}: {path} sent the same next_link twice; "
                                     f"stopping instead of looping")
            seen.add(url)
            params = None
            page += 1

    def _on_our_host(self, link: str) -> str:
        """Keep the bearer token on the configured host, whatever host a next_link names."""
        parts = urlsplit(link)
        base = urlsplit(self.base_url)
        return urlunsplit((base.scheme, base.netloc, parts.path, parts.query, ""))


def _number(value: str | None) -> float | None:
    try:
        return float(value) if value else None
    except ValueError:
        return None


def _json(resp: Response, what: str) -> Any:
    try:
        return resp.json()
    except ValueError as exc:
        raise IncompleteRead(f"{LABEL}: {what} is not JSON") from exc
