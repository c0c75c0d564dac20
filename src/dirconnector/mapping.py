"""Attribute mapping: SCIM attribute paths from source attributes or small expressions.

``[target.mapping]`` names, for each SCIM attribute path a target should hold, where
its value comes from::

    title = "title"                                   # a source attribute
    nickName = "{givenName}.{sn}"                     # a template
    'phoneNumbers[type eq "work"].value' = "telephoneNumber"
    "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager" = "manager"
    userType = { from = "employeeType", map = { E = "Employee" }, default = "Other" }
    preferredLanguage = { first = ["preferredLanguage", "c"], case = "lower" }

The connector reads the source attributes named (``connectors.ReadsAttributes``) into
``User.attributes`` by source name; :meth:`UserMapping.apply` turns them, once per read,
into SCIM path -> value. ``manager`` is a reserved source name: the manager's external
id, which the target writes as the manager's server id (RFC 7643 4.3).

Pure: values in, values out. Parsing raises ValueError with the key it is about.
"""

from __future__ import annotations

import functools
import re
import string
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any, Literal

from .model import Group, Snapshot, User, clean_text, paused_gc

ENTERPRISE = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
"""RFC 7643 4.3: the enterprise User extension."""
USER_SCHEMA = "urn:ietf:params:scim:schemas:core:2.0:User"
MANAGER = f"{ENTERPRISE}:manager"
"""The path of the manager reference; its source is always ``manager``."""
MANAGER_SOURCE = "manager"
"""The reserved source name every connector fills with the manager's external id."""

# RFC 7643 4.1: the core User attributes a mapping may write, and their sub-attributes
# ("" = a simple attribute). Multi-valued ones need a type filter.
_CORE_SIMPLE = frozenset({"displayName", "nickName", "profileUrl", "title", "userType",
                          "preferredLanguage", "locale", "timezone"})
_CORE_NAME = frozenset({"formatted", "familyName", "givenName", "middleName",
                        "honorificPrefix", "honorificSuffix"})
_CORE_MULTI = {"emails": frozenset({"value", "display"}),
               "phoneNumbers": frozenset({"value", "display"}),
               "ims": frozenset({"value", "display"}),
               "photos": frozenset({"value", "display"}),
               "addresses": frozenset({"formatted", "streetAddress", "locality", "region",
                                       "postalCode", "country"}),
               "entitlements": frozenset({"value", "display"}),
               "roles": frozenset({"value", "display"})}
_ENTERPRISE_ATTRS = frozenset({"employeeNumber", "costCenter", "organization", "division",
                               "department", "manager"})
_NOT_MAPPABLE = {
    "id": "the server assigns it", "externalId": "it is the directory's id",
    "active": "it follows the directory's enabled state", "password": "passwords are not synced",
    "groups": "group membership is synced from groups", "meta": "the server keeps it",
    "userName": "it is the email on this target (the connector's email attribute sets it)",
    "x509Certificates": "binary values are not synced",
}
CORE_FIELDS = {"displayName": "display_name", "name.givenName": "given_name",
               "name.familyName": "family_name"}
"""Paths that override a User field instead of becoming an extra attribute."""

_PATH = re.compile(r"""^(?P<attr>[A-Za-z][\w$-]*)
                       (?:\[type\s+eq\s+"(?P<type>[^"\\]*)"\])?
                       (?:\.(?P<sub>[A-Za-z][\w$-]*))?$""", re.X)
_SOURCE = re.compile(r"^[A-Za-z_][\w.;:$-]*$")


@dataclass(frozen=True, slots=True)
class Path:
    """One SCIM attribute path, parsed (RFC 7644 3.10, with the one filter we support)."""

    schema: str
    """The schema URN (core User or an extension)."""
    attr: str
    """The attribute name."""
    type: str = ""
    """The ``type`` a multi-valued attribute's entry is selected by."""
    sub: str = ""
    """The sub-attribute, or empty for a simple attribute."""

    @property
    def text(self) -> str:
        """The canonical spelling: core paths without their URN."""
        head = f"{self.schema}:{self.attr}" if self.schema != USER_SCHEMA else self.attr
        if self.type:
            head += f'[type eq "{self.type}"]'
        return f"{head}.{self.sub}" if self.sub else head

    @property
    def short(self) -> str:
        """How a plan names it: the attribute path without the enterprise URN."""
        return self.text.removeprefix(ENTERPRISE + ":")


def short_path(name: str) -> str:
    """How a plan names a field or path: enterprise attributes without their URN."""
    return name.removeprefix(ENTERPRISE + ":")


