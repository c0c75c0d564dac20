"""Bitwarden's SCIM v2 endpoint, with its quirks (shared/reference/bitwarden.md 3.1-3.4).

- Users: filters only ``userName eq "x"`` (x must contain ``@``) and ``externalId eq "x"``;
  any other filter gives an empty list. POST of an existing email or external id is
  409 (never links). PUT honours only ``active``. PATCH handles only ``replace`` of
  ``active`` / ``externalId`` (other ops are ignored, 204).
- Groups: filters ``displayName eq`` / ``externalId eq``; member values are member ids;
  a group never returns its members.
- No ServiceProviderConfig, Schemas, ResourceTypes, Bulk or Me: 404.
- Errors: ``{"schemas":[...Error], "detail":..., "status":N}`` with no ``scimType``.
"""

from __future__ import annotations

import datetime as dt
import re
import secrets
import string
from typing import Any

from .org import INVITED, REVOKED, STAGED, USER, ApiError, GroupRecord, Member, Organization

USER_SCHEMA = "urn:ietf:params:scim:schemas:core:2.0:User"
GROUP_SCHEMA = "urn:ietf:params:scim:schemas:core:2.0:Group"
LIST_SCHEMA = "urn:ietf:params:scim:api:messages:2.0:ListResponse"
SCIM_JSON = {"Content-Type": "application/scim+json"}
_EQ = re.compile(r'^\s*(\w+)\s+eq\s+"(.*)"\s*$', re.IGNORECASE)
_GUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-"
                   r"[0-9a-fA-F]{12}$")
_NOW = dt.datetime.now(dt.UTC).isoformat()

Result = tuple[int, Any, dict[str, str]]


def user_json(m: Member) -> dict[str, Any]:
    """ScimUserResponseModel: active = status != Revoked; groups always empty."""
    return {"schemas": [USER_SCHEMA], "id": m.id, "externalId": m.external_id,
            "userName": m.email, "displayName": m.name, "name": {"formatted": m.name},
            "emails": [{"primary": True, "value": m.email, "type": "work"}],
            "active": m.status != REVOKED, "groups": [], "meta": {"resourceType": "User"}}


def group_json(g: GroupRecord) -> dict[str, Any]:
    """ScimGroupResponseModel: no members, ever."""
    return {"schemas": [GROUP_SCHEMA], "id": g.id, "displayName": g.name,
            "externalId": g.external_id,
            "meta": {"resourceType": "Group", "created": _NOW, "lastModified": _NOW}}


def _random_external_id() -> str:
    return "".join(secrets.choice(string.ascii_letters + string.digits) for _ in range(15))


def _page(items: list[dict[str, Any]], query: dict[str, str]) -> dict[str, Any]:
    try:
        count = int(query.get("count", 50))
        start = int(query.get("startIndex", 1))
    except ValueError as exc:
        raise ApiError(400, "Invalid paging parameters.") from exc
    if count < 1 or start < 1:
        raise ApiError(400, "The field must be between 1 and 2147483647.")
    page = items[start - 1:start - 1 + count]
    return {"schemas": [LIST_SCHEMA], "totalResults": len(items), "startIndex": start,
            "itemsPerPage": count, "Resources": page}


def handle_scim(org: Organization, method: str, path: str, query: dict[str, str],
                body: Any) -> Result:
    """Route ``/v2/{orgId}/...``."""
    seg = path.strip("/").split("/")   # ["v2", orgId, resource, id?]
    if len(seg) < 3 or seg[1].lower() != org.id.lower():
        return 401, None, {}
    resource = seg[2].lower()
    rid = seg[3] if len(seg) > 3 else None
    with org.lock:
        if resource == "users":
            return _users(org, method, rid, query, body)
        if resource == "groups":
            return _groups(org, method, rid, query, body)
    return 404, None, {}


