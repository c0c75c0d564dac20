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


@dataclass
class Raw:
    """What one complete read saw, before mapping: what the change feed patches.

    ``build`` turns it into the snapshot, so a feed read and a full read share every
    rule (filters, archived users, nested and CUSTOMER members, external members).
    """

    users: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Every user users.list returned, by id: id, primaryEmail, name, suspended, archived."""
    groups: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Every group groups.list returned, by id: id, email, name."""
    members: dict[str, list[dict[str, Any]] | None] = field(default_factory=dict)
    """Direct members (id, email, type) of each kept group and of the groups nested in
    them; None for a nested group of another account (members.list refused)."""

    def to_json(self) -> dict[str, Any]:
        return {"users": self.users, "groups": self.groups, "members": self.members}

    @classmethod
    def from_json(cls, value: Any) -> Raw | None:
        if not isinstance(value, dict):
            return None
        try:
            return cls(dict(value["users"]), dict(value["groups"]), dict(value["members"]))
        except (KeyError, TypeError, ValueError):
            return None


def slim_user(raw: Mapping[str, Any], extra: tuple[str, ...] = ()) -> dict[str, Any]:
    """What ``map_user`` reads of a users resource; the fields a mapping asks for are
    kept as their values (``x``), the manager as the address ``relations`` holds."""
    name = raw.get("name") or {}
    slim = {"id": str(raw.get("id") or ""), "primaryEmail": raw.get("primaryEmail"),
            "name": {k: name.get(k) for k in ("givenName", "familyName", "fullName")},
            "suspended": bool(raw.get("suspended")), "archived": bool(raw.get("archived"))}
    if extra:
        slim["x"] = {n: v for n in extra if (v := extra_value(raw, n))}
    return slim


def slim_group(raw: Mapping[str, Any]) -> dict[str, Any]:
    return {"id": str(raw.get("id") or ""), "email": raw.get("email"), "name": raw.get("name")}


def slim_member(raw: Mapping[str, Any]) -> dict[str, Any]:
    return {"id": str(raw.get("id") or ""), "email": raw.get("email"), "type": raw.get("type")}


def read_directory(client: Pager, scope: Mapping[str, str], user_filter: SetFilter,
                   group_filter: SetFilter, *, include_archived: bool, page_size: int,
                   info: Mapping[str, str] | None = None,
                   extra: tuple[str, ...] = ()) -> Snapshot:
    """Users, groups and members, to the last page of each; raises on any failed page."""
    raw = read_raw(client, scope, user_filter, group_filter, page_size=page_size, extra=extra)
    return build(raw, user_filter, group_filter, include_archived=include_archived, info=info,
                 extra=extra)


def read_raw(client: Pager, scope: Mapping[str, str], user_filter: SetFilter,
             group_filter: SetFilter, *, page_size: int, extra: tuple[str, ...] = ()) -> Raw:
    where = ", ".join(f"{k} {v}" for k, v in scope.items())
    raw = Raw()
    custom = any(n.startswith("customSchemas.") for n in extra)
    user_params: dict[str, Any] = {**scope, "maxResults": min(page_size, 500),
                                   "projection": "full" if custom else "basic",
                                   "fields": user_fields(extra)}
    if user_filter.native:
        user_params["query"] = user_filter.native
    what = f"users.list ({where}" + (f", query {user_filter.native!r})" if user_filter.native
                                     else ")")
    for page in client.pages("users", "users", what, **user_params):
        for item in page:
            uid = str(item.get("id") or "")
            if not uid:
                raise SourceError(f"Google: users.list returned a user without id "
                                  f"({clean_text(item.get('primaryEmail'))})")
            raw.users[uid] = slim_user(item, extra)
    group_params: dict[str, Any] = {**scope, "maxResults": min(page_size, 200),
                                    "fields": GROUP_FIELDS}
    if group_filter.native:
        group_params["query"] = group_filter.native
    what = f"groups.list ({where}" + (f", query {group_filter.native!r})" if group_filter.native
                                      else ")")
    for page in client.pages("groups", "groups", what, **group_params):
        for item in page:
            gid = str(item.get("id") or "")
            if not gid:
                raise SourceError(f"Google: groups.list returned a group without id "
                                  f"({item.get('email')})")
            raw.groups[gid] = slim_group(item)
    read_members(client, raw, sorted(kept_groups(raw, group_filter)), group_filter, page_size)
    return raw


