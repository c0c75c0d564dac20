"""From raw LDAP entries to User and Group records. Pure: no I/O.

``resolve`` turns settings plus what the root DSE said into concrete attribute names
and filters; ``UserMapper`` maps user entries and indexes them by DN and uid;
``GroupResolver`` resolves member values (DNs or uids) to users and nested groups
with one dict lookup in the common case and a parsed, normalised DN otherwise.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Literal

from ...mapping import MANAGER_SOURCE
from ...model import Group, Skipped, User, normalize_email
from .settings import LdapSettings
from .syntax import DNError, escape_filter_value, normalize_dn, parse_dn, strip_uid_suffix
from .wire import lowered, spelling

Kind = Literal["ad", "openldap", "389", "other"]
Attrs = Mapping[str, list[bytes]]

AD_CAPABILITY = "1.2.840.113556.1.4.800"  # MS-ADTS 3.1.1.3.4.3.1 LDAP_CAP_ACTIVE_DIRECTORY_OID
ROOT_DSE_ATTRS = ("objectClass", "vendorName", "supportedCapabilities", "namingContexts",
                  "defaultNamingContext")
# Stable id attributes by server kind, in the order tried per entry.
ID_ATTRS: dict[Kind, tuple[str, ...]] = {
    "ad": ("objectguid",),
    "openldap": ("entryuuid",),
    "389": ("ipauniqueid", "nsuniqueid"),  # FreeIPA entries carry ipaUniqueID, plain 389 not
    "other": ("entryuuid", "nsuniqueid", "ipauniqueid"),
}
MEMBER_BY_CLASS = {"group": "member", "groupofnames": "member",
                   "groupofuniquenames": "uniquemember", "posixgroup": "memberuid"}
UAC_ACCOUNTDISABLE = 0x2  # MS-ADTS 2.2.16 userAccountControl ADS_UF_ACCOUNTDISABLE


@dataclass(frozen=True, slots=True)
class ServerInfo:
    """What the root DSE says about the server."""

    kind: Kind
    naming_contexts: tuple[str, ...]
    default_naming_context: str | None


def server_info(dse: Attrs) -> ServerInfo:
    """Classify a server from its root DSE (attribute names lower-cased)."""
    def texts(name: str) -> list[str]:
        return [v.decode("utf-8", "replace") for v in dse.get(name.lower(), [])]

    classes = {c.lower() for c in texts("objectClass")}
    vendor = " ".join(texts("vendorName")).lower()
    kind: Kind = "other"
    if AD_CAPABILITY in texts("supportedCapabilities"):
        kind = "ad"
    elif "openldaprootdse" in classes:
        kind = "openldap"
    elif any(w in vendor for w in ("389", "red hat", "fedora", "netscape")):
        kind = "389"
    default = texts("defaultNamingContext")
    return ServerInfo(kind, tuple(texts("namingContexts")), default[0] if default else None)


@dataclass(frozen=True, slots=True)
class Resolved:
    """Settings made concrete for one server: bases, filters and attribute names."""

    ad: bool
    kind: Kind
    base_dn: str
    naming_context: str
    """The root DSE's default naming context (AD: the domain), else base_dn."""
    user_base: str
    group_base: str
    user_search: str
    group_search: str
    disabled_search: str | None
    id_attrs: tuple[str, ...]
    member_attrs: tuple[str, ...]
    email: str
    prefix: str | None
    suffix: str
    user_name: str
    display: str
    given: str
    family: str
    group_name: str
    user_attrs: tuple[str, ...] = field(default=())
    group_attrs: tuple[str, ...] = field(default=())
    extra: tuple[str, ...] = ()
    """Lower-cased attributes an attribute mapping asked for (``manager``: a DN, resolved
    to the manager's external id once every user is read)."""


_SCHEMA_NAME = re.compile(r"\bNAME\s+(?:'([^']*)'|\(([^)]*)\))")


