"""Microsoft Graph v1.0 resources the emulator serves, shaped after the API reference examples.

Covered: ``GET /users``, ``/users/delta``, ``/groups``, ``/groups/delta``,
``/groups/{id}/members``, ``/groups/{id}/transitiveMembers``,
``/directory/administrativeUnits`` and ``/directory/administrativeUnits/{id}/members``, with
``$select``, ``$top`` (1..999), ``$skiptoken`` paging, ``$deltatoken`` (including
``$deltatoken=latest``, delta-query-overview.md "sync from now"), ``@removed`` and
``members@delta``, ``manager`` in a users delta's ``$select`` (``manager@delta``),
``$expand=manager($select=id)`` on ``/users``. Not covered: ``$filter``,
``$search``, ``$orderby``, other ``$expand``, ``$count`` and ``ConsistencyLevel`` advanced queries, writes, ``/directory/deletedItems``,
``Prefer: return=minimal``; asking for them gets a 400 that says the emulator lacks them.

Response shapes: paging.md (``@odata.nextLink`` absent on the last page), user-list.md and
group-list-members.md (``@odata.context``, ``@odata.type`` on directoryObjects),
delta-query-users.md / delta-query-groups.md (nextLink or deltaLink on every page,
``{"id", "@removed": {"reason": "changed"|"deleted"}}``), errors.md (error envelope).
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from .directory import (
    GROUP_DEFAULT_PROPERTIES,
    USER_DEFAULT_PROPERTIES,
    USER_MORE_PROPERTIES,
    Directory,
)

READ_USERS = frozenset({"User.Read.All", "User.ReadWrite.All", "Directory.Read.All",
                        "Directory.ReadWrite.All"})
READ_GROUPS = frozenset({"GroupMember.Read.All", "Group.Read.All", "Group.ReadWrite.All",
                         "Directory.Read.All", "Directory.ReadWrite.All"})
READ_AUS = frozenset({"AdministrativeUnit.Read.All", "AdministrativeUnit.ReadWrite.All",
                      "Directory.Read.All", "Directory.ReadWrite.All"})
_MANAGER_EXPAND = re.compile(r"^manager(?:\(\$select=([A-Za-z,]+)\))?$")
UNSUPPORTED = ("$filter", "$search", "$orderby", "$expand", "$count", "$skip", "$format")
AU_DEFAULT_PROPERTIES = ("id", "deletedDateTime", "displayName", "description", "visibility")


class GraphError(Exception):
    """An error answer: status, code and message of the Graph error envelope."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


@dataclass
class GraphRequest:
    path: str                     # after /v1.0/, e.g. "groups/{id}/members"
    query: dict[str, str]
    origin: str                   # https://127.0.0.1:PORT
    roles: frozenset[str]
    max_page: int | None = None   # from Prefer: odata.maxpagesize