def parse_path(text: str) -> Path:
    """A mapping key as a Path; ValueError saying why it is not one we can write."""
    text = text.strip()
    schema = USER_SCHEMA
    rest = text
    if text.lower().startswith("urn:"):
        head = text.split("[", 1)[0]
        schema, _, last = head.rpartition(":")
        rest = last + text[len(head):]
        if schema.lower() == USER_SCHEMA.lower():
            schema = USER_SCHEMA
        elif schema.lower() == ENTERPRISE.lower():
            schema = ENTERPRISE
    m = _PATH.match(rest)
    if not m or not schema:
        raise ValueError('not a SCIM attribute path (like title, name.middleName, '
                         'phoneNumbers[type eq "work"].value or urn:...:User:department)')
    attr, kind, sub = m["attr"], m["type"] or "", m["sub"] or ""
    if schema == USER_SCHEMA:
        if attr in _NOT_MAPPABLE:
            raise ValueError(f"cannot be mapped: {_NOT_MAPPABLE[attr]}")
        if attr == "name":
            if kind or sub not in _CORE_NAME:
                raise ValueError("not a sub-attribute of name "
                                 f"({', '.join(sorted(_CORE_NAME))})")
        elif attr in _CORE_MULTI:
            if not kind:
                raise ValueError(f'multi-valued: select one by type, like '
                                 f'{attr}[type eq "work"].{min(_CORE_MULTI[attr])}')
            sub = sub or "value"
            if sub not in _CORE_MULTI[attr]:
                raise ValueError(f"no sub-attribute {sub!r} "
                                 f"({', '.join(sorted(_CORE_MULTI[attr]))})")
            if attr == "emails" and kind == "work":
                raise ValueError('emails[type eq "work"] is the directory\'s email (the '
                                 "connector's email attribute sets it)")
        elif attr in _CORE_SIMPLE:
            if kind or sub:
                raise ValueError("a simple attribute: no filter or sub-attribute")
        else:
            raise ValueError("not a core User attribute (RFC 7643 4.1); extension "
                             "attributes need their schema URN")
    elif schema == ENTERPRISE:
        if attr not in _ENTERPRISE_ATTRS:
            raise ValueError("not an enterprise User attribute (RFC 7643 4.3: "
                             f"{', '.join(sorted(_ENTERPRISE_ATTRS))})")
        if kind or (sub and not (attr == "manager" and sub == "value")):
            raise ValueError("a simple attribute: no filter or sub-attribute")
        sub = ""
    elif kind and not sub:
        sub = "value"
    return Path(schema, attr, kind, sub)


# ------------------------------------------------------------------ expressions

@dataclass(frozen=True, slots=True)
class Template:
    """``"{givenName}.{sn}@example.com"``: empty when any attribute it names is empty,
    so that ``first`` falls through to the next choice and ``default`` applies."""

    parts: tuple[tuple[str, str], ...]
    """(literal text, source attribute or "") in order."""

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(name for _, name in self.parts if name)

    def render(self, get: Callable[[str], str]) -> str:
        out = []
        for literal, name in self.parts:
            out.append(literal)
            if name:
                value = get(name)
                if not value:
                    return ""
                out.append(value)
        return "".join(out)


def _source(text: str) -> str | Template:
    """A source attribute name, or a template when the text has braces."""
    if "{" not in text and "}" not in text:
        name = text.strip()
        if not _SOURCE.match(name):
            raise ValueError(f"{text!r} is not a source attribute name")
        return name
    try:
        parsed = list(string.Formatter().parse(text))
    except ValueError as exc:
        raise ValueError(f"template {text!r}: {exc}") from exc
    parts = []
    for literal, field, spec, conv in parsed:
        if field is not None and (spec or conv or not _SOURCE.match(field)):
            raise ValueError(f"template {text!r}: {{{field}}} is not a source attribute name")
        parts.append((literal, field or ""))
    if not any(field for _, field in parts):
        raise ValueError(f"template {text!r} names no source attribute")
    return Template(tuple(parts))


_EXPR_KEYS = frozenset({"from", "template", "first", "default", "map", "case"})


@dataclass(frozen=True, slots=True)
class Expr:
    """How one value is made: the first non-empty choice, mapped, cased, else the default."""

    choices: tuple[str | Template, ...]
    """Source attribute names or templates, tried in order."""
    value_map: tuple[tuple[str, str], ...] = ()
    """Source value -> value sent (exact match); other values pass unchanged."""
    case: Literal["", "lower", "upper"] = ""
    default: str = ""
    """Sent when every choice is empty."""

    @property
    def names(self) -> frozenset[str]:
        out: set[str] = set()
        for c in self.choices:
            out.update(c.names if isinstance(c, Template) else (c,))
        return frozenset(out)

    def evaluate(self, get: Callable[[str], str]) -> str:
        value = ""
        for choice in self.choices:
            value = choice.render(get) if isinstance(choice, Template) else get(choice)
            if value:
                break
        if value and self.value_map:
            value = dict(self.value_map).get(value, value)
        if value and self.case:
            value = value.lower() if self.case == "lower" else value.upper()
        return value or self.default