def schema_names(definition: str) -> list[str]:
    """The NAMEs of one attributeTypes value (RFC 4512 4.1.2: ``NAME 'cn'`` or
    ``NAME ( 'cn' 'commonName' )``)."""
    m = _SCHEMA_NAME.search(definition)
    if not m:
        return []
    return [m[1]] if m[1] is not None else re.findall(r"'([^']*)'", m[2])


def with_extra(r: Resolved, names: Iterable[str]) -> Resolved:
    """``r`` also reading ``names`` (ReadsAttributes) for every user."""
    extra = tuple(sorted({n.lower() for n in names}))
    return replace(r, extra=extra, user_attrs=tuple(dict.fromkeys((*r.user_attrs, *extra))))


def resolve(s: LdapSettings, info: ServerInfo) -> Resolved:
    """Fill unset options for this server kind; raise ValueError naming the field."""
    ad = info.kind == "ad" if s.active_directory == "auto" else bool(s.active_directory)
    kind: Kind = "ad" if ad else ("other" if info.kind == "ad" else info.kind)
    base = s.base_dn or info.default_naming_context
    if base is None:
        contexts = [c for c in info.naming_contexts if c.lower() != "cn=config"]
        if len(contexts) != 1:
            raise ValueError(f"base_dn: not set and the server names {len(contexts)} naming "
                             f"contexts ({', '.join(contexts) or 'none'}); set it")
        base = contexts[0]
    if s.user_object_class:
        user_cls = f"(objectClass={escape_filter_value(s.user_object_class)})"
    elif ad:  # computers are objectClass=user too; objectCategory=person excludes them
        user_cls = "(objectCategory=person)(objectClass=user)"
    else:
        user_cls = "(objectClass=person)"
    classes = s.group_object_class or (
        ["group"] if ad else ["groupOfNames", "groupOfUniqueNames", "posixGroup"])
    group_cls = "".join(f"(objectClass={escape_filter_value(c)})" for c in classes)
    if len(classes) > 1:
        group_cls = f"(|{group_cls})"
    if s.member_attribute:
        members: tuple[str, ...] = (s.member_attribute.lower(),)
    else:
        members = tuple(dict.fromkeys(MEMBER_BY_CLASS.get(c.lower(), "member") for c in classes))
    user_search = f"(&{user_cls}{s.user_filter or ''})"
    id_attrs = (s.external_id_attribute.lower(),) if s.external_id_attribute else ID_ATTRS[kind]
    r = Resolved(
        ad=ad, kind=kind, base_dn=base, naming_context=info.default_naming_context or base,
        user_base=_under(s.user_base, base), group_base=_under(s.group_base, base),
        user_search=user_search,
        group_search=f"(&{group_cls}{s.group_filter or ''})",
        disabled_search=f"(&{user_search}{s.disabled_filter})" if s.disabled_filter else None,
        id_attrs=id_attrs, member_attrs=members,
        email=s.email_attribute.lower(),
        prefix=s.email_prefix_attribute.lower() if s.email_prefix_attribute else None,
        suffix=_suffix(s.email_suffix),
        user_name=(s.user_name_attribute or ("sAMAccountName" if ad else "uid")).lower(),
        display=s.display_name_attribute.lower(), given=s.given_name_attribute.lower(),
        family=s.family_name_attribute.lower(), group_name=s.group_name_attribute.lower())
    user_attrs = [*id_attrs, r.email, r.user_name, "uid", r.display, "cn", r.given, r.family]
    if r.prefix:
        user_attrs.append(r.prefix)
    if ad:
        user_attrs.append("useraccountcontrol")
    group_attrs = [*id_attrs, r.group_name, "cn", *members]
    return _with_attrs(r, tuple(dict.fromkeys(user_attrs)), tuple(dict.fromkeys(group_attrs)))


def _with_attrs(r: Resolved, users: tuple[str, ...], groups: tuple[str, ...]) -> Resolved:
    return replace(r, user_attrs=users, group_attrs=groups)


