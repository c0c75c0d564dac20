"""Hand-off from connector-driven sync to the IdP's own SCIM: presets, settings, the plan.

Pure: ``migrate_plan(desired, current, preset, scope)`` takes the directory read and
the server read and says, for every member and group, what the IdP will send
(``userName``, ``externalId``), how it will look the account up, and what the
server will do with it (shared/reference/bitwarden.md 3.4 and 5):

    members   adopt_external_id   found by externalId; nothing to change
              adopt_user_name     found by userName (the email); apply sets externalId
              conflict            not findable, or an id clash: the IdP POSTs and gets
                                  409 (Bitwarden) or makes a second account
              new                 no account yet: the IdP creates one
              unmanaged           an account the IdP will never touch (out of scope,
                                  or not in the directory)
    groups    matched_external_id / matched_display_name / duplicate / new / unmanaged

A preset is what an IdP sends by default; the directory record may not hold that
source attribute (Entra's mailNickname is not read by any connector), so each
preset names the approximation it uses and ``[migrate]`` overrides it.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from typing import Any, Generic, TypeVar

from ..errors import ConfigError
from ..mapping import CORE_FIELDS, GroupMapping, UserMapping, short_path
from ..model import Group, Snapshot, User, normalize_email
from .presets import (
    IDPS,
    PRESETS,
    GroupVerdictKind,
    MemberVerdictKind,
    MigrateSettings,
    Preset,
    migrate_settings,
)

_R = TypeVar("_R")
_CORE_PATHS = {field: path for path, field in CORE_FIELDS.items()}
_NO_MAPPING, _NO_GROUP_MAPPING = UserMapping(), GroupMapping()

# ---------------------------------------------------------------------------- records


@dataclass(frozen=True, slots=True)
class MemberVerdict:
    """One member: what the IdP sends, what the server holds, and what will happen."""

    verdict: MemberVerdictKind
    email: str
    ref: str = ""
    """The server's id of the account ("" for new)."""
    directory_id: str = ""
    idp_user_name: str = ""
    idp_external_id: str = ""
    current_external_id: str = ""
    found_by: str = ""
    """The IdP lookup that finds the account once applied: userName, externalId or ""."""
    change: bool = False
    """True when apply sets externalId from current_external_id to idp_external_id."""
    reason: str = ""


@dataclass(frozen=True, slots=True)
class GroupVerdict:
    """One group, likewise."""

    verdict: GroupVerdictKind
    name: str
    ref: str = ""
    directory_id: str = ""
    idp_external_id: str = ""
    current_external_id: str = ""
    found_by: str = ""
    change: bool = False
    reason: str = ""


