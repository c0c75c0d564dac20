"""A local OneLogin API: the token endpoint, v2 users and roles, v1 groups.

Wire format from developers.onelogin.com (stored copies read via the search tool):
- ``POST /auth/oauth2/v2/token`` (api-docs/2/oauth20-tokens/generate-tokens): Basic
  ``client_id:client_secret``, the ``client_id:<id>, client_secret:<secret>`` header, or a
  form body; JSON ``{"grant_type": "client_credentials"}``. Same credentials get the same
  token until it expires. Errors use the flat ``Error`` model of onelogin-python-sdk
  (its generate_token maps 400/401/404 to ``Error``: ``{error, code, type, message}``).
- ``/api/2/*`` lists are bare JSON arrays; paging metadata is in headers
  (api-docs/2/getting-started/using-query-parameters): ``Total-Count``, ``Total-Pages``,
  ``Current-Page``, ``Page-Items``, ``Before-Cursor``, ``After-Cursor``; the next page is
  ``?cursor=<After-Cursor>``; the cursor is base64 of ``limit=N&page=M`` like the docs'
  example ``bGltaXQ9MTAwMCZwYWdlPTM=``. The last page carries no ``After-Cursor``.
  401 body: ``{"message":"Unauthorized","statusCode":401,"name":"UnauthorizedError"}``.
- ``/api/1/groups`` (api-docs/1/groups/get-groups): the v1 envelope
  ``{"status": {...}, "pagination": {before_cursor, after_cursor, previous_link,
  next_link}, "data": [{id, name, reference}]}``, up to 50 per page; 401 is
  ``{"status": {"error": true, "code": 401, "type": "Unauthorized",
  "message": "Authentication Failure"}}``.
- 429: the docs give no body; modelled as the v2 error shape (``TooManyRequestsError``)
  or the v1 envelope, with ``Retry-After`` and the ``X-RateLimit-*`` headers (get-rate-limit).
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import ssl
import threading
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, quote, urlsplit

from .state import EVENT_TYPES, Account

USERS_MAX = 50           # list-users: "This call returns up to 50 users per page."
ROLES_MAX = 650          # list-roles: "Max page limit is 650."
ROLE_USERS_MAX = 50
GROUPS_MAX = 50          # get-groups: "The call returns up to 50 groups per page."

V2_ERRORS = {
    401: ("Unauthorized", "UnauthorizedError"),
    404: ("The resource with the given id could not be found", "NotFoundError"),
    429: ("Too Many Requests", "TooManyRequestsError"),
    500: ("Internal Server Error", "InternalServerError"),
    502: ("Bad Gateway", "BadGatewayError"),
    503: ("Service Unavailable", "ServiceUnavailableError"),
}
V1_TYPES = {400: "bad request", 401: "Unauthorized", 404: "not found",
            429: "Too Many Requests", 500: "Internal Server Error", 502: "Bad Gateway",
            503: "Service Unavailable"}
V1_MESSAGES = {401: "Authentication Failure"}


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Buffer headers and body into one write (flushed per request): avoids Nagle +
    # delayed-ACK stalls of ~40 ms per page on keep-alive connections.
    wbufsize = 1 << 16
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:  # quiet under pytest
        pass

    # ------------------------------------------------------------------ plumbing

    def _send(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    def _v2_error(self, status: int, headers: dict[str, str] | None = None) -> None:
        message, name = V2_ERRORS.get(status, ("Error", "Error"))
        self._send(status, {"message": message, "statusCode": status, "name": name}, headers)

    def _v1_error(self, status: int, headers: dict[str, str] | None = None) -> None:
        kind = V1_TYPES.get(status, "error")
        self._send(status, {"status": {"error": True, "code": status, "type": kind,
                                       "message": V1_MESSAGES.get(status, kind)}}, headers)

    @property
    def account(self) -> Account:
        return self.server.account

    def _origin(self) -> str:
        return self.server.origin

    def _rate_headers(self) -> dict[str, str]:
        """get-rate-limit: Limit, Remaining, and Reset in seconds left in the window."""
        limit, remaining, reset = self.account.take_rate()
        return {"X-RateLimit-Limit": str(limit), "X-RateLimit-Remaining": str(remaining),
                "X-RateLimit-Reset": str(reset)}

    def _bearer(self) -> str | None:
        # The docs show "bearer:<token>" (v1), "bearer <token>" (v2); the SDK sends "Bearer".
        m = re.match(r"(?i)^bearer[: ]\s*(\S+)\s*$", self.headers.get("Authorization", ""))
        return m.group(1) if m else None

    def _authorised(self) -> bool:
        token = self._bearer()
        return token is not None and self.account.token_valid(token, self.account.clock())

    # ------------------------------------------------------------------ routes

    def do_POST(self) -> None:
        parts = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        with self.account.lock:
            self.account.requests.append(("POST", parts.path))
        if parts.path == "/auth/oauth2/v2/token":
            self._token(body)
        else:
            self._v2_error(404)

    def do_GET(self) -> None:
        parts = urlsplit(self.path)
        path = parts.path.rstrip("/")
        params = dict(parse_qsl(parts.query, keep_blank_values=True))
        with self.account.lock:
            self.account.requests.append(("GET", path))
            self.account.query_log.append((path, parts.query))
        v1 = path.startswith("/api/1/")
        if not self._authorised():
            (self._v1_error if v1 or path == "/auth/rate_limit" else self._v2_error)(401)
            return
        if self.account.delay:
            self.account.sleep(self.account.delay)
        self.account.run_hooks(path)
        if path == "/auth/rate_limit":
            self._send(200, {"status": {"error": False, "code": 200, "type": "success",
                                        "message": "Success"},
                             "data": {"X-RateLimit-Limit": 5000, "X-RateLimit-Remaining": 4999,
                                      "X-RateLimit-Reset": 1800}})
        elif path == "/api/2/users":
            self._v2_list(path, params, self._users(params), USERS_MAX)
        elif m := re.fullmatch(r"/api/2/users/(\d+)", path):
            self._one_user(int(m.group(1)))
        elif path == "/api/2/roles":
            self._v2_list(path, params, self._roles(params), ROLES_MAX)
        elif m := re.fullmatch(r"/api/2/roles/(\d+)/users", path):
            rows = self._role_users(int(m.group(1)), params)
            if rows is None:
                self._v2_error(404)
            else:
                self._v2_list(path, params, rows, ROLE_USERS_MAX)
        elif path == "/api/1/groups":
            self._groups(path, params)
        elif path == "/api/1/events":
            self._events(params)
        elif path == "/api/1/events/types":
            self._send(200, {"status": _ok(), "data": [
                {"id": tid, "name": name, "description": words}
                for tid, (name, words) in sorted(EVENT_TYPES.items())]}, self._rate_headers())
        elif m := re.fullmatch(r"/api/1/groups/(\d+)", path):
            group = self.account.groups.get(int(m.group(1)))
            if group is None:
                self._v1_error(404)
            else:
                self._send(200, {"status": _ok(), "data": [dict(group)]})
        else:
            (self._v1_error if v1 else self._v2_error)(404)

    # ------------------------------------------------------------------ token

    def _token(self, body: bytes) -> None:
        client_id, secret = self._client_credentials(body)
        ctype = self.headers.get("Content-Type", "").split(";")[0].strip().lower()
        if ctype == "application/x-www-form-urlencoded":
            grant = dict(parse_qsl(body.decode())).get("grant_type")
        else:
            try:
                grant = json.loads(body or b"{}").get("grant_type")
            except (ValueError, AttributeError):
                grant = None
        if grant != "client_credentials":
            self._send(400, {"error": True, "code": 400, "type": "bad request",
                             "message": "grant_type is incorrect/absent"})
            return
        if client_id is None or self.account.clients.get(client_id) != secret:
            self._send(401, {"error": True, "code": 401, "type": "Unauthorized",
                             "message": "Authentication Failure"})
            return
        now = self.account.clock()
        tok = self.account.issue_token(client_id, now)
        self._send(200, {
            "access_token": tok.value,
            "created_at": datetime.fromtimestamp(tok.created, UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "expires_in": max(0, int(tok.expires_at - now)),
            "refresh_token": "deprecated" + tok.value[:16],
            "token_type": "bearer",
            "account_id": 555555,
        })

    def _client_credentials(self, body: bytes) -> tuple[str | None, str | None]:
        auth = self.headers.get("Authorization", "")
        if auth[:6].lower() == "basic ":
            try:
                cid, _, secret = base64.b64decode(auth[6:].strip()).decode().partition(":")
            except (binascii.Error, UnicodeDecodeError):
                return None, None
            return cid, secret
        if m := re.fullmatch(r"\s*client_id:\s*(\S+?)\s*,\s*client_secret:\s*(\S+)\s*", auth):
            return m.group(1), m.group(2)
        form = dict(parse_qsl(body.decode(errors="replace")))
        return form.get("client_id"), form.get("client_secret")

    # ------------------------------------------------------------------ v2 lists

    def _v2_list(self, path: str, params: dict[str, str], rows: list[dict[str, Any]],
                 max_limit: int) -> None:
        limit, page = 50, 1
        if "cursor" in params:
            try:
                inner = dict(parse_qsl(base64.b64decode(params["cursor"]).decode()))
                limit, page = int(inner["limit"]), int(inner["page"])
            except (binascii.Error, UnicodeDecodeError, KeyError, ValueError):
                self._send(400, {"message": "Invalid cursor", "statusCode": 400,
                                 "name": "BadRequestError"})
                return
        else:
            try:
                limit = int(params.get("limit", 50))
                page = int(params.get("page", 1))
            except ValueError:
                self._send(400, {"message": "limit and page must be integers", "statusCode": 400,
                                 "name": "BadRequestError"})
                return
        limit = max(1, min(limit, max_limit))
        page = max(1, page)
        fault = self.account.take_fault(path, page)
        if fault is not None:
            headers = self._rate_headers()
            if fault.retry_after is not None:
                headers["Retry-After"] = fault.retry_after
            self._v2_error(fault.status, headers)
            return
        total = len(rows)
        pages = max(1, -(-total // limit))
        chunk = [_copy(r) for r in rows[(page - 1) * limit: page * limit]]
        headers = {"Total-Count": str(total), "Total-Pages": str(pages),
                   "Current-Page": str(page), "Page-Items": str(len(chunk)),
                   **self._rate_headers()}
        if page < pages:
            headers["After-Cursor"] = _cursor(limit, page + 1)
        if page > 1:
            headers["Before-Cursor"] = _cursor(limit, page - 1)
        self._send(200, chunk, headers)

    def _users(self, params: dict[str, str]) -> list[dict[str, Any]]:
        account = self.account
        with account.lock:
            # Copied page by page in _v2_list (100k users: no copy of the whole account);
            # sorted once per change of the account, not once per page.
            cached = getattr(account, "_sorted_users", None)
            if cached is None or cached[0] != account.version or len(cached[1]) != len(
                    account.users):
                cached = (account.version, [u for _, u in sorted(account.users.items())])
                account._sorted_users = cached  # type: ignore[attr-defined]
            users = cached[1]
        ids = {int(x) for x in params.get("user_ids", "").split(",") if x.strip().isdigit()}
        bounds = [(key, field, op) for key, field, op in (
            ("updated_since", "updated_at", ">"), ("updated_until", "updated_at", "<"),
            ("created_since", "created_at", ">"), ("created_until", "created_at", "<"))
            if params.get(key)]
        filters = ("email", "username", "firstname", "lastname", "samaccountname",
                   "external_id", "directory_id")
        if not ids and not bounds and not any(k in params for k in filters) and not any(
                k.startswith("custom_attributes.") for k in params):
            return users                 # the plain listing (a 100k-user account: fast)
        out = []
        for u in users:
            if ids and u["id"] not in ids:
                continue
            # list-users: *_since / *_until bound the ISO 8601 timestamps (exclusive).
            if any(not _after(u[field], params[key]) if op == ">" else
                   not _after(params[key], u[field]) for key, field, op in bounds):
                continue
            ok = True
            for key in ("email", "username", "firstname", "lastname", "samaccountname",
                        "external_id", "directory_id"):
                if key in params and not _match(params[key], u.get(key)):
                    ok = False
            for key, value in params.items():
                if key.startswith("custom_attributes.") and not _match(
                        value, u["custom_attributes"].get(key.split(".", 1)[1])):
                    ok = False
            if ok:
                out.append(u)
        return out

    def _one_user(self, uid: int) -> None:
        with self.account.lock:
            user = self.account.users.get(uid)
            roles = sorted(r for r, m in self.account.role_members.items() if uid in m)
        if user is None:
            self._v2_error(404)
            return
        self._send(200, dict(user, role_ids=roles), self._rate_headers())

    def _roles(self, params: dict[str, str]) -> list[dict[str, Any]]:
        with self.account.lock:
            roles = [dict(r) for _, r in sorted(self.account.roles.items())]
        return [r for r in roles if "name" not in params or _match(params["name"], r["name"])]

    def _role_users(self, rid: int, params: dict[str, str]) -> list[dict[str, Any]] | None:
        with self.account.lock:
            if rid not in self.account.roles:
                return None
            members = set(self.account.role_members[rid])
            everyone = self.account.users
            if params.get("include_unassigned", "false").lower() == "true":
                users = sorted(everyone.items())
            else:
                users = [(uid, everyone[uid]) for uid in sorted(members) if uid in everyone]
        rows = []
        for uid, u in users:
            assigned = uid in members
            if not assigned and params.get("include_unassigned", "false").lower() != "true":
                continue
            name = f"{u['firstname']} {u['lastname']}".strip()
            if "name" in params and not any(_match(params["name"], v) for v in
                                            (u["firstname"], u["lastname"], u["username"],
                                             u["email"])):
                continue
            rows.append({"id": uid, "name": name, "username": u["username"],
                         "added_by": {"id": 678, "name": "Susan Boss"},
                         "added_at": "2026-01-15T10:00:00Z", "assigned": assigned})
        return rows

    # ------------------------------------------------------------------ v1 groups

    def _groups(self, path: str, params: dict[str, str]) -> None:
        with self.account.lock:
            groups = [dict(g) for _, g in sorted(self.account.groups.items())]
        try:
            limit = max(1, min(int(params.get("limit", GROUPS_MAX)), GROUPS_MAX))
        except ValueError:
            self._v1_error(400)
            return
        start = 0
        if "after_cursor" in params:
            try:
                last = int(base64.b64decode(params["after_cursor"]).decode().split(":::")[1])
            except (binascii.Error, UnicodeDecodeError, IndexError, ValueError):
                self._v1_error(400)
                return
            start = next((i for i, g in enumerate(groups) if g["id"] > last), len(groups))
        fault = self.account.take_fault(path, start // limit + 1)
        if fault is not None:
            headers = self._rate_headers()
            if fault.retry_after is not None:
                headers["Retry-After"] = fault.retry_after
            self._v1_error(fault.status, headers)
            return
        chunk = groups[start:start + limit]
        after = before = None
        if start + limit < len(groups):
            after = base64.b64encode(f"id:::{chunk[-1]['id']}".encode()).decode()
        if start > 0:
            before = base64.b64encode(f"id:::{chunk[0]['id']}".encode()).decode()
        link = f"{self._origin()}/api/1/groups?limit={limit}&after_cursor="
        self._send(200, {
            "status": _ok(),
            "pagination": {"before_cursor": before, "after_cursor": after,
                           "previous_link": (f"{self._origin()}/api/1/groups?limit={limit}"
                                             f"&before_cursor={quote(before)}") if before else None,
                           "next_link": link + quote(after) if after else None},
            "data": chunk,
        }, self._rate_headers())


    # ------------------------------------------------------------------ v1 events

    def _events(self, params: dict[str, str]) -> None:
        """get-events: up to 50 per page; since/until on created_at; event_type_id a comma
        list; user_id; sort=+id / -id; paged by the v1 pagination envelope."""
        if self.account.events_failure:
            self._v1_error(self.account.events_failure, self._rate_headers())
            return
        with self.account.lock:
            events = [dict(e) for e in self.account.events]
        try:
            limit = max(1, min(int(params.get("limit", 50)), 50))
            types = {int(t) for t in params.get("event_type_id", "").split(",") if t.strip()}
            user = int(params["user_id"]) if params.get("user_id") else None
        except ValueError:
            self._v1_error(400)
            return
        rows = [e for e in events
                if (not params.get("since") or _after(e["created_at"], params["since"]))
                and (not params.get("until") or _after(params["until"], e["created_at"]))
                and (not types or e["event_type_id"] in types)
                and (user is None or e["user_id"] == user)]
        descending = params.get("sort", "-id").strip() != "+id"
        rows.sort(key=lambda e: e["id"], reverse=descending)
        if "after_cursor" in params:
            try:
                last = int(base64.b64decode(params["after_cursor"]).decode().split(":::")[1])
            except (binascii.Error, UnicodeDecodeError, IndexError, ValueError):
                self._v1_error(400)
                return
            rows = [e for e in rows if (e["id"] < last if descending else e["id"] > last)]
        chunk = rows[:limit]
        after = None
        if len(rows) > limit:
            after = base64.b64encode(f"id:::{chunk[-1]['id']}".encode()).decode()
        keep = "&".join(f"{k}={quote(v)}" for k, v in params.items()
                        if k not in ("after_cursor", "before_cursor"))
        self._send(200, {
            "status": _ok(),
            "pagination": {"before_cursor": None, "after_cursor": after,
                           "previous_link": None,
                           "next_link": f"{self._origin()}/api/1/events?{keep}"
                                        f"&after_cursor={quote(after)}" if after else None},
            "data": chunk,
        }, self._rate_headers())


def _after(a: str, b: str) -> bool:
    """True when ISO timestamp ``a`` is later than ``b``."""
    if len(a) == len(b) == 24 and a.endswith("Z") and b.endswith("Z"):
        return a > b                     # one format: compares as text
    def parse(t: str) -> datetime:
        when = datetime.fromisoformat(t.replace("Z", "+00:00"))
        return when if when.tzinfo else when.replace(tzinfo=UTC)
    return parse(a) > parse(b)


def _copy(row: dict[str, Any]) -> dict[str, Any]:
    if isinstance(row.get("custom_attributes"), dict):
        return dict(row, custom_attributes=dict(row["custom_attributes"]))
    return dict(row)


def _ok() -> dict[str, Any]:
    return {"error": False, "code": 200, "type": "success", "message": "Success"}


def _cursor(limit: int, page: int) -> str:
    return base64.b64encode(f"limit={limit}&page={page}".encode()).decode()


def _match(pattern: str, value: Any) -> bool:
    """OneLogin search: exact, case-insensitive, with ``*`` wildcards (using-query-parameters)."""
    if value is None:
        return False
    regex = ".*".join(re.escape(p) for p in pattern.split("*"))
    return re.fullmatch(regex, str(value), re.IGNORECASE) is not None


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    account: Account
    origin: str


class OneLoginEmulator:
    """Serve ``account`` on 127.0.0.1 (HTTPS when given an ``ssl.SSLContext``)."""

    def __init__(self, account: Account | None = None, tls: ssl.SSLContext | None = None) -> None:
        self.account = account or Account()
        self._server = _Server(("127.0.0.1", 0), _Handler)
        if tls is not None:
            self._server.socket = tls.wrap_socket(self._server.socket, server_side=True)
        scheme = "https" if tls is not None else "http"
        self.url = f"{scheme}://127.0.0.1:{self._server.server_address[1]}"
        self._server.account = self.account
        self._server.origin = self.url
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.02,),
                                        daemon=True, name="onelogin-emulator")

    def __enter__(self) -> OneLoginEmulator:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
