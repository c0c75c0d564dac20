"""Reading Microsoft Graph v1.0: paging, delta rounds, and error translation.

Paging (learn.microsoft.com/graph/paging): follow ``@odata.nextLink`` verbatim until a
page has none. Delta (delta-query-overview.md): each page has a nextLink or, at the end of
a round, a deltaLink to keep. Throttling (throttling.md): 429/503/504 with a possibly
fractional Retry-After are retried by :class:`dirconnector.http.HttpClient`; when it gives
up, the read is abandoned with :class:`IncompleteRead`, never half-returned.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from typing import Any
from urllib.parse import urlsplit

from ...errors import IncompleteRead, SourceError, TransientError
from ...http import HttpClient, Response, error_detail

log = logging.getLogger(__name__)

# Graph error codes meaning "this delta token is no longer usable; start over":
# syncStateNotFound (expired token, the Graph blog "Duration of change tracking tokens"),
# resyncRequired and syncStateInvalid (delta-query-overview.md, "Synchronization reset").
RESYNC_CODES = frozenset({"syncstatenotfound", "resyncrequired", "syncstateinvalid"})

# Which application permission each path needs (permissions-reference.md), for the 403 line.
_PERMISSION = (
    ("directory/administrativeUnits", "AdministrativeUnit.Read.All"),
    ("groups", "GroupMember.Read.All (or Group.Read.All)"),
    ("users", "User.Read.All"),
)


class DeltaExpired(Exception):
    """The stored delta token was rejected; the caller does a full read."""


class Graph:
    """GET-only access to one Graph endpoint with a bearer token from ``auth``."""

    def __init__(self, http: HttpClient, who: str) -> None:
        self.http = http
        self.who = who
        self._origin = urlsplit(http.base_url).netloc

    def pages(self, path: str, params: Mapping[str, str] | None = None,
              ) -> Iterator[dict[str, Any]]:
        """Every page of a collection, following ``@odata.nextLink`` to the end."""
        url: str | None = path
        query = params
        while url:
            page = self.get(url, query)
            query = None           # a nextLink already carries every query option
            yield page
            url = self._next(page.get("@odata.nextLink"))

    def collect(self, path: str, params: Mapping[str, str] | None = None,
                ) -> list[dict[str, Any]]:
        return [item for page in self.pages(path, params) for item in page.get("value", [])]

    def delta(self, link: str, params: Mapping[str, str] | None = None,
              ) -> tuple[list[dict[str, Any]], str]:
        """One complete delta round: the changed objects and the next deltaLink."""
        items: list[dict[str, Any]] = []
        url: str | None = link
        query = params
        while url:
            page = self.get(url, query, delta=True)
            query = None
            items.extend(page.get("value", []))
            if "@odata.deltaLink" in page:
                return items, self._next(page["@odata.deltaLink"]) or ""
            url = self._next(page.get("@odata.nextLink"))
            if url is None:
                raise IncompleteRead(f"azure: a delta page from {urlsplit(link).path} had "
                                     "neither @odata.nextLink nor @odata.deltaLink")
        raise AssertionError("unreachable")

    def get(self, url: str, params: Mapping[str, str] | None = None, *, delta: bool = False,
            ) -> dict[str, Any]:
        try:
            resp = self.http.request("GET", url, params=params,
                                     ok=(200, 400, 401, 403, 404, 410))
        except TransientError as exc:
            raise IncompleteRead(
                f"azure: Microsoft Graph kept refusing GET {_path(self.http.url(url))} ({exc}); "
                "the read was abandoned and nothing is planned from it",
                hint="Graph is throttling this app or tenant; run again later") from exc
        if resp.status == 200:
            try:
                body = resp.json()
            except ValueError as exc:
                raise IncompleteRead(f"azure: GET {_path(url)} answered 200 with a body that "
                                     "is not JSON") from exc
            if not isinstance(body, dict):
                raise IncompleteRead(f"azure: GET {_path(url)} answered 200 with no object")
            return body
        raise self._failure(url, resp, delta)

    def _failure(self, url: str, resp: Response, delta: bool) -> Exception:
        code, message = _graph_error(resp)
        status = resp.status
        full = _path(self.http.url(url))
        where = f"GET {full}"
        if delta and (status == 410 or code.lower() in RESYNC_CODES):
            return DeltaExpired(f"{where} answered {status} {code}: {message}")
        if status == 403:
            perm = next((p for prefix, p in _PERMISSION
                         if full.split("/v1.0/", 1)[-1].startswith(prefix)), "")
            return SourceError(
                f"azure: {self.who} lacks the application permission {perm} ({where} answered "
                f"403 {code or 'Forbidden'})",
                hint=f"Entra admin center > App registrations > API permissions: add Microsoft "
                     f"Graph application permission {perm.split(' ')[0]} and grant admin "
                     "consent")
        if status == 401:
            return SourceError(
                f"azure: Microsoft Graph rejected the access token of {self.who} ({where} "
                f"answered 401 {code}: {message})",
                hint="graph_url must be the Graph host of the cloud authority_host belongs to")
        return SourceError(f"azure: {where} answered {status} {code}: {message}")

    def _next(self, link: object) -> str | None:
        """A next/delta link, refused if it points anywhere but the Graph host."""
        if not link:
            return None
        url = str(link)
        if urlsplit(url).netloc != self._origin:
            # The bearer token goes with every request: never send it to another host.
            raise SourceError(f"azure: Graph returned a paging link to another host "
                              f"({urlsplit(url).netloc}); refusing to follow it")
        return url


def _graph_error(resp: Response) -> tuple[str, str]:
    """(code, message) from ``{"error": {"code", "message", "innerError"}}`` (errors.md)."""
    try:
        body = resp.json()
    except ValueError:
        return "", error_detail(resp)
    err = body.get("error") if isinstance(body, dict) else None
    if isinstance(err, dict):
        return str(err.get("code") or ""), str(err.get("message") or "")
    return "", error_detail(resp)


def _path(url: str) -> str:
    return urlsplit(url).path or url
