"""One complete read of a Workspace account through a DirectoryClient.

Pure bookkeeping over the pages the client returns: user mapping, filters, and the
member types of developers.google.com/workspace/admin/directory/reference/rest/v1/members
(``USER``, ``GROUP``, ``CUSTOMER``). Nested groups the group filter leaves out still
count: their users are folded into the kept parent, so a filter never shrinks a
parent's effective membership.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

from ...errors import SourceError
from ...mapping import MANAGER_SOURCE
from ...model import Group, Skipped, Snapshot, User, clean_text
from ..filters import SetFilter
from .api import ApiError

USER_FIELDS = "nextPageToken,users(id,primaryEmail,name(givenName,familyName,fullName)," \
              "suspended,archived)"
GROUP_FIELDS = "nextPageToken,groups(id,email,name)"
MEMBER_FIELDS = "nextPageToken,members(id,email,type,role,status)"


# users resource (Directory API v1): the parts a mapping may read, by source name.
_ORG_FIELDS = frozenset({"title", "department", "costCenter", "description", "location",
                         "name", "symbol", "domain", "fullTimeEquivalent"})
_SIMPLE = frozenset({"orgUnitPath", "recoveryEmail", "recoveryPhone", "thumbnailPhotoUrl",
                     "isAdmin"})
_TYPED = {"phones": "phones", "externalIds": "externalIds", "emails": "emails"}


def check_names(names: Iterable[str]) -> None:
    """ValueError for a name this connector cannot read (see connectors/google.md)."""
    for name in names:
        head, _, rest = name.partition(".")
        ok = (name == MANAGER_SOURCE or name in _SIMPLE
              or (head == "organizations" and rest in _ORG_FIELDS)
              or (head in _TYPED and bool(rest) and "." not in rest)
              or (head == "customSchemas" and rest.count(".") == 1 and "" not in rest.split(".")))
        if not ok:
            raise ValueError(f"{name!r} is not a Google user field this connector reads "
                             "(organizations.title, phones.work, externalIds.organization, "
                             "customSchemas.<schema>.<field>, manager, ...)")


def user_fields(names: Iterable[str]) -> str:
    """The ``fields`` selector of users.list for the names asked too."""
    parts = {"organizations" if n.startswith("organizations.") else
             "relations" if n == MANAGER_SOURCE else n.partition(".")[0] for n in names}
    if not parts:
        return USER_FIELDS
    return USER_FIELDS.replace("archived)", "archived," + ",".join(sorted(parts)) + ")")


def _primary(items: Any, kind: str | None = None) -> Mapping[str, Any] | None:
    """The entry of a list (of a type, if given): the primary one, else the first."""
    found = [i for i in items or () if isinstance(i, Mapping)
             and (kind is None or str(i.get("type") or "").lower() == kind.lower())]
    found.sort(key=lambda i: i.get("primary") is not True)
    return found[0] if found else None


def extra_value(raw: Mapping[str, Any], name: str) -> str:
    """One asked-for field of a users resource, as text ("" when absent); the manager as
    the address ``relations`` holds (type manager)."""
    head, _, rest = name.partition(".")
    value: Any = None
    if name == MANAGER_SOURCE:
        entry = _primary(raw.get("relations"), "manager")
        value = entry.get("value") if entry else None
    elif head == "organizations":
        entry = _primary(raw.get("organizations"))
        value = entry.get(rest) if entry else None
    elif head in _TYPED:
        entry = _primary(raw.get(head), rest)
        value = (entry.get("address") if head == "emails" else entry.get("value")) \
            if entry else None
    elif head == "customSchemas":
        schema, _, field_name = rest.partition(".")
        holder = (raw.get("customSchemas") or {}).get(schema) or {}
        value = holder.get(field_name) if isinstance(holder, Mapping) else None
        if isinstance(value, list):          # a multi-valued custom field
            value = value[0].get("value") if value and isinstance(value[0], Mapping) else None
    else:
        value = raw.get(name)
    if isinstance(value, bool):
        return "true" if value else "false"
    return clean_text(str(value)) if isinstance(value, str | int | float) else ""


class Pager(Protocol):
    def pages(self, resource: str, items: str, what: str, **params: Any,
              ) -> Iterable[list[dict[str, Any]]]: ...


@dataclass
class _Members:
    users: set[str] = field(default_factory=set)
    groups: set[str] = field(default_factory=set)
    everyone: bool = False


def read_directory(client: Pager, scope: Mapping[str, str], user_filter: SetFilter,
                   group_filter: SetFilter, *, include_archived: bool, page_size: int,
                   info: Mapping[str, str] | None = None,
                   extra: tuple[str, ...] = ()) -> Snapshot:
    """Users, groups and members, to the last page of each; raises on any failed page."""
    where = ", ".join(f"{k} {v}" for k, v in scope.items())
    users: list[User] = []
    skipped: list[Skipped] = []
    seen_users: set[str] = set()
    domains: set[str] = set()           # of users read: tells filtered-out from external
    custom = any(n.startswith("customSchemas.") for n in extra)
    user_params: dict[str, Any] = {**scope, "maxResults": min(page_size, 500),
                                   "projection": "full" if custom else "basic",
                                   "fields": user_fields(extra)}
    if user_filter.native:
        user_params["query"] = user_filter.native
    what = f"users.list ({where}" + (f", query {user_filter.native!r})" if user_filter.native
                                     else ")")
    for page in client.pages("users", "users", what, **user_params):
        for raw in page:
            uid = str(raw.get("id") or "")
            email = clean_text(raw.get("primaryEmail"))
            if not uid:
                raise SourceError(f"Google: users.list returned a user without id ({email})")
            seen_users.add(uid)
            domains.add(email.rpartition("@")[2].casefold())
            if not user_filter.keeps(email):
                skipped.append(Skipped("user", email, "filtered out", "user_filter",
                                       external_id=uid))
                continue
            archived = bool(raw.get("archived"))
            if archived and not include_archived:
                skipped.append(Skipped("user", email, "status",
                                       "archived (include_archived = false)", external_id=uid))
                continue
            name = raw.get("name") or {}
            users.append(User(
                external_id=uid, email=email,
                display_name=clean_text(name.get("fullName")),
                given_name=clean_text(name.get("givenName")),
                family_name=clean_text(name.get("familyName")),
                active=not (bool(raw.get("suspended")) or archived),
                attributes=tuple((n, v) for n in extra if (v := extra_value(raw, n)))))
    if MANAGER_SOURCE in extra:
        users = _with_managers(users)
    kept_users = {u.external_id for u in users}

    listed: dict[str, dict[str, Any]] = {}
    group_params: dict[str, Any] = {**scope, "maxResults": min(page_size, 200),
                                    "fields": GROUP_FIELDS}
    if group_filter.native:
        group_params["query"] = group_filter.native
    what = f"groups.list ({where}" + (f", query {group_filter.native!r})" if group_filter.native
                                      else ")")
    for page in client.pages("groups", "groups", what, **group_params):
        for raw in page:
            gid = str(raw.get("id") or "")
            if not gid:
                raise SourceError(f"Google: groups.list returned a group without id "
                                  f"({raw.get('email')})")
            listed[gid] = raw
    kept = {gid for gid, g in listed.items()
            if group_filter.keeps(str(g.get("name", "")), str(g.get("email", "")))}
    for gid in sorted(set(listed) - kept):
        skipped.append(Skipped("group", str(listed[gid].get("email", gid)), "filtered out",
                               "group_filter", external_id=gid))

    members: dict[str, _Members] = {}
    external: dict[str, tuple[str, list[str]]] = {}
    unmatched: dict[str, tuple[str, list[str]]] = {}
    external_groups: set[str] = set()
    group_emails = {gid: str(g.get("email") or gid) for gid, g in listed.items()}
    queue = deque(sorted(kept))
    while queue:
        gid = queue.popleft()
        if gid in members:
            continue
        label = group_emails.get(gid, gid)
        got = _read_members(client, gid, label, page_size, gid not in listed)
        if got is None:                   # a nested group of another account
            external_groups.add(gid)
            members[gid] = _Members()
            continue
        direct = _Members()
        for m in got:
            mid, kind = str(m.get("id") or ""), str(m.get("type") or "")
            if kind == "USER":
                if mid in kept_users:
                    direct.users.add(mid)
                elif mid not in seen_users:
                    # Not read: outside the account, or (with a native query) a user of
                    # the account the query left out; the address's domain tells which.
                    email = str(m.get("email") or mid)
                    internal = email.rpartition("@")[2].casefold() in domains
                    bucket = unmatched if internal and user_filter.native else external
                    bucket.setdefault(mid, (email, []))[1].append(label)
            elif kind == "GROUP":
                direct.groups.add(mid)
                group_emails.setdefault(mid, str(m.get("email") or mid))
                if mid not in kept:
                    queue.append(mid)
            elif kind == "CUSTOMER":
                direct.everyone = True
            else:
                raise SourceError(f"Google: members.list of {label}: member {mid} has type "
                                  f"{kind!r}, which this connector does not know; refusing "
                                  "to guess its users")
        members[gid] = direct

    for _mid, (email, where_in) in sorted(external.items()):
        skipped.append(Skipped("user", email, "external member",
                               "member of " + ", ".join(sorted(set(where_in)))))
    for _mid, (email, where_in) in sorted(unmatched.items()):
        skipped.append(Skipped("user", email, "filtered out",
                               "not matched by the user_filter query; member of "
                               + ", ".join(sorted(set(where_in)))))
    for gid in sorted(external_groups):
        skipped.append(Skipped("group", group_emails.get(gid, gid), "external member",
                               "nested group outside this account (members.list refused)",
                               external_id=gid))

    groups = []
    for gid in sorted(kept):
        user_ids, subgroups = _effective(gid, members, kept, kept_users)
        raw = listed[gid]
        groups.append(Group(external_id=gid,
                            name=clean_text(raw.get("name")) or str(raw.get("email", gid)),
                            member_ids=frozenset(user_ids), subgroup_ids=frozenset(subgroups)))
    return Snapshot.build(users, groups, skipped, info=info)


def _with_managers(users: list[User]) -> list[User]:
    """relations type manager holds the manager's address: the manager's id instead, or
    nothing for an address no user read has."""
    by_email = {u.email.lower(): u.external_id for u in users}
    out = []
    for user in users:
        boss = dict(user.attributes).get(MANAGER_SOURCE)
        if boss is None:
            out.append(user)
            continue
        kept = [(k, v) for k, v in user.attributes if k != MANAGER_SOURCE]
        if (ext := by_email.get(boss.lower())):
            kept.append((MANAGER_SOURCE, ext))
        out.append(replace(user, attributes=tuple(sorted(kept))))
    return out


def _read_members(client: Pager, gid: str, label: str, page_size: int,
                  unlisted: bool) -> list[dict[str, Any]] | None:
    params = {"groupKey": gid, "maxResults": min(page_size, 200), "fields": MEMBER_FIELDS}
    out: list[dict[str, Any]] = []
    try:
        for page in client.pages("members", "members", f"members.list of {label}", **params):
            out.extend(page)
    except ApiError as exc:
        # A nested group we did not list may belong to another account: Google answers
        # 404 notFound or 403 forbidden for it. Only for those is it "external".
        if unlisted and (exc.status == 404 or (exc.status, exc.reason) == (403, "forbidden")):
            return None
        raise
    return out


def _effective(gid: str, members: Mapping[str, _Members], kept: set[str],
               kept_users: set[str]) -> tuple[set[str], set[str]]:
    """Direct users plus those of left-out nested groups; kept nested groups stay nested."""
    users: set[str] = set()
    subgroups: set[str] = set()
    stack, seen = [gid], {gid}
    while stack:
        current = stack.pop()
        m = members.get(current, _Members())
        users |= m.users
        if m.everyone:
            users |= kept_users
        for child in m.groups:
            if child in kept:
                if child != gid:
                    subgroups.add(child)
            elif child not in seen:
                seen.add(child)
                stack.append(child)
    return users, subgroups