@dataclass(frozen=True, slots=True)
class Scope:
    """The IdP's assignment scope: groups assigned to the app (empty: every user read)."""

    groups: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class MigrationPlan:
    """Every member's and group's verdict, and what the plan was computed against."""

    idp: str
    preset: Preset
    scope: Scope
    members: tuple[MemberVerdict, ...]
    groups: tuple[GroupVerdict, ...]
    target_digest: str
    server: str = ""
    notes: tuple[str, ...] = field(default=())

    def counts(self) -> dict[str, int]:
        c: Counter[str] = Counter(f"members.{m.verdict}" for m in self.members)
        c.update(f"groups.{g.verdict}" for g in self.groups)
        c["members.changes"] = sum(m.change for m in self.members)
        c["groups.changes"] = sum(g.change for g in self.groups)
        keys = [f"members.{k}" for k in MemberVerdictKind.__args__]  # type: ignore[attr-defined]
        keys += [f"groups.{k}" for k in GroupVerdictKind.__args__]  # type: ignore[attr-defined]
        return {k: c.get(k, 0) for k in (*keys, "members.changes", "groups.changes")}

    @property
    def member_changes(self) -> tuple[MemberVerdict, ...]:
        return tuple(m for m in self.members if m.change)

    @property
    def group_changes(self) -> tuple[GroupVerdict, ...]:
        return tuple(g for g in self.groups if g.change)

    def checklist(self, profile: str, schedule: str = "") -> list[str]:
        """What the administrator does around the hand-off, in order.

        ``schedule`` describes the profile's own [schedule] ("every 15m"), if any.
        """
        own = (f" (its [schedule] runs it {schedule}: take its config out of the daemon's "
               f"--config list)") if schedule else ""
        items = [f"Turn off every scheduled sync of profile {profile!r} elsewhere{own}: the "
                 f"dirconnector daemon or timer, cron jobs, and any Bitwarden Directory "
                 f"Connector (bwdc) still syncing this organization. After `migrate apply` "
                 f"this profile refuses to sync; other tools do not know that."]
        assigned = sorted({g.name for g in self.groups if g.verdict != "unmanaged"})
        if self.scope.groups:
            items.append(f"Assign these groups to the {self.preset.title} app: "
                         + ", ".join(self.scope.groups))
        elif assigned:
            items.append(f"Assign (and push) these groups in {self.preset.title}: "
                         + ", ".join(assigned))
        conflicts = [m for m in self.members if m.verdict == "conflict"]
        if conflicts:
            items.append(f"Resolve {len(conflicts)} conflict(s) before turning provisioning "
                         f"on (see the reasons): " + ", ".join(m.email for m in conflicts[:20])
                         + (" …" if len(conflicts) > 20 else ""))
        dups = [g for g in self.groups if g.verdict == "duplicate"]
        if dups:
            items.append("Rename or re-id these groups, or the IdP creates a second one: "
                         + ", ".join(g.name for g in dups))
        left = [m for m in self.members if m.verdict == "unmanaged"]
        if left:
            items.append(f"{len(left)} member(s) stay unmanaged (the IdP never changes or "
                         f"removes them; remove them by hand if they should go): "
                         + ", ".join(m.email for m in left[:20])
                         + (" …" if len(left) > 20 else ""))
        items.append("Start provisioning in the IdP, watch its first cycle's log for 409s, "
                     "then look the members up as the IdP does (userName / externalId filters)")
        items.append("To undo before the IdP has changed anything: dirconnector migrate "
                     "rollback --map FILE")
        return items

    def to_json(self) -> dict[str, Any]:
        from dataclasses import asdict

        return {
            "format_version": 1, "idp": self.idp, "server": self.server,
            "scope_groups": list(self.scope.groups), "target_digest": self.target_digest,
            "preset": asdict(self.preset), "counts": self.counts(),
            "members": [asdict(m) for m in self.members],
            "groups": [asdict(g) for g in self.groups], "notes": list(self.notes),
        }


# ---------------------------------------------------------------------------- mapping


def idp_user_name(user: User, preset: Preset) -> str:
    """What the IdP sends as userName for this directory user."""
    if preset.user_name_from == "user_name" and user.user_name:
        return user.user_name
    return user.email


def idp_external_id(user: User, preset: Preset) -> str:
    """What the IdP sends as externalId for this directory user (the preset's stand-in)."""
    how = preset.external_id_from
    if how == "external_id":
        return user.external_id
    if how == "email":
        return user.email
    name = user.user_name or user.email
    if how == "user_name":
        return name
    if how == "user_name_local_part":
        return name.split("@", 1)[0]
    return user.email.split("@", 1)[0]


def idp_group_external_id(group: Group, preset: Preset) -> str:
    how = preset.group_external_id_from
    return group.external_id if how == "external_id" else group.name if how == "name" else ""


def in_scope(desired: Snapshot, scope: Scope) -> tuple[set[str], list[Group]]:
    """Directory user ids and groups the IdP provisions.

    Assigning a group to the app puts its *direct* members in scope: Entra and Okta do
    not expand nested groups for assignment, so neither does this.
    """
    if not scope.groups:
        return set(desired.users), list(desired.groups.values())
    wanted = {n.casefold() for n in scope.groups}
    groups = [g for g in desired.groups.values() if g.name.casefold() in wanted]
    found = {g.name.casefold() for g in groups}
    missing = [n for n in scope.groups if n.casefold() not in found]
    if missing:
        raise ConfigError(f"--scope-group: no directory group named "
                          f"{', '.join(repr(n) for n in missing)}",
                          hint="use the group names the connector reads (`dirconnector plan`)")
    users = {m for g in groups for m in g.member_ids if m in desired.users}
    return users, groups


# ---------------------------------------------------------------------------- the plan