def _under(value: str | None, base: str) -> str:
    """A base given relative to base_dn (``ou=people``) gets base_dn appended."""
    if not value:
        return base
    norm_value, norm_base = normalize_dn(value), normalize_dn(base)
    if norm_value == norm_base or norm_value.endswith("," + norm_base):
        return value
    if any(t == "dc" for rdn in parse_dn(value) for t, _ in rdn):
        return value  # absolute, in another naming context
    return f"{value},{base}"


def _suffix(value: str | None) -> str:
    if not value:
        return ""
    return value if value.startswith("@") else "@" + value


def _text(values: list[bytes] | None) -> str:
    return values[0].decode("utf-8", "replace").strip() if values else ""


def choose_email(values: Sequence[bytes], login: Sequence[bytes] | None) -> str:
    """The address of an entry whose email attribute holds several (documented in
    connectors/ldap.md): servers return values in no promised order, so the first one
    would change with a re-ordering. Rule: the value equal to the login name (a UPN
    such as jane@example.com), else the only one whose local part is the login name
    (uid or sAMAccountName jane), else the lowest address in alphabetical order."""
    texts = sorted({normalize_email(x.decode("utf-8", "replace")) for x in values} - {""})
    if not texts:
        return ""
    name = normalize_email(login[0].decode("utf-8", "replace")) if login else ""
    if name:
        if name in texts:
            return name
        local = [t for t in texts if t.rpartition("@")[0] == name]
        if len(local) == 1:
            return local[0]
    return texts[0]


def guid_text(raw: bytes) -> str:
    """AD objectGUID bytes to the canonical GUID string (MS-DTYP 2.3.4: little-endian fields)."""
    return str(uuid.UUID(bytes_le=raw)) if len(raw) == 16 else raw.hex()