def kept_groups(raw: Raw, group_filter: SetFilter) -> set[str]:
    return {gid for gid, g in raw.groups.items()
            if group_filter.keeps(str(g.get("name") or ""), str(g.get("email") or ""))}


def read_members(client: Pager, raw: Raw, gids: Iterable[str], group_filter: SetFilter,
                 page_size: int, *, again: bool = False) -> None:
    """Direct members of ``gids`` and of every group nested in them not read yet."""
    kept = kept_groups(raw, group_filter)
    queue = deque(gids)
    fresh: set[str] = set()
    while queue:
        gid = queue.popleft()
        if gid in fresh or (gid in raw.members and not (again and gid in gids)):
            continue
        fresh.add(gid)
        label = str((raw.groups.get(gid) or {}).get("email") or gid)
        got = _read_members(client, gid, label, page_size, gid not in raw.groups)
        raw.members[gid] = None if got is None else [slim_member(m) for m in got]
        for m in got or []:
            mid, kind = str(m.get("id") or ""), str(m.get("type") or "")
            if kind == "GROUP" and mid not in kept and mid not in raw.members:
                queue.append(mid)
            elif kind not in ("USER", "GROUP", "CUSTOMER"):
                raise SourceError(f"Google: members.list of {label}: member {mid} has type "
                                  f"{kind!r}, which this connector does not know; refusing "
                                  "to guess its users")


def build(raw: Raw, user_filter: SetFilter, group_filter: SetFilter, *,
          include_archived: bool, info: Mapping[str, str] | None = None,
          extra: tuple[str, ...] = ()) -> Snapshot:
    """The snapshot a read of ``raw`` gives (pure)."""
    users: list[User] = []
    skipped: list[Skipped] = []
    domains: set[str] = set()           # of users read: tells filtered-out from external
    for item in raw.users.values():
        user, skip = map_user(item, user_filter, include_archived)
        domains.add(clean_text(item.get("primaryEmail")).rpartition("@")[2].casefold())
        if user is not None:
            users.append(user)
        if skip is not None:
            skipped.append(skip)
    if MANAGER_SOURCE in extra:
        users = _with_managers(users)
    kept_users = {u.external_id for u in users}
    seen_users = set(raw.users)
    kept = kept_groups(raw, group_filter)
    for gid in sorted(set(raw.groups) - kept):
        skipped.append(Skipped("group", str(raw.groups[gid].get("email", gid)), "filtered out",
                               "group_filter", external_id=gid))
    members: dict[str, _Members] = {}
    external: dict[str, tuple[str, list[str]]] = {}
    unmatched: dict[str, tuple[str, list[str]]] = {}
    external_groups: set[str] = set()
    group_emails = {gid: str(g.get("email") or gid) for gid, g in raw.groups.items()}
    queue = deque(sorted(kept))
    while queue:
        gid = queue.popleft()
        if gid in members:
            continue
        label = group_emails.get(gid, gid)
        got = raw.members.get(gid)
        if got is None:                   # a nested group of another account
            if gid in raw.members:
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
        item = raw.groups[gid]
        groups.append(Group(external_id=gid,
                            name=clean_text(item.get("name")) or str(item.get("email", gid)),
                            member_ids=frozenset(user_ids), subgroup_ids=frozenset(subgroups)))
    return Snapshot.build(users, groups, skipped, info=info)