def migrate_plan(desired: Snapshot, current: Snapshot, preset: Preset,
                 scope: Scope = Scope(), mapping: UserMapping = _NO_MAPPING,
                 group_mapping: GroupMapping = _NO_GROUP_MAPPING) -> MigrationPlan:
    """Every member's and group's verdict for handing ``current`` to the IdP.

    ``desired`` is the directory as read (the IdP sends the directory's own group names
    and ids); ``group_mapping`` is how this profile named and keyed the groups it made,
    so that they are recognised on the server. ``mapping`` only adds a note: the IdP
    sends the attributes of its own mapping, not this profile's."""
    bitwarden = "bitwarden" in (current.info.get("server"), current.info.get("flavor"))
    users_in, groups_in = in_scope(desired, scope)
    members = _members(desired, current, preset, users_in, bitwarden)
    groups = _groups(current, preset, groups_in, group_mapping)
    notes = [f"{preset.title} sends {preset.sends}", f"approximation: {preset.approximation}"]
    if mapping:
        paths = sorted([short_path(p) for p in mapping.paths]
                       + [_CORE_PATHS[name] for name, _ in mapping.core])
        notes.append(f"[target.mapping] writes {len(paths)} attribute(s) ({', '.join(paths)}): "
                     f"the hand-off moves accounts and ids only; give the {preset.title} app "
                     f"the same attribute mappings, or those values stay as last written")
    if group_mapping.display_name is not None:
        notes.append(f"[target.group_mapping] named this profile's groups on the server; "
                     f"{preset.title} sends the directory's group names unless its own "
                     f"group displayName mapping does the same")
    if preset.user_name_from == "user_name":
        bare = sorted(u.email for e, u in desired.users.items()
                      if e in users_in and u.user_name and "@" not in u.user_name)
        if bare:
            notes.append(f"{len(bare)} in-scope user(s) have a directory login without @ "
                         f"(sAMAccountName or uid, not a UPN), e.g. {bare[0]}: the IdP sends "
                         f"its own login format; if that is the email, set user_name_from = "
                         f"\"email\" in [migrate]")
    if bitwarden:
        notes.append("Bitwarden matches userName only against the email and answers no "
                     "result for a userName without @ (reference 3.2); PATCH externalId needs "
                     "a server with PM-19232 (users) / PM-19551 (groups)")
    return MigrationPlan(preset.name, preset, scope, tuple(members), tuple(groups),
                         current.digest(), "bitwarden" if bitwarden else "scim", tuple(notes))


class _Index(Generic[_R]):
    """Records by one key, built once: a scan of all accounts (or of the whole directory)
    per member made a plan of 100k members take minutes (issue 19).

    The usual single hit is a plain dict entry; only keys that several records share get
    a list, so an index of 100k accounts adds no 100k objects for the collector to walk.
    """

    def __init__(self, records: Iterable[_R], key: Callable[[_R], str]) -> None:
        self.first: dict[str, _R] = {}
        self.more: dict[str, list[_R]] = {}
        for rec in records:
            k = key(rec)
            if k in self.first:
                self.more.setdefault(k, [self.first[k]]).append(rec)
            else:
                self.first[k] = rec

    def all(self, k: str) -> list[_R]:
        """Every record with key ``k``, in the order they were given (a new list)."""
        rec = self.first.get(k)
        if rec is None:
            return []
        more = self.more.get(k)
        return [rec] if more is None else list(more)