class GraphApi:
    """Routes a request to a resource and builds the JSON body."""

    def __init__(self, directory: Directory) -> None:
        self.dir = directory
        self.delta_page_size = 100

    def handle(self, req: GraphRequest) -> dict[str, Any]:
        for option in req.query:
            if option.lower() == "$expand" and req.path.strip("/") == "users" and \
                    _MANAGER_EXPAND.match(req.query[option]):
                continue                 # user-list-manager.md: $expand=manager($select=id)
            if option.lower() in UNSUPPORTED:
                raise GraphError(400, "Request_UnsupportedQuery",
                                 f"Unsupported Query. (the graph emulator does not implement "
                                 f"{option})")
        parts = [p for p in req.path.split("/") if p]
        with self.dir.lock:
            return self._route(parts, req)

    def _route(self, parts: list[str], req: GraphRequest) -> dict[str, Any]:
        d = self.dir
        if parts == ["users"]:
            self._need(req, READ_USERS)
            return self._list(req, "users", list(d.users.values()), "user")
        if parts in (["users", "delta"], ["users", "microsoft.graph.delta"]):
            self._need(req, READ_USERS)
            return self._delta(req, "users")
        if parts == ["groups"]:
            self._need(req, READ_GROUPS)
            return self._list(req, "groups", list(d.groups.values()), "group")
        if parts in (["groups", "delta"], ["groups", "microsoft.graph.delta"]):
            self._need(req, READ_GROUPS)
            return self._delta(req, "groups")
        if len(parts) == 3 and parts[0] == "groups" and parts[2] in ("members",
                                                                     "transitiveMembers"):
            self._need(req, READ_GROUPS)
            gid = parts[1]
            if gid not in d.groups:
                raise _not_found(gid)
            ids = d.members[gid] if parts[2] == "members" else d.transitive_members(gid)
            return self._list(req, "directoryObjects", [self._object(i) for i in ids], None)
        if parts == ["directory", "administrativeUnits"]:
            self._need(req, READ_AUS)
            return self._list(req, "directory/administrativeUnits",
                              list(d.admin_units.values()), "administrativeUnit")
        if (len(parts) == 4 and parts[:2] == ["directory", "administrativeUnits"]
                and parts[3] == "members"):
            self._need(req, READ_AUS)
            if parts[2] not in d.admin_units:
                raise _not_found(parts[2])
            return self._list(req, "directoryObjects",
                              [self._object(i) for i in d.au_members[parts[2]]], None)
        seg = parts[-1] if parts else ""
        raise GraphError(400, "BadRequest", f"Resource not found for the segment '{seg}'.")

    # ------------------------------------------------------------ collections

    def _list(self, req: GraphRequest, entity_set: str, objects: list[dict[str, Any]],
              typename: str | None) -> dict[str, Any]:
        top = _top(req.query.get("$top"))
        select = _select(req.query.get("$select"), objects, typename, allow=())
        offset = 0
        if "$skiptoken" in req.query:
            try:
                offset = int(_decode(req.query["$skiptoken"])["o"])
            except (ValueError, KeyError, TypeError) as exc:
                raise GraphError(400, "Request_BadRequest",
                                 "The specified page token value has expired and can no longer "
                                 "be included in your request.") from exc
        size = top or 100
        page = objects[offset: offset + size]
        body: dict[str, Any] = {"@odata.context": _context(req.origin, entity_set, select)}
        if offset + size < len(objects):
            rest = {k: v for k, v in req.query.items() if k != "$skiptoken"}
            rest["$skiptoken"] = _encode({"o": offset + size})
            body["@odata.nextLink"] = f"{req.origin}/v1.0/{req.path}?{_qs(rest)}"
        body["value"] = [_project(o, select, typename) for o in page]
        if "$expand" in req.query and entity_set == "users":
            expand_select = _MANAGER_EXPAND.match(req.query["$expand"])
            wanted = expand_select[1].split(",") if expand_select and expand_select[1] else None
            for item in body["value"]:
                boss = self.dir.users.get(self.dir.managers.get(item["id"], ""))
                if boss is not None:
                    item["manager"] = {"@odata.type": "#microsoft.graph.user",
                                       **{k: boss.get(k) for k in (wanted or ["id"])}}
        return body

    def _delta(self, req: GraphRequest, kind: str) -> dict[str, Any]:
        d = self.dir
        q = req.query
        since: int | None
        if "$deltatoken" in q and q["$deltatoken"].lower() == "latest":
            select = _select(q.get("$select"), [], _TYPE[kind], allow=_DELTA_EXTRA[kind])
            return {"@odata.context": _context(req.origin, kind, select),
                    "@odata.deltaLink": self._link(req, kind, "$deltatoken",
                                                   {"u": d.position(), "s": select}),
                    "value": []}
        if "$deltatoken" in q or "$skiptoken" in q:
            state = self._state(q.get("$deltatoken") or q["$skiptoken"])
            select = state["s"]
            if "$deltatoken" in q:
                since, upto, offset = state["u"], d.position(), 0
            else:
                since, upto, offset = state["f"], state["u"], state["o"]
        else:
            select = _select(q.get("$select"), [], _TYPE[kind], allow=_DELTA_EXTRA[kind])
            since, upto, offset = None, d.position(), 0
        items = self._user_changes(since, upto, select) if kind == "users" else \
            self._group_changes(since, upto, select)
        size = min(req.max_page or self.delta_page_size, self.delta_page_size)
        body: dict[str, Any] = {"@odata.context": _context(req.origin, kind, select)}
        if offset + size < len(items):
            body["@odata.nextLink"] = self._link(req, kind, "$skiptoken", {
                "f": since, "u": upto, "o": offset + size, "s": select})
        else:
            body["@odata.deltaLink"] = self._link(req, kind, "$deltatoken",
                                                  {"u": upto, "s": select})
        body["value"] = items[offset: offset + size]
        return body

    def _user_changes(self, since: int | None, upto: int, select: list[str] | None,
                      ) -> list[dict[str, Any]]:
        d = self.dir
        # delta-query-overview.md: "$select also supports manager ... Selecting those
        # properties allows tracking of changes to user's manager"; relationships come as
        # a "manager@delta" annotation, in the initial round too.
        with_manager = select is not None and "manager" in select
        plain = [s for s in select if s != "manager"] if select is not None else None
        if since is None:
            out = []
            for uid, u in d.users.items():
                item = _project(u, plain, "user")
                if with_manager and uid in d.managers:
                    item["manager@delta"] = [_ref("user", d.managers[uid])]
                out.append(item)
            return out
        changes = [c for c in d.changes_between("user", since, upto)
                   if with_manager or c.member_type != "manager"]
        out = []
        for uid in _unique(c.object_id for c in changes):
            if uid in d.users:
                item = _project(d.users[uid], plain, "user")
                net: dict[str, bool] = {}
                for c in changes:
                    if c.object_id == uid and c.member_type == "manager":
                        net.pop(c.member_id, None)
                        net[c.member_id] = c.member_added
                if net:
                    # A new manager as a reference; the one taken away as a reference
                    # with "@removed", as members@delta reports a removed member.
                    item["manager@delta"] = [
                        _ref("user", m) if added else
                        {**_ref("user", m), "@removed": {"reason": "deleted"}}
                        for m, added in net.items()]
                out.append(item)
            else:
                # delta-query-users.md: soft-deleted users carry reason "changed", users
                # deleted permanently carry reason "deleted".
                reason = "changed" if uid in d.deleted_users else "deleted"
                out.append({"id": uid, "@removed": {"reason": reason}})
        return out

    def _group_changes(self, since: int | None, upto: int, select: list[str] | None,
                       ) -> list[dict[str, Any]]:
        d = self.dir
        with_members = select is None or "members" in select
        plain = [s for s in select if s != "members"] if select is not None else None
        out = []
        if since is None:
            for gid, group in d.groups.items():
                item = _project(group, plain, "group")
                if with_members and d.members[gid]:
                    item["members@delta"] = [_ref(self._kind(m), m) for m in d.members[gid]]
                out.append(item)
            return out
        changes = d.changes_between("group", since, upto)
        for gid in _unique(c.object_id for c in changes):
            if gid not in d.groups:
                out.append({"id": gid, "@removed": {"reason": "deleted"}})
                continue
            item = _project(d.groups[gid], plain, "group")
            net: dict[str, tuple[str, bool]] = {}
            for c in changes:
                if c.object_id == gid and c.member_id:
                    net[c.member_id] = (c.member_type, c.member_added)
            if with_members and net:
                # delta-query-groups.md: later rounds list added members, and removed
                # ones with "@removed": {"reason": "deleted"}.
                item["members@delta"] = [
                    _ref(t, m) if added else {**_ref(t, m), "@removed": {"reason": "deleted"}}
                    for m, (t, added) in net.items()]
            out.append(item)
        return out

    # ------------------------------------------------------------ helpers

    def _need(self, req: GraphRequest, any_of: frozenset[str]) -> None:
        if not req.roles & any_of:
            raise GraphError(403, "Authorization_RequestDenied",
                             "Insufficient privileges to complete the operation.")

    def _object(self, oid: str) -> dict[str, Any]:
        d = self.dir
        if oid in d.users:
            return {"@odata.type": "#microsoft.graph.user", **d.users[oid]}
        return {"@odata.type": "#microsoft.graph.group", **d.groups[oid]}

    def _kind(self, oid: str) -> str:
        return "group" if oid in self.dir.groups else "user"

    def _link(self, req: GraphRequest, kind: str, name: str, state: dict[str, Any]) -> str:
        state["e"] = self.dir.token_epoch
        return f"{req.origin}/v1.0/{kind}/delta?{name}={_encode(state)}"

    def _state(self, token: str) -> dict[str, Any]:
        try:
            state = _decode(token)
        except ValueError:
            state = {}
        if state.get("e") != self.dir.token_epoch and self.dir.expired_as_reset:
            # delta-query-overview.md, "Synchronization reset": 410 Gone; the client
            # must start over with a fresh delta round.
            raise GraphError(410, "resyncRequired",
                             "The delta token is no longer valid; a full synchronization "
                             "is required.")
        if state.get("e") != self.dir.token_epoch:
            # Graph blog, "Duration of change tracking tokens for identity resources":
            # an expired token gets BadRequest with syncStateNotFound and this message.
            raise GraphError(400, "syncStateNotFound",
                             "The sync state generation is not found. The delta token is "
                             "expired and data must be synchronized again.")
        return state


