"""A threaded SCIM 2.0 service provider with a fixed latency per request, for benchmarks.

    python -m tests.emulators.scimlat.server --latency 0.02 [--bulk] [--token T]

prints one JSON line ``{"url": ..., "pid": ...}`` once it listens on 127.0.0.1 (port 0).
scim2-server (the project's reference server) is single-threaded, so it cannot show what
concurrency buys against a server far away; this one answers every request on its own
thread after sleeping ``latency`` seconds, like a WAN round trip, and keeps everything in
memory. It implements what the ``scim`` target sends (RFC 7644):

- ``GET /ServiceProviderConfig`` (patch, optional bulk with maxOperations 1000, no etag);
- ``GET /Users`` and ``/Groups``: ListResponse with 1-based ``startIndex``/``count``
  (3.4.2.4) and ``filter`` ``userName|externalId|displayName eq "..."`` clauses,
  possibly joined by ``or`` (3.4.2.2);
- ``POST``/``GET``/``PATCH``/``PUT``/``DELETE`` ``/Users/{id}`` and ``/Groups/{id}``;
  PATCH understands replace of a simple or dotted path, ``add`` of members and ``remove``
  with ``members[value eq "id"]`` (3.5.2); 409 ``uniqueness`` on a taken userName (3.12);
- ``POST /Bulk`` (3.7) of User/Group POSTs, failOnErrors honoured;
- ``GET /_stats`` (no latency, not SCIM): requests per method, for "zero writes" checks;
  ``POST /_stats/reset`` clears the counters.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import threading
import time
import uuid
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

USER_SCHEMA = "urn:ietf:params:scim:schemas:core:2.0:User"
GROUP_SCHEMA = "urn:ietf:params:scim:schemas:core:2.0:Group"
LIST_SCHEMA = "urn:ietf:params:scim:api:messages:2.0:ListResponse"
ERROR_SCHEMA = "urn:ietf:params:scim:api:messages:2.0:Error"
_CLAUSE = r'(\w+) eq ("(?:[^"\\]|\\.)*")'
_EQ = re.compile(_CLAUSE, re.IGNORECASE)
_EQ_OR = re.compile(rf"{_CLAUSE}(?: or {_CLAUSE})*", re.IGNORECASE)
BULK_RESPONSE = "urn:ietf:params:scim:api:messages:2.0:BulkResponse"
SCIM_JSON = "application/scim+json"


class ScimError(Exception):
    def __init__(self, status: int, detail: str, scim_type: str = "") -> None:
        super().__init__(detail)
        self.status, self.detail, self.scim_type = status, detail, scim_type

    def body(self) -> dict[str, Any]:
        out: dict[str, Any] = {"schemas": [ERROR_SCHEMA], "status": str(self.status),
                               "detail": self.detail}
        if self.scim_type:
            out["scimType"] = self.scim_type
        return out


class Store:
    """Users and groups in memory; one lock (requests are short, the latency is outside)."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.lock = threading.Lock()
        self.users: dict[str, dict[str, Any]] = {}
        self.groups: dict[str, dict[str, Any]] = {}
        self.user_names: dict[str, str] = {}
        self.external_ids: dict[str, set[str]] = {}
        """Users by externalId: a filter by it (a watch batch's read) is a lookup, not a
        scan of every user, as a real server's index makes it."""
        self.stats: Counter[str] = Counter()

    def _reindex(self, rid: str, old: dict[str, Any] | None, new: dict[str, Any] | None) -> None:
        before = old.get("externalId") if old else None
        after = new.get("externalId") if new else None
        if before == after:
            return
        if before is not None:
            held = self.external_ids.get(str(before), set())
            held.discard(rid)
            if not held:
                self.external_ids.pop(str(before), None)
        if after is not None:
            self.external_ids.setdefault(str(after), set()).add(rid)

    # ------------------------------------------------------------ resources

    def _coll(self, kind: str) -> dict[str, dict[str, Any]]:
        return self.users if kind == "Users" else self.groups

    def _meta(self, kind: str, rid: str) -> dict[str, Any]:
        now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        return {"resourceType": kind[:-1], "created": now, "lastModified": now,
                "location": f"{self.base}/{kind}/{rid}"}

    def create(self, kind: str, body: dict[str, Any]) -> dict[str, Any]:
        rid = uuid.uuid4().hex
        res = {k: v for k, v in body.items() if k not in ("id", "meta")}
        res["id"] = rid
        res["meta"] = self._meta(kind, rid)
        with self.lock:
            if kind == "Users":
                name = str(res.get("userName") or "")
                if not name:
                    raise ScimError(400, "userName is required", "invalidValue")
                if name.lower() in self.user_names:
                    raise ScimError(409, f"userName {name} is taken", "uniqueness")
                self.user_names[name.lower()] = rid
                self._reindex(rid, None, res)
                res.setdefault("active", True)
            else:
                res["members"] = [{"value": m["value"]} for m in res.get("members") or ()]
            self._coll(kind)[rid] = res
        return res

    def get(self, kind: str, rid: str) -> dict[str, Any]:
        with self.lock:
            res = self._coll(kind).get(rid)
            if res is None:
                raise ScimError(404, f"{kind[:-1]} {rid} not found")
            return json.loads(json.dumps(res))

    def delete(self, kind: str, rid: str) -> None:
        with self.lock:
            res = self._coll(kind).pop(rid, None)
            if res is None:
                raise ScimError(404, f"{kind[:-1]} {rid} not found")
            if kind == "Users":
                self.user_names.pop(str(res.get("userName", "")).lower(), None)
                self._reindex(rid, res, None)
                for g in self.groups.values():
                    g["members"] = [m for m in g["members"] if m["value"] != rid]

    def put(self, kind: str, rid: str, body: dict[str, Any]) -> dict[str, Any]:
        with self.lock:
            old = self._coll(kind).get(rid)
            if old is None:
                raise ScimError(404, f"{kind[:-1]} {rid} not found")
            res = {k: v for k, v in body.items() if k not in ("id", "meta")}
            res["id"], res["meta"] = rid, old["meta"]
            if kind == "Users":
                self._rename(old, res)
                self._reindex(rid, old, res)
            self._coll(kind)[rid] = res
            return res

    def _rename(self, old: dict[str, Any], new: dict[str, Any]) -> None:
        before = str(old.get("userName", "")).lower()
        after = str(new.get("userName", "")).lower()
        if before != after:
            if after in self.user_names:
                raise ScimError(409, f"userName {after} is taken", "uniqueness")
            self.user_names.pop(before, None)
            self.user_names[after] = str(old["id"])

    def patch(self, kind: str, rid: str, body: dict[str, Any]) -> dict[str, Any]:
        with self.lock:
            res = self._coll(kind).get(rid)
            if res is None:
                raise ScimError(404, f"{kind[:-1]} {rid} not found")
            new = json.loads(json.dumps(res))
            for op in body.get("Operations") or ():
                self._apply_op(new, op)
            if kind == "Users":
                self._rename(res, new)
                self._reindex(rid, res, new)
            self._coll(kind)[rid] = new
            return new

    @staticmethod
    def _apply_op(res: dict[str, Any], op: dict[str, Any]) -> None:
        kind = str(op.get("op", "")).lower()
        path = str(op.get("path") or "")
        value = op.get("value")
        if path == "members" and kind == "add":
            have = {m["value"] for m in res.setdefault("members", [])}
            for m in value or ():
                if m["value"] not in have:
                    res["members"].append({"value": m["value"]})
                    have.add(m["value"])
        elif path.startswith("members[value eq ") and kind == "remove":
            gone = json.loads(path[len("members[value eq "):-1])
            res["members"] = [m for m in res.get("members") or () if m["value"] != gone]
        elif kind in ("replace", "add") and path and "[" not in path:
            head, _, tail = path.partition(".")
            if tail:
                res.setdefault(head, {})[tail] = value
            else:
                res[head] = value
        elif kind in ("replace", "add") and not path and isinstance(value, dict):
            res.update(value)
        else:
            raise ScimError(400, f"unsupported PATCH operation {kind} {path}", "invalidPath")

    def query(self, kind: str, params: dict[str, str]) -> dict[str, Any]:
        flt = params.get("filter")
        with self.lock:
            found = self._indexed(kind, flt) if flt else None
            items = found if found is not None else list(self._coll(kind).values())
        if flt and found is None:
            # RFC 7644 3.4.2.2: ``attr eq "value"`` clauses, possibly joined by ``or``.
            clauses = _EQ_OR.fullmatch(flt)
            if clauses is None:
                raise ScimError(400, f"unsupported filter {flt}", "invalidFilter")
            # One pass over the resources, whatever the number of clauses (a watch batch
            # asks for 40 at a time): each attribute's wanted values in a set.
            wanted: dict[str, set[str]] = {}
            for attr, lit in _EQ.findall(flt):
                value = json.loads(lit)
                wanted.setdefault(attr, set()).add(value.lower() if attr == "userName"
                                                   else value)
            items = [r for r in items if any(
                (str(r.get(attr, "")).lower() if attr == "userName" else r.get(attr)) in values
                for attr, values in wanted.items())]
        start = max(1, int(params.get("startIndex", "1")))
        count = max(0, int(params.get("count", "100")))
        page = items[start - 1:start - 1 + count]
        return {"schemas": [LIST_SCHEMA], "totalResults": len(items), "startIndex": start,
                "itemsPerPage": len(page), "Resources": page}

    def _indexed(self, kind: str, flt: str) -> list[dict[str, Any]] | None:
        """The users a filter of ``userName``/``externalId eq`` clauses names, from the
        indexes (None for any other filter: it is answered by a scan)."""
        if kind != "Users" or _EQ_OR.fullmatch(flt) is None:
            return None
        rids: dict[str, None] = {}
        for attr, lit in _EQ.findall(flt):
            value = str(json.loads(lit))
            if attr == "userName":
                rid = self.user_names.get(value.lower())
                if rid is not None:
                    rids[rid] = None
            elif attr == "externalId":
                rids.update(dict.fromkeys(sorted(self.external_ids.get(value, ()))))
            else:
                return None
        return [self.users[r] for r in rids]


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"       # keep-alive: the client's pool reuses connections
    disable_nagle_algorithm = True      # else delayed ACKs add 40 ms to every answer
    store: Store
    latency: float
    bulk: bool
    token: str

    def log_message(self, *args: Any) -> None:     # quiet
        pass

    def _send(self, status: int, body: Any = None, headers: dict[str, str] | None = None
              ) -> None:
        data = b"" if body is None else json.dumps(body).encode()
        self.send_response(status)
        if body is not None:
            self.send_header("Content-Type", SCIM_JSON)
        self.send_header("Content-Length", str(len(data)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    def _body(self) -> Any:
        n = int(self.headers.get("Content-Length") or 0)
        return json.loads(self.rfile.read(n)) if n else None

    def _handle(self, method: str) -> None:
        url = urlsplit(self.path)
        parts = [p for p in url.path.split("/") if p]
        if parts[:2] == ["scim", "v2"]:
            parts = parts[2:]
        if parts[:1] == ["_stats"]:
            with self.store.lock:
                counts = dict(self.store.stats)
                if method == "POST":             # read and reset
                    self.store.stats.clear()
            self._send(200, counts)
            return
        body = self._body() if method in ("POST", "PUT", "PATCH") else None
        with self.store.lock:
            self.store.stats[method] += 1
        time.sleep(self.latency)
        if self.token and self.headers.get("Authorization") != f"Bearer {self.token}":
            self._send(401, ScimError(401, "bad token").body())
            return
        params = {k: v[-1] for k, v in parse_qs(url.query).items()}
        try:
            status, out, headers = self._route(method, parts, params, body)
        except ScimError as exc:
            self._send(exc.status, exc.body())
            return
        except (ValueError, KeyError, TypeError) as exc:
            self._send(400, ScimError(400, f"bad request: {exc}", "invalidSyntax").body())
            return
        self._send(status, out, headers)

    def _route(self, method: str, parts: list[str], params: dict[str, str], body: Any
               ) -> tuple[int, Any, dict[str, str]]:
        st = self.store
        if parts == ["ServiceProviderConfig"] and method == "GET":
            return 200, service_provider_config(self.bulk), {}
        if parts == ["Bulk"] and method == "POST":
            if not self.bulk:
                raise ScimError(501, "Bulk is not supported")
            return 200, self._bulk(body), {}
        if not parts or parts[0] not in ("Users", "Groups"):
            raise ScimError(404, f"no endpoint {'/'.join(parts)}")
        kind = parts[0]
        if len(parts) == 1:
            if method == "GET":
                return 200, st.query(kind, params), {}
            if method == "POST":
                res = st.create(kind, body)
                return 201, res, {"Location": res["meta"]["location"]}
        elif len(parts) == 2:
            rid = parts[1]
            if method == "GET":
                return 200, st.get(kind, rid), {}
            if method == "PATCH":
                st.patch(kind, rid, body)
                return 204, None, {}
            if method == "PUT":
                return 200, st.put(kind, rid, body), {}
            if method == "DELETE":
                st.delete(kind, rid)
                return 204, None, {}
        raise ScimError(405, f"{method} not allowed on {'/'.join(parts)}")

    def _bulk(self, body: dict[str, Any]) -> dict[str, Any]:
        fail_on = int(body.get("failOnErrors") or 0)
        results, errors = [], 0
        for op in body.get("Operations") or ():
            entry: dict[str, Any] = {"method": op.get("method"), "bulkId": op.get("bulkId")}
            try:
                kind = str(op.get("path", "")).strip("/")
                if op.get("method") != "POST" or kind not in ("Users", "Groups"):
                    raise ScimError(400, "only POST of Users and Groups in Bulk")
                res = self.store.create(kind, op.get("data") or {})
                entry.update(location=res["meta"]["location"], status="201")
            except ScimError as exc:
                errors += 1
                entry.update(status=str(exc.status), response=exc.body())
            results.append(entry)
            if fail_on and errors >= fail_on:
                break
        return {"schemas": [BULK_RESPONSE], "Operations": results}

    def do_GET(self) -> None:
        self._handle("GET")

    def do_POST(self) -> None:
        self._handle("POST")

    def do_PUT(self) -> None:
        self._handle("PUT")

    def do_PATCH(self) -> None:
        self._handle("PATCH")

    def do_DELETE(self) -> None:
        self._handle("DELETE")


def service_provider_config(bulk: bool) -> dict[str, Any]:
    """RFC 7643 section 5."""
    return {
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:ServiceProviderConfig"],
        "patch": {"supported": True},
        "bulk": {"supported": bulk, "maxOperations": 1000, "maxPayloadSize": 104857600},
        "filter": {"supported": True, "maxResults": 1000},
        "changePassword": {"supported": False},
        "sort": {"supported": False},
        "etag": {"supported": False},
        "authenticationSchemes": [{"type": "oauthbearertoken", "name": "Bearer",
                                   "description": "RFC 6750 bearer token"}],
    }


class LatencyServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128


def serve(latency: float, bulk: bool, token: str, port: int = 0
          ) -> tuple[LatencyServer, str]:
    """Start the server on a thread; return it and its base URL."""
    httpd = LatencyServer(("127.0.0.1", port), Handler)
    base = f"http://127.0.0.1:{httpd.server_address[1]}/scim/v2"
    handler = type("BoundHandler", (Handler,), {"store": Store(base), "latency": latency,
                                                "bulk": bulk, "token": token})
    httpd.RequestHandlerClass = handler
    threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05},
                     daemon=True).start()
    return httpd, base


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--latency", type=float, default=0.02, help="seconds per request")
    parser.add_argument("--bulk", action="store_true", help="offer /Bulk")
    parser.add_argument("--token", default="", help="require this bearer token")
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args(argv)
    httpd, base = serve(args.latency, args.bulk, args.token, args.port)
    import os

    print(json.dumps({"url": base, "pid": os.getpid()}), flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        httpd.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
