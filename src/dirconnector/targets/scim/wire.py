"""SCIM 2.0 wire format: pure data in, pure data out (no I/O).

Payloads are hand-written dicts rather than scim2-models objects: the runtime
must not depend on a dev-only package, Bitwarden's endpoint accepts only a subset
of the schema, and building 9,000 create bodies as plain dicts is cheap. Every
shape below cites the section of RFC 7643 (schema) or RFC 7644 (protocol) it
follows.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import urlsplit

from ...mapping import parse_path
from ...model import Group, User, clean_text, normalize_email
from .attrs import set_value

USER_SCHEMA = "urn:ietf:params:scim:schemas:core:2.0:User"
GROUP_SCHEMA = "urn:ietf:params:scim:schemas:core:2.0:Group"
PATCH_SCHEMA = "urn:ietf:params:scim:api:messages:2.0:PatchOp"
BULK_REQUEST_SCHEMA = "urn:ietf:params:scim:api:messages:2.0:BulkRequest"
SCIM_JSON = "application/scim+json"

Flavor = Literal["generic", "bitwarden"]

# Bitwarden's SCIM routes are v2/{organizationId}/users|groups (reference 3.1).
_BITWARDEN_PATH = re.compile(
    r"/v2/[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}/?$")

# Attributes a snapshot needs (RFC 7644 3.4.2.5 "attributes"): keeps pages small.
USER_ATTRIBUTES = "id,externalId,userName,emails,name,displayName,active,meta.version"
GROUP_ATTRIBUTES = "id,externalId,displayName,members,meta.version"


@dataclass(frozen=True, slots=True)
class Capabilities:
    """What the server says it can do (RFC 7643 section 5, ServiceProviderConfig)."""

    flavor: Flavor
    advertised: bool
    """True when the server served a ServiceProviderConfig."""
    patch: bool = True
    bulk: bool = False
    bulk_max_operations: int = 0
    bulk_max_payload: int = 0
    etag: bool = False
    filter_max_results: int = 0

    @property
    def users_path(self) -> str:
        # Bitwarden lower-cases its routes (reference 3.1, RouteOptions.LowercaseUrls).
        return "users" if self.flavor == "bitwarden" else "Users"

    @property
    def groups_path(self) -> str:
        return "groups" if self.flavor == "bitwarden" else "Groups"


def looks_like_bitwarden(url: str) -> bool:
    """Bitwarden's SCIM base URL ends in /v2/<organization guid>."""
    return bool(_BITWARDEN_PATH.search(urlsplit(url).path))


def capabilities(config: Mapping[str, Any] | None, flavor: Flavor) -> Capabilities:
    """Read a ServiceProviderConfig body; None means the server has none."""
    if config is None or flavor == "bitwarden":
        # Bitwarden has no ServiceProviderConfig, no Bulk, no ETags (reference 3.1).
        return Capabilities(flavor=flavor, advertised=False)

    def section(name: str) -> Mapping[str, Any]:
        value = config.get(name)
        return value if isinstance(value, Mapping) else {}

    bulk = section("bulk")
    return Capabilities(
        flavor=flavor,
        advertised=True,
        patch=bool(section("patch").get("supported", False)),
        bulk=bool(bulk.get("supported", False)),
        bulk_max_operations=_int(bulk.get("maxOperations")),
        bulk_max_payload=_int(bulk.get("maxPayloadSize")),
        etag=bool(section("etag").get("supported", False)),
        filter_max_results=_int(section("filter").get("maxResults")),
    )


def _int(value: Any) -> int:
    try:
        return max(0, int(value))
    except (TypeError, ValueError):
        return 0