_TYPE = {"users": "user", "groups": "group"}
_DELTA_EXTRA = {"users": ("manager",), "groups": ("members",)}


def _ref(kind: str, oid: str) -> dict[str, Any]:
    return {"@odata.type": f"#microsoft.graph.{kind}", "id": oid}


def _unique(ids: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(ids))


def _top(raw: str | None) -> int | None:
    if raw is None:
        return None
    try:
        top = int(raw)
    except ValueError:
        top = 0
    if not 1 <= top <= 999:
        raise GraphError(400, "Request_BadRequest",
                         f"Invalid page size specified: '{raw}'. Must be between 1 and 999 "
                         "inclusive.")
    return top


def _select(raw: str | None, objects: list[dict[str, Any]], typename: str | None,
            allow: tuple[str, ...]) -> list[str] | None:
    if raw is None:
        return None
    names = [n.strip() for n in raw.split(",") if n.strip()]
    if typename is not None:
        known = {"user": (*USER_DEFAULT_PROPERTIES, *USER_MORE_PROPERTIES, "accountEnabled",
                          "userType",
                          "deletedDateTime"),
                 "group": GROUP_DEFAULT_PROPERTIES,
                 "administrativeUnit": AU_DEFAULT_PROPERTIES}[typename]
        for n in names:
            if n not in known and n not in allow:
                raise GraphError(400, "Request_BadRequest",
                                 f"Could not find a property named '{n}' on type "
                                 f"'microsoft.graph.{typename}'.")
    return names