def parse_expr(value: Any) -> Expr:
    """A mapping value (a string or a table) as an Expr; ValueError naming what is wrong."""
    if isinstance(value, str):
        return Expr((_source(value),))
    if not isinstance(value, Mapping):
        raise ValueError("must be a source attribute, a template, or a table "
                         "{ from | template | first, default, map, case }")
    unknown = sorted(set(value) - _EXPR_KEYS)
    if unknown:
        raise ValueError(f"unknown key {unknown[0]!r} (allowed: {', '.join(sorted(_EXPR_KEYS))})")
    given = [k for k in ("from", "template", "first") if k in value]
    if len(given) > 1:
        raise ValueError(f"{given[0]} and {given[1]} both set; give one")
    choices: list[str | Template] = []
    if "first" in value:
        first = value["first"]
        if not isinstance(first, list) or not first or not all(isinstance(x, str) for x in first):
            raise ValueError("first: must be a non-empty list of source attributes or templates")
        choices = [_source(x) for x in first]
    elif given:
        raw = value[given[0]]
        if not isinstance(raw, str):
            raise ValueError(f"{given[0]}: must be a string")
        choices = [_source(raw)]
    default = value.get("default", "")
    if not isinstance(default, str):
        raise ValueError("default: must be a string")
    if not choices and not default:
        raise ValueError("needs from, template, first or default")
    value_map = value.get("map", {})
    if not isinstance(value_map, Mapping) or not all(
            isinstance(v, str) for v in value_map.values()):
        raise ValueError("map: must be a table of strings")
    case = value.get("case", "")
    if case not in ("", "lower", "upper"):
        raise ValueError(f"case: must be lower or upper (got {case!r})")
    return Expr(tuple(choices), tuple(sorted((str(k), v) for k, v in value_map.items())),
                case, default)


# ------------------------------------------------------------------ the user mapping

@dataclass(frozen=True, slots=True)
class Rule:
    path: Path
    expr: Expr


@dataclass(frozen=True)
class UserMapping:
    """A parsed ``[target.mapping]``; empty means today's behaviour exactly."""

    rules: tuple[Rule, ...] = ()
    """Extra attributes, by canonical path (sorted)."""
    core: tuple[tuple[str, Expr], ...] = ()
    """User field -> expression (displayName, name.givenName, name.familyName)."""

    def __bool__(self) -> bool:
        return bool(self.rules or self.core)

    @property
    def paths(self) -> tuple[str, ...]:
        """The canonical paths of the extra attributes."""
        return tuple(r.path.text for r in self.rules)

    @property
    def source_attributes(self) -> frozenset[str]:
        """Every source attribute a connector must read (``manager`` included)."""
        out: set[str] = set()
        for r in self.rules:
            out |= r.expr.names
        for _, e in self.core:
            out |= e.names
        return frozenset(out)

    @property
    def has_manager(self) -> bool:
        return any(r.path.text == MANAGER for r in self.rules)

    def apply(self, snapshot: Snapshot) -> Snapshot:
        """The source snapshot with each user's raw attributes replaced by mapped ones."""
        if not self:
            return snapshot
        with paused_gc():
            users = {k: self.map_user(u, snapshot.users) for k, u in snapshot.users.items()}
        return replace(snapshot, users=users)

    @functools.cached_property
    def _steps(self) -> tuple[tuple[str, str | None, Expr], ...]:
        """Per rule: its path, the lower-cased source name when the value is that source
        attribute as it is (most rules: one dict lookup per user), and the expression."""
        out = []
        for rule in self.rules:
            e = rule.expr
            plain = e.choices[0] if (len(e.choices) == 1 and isinstance(e.choices[0], str)
                                     and not (e.value_map or e.case or e.default)) else None
            out.append((rule.path.text, plain.lower() if plain else None, e))
        return tuple(out)

    def map_user(self, user: User, everyone: Mapping[str, User]) -> User:
        """One user with its source attributes turned into mapped ones (names are matched
        case-insensitively: LDAP's are)."""
        raw = {k.lower(): v for k, v in user.attributes} if user.attributes else {}
        lookup = raw.get

        def get(name: str) -> str:
            return lookup(name.lower(), "")

        out: list[tuple[str, str]] = []
        for text, plain, expr in self._steps:
            if text == MANAGER:
                # A manager outside the synced set, disabled (no account is created for
                # them), or the user itself has no account to point at: nothing is sent,
                # so the next plan stays empty.
                boss = lookup(MANAGER_SOURCE, "")
                found = everyone.get(boss)
                value = boss if found is not None and found.active and \
                    boss != user.external_id else ""
            else:
                value = _clean(lookup(plain, "") if plain is not None else expr.evaluate(get))
            if value:
                out.append((text, value))
        if not self.core:
            return User(user.external_id, user.email, user.user_name, user.display_name,
                        user.given_name, user.family_name, user.active, user.ref, tuple(out))
        fields = {name: _clean(e.evaluate(get)) for name, e in self.core}
        return replace(user, attributes=tuple(out), **{
            k: v for k, v in fields.items() if v})  # type: ignore[arg-type]  # str fields


