"""A local HTTPS Okta org: Users, Groups and group members APIs plus the org token endpoint.

Written from Okta's Management API reference (``/api/v1/users``, ``/api/v1/groups``,
``/api/v1/groups/{groupId}/users``), the "Rate limits" guide (``X-Rate-Limit-Limit``,
``-Remaining``, ``-Reset`` on every response; 429 with E0000047) and "Implement OAuth
for Okta with a service app" (``POST /oauth2/v1/token`` with a private-key JWT client
assertion). Bodies are bare JSON arrays; the next page is only in a ``Link`` header
(RFC 8288) carrying an opaque ``after`` cursor.

Serves TLS with a throwaway trustme CA; ``OktaEmulator.ca_file`` is the PEM to trust.
"""

from __future__ import annotations

import json
import ssl
import tempfile
import threading
import uuid
from collections.abc import Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

import trustme

from .dpop import DpopError, verify
from .oauth import token_endpoint
from .query import QueryError, parse
from .state import OktaState
from .syslog import BadLogQuery, list_logs

USER_FILTER_FIELDS = frozenset({"status", "lastUpdated", "id", "profile.login", "profile.email",
                                "profile.firstName", "profile.lastName"})
GROUP_FILTER_FIELDS = frozenset({"id", "type", "lastUpdated", "lastMembershipUpdated"})


def okta_error(code: str, summary: str, causes: list[str] | None = None) -> dict[str, Any]:
    """Okta's error object (API reference, "Error object")."""
    return {"errorCode": code, "errorSummary": summary, "errorLink": code,
            "errorId": "oae" + uuid.uuid4().hex[:19],
            "errorCauses": [{"errorSummary": c} for c in causes or []]}


INVALID_TOKEN = okta_error("E0000011", "Invalid token provided")
FORBIDDEN = okta_error("E0000006", "You do not have permission to perform the requested action")
RATE_LIMITED = okta_error("E0000047", "API call exceeded rate limit due to too many requests.")


class Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body go out in two writes

    def log_message(self, format: str, *args: Any) -> None:  # quiet test output
        pass

    @property
    def state(self) -> OktaState:
        return self.server.state

    def date_time_string(self, timestamp: float | None = None) -> str:
        """The Date header, on the org's clock."""
        return super().date_time_string(self.state.clock() if timestamp is None else timestamp)

    # ---------------------------------------------------------- plumbing

    def _send(self, status: int, body: Any, headers: list[tuple[str, str]] = ()) -> None:  # type: ignore[assignment]
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("X-Okta-Request-Id", uuid.uuid4().hex[:20])
        for name, value in headers:
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def do_POST(self) -> None:
        split = urlsplit(self.path)
        self.state.requests.append(("POST", self.path))
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length).decode()
        if split.path != "/oauth2/v1/token":
            self._send(404, okta_error("E0000022", "The endpoint does not support the "
                                                   "provided HTTP method"))
            return
        form = dict(parse_qsl(raw, keep_blank_values=True))
        status, body, extra = token_endpoint(self.state, form,
                                             f"{self._origin()}/oauth2/v1/token",
                                             self.headers.get("DPoP"))
        self._send(status, body, [("Cache-Control", "no-store"), ("Pragma", "no-cache"),
                                  *extra])

    def do_GET(self) -> None:
        split = urlsplit(self.path)
        state = self.state
        with state.lock:
            state.requests.append(("GET", self.path))
            allowed, remaining, reset = state.rate.take(state.clock())
            rate_headers = [("X-Rate-Limit-Limit", str(state.rate.limit)),
                            ("X-Rate-Limit-Remaining", str(remaining)),
                            ("X-Rate-Limit-Reset", str(reset))]
        if not allowed:
            with state.lock:
                state.throttled += 1
            self._send(429, RATE_LIMITED, rate_headers)
            return
        parts = [p for p in split.path.split("/") if p]
        scope = {"groups": "okta.groups.read", "logs": "okta.logs.read"}.get(
            parts[2] if len(parts) > 2 else "", "okta.users.read")
        problem = self._authorize(scope)
        if problem is not None:
            self._send(problem[0], problem[1], rate_headers + problem[2])
            return
        params = parse_qsl(split.query, keep_blank_values=True)
        try:
            if parts == ["api", "v1", "users"]:
                items, default, cap = self._users(dict(params)), 200, 200
            elif parts == ["api", "v1", "logs"]:
                self._logs(split.path, dict(params), rate_headers)
                return
            elif len(parts) == 4 and parts[2] in ("users", "groups"):
                self._one(parts[2], parts[3], rate_headers)
                return
            elif parts == ["api", "v1", "groups"]:
                items, default, cap = self._groups(dict(params)), 10000, 10000
            elif len(parts) == 5 and parts[:3] == ["api", "v1", "groups"] and parts[4] == "users":
                found = self._group_users(parts[3])
                if found is None:
                    self._send(404, okta_error("E0000007", f"Not found: Resource not found: "
                                                           f"{parts[3]} (UserGroup)"), rate_headers)
                    return
                items, default, cap = found, 1000, 10000
            else:
                self._send(404, okta_error("E0000007", f"Not found: Resource not found: "
                                                       f"{split.path}"), rate_headers)
                return
        except QueryError as exc:
            self._send(400, okta_error("E0000031", "Invalid search criteria.", [str(exc)]),
                       rate_headers)
            return
        self._page(split.path, params, items, default, cap, rate_headers)

    def _logs(self, path: str, params: dict[str, str], headers: list[tuple[str, str]]) -> None:
        if self.state.log_failure:
            self._send(self.state.log_failure, okta_error(
                "E0000001" if self.state.log_failure == 400 else "E0000009",
                "Api validation failed: since" if self.state.log_failure == 400
                else "Internal Server Error"), headers)
            return
        try:
            body, nxt = list_logs(self.state, params, self.state.clock())
        except BadLogQuery as exc:
            self._send(400, okta_error("E0000001", "Api validation failed: " + str(exc)),
                       headers)
            return
        origin = self._origin()
        links = [("Link", f"<{origin}{path}?{urlencode(params)}>; rel=\"self\"")]
        if nxt is not None:
            links.append(("Link", f"<{origin}{path}?{urlencode(nxt)}>; rel=\"next\""))
        self._send(200, body, [*headers, *links])

    def _one(self, kind: str, oid: str, headers: list[tuple[str, str]]) -> None:
        """``GET /api/v1/users/{id}`` (any status) or ``/api/v1/groups/{id}``."""
        with self.state.lock:
            found = (self.state.users if kind == "users" else self.state.groups).get(oid)
            if found is None and kind == "users":
                found = next((u for u in self.state.users.values()
                              if u["profile"].get("login") == oid), None)
        if found is None:
            self._send(404, okta_error("E0000007", f"Not found: Resource not found: {oid} "
                                                   f"({'User' if kind == 'users' else 'Group'})"),
                       headers)
            return
        self._send(200, found, headers)

    def _origin(self) -> str:
        return f"https://{self.headers.get('Host') or self.server.host}"

    def _authorize(self, scope: str) -> tuple[int, dict[str, Any], list[tuple[str, str]]] | None:
        header = self.headers.get("Authorization") or ""
        scheme, _, credential = header.partition(" ")
        state = self.state
        with state.lock:
            if scheme == "SSWS" and credential in state.tokens:
                granted: frozenset[str] | None = None
            elif scheme in ("Bearer", "DPoP") and credential in state.access_tokens:
                granted, expires = state.access_tokens[credential]
                if expires < state.clock():
                    return 401, INVALID_TOKEN, [("WWW-Authenticate", f'{scheme} error='
                                                 '"invalid_token", error_description="The '
                                                 'token has expired."')]
                problem = self._dpop(scheme, credential)
                if problem is not None:
                    return problem
            elif scheme in ("Bearer", "DPoP"):
                # RFC 6750 3.1: an unknown, revoked or expired access token.
                return 401, INVALID_TOKEN, [("WWW-Authenticate", f'{scheme} error='
                                             '"invalid_token", error_description="The token '
                                             'is not valid."')]
            else:
                return 401, INVALID_TOKEN, []
            if state.forbidden:
                return 403, FORBIDDEN, []
        if granted is not None and scope not in granted:
            # OAuth for Okta: a token lacking the endpoint's scope gets 403 with the
            # RFC 6750 insufficient_scope challenge.
            return 403, FORBIDDEN, [("WWW-Authenticate", f'Bearer error="insufficient_scope", '
                                     f'error_description="The access token provided does not '
                                     f'contain the required scopes.", scope="{scope}"')]
        return None

    def _dpop(self, scheme: str, token: str,
              ) -> tuple[int, dict[str, Any], list[tuple[str, str]]] | None:
        """A DPoP-bound token needs the DPoP scheme and a proof by the bound key."""
        state = self.state
        bound = state.dpop_bound.get(token)
        if bound is None:
            return None if scheme == "Bearer" else (401, INVALID_TOKEN, [])
        if scheme != "DPoP":
            return 401, INVALID_TOKEN, [("WWW-Authenticate", 'DPoP error="invalid_token", '
                                         'error_description="The token is DPoP-bound."')]
        url = f"{self._origin()}{urlsplit(self.path).path}"
        try:
            with state.lock:
                jkt = verify(self.headers.get("DPoP"), "GET", url, state.dpop_jti,
                             access_token=token,
                             nonce=state.dpop_nonce if state.resource_nonce_required else None)
        except DpopError as exc:
            return 401, INVALID_TOKEN, [
                ("WWW-Authenticate", f'DPoP error="{exc.error}", '
                                     f'error_description="{exc.description}"'),
                *([("DPoP-Nonce", state.dpop_nonce)] if exc.error == "use_dpop_nonce" else [])]
        if jkt != bound:
            return 401, INVALID_TOKEN, [("WWW-Authenticate", 'DPoP error="invalid_dpop_proof"')]
        return None

    # ---------------------------------------------------------- resources

    def _users(self, params: Mapping[str, str]) -> list[dict[str, Any]]:
        state = self.state
        with state.lock:
            users = sorted(state.users.values(), key=lambda u: u["id"])
        if params.get("q"):
            q = params["q"].lower()
            return [u for u in users if u["status"] != "DEPROVISIONED" and any(
                str(u["profile"].get(k) or "").lower().startswith(q)
                for k in ("firstName", "lastName", "email"))][: int(params.get("limit") or 10)]
        if params.get("search"):
            match = parse(params["search"])
            return [u for u in users if match(u)]
        if params.get("filter"):
            match = parse(params["filter"], USER_FILTER_FIELDS)
            return [u for u in users if match(u)]
        # "List all users" without search/filter omits DEPROVISIONED users.
        return [u for u in users if u["status"] != "DEPROVISIONED"]

    def _groups(self, params: Mapping[str, str]) -> list[dict[str, Any]]:
        state = self.state
        with state.lock:
            groups = sorted(state.groups.values(), key=lambda g: g["id"])
        if params.get("q"):
            q = params["q"].lower()
            groups = [g for g in groups if g["profile"]["name"].lower().startswith(q)]
        if params.get("search"):
            match = parse(params["search"])
            groups = [g for g in groups if match(g)]
        if params.get("filter"):
            match = parse(params["filter"], GROUP_FILTER_FIELDS)
            groups = [g for g in groups if match(g)]
        return groups

    def _group_users(self, gid: str) -> list[dict[str, Any]] | None:
        state = self.state
        with state.lock:
            if gid not in state.groups:
                return None
            return sorted((state.users[u] for u in state.members[gid] if u in state.users),
                          key=lambda u: u["id"])

    def _page(self, path: str, params: list[tuple[str, str]], items: list[dict[str, Any]],
              default: int, cap: int, headers: list[tuple[str, str]]) -> None:
        query = dict(params)
        try:
            limit = min(max(int(query.get("limit") or default), 1), cap)
        except ValueError:
            self._send(400, okta_error("E0000001", "Api validation failed: limit"), headers)
            return
        after = query.get("after")
        if after:
            items = [i for i in items if i["id"] > after]
        page = items[:limit]
        more = len(items) > limit or (self.state.trailing_empty_page and len(items) == limit)
        origin = self._origin()
        self_link = f"<{origin}{path}?{urlencode(params)}>; rel=\"self\""
        links = [self_link]
        if more and page:
            nxt = [(k, v) for k, v in params if k not in ("after", "limit")]
            nxt += [("after", page[-1]["id"]), ("limit", str(limit))]
            links.append(f"<{origin}{path}?{urlencode(nxt)}>; rel=\"next\"")
        mode = self.state.link_mode
        if mode.endswith("next-first"):
            links.reverse()
        if mode.startswith("single"):
            headers = [*headers, ("Link", ", ".join(links))]
        else:
            headers = [*headers, *(("Link", link) for link in links)]
        self._send(200, page, headers)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    state: OktaState
    host: str


class OktaEmulator:
    """``with OktaEmulator() as okta:`` then ``okta.url``, ``okta.ca_file``, ``okta.state``."""

    def __init__(self, state: OktaState | None = None) -> None:
        self.state = state or OktaState()
        self._ca = trustme.CA()
        self._dir = tempfile.TemporaryDirectory(prefix="okta-emu-")
        self.ca_file = Path(self._dir.name) / "ca.pem"
        self._ca.cert_pem.write_to_path(str(self.ca_file))
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        assert self._server is not None, "not started"
        return f"https://127.0.0.1:{self._server.server_address[1]}"

    def start(self) -> OktaEmulator:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self._ca.issue_cert("127.0.0.1", "localhost").configure_cert(context)
        server = _Server(("127.0.0.1", 0), Handler)
        server.socket = context.wrap_socket(server.socket, server_side=True)
        server.state = self.state
        server.host = f"127.0.0.1:{server.server_address[1]}"
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, name="okta-emulator",
                                        kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        return self

    def use(self, state: OktaState) -> OktaState:
        """Serve a fresh org from now on (tests share one server, not its data)."""
        self.state = state
        if self._server is not None:
            self._server.state = state
        return state

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        self._dir.cleanup()

    def __enter__(self) -> OktaEmulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