def _users(org: Organization, method: str, rid: str | None, query: dict[str, str],
           body: Any) -> Result:
    if rid is None and method == "GET":
        return 200, _page(_filter_users(org, query.get("filter", "")), query), SCIM_JSON
    if rid is None and method == "POST":
        return _post_user(org, body or {})
    m = org.members.get(rid or "")
    if m is None:
        raise ApiError(404, "User not found.")
    if method == "GET":
        return 200, user_json(m), SCIM_JSON
    if method == "PUT":
        active = (body or {}).get("active")
        _set_active(org, m, active)
        return 200, user_json(m), SCIM_JSON
    if method == "PATCH":
        for op in (body or {}).get("Operations") or []:
            _patch_user(org, m, op)
        return 204, None, {}
    if method == "DELETE":
        org.remove_member(m.id)
        return 204, None, {}
    return 404, None, {}


def _filter_users(org: Organization, text: str) -> list[dict[str, Any]]:
    members = sorted(org.members.values(), key=lambda m: m.email.lower())
    if not text:
        return [user_json(m) for m in members]
    found: Member | None = None
    match = _EQ.match(text)
    low = text.lower()
    if match and low.startswith("username eq "):
        value = match.group(2)
        if "@" in value:
            found = next((m for m in members if m.email.lower() == value.lower()), None)
    elif match and low.startswith("externalid eq "):
        value = match.group(2)
        found = next((m for m in members if m.external_id == value), None)
    return [user_json(found)] if found is not None else []


def _post_user(org: Organization, body: dict[str, Any]) -> Result:
    emails = [e for e in body.get("emails") or [] if isinstance(e, dict) and e.get("value")]
    email = next((e["value"] for e in emails if e.get("primary")), None) \
        or next((e["value"] for e in emails if e.get("type") == "work"), None) \
        or (emails[0]["value"] if emails else None) or body.get("userName")
    if not email:
        raise ApiError(400, "No email address found for user.")
    if body.get("active") is False:
        raise ApiError(400, "User not active.")
    external_id = body.get("externalId") or body.get("userName") or _random_external_id()
    if org.member_by_email(email) is not None or org.member_by_external_id(external_id):
        raise ApiError(409, "User already exists.")
    status = INVITED if org.scim_invite_users or not org.staged_status_flag else STAGED
    m = org.add_member(email, external_id=external_id, status=status, type=USER,
                       name=body.get("displayName"))
    return 201, user_json(m), {**SCIM_JSON, "Location": f"Users/{m.id}"}


def _truthy(value: Any) -> bool:
    return str(value).lower() == "true"


def _set_active(org: Organization, m: Member, active: Any) -> None:
    if active is None:
        return
    try:
        if _truthy(active) and m.status == REVOKED:
            org.restore(m.id)
        elif not _truthy(active) and m.status != REVOKED:
            org.revoke(m.id)
    except ApiError as err:
        raise ApiError(400, err.message) from err


def _patch_user(org: Organization, m: Member, op: dict[str, Any]) -> None:
    if str(op.get("op", "")).lower() != "replace":
        return                               # logged as a warning and ignored
    path = str(op.get("path") or "").lower()
    value = op.get("value")
    if path == "active":
        _set_active(org, m, value)
    elif path == "externalid":
        _set_user_external_id(org, m, value)
    elif not path and isinstance(value, dict):
        if "active" in value:
            _set_active(org, m, value["active"])
        if "externalId" in value:
            _set_user_external_id(org, m, value["externalId"])


def _set_user_external_id(org: Organization, m: Member, value: Any) -> None:
    text = str(value or "")
    if len(text) > 300:
        raise ApiError(400, "ExternalId must be 300 characters or fewer.")
    other = next((o for o in org.members.values() if o.id != m.id and o.external_id
                  and o.external_id.lower() == text.lower()), None)
    if other is not None:
        raise ApiError(409, "ExternalId is already in use by another user.")
    m.external_id = text or None