def _clean(value: str) -> str:
    """clean_text, without its per-character pass for the usual printable ASCII value."""
    if value.isascii() and value.isprintable():
        return value.strip()
    return clean_text(value)


def parse_user_mapping(table: Mapping[str, Any]) -> UserMapping:
    """``[target.mapping]`` parsed; ValueError ``<key>: <why>`` for the first bad entry."""
    rules: dict[str, Rule] = {}
    core: dict[str, Expr] = {}
    for key, value in table.items():
        try:
            path = parse_path(str(key))
            expr = parse_expr(value)
            if path.text == MANAGER and expr != Expr((MANAGER_SOURCE,)):
                raise ValueError(f'the manager comes from the source\'s "{MANAGER_SOURCE}" '
                                 "(the manager's entry), nothing else")
        except ValueError as exc:
            raise ValueError(f"{key}: {exc}") from exc
        if path.text in rules or path.text in core:
            raise ValueError(f"{key}: mapped twice")
        if path.text in CORE_FIELDS:
            core[CORE_FIELDS[path.text]] = expr
        else:
            rules[path.text] = Rule(path, expr)
    return UserMapping(tuple(rules[k] for k in sorted(rules)), tuple(sorted(core.items())))


# ------------------------------------------------------------------ groups

_GROUP_KEYS = {"displayName": "name", "externalId": "external_id"}
_GROUP_VARS = frozenset({"name", "id"})


@dataclass(frozen=True)
class GroupMapping:
    """``[target.group_mapping]``: displayName and externalId from the group's ``{name}``
    and ``{id}`` (the connector's group name and id)."""

    display_name: Expr | None = None
    external_id: Expr | None = None

    def __bool__(self) -> bool:
        return self.display_name is not None or self.external_id is not None

    def map_group(self, gid: str, name: str) -> tuple[str, str]:
        """One directory group's (key, displayName) on the target: its id and name, mapped."""
        env = {"name": name, "id": gid}.__getitem__
        key = clean_text(self.external_id.evaluate(env)) if self.external_id else gid
        if self.display_name is not None:
            name = clean_text(self.display_name.evaluate(env)) or name
        return key or gid, name

    def apply(self, snapshot: Snapshot) -> Snapshot:
        """Groups renamed and re-keyed; nested group references follow the new keys."""
        if not self:
            return snapshot
        new_key: dict[str, str] = {}
        new_name: dict[str, str] = {}
        seen: dict[str, str] = {}
        for gid, g in snapshot.groups.items():
            key, new_name[gid] = self.map_group(gid, g.name)
            if key in seen:
                raise ValueError(f"group_mapping.externalId: groups {seen[key]!r} and {gid!r} "
                                 f"both map to {key!r}")
            seen[key] = gid
            new_key[gid] = key
        groups: dict[str, Group] = {}
        for gid, g in snapshot.groups.items():
            groups[new_key[gid]] = Group(new_key[gid], new_name[gid], g.member_ids, frozenset(
                new_key.get(s, s) for s in g.subgroup_ids), g.ref)
        return replace(snapshot, groups={k: groups[k] for k in sorted(groups)})


def parse_group_mapping(table: Mapping[str, Any]) -> GroupMapping:
    """``[target.group_mapping]`` parsed; ValueError ``<key>: <why>``."""
    found: dict[str, Expr] = {}
    for key, value in table.items():
        if key not in _GROUP_KEYS:
            raise ValueError(f"{key}: a group maps only {', '.join(_GROUP_KEYS)}")
        try:
            expr = parse_expr(value)
            bad = sorted(expr.names - _GROUP_VARS)
            if bad:
                raise ValueError(f"{bad[0]!r}: a group has only {{name}} and {{id}}")
        except ValueError as exc:
            raise ValueError(f"{key}: {exc}") from exc
        found[_GROUP_KEYS[key]] = expr
    return GroupMapping(found.get("name"), found.get("external_id"))