class UserMapper:
    """Maps user entries page by page and remembers their DNs and uids for groups."""

    def __init__(self, r: Resolved, disabled: frozenset[str] = frozenset()) -> None:
        self.r = r
        self.disabled = disabled              # DNs the disabled search returned, as spelt
        self._disabled_seen = 0
        self.users: list[User] = []
        self.skipped: list[Skipped] = []
        self.by_dn: dict[str, str] = {}       # raw DN as the server spells it -> external id
        self.by_uid: dict[str, str] = {}      # case-folded uid -> external id
        self.dn_ids = 0                       # entries keyed on their DN (no id attribute)
        self._by_norm: dict[str, str] | None = None
        self.guids: dict[str, str] | None = None
        self.known: Mapping[str, str] = {}
        """Raw DN -> external id of users read before (a change stream maps a few
        entries at a time: their managers are usually among the users already known)."""
        """objectGUID text -> external id where they differ; kept only for a takeover
        from bwdc on a server whose entries carry objectGUID but are keyed otherwise."""

    def by_norm(self) -> dict[str, str]:
        """Normalised DN -> external id, built on first use (most member values match raw)."""
        if self._by_norm is None:
            self._by_norm = {normalize_dn(dn): ext for dn, ext in self.by_dn.items()}
        return self._by_norm

    def external_id(self, dn: str, attrs: Attrs,
                    names: Mapping[str, str] | None = None) -> str:
        """The entry's stable id; ``names`` maps lower-case names to the entry's spelling."""
        for name in self.r.id_attrs:
            values = attrs.get(names.get(name, name) if names else name)
            if values:
                return guid_text(values[0]) if name == "objectguid" else _text(values).lower()
        self.dn_ids += 1
        return normalize_dn(dn)

    def add(self, entries: Sequence[tuple[str, Attrs]]) -> None:
        """Map one page of user entries (attribute names as the server spells them)."""
        # The hot loop of a read (100k entries): attribute names are resolved once per
        # page, methods bound to locals, field extraction inlined.
        r = self.r
        names = spelling(entries)
        if names is None:
            entries = [(dn, lowered(a)) for dn, a in entries]
            names = {}
        n = names.get
        append, skip = self.users.append, self.skipped.append
        by_dn, by_uid, disabled = self.by_dn, self.by_uid, self.disabled
        id_keys = [(n(x, x), x == "objectguid") for x in r.id_attrs]
        email_a, name_a = n(r.email, r.email), n(r.user_name, r.user_name)
        prefix_a = n(r.prefix, r.prefix) if r.prefix else None
        display_a, given_a, family_a = (n(r.display, r.display), n(r.given, r.given),
                                        n(r.family, r.family))
        uid_a, cn_a, uac_a = n("uid", "uid"), n("cn", "cn"), n("useraccountcontrol", "")
        suffix = r.suffix
        extra_uid = r.user_name != "uid"
        ad = r.ad
        guids, guid_a = self.guids, n("objectguid", "objectguid")
        extra = [(x, n(x, x)) for x in r.extra]
        self._by_norm = None
        for dn, a in entries:
            get = a.get
            for key, is_guid in id_keys:
                v = get(key)
                if v:
                    ext = guid_text(v[0]) if is_guid else v[0].decode("utf-8", "replace").lower()
                    break
            else:
                self.dn_ids += 1
                ext = normalize_dn(dn)
            by_dn[dn] = ext
            if guids is not None and (v := get(guid_a)):
                guids[guid_text(v[0])] = ext
            active = dn not in disabled
            if not active:
                self._disabled_seen += 1
            for uid in get(uid_a, ()):
                by_uid[uid.decode("utf-8", "replace").strip().casefold()] = ext
            if extra_uid:
                for uid in get(name_a, ()):
                    by_uid.setdefault(uid.decode("utf-8", "replace").strip().casefold(), ext)
            v = get(email_a)
            email = (v[0].decode("utf-8", "replace").strip() if len(v) == 1
                     else choose_email(v, get(name_a))) if v else ""
            if not email and prefix_a:
                v = get(prefix_a)
                email = v[0].decode("utf-8", "replace").strip() + suffix if v else ""
            if not email:
                skip(Skipped("user", dn, "no email", f"no {email_a} value", external_id=ext))
                continue
            if ad and active:
                uac = _text(get(uac_a))
                active = not (uac.lstrip("-").isdigit() and int(uac) & UAC_ACCOUNTDISABLE)
            v = get(name_a)
            user_name = v[0].decode("utf-8", "replace").strip() if v else ""
            v = get(display_a) or get(cn_a)
            display = v[0].decode("utf-8", "replace").strip() if v else ""
            v = get(given_a)
            given = v[0].decode("utf-8", "replace").strip() if v else ""
            v = get(family_a)
            family = v[0].decode("utf-8", "replace").strip() if v else ""
            if not extra:
                append(User(ext, normalize_email(email), user_name, display, given, family,
                            active))
                continue
            attributes = []
            for name, spelt in extra:
                v = get(spelt)
                if v and (text := v[0].decode("utf-8", "replace").strip()):
                    attributes.append((name, text))
            append(User(ext, normalize_email(email), user_name, display, given, family, active,
                        "", tuple(attributes)))

    def finish(self) -> None:
        """Resolve manager DNs; match disabled DNs the server spelt differently (rare)."""
        if MANAGER_SOURCE in self.r.extra:
            self.users = [self._with_manager(u) for u in self.users]
        if self._disabled_seen == len(self.disabled):
            return
        wanted = {normalize_dn(dn) for dn in self.disabled}
        lost = {ext for dn, ext in self.by_dn.items()
                if dn not in self.disabled and normalize_dn(dn) in wanted}
        self.users = [replace(u, active=False) if u.external_id in lost else u
                      for u in self.users]
        self._disabled_seen = len(self.disabled)

    def _with_manager(self, user: User) -> User:
        """``manager`` holds a DN (RFC 4524 2.12; AD: a DN-valued attribute): the manager's
        external id instead, or nothing for a DN outside the user search."""
        attrs = user.attributes
        dn = next((v for k, v in attrs if k == MANAGER_SOURCE), None)
        if dn is None:
            return user
        boss = self.by_dn.get(dn) or self.known.get(dn)
        if boss is None:
            try:
                norm = normalize_dn(dn)
                boss = self.by_norm().get(norm)
                if boss is None and self.known:
                    boss = next((e for k, e in self.known.items()
                                 if normalize_dn(k) == norm), None)
            except DNError:
                boss = None
        kept = tuple((k, v) for k, v in attrs if k != MANAGER_SOURCE)
        if boss:
            kept = tuple(sorted((*kept, (MANAGER_SOURCE, boss))))
        return replace(user, attributes=kept)

    def add_deleted(self, entries: Iterable[tuple[str, Attrs]],
                    known: Mapping[str, str]) -> int:
        """AD tombstones become inactive users; returns how many.

        A tombstone keeps no mail unless the AD Recycle Bin is on (MS-ADTS 3.1.1.5.5.1.1),
        so the address is taken from ``known`` (external id -> email of the previous
        read). One with neither is left out, not reported as skipped, so the sync's
        remove_missing still applies to it.
        """
        r = self.r
        live = {u.external_id for u in self.users} | {s.external_id for s in self.skipped}
        count = 0
        for dn, a in entries:
            a = lowered(a)
            ext = self.external_id(dn, a)
            if ext in live:
                continue
            email = normalize_email(_text(a.get(r.email))) or known.get(ext, "")
            if email:
                self.users.append(User(ext, email, _text(a.get(r.user_name)), active=False))
                count += 1
        return count