def _members(desired: Snapshot, current: Snapshot, preset: Preset, users_in: set[str],
             bitwarden: bool) -> list[MemberVerdict]:
    accounts = list(current.users.values())
    by_ext = _Index((a for a in accounts if a.external_id), lambda a: a.external_id)
    by_email = _Index((a for a in accounts if a.email), lambda a: a.email)
    by_ext_folded = _Index(accounts, lambda a: a.external_id.casefold())
    wanted = {ext: (idp_user_name(u, preset), idp_external_id(u, preset))
              for ext, u in desired.users.items() if ext in users_in}
    ext_count = Counter(x for _, x in wanted.values() if x)
    name_count = Counter(n.casefold() for n, _ in wanted.values())

    out: list[MemberVerdict] = []
    claimed: set[str] = set()
    for ext in sorted(wanted, key=lambda e: desired.users[e].email):
        email = desired.users[ext].email
        name, new_ext = wanted[ext]
        found = _standing_for(by_ext.all(ext), by_email.all(email))
        claimed.update(a.ref for a in found)
        holder = [a for a in by_ext_folded.all(new_ext.casefold()) if new_ext
                  and (not found or a.ref != found[0].ref)]
        verdict, found_by, change, reason = _verdict(found, name, new_ext, holder, preset,
                                                     bitwarden, ext_count, name_count)
        # One record per member, made once (dataclasses.replace cost 1.7 s at 100k).
        acct = found[0] if found else None
        out.append(MemberVerdict(verdict, email, acct.ref if acct else "", ext, name, new_ext,
                                 acct.external_id if acct else "", found_by, change, reason))
    # Unmanaged: the first directory user (in read order) with the account's id or email.
    directory = list(desired.users.values())
    first_by_ext: dict[str, int] = {}
    first_by_email: dict[str, int] = {}
    for n, u in enumerate(directory):
        first_by_ext.setdefault(u.external_id, n)
        first_by_email.setdefault(u.email, n)
    for acct in sorted(accounts, key=lambda a: a.email):
        if acct.ref in claimed:
            continue
        at = min(first_by_ext.get(acct.external_id, len(directory)),
                 first_by_email.get(acct.email, len(directory)))
        known = directory[at].external_id if at < len(directory) else ""
        why = ("outside the IdP's assignment scope" if at < len(directory)
               else "not in the directory read (invited by hand, or a leaver)")
        out.append(MemberVerdict("unmanaged", acct.email, acct.ref, known,
                                 current_external_id=acct.external_id, reason=why))
    return out


def _verdict(found: list[User], name: str, new_ext: str, holder: list[User], preset: Preset,
             bitwarden: bool, ext_count: Counter[str], name_count: Counter[str]
             ) -> tuple[MemberVerdictKind, str, bool, str]:
    """(verdict, found_by, change, reason) of one in-scope member.

    ``found``: the accounts that stand for the person (by directory id or email);
    ``holder``: other accounts that already carry the externalId the IdP will send.
    """
    if len(found) > 1:
        return "conflict", "", False, (f"{len(found)} accounts already stand for this person "
                                       f"({', '.join(a.email for a in found)}); the IdP adopts "
                                       f"at most one")
    if not found:
        if holder:
            return "conflict", "", False, (f"externalId {new_ext!r} is held by "
                                           f"{holder[0].email}: the IdP's POST gets 409")
        return "new", "", False, "no account yet: the IdP creates it"
    acct = found[0]
    clash = _clash(new_ext, name, ext_count, name_count, holder)
    if clash:
        return "conflict", "", False, clash
    for found_by in preset.user_lookup:  # the IdP's lookups, in its order
        if found_by == "externalId" or _user_name_finds(acct, name, bitwarden):
            break
    else:
        return "conflict", "", False, _not_found(name, acct, bitwarden)
    if acct.external_id == new_ext:
        return "adopt_external_id", found_by, False, "already carries the IdP's externalId"
    if found_by == "userName":
        return ("adopt_user_name", found_by, True,
                "found by userName; apply sets the IdP's externalId")
    return "adopt_external_id", found_by, True, "found by externalId once apply sets it"


def _standing_for(linked: list[User], same_email: list[User]) -> list[User]:
    """The accounts linked by directory id, then those with the email, each once.

    Each list is free of repeats already (refs are a snapshot's keys); the usual case,
    one account found both ways, makes no set.
    """
    if not same_email or (len(linked) == len(same_email) == 1
                          and linked[0].ref == same_email[0].ref):
        return linked
    if not linked:
        return same_email
    refs = {a.ref for a in linked}
    return linked + [a for a in same_email if a.ref not in refs]


def _clash(new_ext: str, name: str, ext_count: Counter[str], name_count: Counter[str],
           holder: list[User]) -> str:
    if not new_ext:
        return "the IdP sends no externalId for this user (empty source attribute)"
    if ext_count[new_ext] > 1:
        return (f"{ext_count[new_ext]} directory users map to externalId {new_ext!r}: the "
                f"second one gets 409 or is linked to the wrong account")
    if name_count[name.casefold()] > 1:
        return f"{name_count[name.casefold()]} directory users map to userName {name!r}"
    if holder:
        return (f"externalId {new_ext!r} is already held by {holder[0].email}: setting it "
                f"answers 409")
    return ""


