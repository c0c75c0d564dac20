"""A Bitwarden-compatible test server: identity, Public API and SCIM v2 on one port.

Usage::

    server = BitwardenServer()
    server.start()
    server.identity_url   # http://127.0.0.1:PORT/identity    (POST /connect/token)
    server.api_url        # http://127.0.0.1:PORT/api         (/public/...)
    server.scim_url       # http://127.0.0.1:PORT/v2/<org_id> (/users, /groups)
    server.url            # http://127.0.0.1:PORT: a self-hosted ``server_url``
    server.client_id, server.client_secret   # organization API key
    server.scim_key                            # SCIM API key (Authorization: Bearer)
    server.org.members / server.org.groups     # state, see org.py
    server.add_member("a@x.org", external_id="1"); server.add_owner("o@x.org")
    server.requests                            # [LoggedRequest(method, path, body, status)]
    server.imports()                           # bodies of every POST .../organization/import
    server.stop()

Layout is a self-hosted install's (``/identity``, ``/api``); SCIM sits at ``/v2/{orgId}``
as on ``scim.bitwarden.com``, and ``/scim/v2/{orgId}`` is accepted too. Wire formats:
shared/reference/bitwarden.md 2.4-2.6 (import, token) and 3.1-3.4 (SCIM); response
models follow SRV ``MemberResponseModel``, ``GroupResponseModel``, ``ListResponseModel``
and ``ErrorResponseModel`` (``{"object":"error","message":..,"errors":..}``).
"""

from __future__ import annotations

import json
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from .org import (
    ADMIN,
    CONFIRMED,
    CUSTOM,
    INVITED,
    OWNER,
    USER,
    ApiError,
    GroupRecord,
    Member,
    Organization,
    new_id,
)
from .scim import handle_scim


@dataclass(frozen=True)
class LoggedRequest:
    """One request the server answered."""

    method: str
    path: str
    body: Any
    status: int