def _groups(org: Organization, method: str, rid: str | None, query: dict[str, str],
            body: Any) -> Result:
    if rid is None and method == "GET":
        groups = sorted(org.groups.values(), key=lambda g: g.name)
        text = query.get("filter", "")
        if text:
            match = _EQ.match(text)
            if match and text.startswith("displayName eq "):
                groups = [g for g in groups if g.name == match.group(2)]
            elif match and text.startswith("externalId eq "):
                groups = [g for g in groups if g.external_id == match.group(2)]
            else:
                groups = []
        return 200, _page([group_json(g) for g in groups], query), SCIM_JSON
    if rid is None and method == "POST":
        body = body or {}
        if not body.get("displayName"):
            raise ApiError(400, "Group displayName is required.")
        ext = body.get("externalId") or _random_external_id()
        if any(g.external_id == ext for g in org.groups.values()):
            raise ApiError(409, "Group with this externalId already exists.")
        new = org.add_group(body["displayName"], external_id=ext,
                            member_ids=_member_ids(org, body.get("members")))
        return 201, group_json(new), {**SCIM_JSON, "Location": f"Groups/{new.id}"}
    g = org.groups.get(rid or "")
    if g is None:
        raise ApiError(404, "Group not found.")
    if method == "GET":
        return 200, group_json(g), SCIM_JSON
    if method == "PUT":
        body = body or {}
        if body.get("displayName"):
            g.name = body["displayName"]
        if body.get("members") is not None:
            g.member_ids = _member_ids(org, body["members"])
        return 200, group_json(g), SCIM_JSON
    if method == "PATCH":
        for op in (body or {}).get("Operations") or []:
            _patch_group(org, g, op)
        return 204, None, {}
    if method == "DELETE":
        del org.groups[g.id]
        return 204, None, {}
    return 404, None, {}


def _member_ids(org: Organization, members: Any) -> set[str]:
    """Member values parsed as OrganizationUser GUIDs; non-GUIDs are ignored."""
    ids = set()
    for entry in members or []:
        value = str(entry.get("value", "")) if isinstance(entry, dict) else ""
        if _GUID.match(value) and value in org.members:
            ids.add(value)
    return ids


_MEMBER_FILTER = re.compile(r'^members\[value eq "(.+)"\]$', re.IGNORECASE)


def _patch_group(org: Organization, g: GroupRecord, op: dict[str, Any]) -> None:
    """PatchGroupCommand: the handled operations; anything else is ignored."""
    kind = str(op.get("op", "")).lower()
    path = str(op.get("path") or "")
    low = path.lower()
    value = op.get("value")
    one = _MEMBER_FILTER.match(path)
    if kind == "replace" and low == "members":
        g.member_ids = _member_ids(org, value)
    elif kind == "replace" and low == "displayname":
        g.name = str(value)
    elif kind == "replace" and not path and isinstance(value, dict):
        if value.get("displayName"):
            g.name = str(value["displayName"])
        if "externalId" in value:
            _set_group_external_id(org, g, value["externalId"])
    elif kind in ("replace", "add") and low == "externalid":
        _set_group_external_id(org, g, value)
    elif kind == "add" and not path and isinstance(value, dict) and "externalId" in value:
        _set_group_external_id(org, g, value["externalId"])
    elif kind == "add" and one is not None:
        if one.group(1) in org.members:
            g.member_ids.add(one.group(1))
    elif kind == "add" and low == "members":
        g.member_ids |= _member_ids(org, value)
    elif kind == "remove" and one is not None:
        g.member_ids.discard(one.group(1))
    elif kind == "remove" and low == "members":
        g.member_ids -= _member_ids(org, value)


def _set_group_external_id(org: Organization, g: GroupRecord, value: Any) -> None:
    text = str(value or "").strip()
    if len(text) > 300:
        raise ApiError(400, "ExternalId must be 300 characters or fewer.")
    if text and any(o.id != g.id and o.external_id == text for o in org.groups.values()):
        raise ApiError(409, "Group with this externalId already exists.")
    g.external_id = text or None