def quote(value: str) -> str:
    """A filter string literal (RFC 7644 3.4.2.2: JSON string rules, so escape \\ and ")."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def eq_filter(attribute: str, value: str) -> str:
    return f"{attribute} eq {quote(value)}"


# ------------------------------------------------------------------ users


def user_resource(user: User, *, active: bool | None = None) -> dict[str, Any]:
    """A User for POST (RFC 7643 4.1): userName is the email, the work email is primary."""
    body: dict[str, Any] = {
        "schemas": [USER_SCHEMA],
        "userName": user.login,
        "externalId": user.external_id,
        "emails": [{"value": user.email, "type": "work", "primary": True}],
        "active": user.active if active is None else active,
    }
    name = {k: v for k, v in (("givenName", user.given_name),
                               ("familyName", user.family_name)) if v}
    if user.display_name:
        body["displayName"] = user.display_name
        name["formatted"] = user.display_name
    if name:
        body["name"] = name
    return body


def user_from(resource: Mapping[str, Any]) -> User:
    """A server User as a record keyed by its SCIM id; email from primary/work email or userName."""
    name = resource.get("name") if isinstance(resource.get("name"), Mapping) else {}
    assert isinstance(name, Mapping)
    active = resource.get("active", True)
    if isinstance(active, str):  # some servers send "True"/"false" strings
        active = active.strip().lower() == "true"
    return User(
        external_id=str(resource.get("externalId") or ""),
        email=normalize_email(_email_of(resource)),
        user_name=clean_text(resource.get("userName")),
        display_name=clean_text(resource.get("displayName") or name.get("formatted")),
        given_name=clean_text(name.get("givenName")),
        family_name=clean_text(name.get("familyName")),
        active=bool(active),
        ref=str(resource["id"]),
    )


def _email_of(resource: Mapping[str, Any]) -> str:
    emails = [e for e in resource.get("emails") or () if isinstance(e, Mapping) and e.get("value")]
    for pick in (lambda e: e.get("primary") is True, lambda e: e.get("type") == "work",
                 lambda e: True):
        for e in emails:
            if pick(e):
                return str(e["value"])
    return str(resource.get("userName") or "")


# Record field -> PATCH path (RFC 7644 3.5.2.3 replace); email needs two (below).
_USER_PATHS = {"display_name": "displayName", "given_name": "name.givenName",
               "family_name": "name.familyName"}


def user_update_ops(user: User, fields: Iterable[str], *, move_login: bool = True
                    ) -> list[dict[str, Any]]:
    """Replace operations for the changed fields of an UpdateUser.

    ``move_login``: the account's userName is its old email (as this tool creates
    accounts), so it follows the email; an account whose login is something else
    (``jdoe``) keeps it.
    """
    ops: list[dict[str, Any]] = []
    for name in fields:
        if name == "email":
            if move_login:
                ops.append(replace_op("userName", user.login))
            ops.append(replace_op("emails", [{"value": user.email, "type": "work",
                                              "primary": True}]))
        elif name in _USER_PATHS:
            ops.append(replace_op(_USER_PATHS[name], getattr(user, name)))
    return ops


# ------------------------------------------------------------------ groups


def group_resource(external_id: str, name: str) -> dict[str, Any]:
    """A Group for POST (RFC 7643 4.2); members follow in PATCH add."""
    return {"schemas": [GROUP_SCHEMA], "displayName": name, "externalId": external_id,
            "members": []}


def group_from(resource: Mapping[str, Any], user_refs: frozenset[str]) -> Group:
    """A server Group; members that are not known Users (nested groups) are left out."""
    members = frozenset(
        str(m["value"]) for m in resource.get("members") or ()
        if isinstance(m, Mapping) and m.get("value") and str(m["value"]) in user_refs)
    return Group(external_id=str(resource.get("externalId") or ""),
                 name=clean_text(resource.get("displayName")), member_ids=members,
                 ref=str(resource["id"]))


def replace_op(path: str, value: Any) -> dict[str, Any]:
    return {"op": "replace", "path": path, "value": value}


def remove_op(path: str) -> dict[str, Any]:
    """RFC 7644 3.5.2.2: remove a simple attribute (the resource then has none)."""
    return {"op": "remove", "path": path}


def patch_body(ops: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """A PatchOp message (RFC 7644 3.5.2)."""
    return {"schemas": [PATCH_SCHEMA], "Operations": list(ops)}


def add_members_op(refs: Sequence[str]) -> list[dict[str, Any]]:
    """RFC 7644 3.5.2.1: add to a multi-valued attribute appends the values given."""
    return [{"op": "add", "path": "members", "value": [{"value": r} for r in refs]}]


def remove_members_ops(refs: Sequence[str]) -> list[dict[str, Any]]:
    """RFC 7644 3.5.2.2: remove with a value filter; one operation per member.

    One operation each (rather than an ``or`` chain) is what Bitwarden accepts
    (``remove members[value eq "guid"]``, reference 3.3) and every RFC server does.
    """
    return [{"op": "remove", "path": f"members[value eq {quote(r)}]"} for r in refs]


def chunks(items: Sequence[Any], size: int) -> Iterable[Sequence[Any]]:
    for i in range(0, len(items), max(1, size)):
        yield items[i:i + size]


def id_from(resp_body: Any, location: str | None) -> str:
    """The new resource's id: from the body, else the last segment of Location (RFC 7644 3.3)."""
    if isinstance(resp_body, Mapping) and resp_body.get("id"):
        return str(resp_body["id"])
    if location:
        return urlsplit(location).path.rstrip("/").rsplit("/", 1)[-1]
    return ""


def apply_patch_locally(resource: Mapping[str, Any], ops: Sequence[Mapping[str, Any]]
                        ) -> dict[str, Any]:
    """The PUT body for a server without PATCH: the read resource with our own ops applied.

    Only the operation shapes this module produces are understood (replace of a simple
    or ``a.b`` path, remove of a simple attribute, add/remove of members); ``meta`` is
    dropped (read-only, RFC 7643 3.1).
    """
    body = {k: v for k, v in resource.items() if k != "meta"}
    for op in ops:
        path = str(op.get("path", ""))
        if op["op"] == "replace" and "[" not in path and not path.lower().startswith("urn:"):
            head, _, tail = path.partition(".")
            if tail:
                sub = dict(body.get(head) or {})
                sub[tail] = op["value"]
                body[head] = sub
            else:
                body[head] = op["value"]
        elif op["op"] == "add" and path == "members":
            have = {m.get("value") for m in body.get("members") or ()}
            body["members"] = list(body.get("members") or ()) + [
                v for v in op["value"] if v["value"] not in have]
        elif op["op"] == "remove" and path.startswith("members[value eq "):
            gone = path[len("members[value eq "):-1]
            body["members"] = [m for m in body.get("members") or () if quote(
                str(m.get("value"))) != gone]
        elif op["op"] == "remove" and path and not any(c in path for c in "[].:"):
            body.pop(path, None)  # a PUT without the attribute clears it (RFC 7644 3.5.1)
        elif op["op"] in ("replace", "remove") and path:
            # A mapped attribute (targets/scim/attrs.py): a typed entry, a sub-attribute,
            # an extension attribute.
            set_value(body, parse_path(path), op.get("value") if op["op"] == "replace" else None)
        elif op["op"] == "add" and isinstance(op.get("value"), list):
            for entry in op["value"]:
                for sub, value in entry.items():
                    if sub != "type":
                        set_value(body, parse_path(f'{path}[type eq "{entry["type"]}"].{sub}'),
                                  value)
        else:
            raise ValueError(f"cannot apply {op['op']} {path} locally")
    return body