def _user_name_finds(acct: User, name: str, bitwarden: bool) -> bool:
    """Whether ``userName eq name`` returns this account (RFC 7643: userName caseExact false)."""
    if bitwarden:
        # Reference 3.2: userName is matched against the email, and only when it has an @.
        return "@" in name and normalize_email(name) == acct.email
    return (acct.user_name or acct.email).casefold() == name.casefold()


def _not_found(name: str, acct: User, bitwarden: bool) -> str:
    if bitwarden and "@" not in name:
        return (f"the IdP looks up userName eq {name!r}; Bitwarden answers no result for a "
                f"userName without @, so the IdP POSTs and gets 409 (email {acct.email} exists)")
    return (f"the IdP looks up userName eq {name!r} but the account's userName is "
            f"{(acct.user_name or acct.email)!r}: it POSTs and gets 409 or creates a second "
            f"account")


def _groups(current: Snapshot, preset: Preset, groups_in: list[Group],
            group_mapping: GroupMapping) -> list[GroupVerdict]:
    server = list(current.groups.values())
    by_ext = _Index((s for s in server if s.external_id), lambda s: s.external_id)
    by_name = _Index(server, lambda s: s.name)
    out: list[GroupVerdict] = []
    claimed: set[str] = set()
    ext_count = Counter(idp_group_external_id(g, preset) for g in groups_in)
    for g in sorted(groups_in, key=lambda x: x.name):
        new_ext = idp_group_external_id(g, preset)
        # The server group this profile made: keyed and named as its group_mapping said.
        key, mapped_name = group_mapping.map_group(g.external_id, g.name) if group_mapping \
            else (g.external_id, g.name)
        linked = by_ext.all(key) if key else []
        named = by_name.all(mapped_name)
        found = linked or named
        base = GroupVerdict("new", g.name, directory_id=g.external_id, idp_external_id=new_ext)
        holder = [s for s in by_ext.all(new_ext) if new_ext
                  and (not found or s.ref != found[0].ref)]
        if not found:
            verdict: GroupVerdictKind = "duplicate" if holder else "new"
            out.append(replace(base, verdict=verdict, reason=(
                f"externalId {new_ext!r} is held by group {holder[0].name!r}: 409" if holder
                else "no group yet: the IdP creates it")))
            continue
        grp = found[0]
        claimed.update(s.ref for s in found[:1])
        base = replace(base, ref=grp.ref, current_external_id=grp.external_id)
        if len(named) > 1 or len(linked) > 1:
            out.append(replace(base, verdict="duplicate", reason=(
                f"{max(len(named), len(linked))} server groups match {g.name!r}; the IdP "
                f"picks one")))
            continue
        if holder or (new_ext and ext_count[new_ext] > 1):
            out.append(replace(base, verdict="duplicate", reason=(
                f"externalId {new_ext!r} is held by another group: setting it answers 409")))
            continue
        lookups = {"displayName": grp.name == g.name,
                   "externalId": bool(new_ext)}
        found_by = next((k for k in preset.group_lookup if lookups[k]), "")
        needs = bool(new_ext) and grp.external_id != new_ext
        if not found_by:
            why = (" by [target.group_mapping]" if grp.name == mapped_name != g.name else "")
            out.append(replace(base, verdict="duplicate", reason=(
                f"the IdP looks for displayName {g.name!r}; the server group is named "
                f"{grp.name!r}{why}: it creates a second group")))
        elif not needs:
            out.append(replace(base, verdict="matched_external_id" if new_ext else
                               "matched_display_name", found_by=found_by,
                               reason="already aligned" if new_ext else
                               "matched by name; the IdP sends no externalId"))
        else:
            verdict = ("matched_display_name" if found_by == "displayName"
                       else "matched_external_id")
            out.append(replace(base, verdict=verdict, found_by=found_by, change=True,
                               reason="apply sets the IdP's externalId"))
    for s in sorted(server, key=lambda x: x.name):
        if s.ref not in claimed:
            out.append(GroupVerdict("unmanaged", s.name, s.ref,
                                    current_external_id=s.external_id,
                                    reason="not assigned to the IdP app: left as it is"))
    return out


__all__ = ["IDPS", "PRESETS", "GroupVerdict", "MemberVerdict", "MigrateSettings",
           "MigrationPlan", "Preset", "Scope", "migrate_plan", "migrate_settings"]