def changed_records(raw: Raw, users: Mapping[str, User], groups: Mapping[str, Group],
                    changed_users: set[str], gone_users: set[str], changed_groups: set[str],
                    gone_groups: set[str], user_filter: SetFilter, group_filter: SetFilter,
                    include_archived: bool, extra: tuple[str, ...] = (),
                    ) -> tuple[dict[str, User], set[str], list[Skipped], dict[str, Group],
                               set[str]]:
    """The records ``build(raw)`` would give that differ from ``users`` / ``groups`` (the
    last snapshot's), found without mapping the whole read: (users changed, users
    removed, users now skipped, groups changed, groups removed).

    A group is recomputed when its members were re-read, when a user whose syncing
    changed is its direct member, when it holds the whole account (CUSTOMER) and the
    synced users changed, or when a nested group the filter leaves out (whose users
    fold into it) is any of those.
    """
    mapped: list[User] = []
    skips: list[Skipped] = []
    for uid in changed_users:
        item = raw.users.get(uid)
        if item is None:
            continue
        user, skip = map_user(item, user_filter, include_archived)
        if user is not None:
            mapped.append(user)
        if skip is not None:
            skips.append(skip)
    if MANAGER_SOURCE in extra:
        by_email = {u.email.lower(): k for k, u in users.items()}
        by_email.update((u.email.lower(), u.external_id) for u in mapped)
        mapped = _with_managers(mapped, by_email)
    built = Snapshot.build(mapped, (), skips)
    new_users = {k: u for k, u in built.users.items() if users.get(k) != u}
    now_skipped = [s for s in built.skipped if s.external_id in users]
    removed_users = {uid for uid in gone_users if uid in users} | {
        s.external_id for s in now_skipped}
    sync_changed = removed_users | (built.users.keys() - users.keys())

    kept = kept_groups(raw, group_filter)
    parents: dict[str, set[str]] = {}
    dirty = set(changed_groups)
    everyone: set[str] = set()
    for gid, listed in raw.members.items():
        for m in listed or ():
            kind, mid = m.get("type"), m.get("id")
            if kind == "GROUP":
                parents.setdefault(str(mid), set()).add(gid)
            elif kind == "CUSTOMER":
                everyone.add(gid)
            elif mid in sync_changed:
                dirty.add(gid)
    if sync_changed:
        dirty |= everyone
    # A parent folds the users of a nested group the filter leaves out, so such a group's
    # change is its parents' too; a created, deleted or re-filtered group changes its
    # parents' nesting whatever it is.
    stack = [gid for gid in dirty if gid not in kept or gid in changed_groups]
    stack += [gid for gid in gone_groups]
    seen: set[str] = set()
    while stack:
        gid = stack.pop()
        if gid in seen:
            continue
        seen.add(gid)
        for parent in parents.get(gid, ()):
            dirty.add(parent)
            if parent not in kept:
                stack.append(parent)
    kept_users = (users.keys() - removed_users) | built.users.keys()
    members: dict[str, _Members] = {}
    for gid in list(dirty):
        _direct_closure(raw, gid, kept, kept_users, members)
    new_groups: dict[str, Group] = {}
    for gid in dirty & kept:
        user_ids, subgroups = _effective(gid, members, kept, kept_users)
        item = raw.groups[gid]
        group = Group(external_id=gid,
                      name=clean_text(item.get("name")) or str(item.get("email", gid)),
                      member_ids=frozenset(user_ids), subgroup_ids=frozenset(subgroups))
        if groups.get(gid) != group:
            new_groups[gid] = group
    removed_groups = {gid for gid in groups if gid in gone_groups or gid not in kept}
    return new_users, removed_users, now_skipped, new_groups, removed_groups


def _direct_closure(raw: Raw, gid: str, kept: set[str], kept_users: set[str],
                    members: dict[str, _Members]) -> None:
    """``members`` for ``gid`` and the left-out groups nested in it (as ``build`` makes them)."""
    stack = [gid]
    while stack:
        current = stack.pop()
        if current in members:
            continue
        direct = _Members()
        for m in raw.members.get(current) or ():
            mid, kind = str(m.get("id") or ""), m.get("type")
            if kind == "USER" and mid in kept_users:
                direct.users.add(mid)
            elif kind == "GROUP":
                direct.groups.add(mid)
                if mid not in kept:
                    stack.append(mid)
            elif kind == "CUSTOMER":
                direct.everyone = True
        members[current] = direct


def map_user(item: Mapping[str, Any], user_filter: SetFilter, include_archived: bool,
             ) -> tuple[User | None, Skipped | None]:
    uid = str(item.get("id") or "")
    email = clean_text(item.get("primaryEmail"))
    if not user_filter.keeps(email):
        return None, Skipped("user", email, "filtered out", "user_filter", external_id=uid)
    archived = bool(item.get("archived"))
    if archived and not include_archived:
        return None, Skipped("user", email, "status", "archived (include_archived = false)",
                             external_id=uid)
    name = item.get("name") or {}
    return User(external_id=uid, email=email, display_name=clean_text(name.get("fullName")),
                given_name=clean_text(name.get("givenName")),
                family_name=clean_text(name.get("familyName")),
                active=not (bool(item.get("suspended")) or archived),
                attributes=tuple(sorted((item.get("x") or {}).items()))), None


def _with_managers(users: list[User], by_email: Mapping[str, str] | None = None,
                   ) -> list[User]:
    """relations type manager holds the manager's address: the manager's id instead, or
    nothing for an address no user read has (``by_email``: every user's address)."""
    if by_email is None:
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