class BitwardenServer:
    """One organization on an ephemeral 127.0.0.1 port; state changeable by tests."""

    def __init__(self, org_id: str | None = None, *, token_lifetime: int = 3600) -> None:
        self.org_id = org_id or new_id()
        self.org = Organization(self.org_id)
        self.client_id = f"organization.{self.org_id}"
        self.client_secret = secrets.token_urlsafe(24)
        self.scim_key = secrets.token_urlsafe(24)
        self.token_lifetime = token_lifetime
        """Seconds an access token lives (``expires_in``); the real server says 3600."""
        self.tokens: dict[str, float] = {}
        self.clock: Callable[[], float] = time.monotonic
        """Seconds on the scale token expiries are kept on (a test may replace it)."""
        self.token_requests = 0
        self.requests: list[LoggedRequest] = []
        self.fail_next: list[tuple[str, int, str]] = []
        """(path substring, status, message): the next matching request answers this error."""
        self.latency = 0.0
        """Seconds every request waits before it is handled (a slow server, for kill tests)."""
        self._log_lock = threading.Lock()
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.url = ""

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        handler = type("Handler", (_Handler,), {"server_state": self})
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._httpd.daemon_threads = True
        port = self._httpd.server_address[1]
        self.url = f"http://127.0.0.1:{port}"
        self._thread = threading.Thread(target=self._httpd.serve_forever,
                                        kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None

    def __enter__(self) -> BitwardenServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def identity_url(self) -> str:
        return f"{self.url}/identity"

    @property
    def api_url(self) -> str:
        return f"{self.url}/api"

    @property
    def scim_url(self) -> str:
        return f"{self.url}/v2/{self.org_id}"

    # ------------------------------------------------------------------ helpers for tests

    def add_member(self, email: str, *, external_id: str | None = None,
                   status: int = CONFIRMED, type: int = USER, name: str | None = None) -> Member:
        """Put a member straight into the organization (as if invited in the web vault)."""
        return self.org.add_member(email, external_id=external_id, status=status, type=type,
                                   name=name)

    def add_owner(self, email: str, *, external_id: str | None = None) -> Member:
        return self.org.add_member(email, external_id=external_id, status=CONFIRMED, type=OWNER)

    def add_group(self, name: str, *, external_id: str | None = None,
                  member_ids: set[str] | None = None) -> GroupRecord:
        return self.org.add_group(name, external_id=external_id, member_ids=member_ids)

    def member(self, email: str) -> Member | None:
        return self.org.member_by_email(email)

    def group_by_external_id(self, external_id: str) -> GroupRecord | None:
        return next((g for g in self.org.groups.values() if g.external_id == external_id), None)

    def imports(self) -> list[Any]:
        """Bodies of every import request received (whatever the answer)."""
        return [r.body for r in self.requests
                if r.method == "POST" and r.path.endswith("/public/organization/import")]

    def calls(self, method: str, fragment: str) -> list[LoggedRequest]:
        return [r for r in self.requests if r.method == method and fragment in r.path]

    def clear_log(self) -> None:
        with self._log_lock:
            self.requests.clear()

    def log(self, entry: LoggedRequest) -> None:
        with self._log_lock:
            self.requests.append(entry)

    # ------------------------------------------------------------------ auth

    def issue_token(self, form: dict[str, str]) -> tuple[int, dict[str, Any]]:
        """POST /connect/token, client credentials (reference 2.5)."""
        self.token_requests += 1
        if form.get("grant_type") != "client_credentials":
            return 400, {"error": "unsupported_grant_type"}
        if (form.get("client_id") != self.client_id
                or form.get("client_secret") != self.client_secret):
            return 400, {"error": "invalid_client"}
        if form.get("scope") != "api.organization":
            return 400, {"error": "invalid_scope"}
        token = secrets.token_urlsafe(32)
        self.tokens[token] = self.clock() + self.token_lifetime
        return 200, {"access_token": token, "expires_in": self.token_lifetime,
                     "token_type": "Bearer", "scope": "api.organization"}

    def token_ok(self, header: str | None) -> bool:
        if not header or not header.startswith("Bearer "):
            return False
        expiry = self.tokens.get(header[7:])
        return expiry is not None and expiry > self.clock()

    def scim_key_ok(self, header: str | None) -> bool:
        # ApiKeyAuthenticationHandler: optional "Bearer " prefix, key must match exactly.
        if not header:
            return False
        key = header[7:] if header.startswith("Bearer ") else header
        return secrets.compare_digest(key, self.scim_key)

    def expire_tokens(self) -> None:
        """Make every issued access token invalid (tests of refresh)."""
        self.tokens.clear()


def member_json(m: Member) -> dict[str, Any]:
    """SRV MemberResponseModel: collections (the list reads them too,
    includeSharedCollections), permissions for the Custom type only (MemberBaseModel)."""
    return {"object": "member", "id": m.id, "userId": None if m.status == INVITED else m.id,
            "name": m.name, "email": m.email, "twoFactorEnabled": False, "status": m.status,
            "collections": [dict(c) for c in m.collections], "resetPasswordEnrolled": False,
            "ssoExternalId": None, "type": m.type, "externalId": m.external_id,
            "permissions": dict(m.permissions or {}) if m.type == CUSTOM else None}


def group_json(g: GroupRecord) -> dict[str, Any]:
    """SRV GroupResponseModel."""
    return {"object": "group", "id": g.id, "name": g.name, "externalId": g.external_id,
            "collections": list(g.collections)}


def error_json(message: str, errors: dict[str, list[str]] | None = None) -> dict[str, Any]:
    return {"object": "error", "message": message, "errors": errors}


class _Handler(BaseHTTPRequestHandler):
    server_state: BitwardenServer
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body go out in two writes

    def log_message(self, format: str, *args: Any) -> None:  # quiet test output
        pass

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_PUT(self) -> None:
        self._dispatch("PUT")

    def do_PATCH(self) -> None:
        self._dispatch("PATCH")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    def _dispatch(self, method: str) -> None:
        srv = self.server_state
        parts = urlsplit(self.path)
        path = unquote(parts.path).rstrip("/")
        query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        ctype = self.headers.get("Content-Type", "")
        body: Any = None
        status = 500
        if srv.latency:
            time.sleep(srv.latency)
        try:
            if "x-www-form-urlencoded" in ctype:
                body = {k: v[-1] for k, v in parse_qs(raw.decode()).items()}
            elif raw:
                try:
                    body = json.loads(raw)
                except ValueError as exc:
                    raise ApiError(400, "The request's model state is invalid.",
                                   {"": ["Invalid JSON."]}) from exc
            for i, (frag, code, message) in enumerate(list(srv.fail_next)):
                if frag in path:
                    del srv.fail_next[i]
                    raise ApiError(code, message)
            status, payload, headers = self._route(method, path, query, body)
        except ApiError as err:
            status = err.status
            if "/v2/" in path:
                payload = {"schemas": ["urn:ietf:params:scim:api:messages:2.0:Error"],
                           "detail": err.message, "status": err.status}
            else:
                payload = error_json(err.message, err.errors)
            headers = {}
        srv.log(LoggedRequest(method, path, body if not isinstance(body, dict)
                              or "client_secret" not in body else {**body, "client_secret": "***"},
                              status))
        self._send(status, payload, headers)

    def _send(self, status: int, payload: Any, headers: dict[str, str]) -> None:
        data = b"" if payload is None else json.dumps(payload).encode()
        self.send_response(status)
        if payload is not None:
            self.send_header("Content-Type", headers.pop("Content-Type", "application/json"))
        for k, v in headers.items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _route(self, method: str, path: str, query: dict[str, str],
               body: Any) -> tuple[int, Any, dict[str, str]]:
        srv = self.server_state
        if path == "/identity/connect/token" and method == "POST":
            code, payload = srv.issue_token(body if isinstance(body, dict) else {})
            return code, payload, {}
        if path.startswith("/scim/v2/"):
            path = path[len("/scim"):]
        if path.startswith("/v2/"):
            if not srv.scim_key_ok(self.headers.get("Authorization")):
                # Authentication failure: ASP.NET answers 401 with no body.
                return 401, None, {}
            return handle_scim(srv.org, method, path, query, body)
        if path.startswith("/api/public/"):
            if not srv.token_ok(self.headers.get("Authorization")):
                return 401, None, {"WWW-Authenticate": 'Bearer error="invalid_token"'}
            return _public(srv.org, method, path[len("/api/public/"):].split("/"), body)
        return 404, None, {}


def _public(org: Organization, method: str, seg: list[str],
            body: Any) -> tuple[int, Any, dict[str, str]]:
    """The Public API routes (SRV src/Api/AdminConsole/Public/Controllers)."""
    with org.lock:
        if seg == ["organization", "import"] and method == "POST":
            org.import_(body)
            return 200, None, {}
        if seg[0] == "members":
            if len(seg) == 1 and method == "GET":
                data = [member_json(m) for m in org.members.values()]
                return 200, {"object": "list", "data": data, "continuationToken": None}, {}
            m = org.members.get(seg[1]) if len(seg) > 1 else None
            if m is None:
                return 404, None, {}
            if len(seg) == 2 and method == "GET":
                return 200, member_json(m), {}
            if len(seg) == 2 and method == "PUT":
                return 200, _put_member(org, m, body), {}
            if len(seg) == 2 and method == "DELETE":
                org.remove_member(m.id)
                return 200, None, {}
            if len(seg) == 3 and method == "POST" and seg[2] == "revoke":
                org.revoke(m.id)
                return 200, None, {}
            if len(seg) == 3 and method == "POST" and seg[2] == "restore":
                org.restore(m.id)
                return 200, None, {}
            if len(seg) == 3 and method == "GET" and seg[2] == "group-ids":
                return 200, [g.id for g in org.groups.values() if m.id in g.member_ids], {}
        if seg[0] == "groups":
            if len(seg) == 1 and method == "GET":
                data = [group_json(g) for g in org.groups.values()]
                return 200, {"object": "list", "data": data, "continuationToken": None}, {}
            g = org.groups.get(seg[1]) if len(seg) > 1 else None
            if g is None:
                return 404, None, {}
            if len(seg) == 2 and method == "GET":
                return 200, group_json(g), {}
            if len(seg) == 2 and method == "PUT":
                # "If a property is not provided, the value of the existing property will be
                # reset" (GroupsController.Put): collections are replaced too.
                if not isinstance(body, dict) or not body.get("name"):
                    raise ApiError(400, "The request's model state is invalid.",
                                   {"Name": ["The Name field is required."]})
                g.name = str(body["name"])
                g.external_id = body.get("externalId") or None
                g.collections = list(body.get("collections") or [])
                return 200, group_json(g), {}
            if len(seg) == 2 and method == "DELETE":
                del org.groups[g.id]
                return 200, None, {}
            if len(seg) == 3 and seg[2] == "member-ids" and method == "GET":
                return 200, sorted(g.member_ids), {}
            if len(seg) == 3 and seg[2] == "member-ids" and method == "PUT":
                ids = (body or {}).get("memberIds") or []
                g.member_ids = {i for i in ids if i in org.members}
                return 200, None, {}
    return 404, None, {}


def _put_member(org: Organization, m: Member, body: Any) -> dict[str, Any]:
    """PUT /public/members/{id} (SRV MembersController.Put, MemberUpdateRequestModel).

    "If a property is not provided, the value of the existing property will be reset":
    type is required, externalId is replaced (absent means null), collections are
    replaced (null removes all collection access), groups null leaves memberships alone,
    permissions are set only for the Custom type and only when sent
    (UpdateOrganizationUserCommand, MemberUpdateRequestModel.ToOrganizationUser).
    """
    if not isinstance(body, dict):
        raise ApiError(400, "The request's model state is invalid.", {"": ["Invalid body."]})
    errors: dict[str, list[str]] = {}
    kind = body.get("type")
    if kind is None:
        errors["Type"] = ["The Type field is required."]
    elif kind not in (OWNER, ADMIN, USER, CUSTOM):
        errors["Type"] = ["The field Type is invalid."]
    ext = body.get("externalId")
    if ext is not None and len(str(ext)) > 300:
        errors["ExternalId"] = ["The field ExternalId must be a string with a maximum length "
                                "of 300."]
    if kind != CUSTOM and body.get("permissions") is not None:
        errors[""] = ["Only users with the Custom role may use custom permissions."]
    if errors:
        raise ApiError(400, "The request's model state is invalid.", errors)
    if kind != OWNER and not any(o.id != m.id and o.type == OWNER and o.status == CONFIRMED
                                 for o in org.members.values()):
        raise ApiError(400, "Organization must have at least one confirmed owner.")
    groups = body.get("groups")
    if groups is not None and any(g not in org.groups for g in groups):
        raise ApiError(404, "Resource not found.")
    m.type = int(kind)  # type: ignore[arg-type]  # checked above
    m.external_id = None if ext is None else str(ext)
    m.collections = [{k: c.get(k) for k in ("id", "readOnly", "hidePasswords", "manage")}
                     for c in body.get("collections") or []]
    if m.type == CUSTOM and body.get("permissions") is not None:
        m.permissions = dict(body["permissions"])
    if groups is not None:
        for g in org.groups.values():
            (g.member_ids.add if g.id in groups else g.member_ids.discard)(m.id)
    return member_json(m)