def _project(obj: dict[str, Any], select: list[str] | None, typename: str | None,
             ) -> dict[str, Any]:
    if select is None:
        defaults = {"user": USER_DEFAULT_PROPERTIES, "group": GROUP_DEFAULT_PROPERTIES,
                    "administrativeUnit": AU_DEFAULT_PROPERTIES}
        if typename is None:      # a directoryObject: its type's default set
            kind = obj["@odata.type"].rsplit(".", 1)[-1]
            return {"@odata.type": obj["@odata.type"],
                    **{k: obj.get(k) for k in defaults[kind]}}
        return {k: obj.get(k) for k in defaults[typename]}
    out = {"@odata.type": obj["@odata.type"]} if "@odata.type" in obj else {}
    out["id"] = obj["id"]
    for name in select:
        if name in obj:
            out[name] = obj[name]
    return out


def _context(origin: str, entity_set: str, select: list[str] | None) -> str:
    suffix = f"({','.join(select)})" if select else ""
    return f"{origin}/v1.0/$metadata#{entity_set}{suffix}"


def _qs(query: dict[str, str]) -> str:
    return "&".join(f"{k}={quote(v, safe=',$()')}" for k, v in query.items())


def _encode(state: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(state).encode()).decode().rstrip("=")


def _decode(token: str) -> dict[str, Any]:
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        value = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ValueError("bad token") from exc
    if not isinstance(value, dict):
        raise ValueError("bad token")
    return value


def _not_found(oid: str) -> GraphError:
    return GraphError(404, "Request_ResourceNotFound",
                      f"Resource '{oid}' does not exist or one of its queried reference-property "
                      "objects are not present.")