@dataclass(slots=True)
class RawGroup:
    """A group entry before its members are resolved."""

    dn: str
    external_id: str
    name: str
    members: list[tuple[str, bytes]]  # (attribute, value)
    guid: str = ""                    # objectGUID text, read for a takeover only


class GroupResolver:
    """Resolves member values to user ids and subgroup ids."""

    def __init__(self, users: UserMapper, groups: list[RawGroup],
                 known_groups: Mapping[str, str] | None = None) -> None:
        """``known_groups`` (DN -> id) are more groups a member value may name: a change
        stream resolves a few re-read groups against the index of all of them."""
        self.users = users
        self.groups = groups
        self.by_dn = {**(known_groups or {}), **{g.dn: g.external_id for g in groups}}
        self._groups_norm: dict[str, str] | None = None
        self.dangling = 0
        self._norm: dict[str, str] = {}

    def _normalize(self, dn: str) -> str | None:
        norm = self._norm.get(dn)
        if norm is None:
            try:
                norm = normalize_dn(dn)
            except DNError:
                norm = ""
            self._norm[dn] = norm
        return norm or None

    def _group_norm(self) -> dict[str, str]:
        if self._groups_norm is None:
            self._groups_norm = {normalize_dn(dn): ext for dn, ext in self.by_dn.items()}
        return self._groups_norm

    def resolve(self) -> list[Group]:
        u = self.users
        out: list[Group] = []
        for g in self.groups:
            members: set[str] = set()
            subgroups: set[str] = set()
            for attr, raw in g.members:
                value = raw.decode("utf-8", "replace").strip()
                if attr == "memberuid" or "=" not in value:
                    ext = u.by_uid.get(value.casefold())
                    if ext is not None:
                        members.add(ext)
                    else:
                        self.dangling += 1
                    continue
                if attr == "uniquemember":
                    value = strip_uid_suffix(value)
                ext = u.by_dn.get(value)
                if ext is not None:
                    members.add(ext)
                    continue
                sub = self.by_dn.get(value)
                if sub is None:
                    norm = self._normalize(value)
                    ext = u.by_norm().get(norm) if norm else None
                    if ext is not None:
                        members.add(ext)
                        continue
                    sub = self._group_norm().get(norm) if norm else None
                if sub is not None:
                    if sub != g.external_id:
                        subgroups.add(sub)
                else:
                    self.dangling += 1  # outside the user/group search, or deleted
            out.append(Group(g.external_id, g.name, frozenset(members), frozenset(subgroups)))
        return out
