"""Mapped attributes on the SCIM wire: read from a resource, written on create and by PATCH.

Pure data in, pure data out. Paths come from ``mapping.Path`` (RFC 7644 3.10 attribute
notation); the manager is the enterprise extension's ``manager.value``, the manager's
own SCIM id (RFC 7643 4.3), which the writer resolves from the manager's external id.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

from ...mapping import ENTERPRISE, MANAGER, USER_SCHEMA, Path, UserMapping
from ...model import clean_text


def list_attributes(mapping: UserMapping) -> list[str]:
    """The extra names for a list request's ``attributes`` (RFC 7644 3.4.2.5)."""
    out: list[str] = []
    for rule in mapping.rules:
        p = rule.path
        name = p.attr if p.schema == USER_SCHEMA else f"{p.schema}:{p.attr}"
        if p.schema == USER_SCHEMA and p.attr == "name":
            continue                     # already asked for by the core attributes
        if name not in out:
            out.append(name)
    return out


def _container(resource: Mapping[str, Any], p: Path) -> Mapping[str, Any] | None:
    if p.schema == USER_SCHEMA:
        return resource
    ext = resource.get(p.schema)
    return ext if isinstance(ext, Mapping) else None


def _entry(values: Any, kind: str, sub: str = "") -> Mapping[str, Any] | None:
    """The entry of a multi-valued attribute whose type is ``kind``: the primary one first,
    then one that holds ``sub`` (a server may keep a bare ``{"type": ...}`` entry)."""
    found = [v for v in values or () if isinstance(v, Mapping)
             and str(v.get("type") or "").lower() == kind.lower()]
    found.sort(key=lambda v: (v.get("primary") is not True, not (sub and v.get(sub))))
    return found[0] if found else None


def read_value(resource: Mapping[str, Any], p: Path) -> str:
    """The value at ``p`` in a resource, as text ("" when absent); the manager's id."""
    holder = _container(resource, p)
    if holder is None:
        return ""
    value = holder.get(p.attr)
    if p.type:
        entry = _entry(value, p.type, p.sub)
        value = entry.get(p.sub) if entry is not None else None
    elif p.sub:
        value = value.get(p.sub) if isinstance(value, Mapping) else None
    elif p.schema == ENTERPRISE and p.attr == "manager":
        value = value.get("value") if isinstance(value, Mapping) else value
    if value is None or isinstance(value, Mapping | list):
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return clean_text(str(value))


def read_attributes(resource: Mapping[str, Any], mapping: UserMapping
                    ) -> tuple[tuple[str, str], ...]:
    """Every mapped path's non-empty value, sorted by path (the manager as its SCIM id)."""
    out = []
    for rule in mapping.rules:
        value = read_value(resource, rule.path)
        if value:
            out.append((rule.path.text, value))
    return tuple(out)


def add_to_body(body: dict[str, Any], attrs: Iterable[tuple[str, str]],
                rules: Mapping[str, Path], manager_ref: Callable[[str], str]) -> bool:
    """Put the mapped values (``rules``: the mapping's paths by text) in a POST/PUT body;
    False if the manager had to be left out (its account is not known yet: the writer
    sets it once it is)."""
    complete = True
    for text, value in attrs:
        p = rules.get(text)
        if p is None:
            continue
        if text == MANAGER:
            ref = manager_ref(value)
            if not ref:
                complete = False
                continue
            value = ref
        if p.schema == USER_SCHEMA and not p.type and not p.sub:
            body[p.attr] = value         # a simple core attribute: the common case
        else:
            set_value(body, p, {"value": value} if text == MANAGER else value)
    return complete


def set_value(body: dict[str, Any], p: Path, value: Any) -> None:
    """Write one value into a resource body at ``p`` (None removes it)."""
    if p.schema == USER_SCHEMA:
        holder = body
    else:
        holder = body.setdefault(p.schema, {})
        schemas = body.setdefault("schemas", [USER_SCHEMA])
        if p.schema not in schemas and value is not None:
            schemas.append(p.schema)
    if p.type:
        entries = [dict(e) for e in holder.get(p.attr) or () if isinstance(e, Mapping)]
        entry = next((e for e in entries if str(e.get("type") or "").lower() == p.type.lower()),
                     None)
        if value is None:
            if entry is not None:
                entry.pop(p.sub, None)
                if p.sub == "value" or not set(entry) - {"type", "primary"}:
                    entries.remove(entry)
        elif entry is None:
            entries.append({"type": p.type, p.sub: value})
        else:
            entry[p.sub] = value
        if entries:
            holder[p.attr] = entries
        else:
            holder.pop(p.attr, None)
    elif p.sub:
        sub = dict(holder.get(p.attr) or {})
        if value is None:
            sub.pop(p.sub, None)
        else:
            sub[p.sub] = value
        if sub:
            holder[p.attr] = sub
        else:
            holder.pop(p.attr, None)
    elif value is None:
        holder.pop(p.attr, None)
    else:
        holder[p.attr] = value
    if p.schema != USER_SCHEMA and not body.get(p.schema):
        body.pop(p.schema, None)


def patch_path(p: Path) -> str:
    """The PATCH path of ``p`` (RFC 7644 3.5.2: extension attributes with their URN)."""
    return p.text if p.schema == USER_SCHEMA else f"{p.schema}:{p.attr}" + (
        f".{p.sub}" if p.sub else "")


def update_ops(changed: Iterable[tuple[Path, str, str]], manager_ref: Callable[[str], str],
               held: Mapping[str, str] | None = None, wanted: Mapping[str, str] | None = None,
               ) -> tuple[list[dict[str, Any]], bool]:
    """PATCH operations for (path, old value, new value) triples, one per changed path.

    RFC 7644 3.5.2: ``replace`` of a simple or complex sub-attribute path; a value for a
    typed entry the account lacks is ``add`` of that entry (a replace with a filter that
    matches nothing is a 400 noTarget, 3.5.2.3), and ``replace`` of the filtered path when
    the entry is there (another mapped sub-attribute of it has a value: ``held``, every
    mapped path's value on the server); a cleared value is ``remove``, of the whole typed
    entry once none of its mapped sub-attributes keeps a value (``wanted``), so no bare
    ``{"type": ...}`` entry is left. Returns False as well when a manager's account is
    not known yet (the writer sets it later).
    """
    held = held or {}
    wanted = wanted or {}

    def siblings(p: Path, values: Mapping[str, str]) -> bool:
        return any(v for k, v in values.items() if k != p.text and k.startswith(
            f'{p.attr}[type eq "{p.type}"].'))

    ops: list[dict[str, Any]] = []
    complete = True
    for p, old, new in changed:
        if p.text == MANAGER and new:
            ref = manager_ref(new)
            if not ref:
                complete = False
                continue
            ops.append({"op": "replace", "path": patch_path(p), "value": {"value": ref}})
        elif not new:
            whole = p.type and (p.sub == "value" or not siblings(p, wanted))
            ops.append({"op": "remove",
                        "path": f'{p.attr}[type eq "{p.type}"]' if whole else patch_path(p)})
        elif p.type and not old and not siblings(p, held):
            ops.append({"op": "add", "path": p.attr, "value": [{"type": p.type, p.sub: new}]})
        else:
            ops.append({"op": "replace", "path": patch_path(p), "value": new})
    return ops, complete


def schema_problems(mapping: UserMapping, schemas: Iterable[Mapping[str, Any]],
                    resource_types: Iterable[Mapping[str, Any]]) -> list[str]:
    """What the server's /Schemas and /ResourceTypes (RFC 7644 4) say against the mapping:
    an attribute it does not declare, an extension its User type does not carry, or an
    attribute it marks ``mutability: readOnly``; one line each, naming the mapping key."""
    by_id = {str(s.get("id") or "").lower(): s for s in schemas if isinstance(s, Mapping)}
    user_type = next((r for r in resource_types if isinstance(r, Mapping)
                      and str(r.get("name") or r.get("id") or "").lower() == "user"), None)
    declared = {USER_SCHEMA.lower()}
    if user_type is not None:
        declared = {str(user_type.get("schema") or USER_SCHEMA).lower()}
        declared |= {str(e.get("schema") or "").lower()
                     for e in user_type.get("schemaExtensions") or () if isinstance(e, Mapping)}
    problems: list[str] = []
    for rule in mapping.rules:
        p = rule.path
        where = f"target.mapping: {p.text}"
        if p.schema.lower() not in declared:
            problems.append(f"{where}: the server's User resource type has no schema "
                            f"{p.schema}")
            continue
        schema = by_id.get(p.schema.lower())
        if schema is None:
            problems.append(f"{where}: the server does not publish schema {p.schema}")
            continue
        attr = _attribute(schema.get("attributes"), p.attr)
        if attr is None:
            problems.append(f"{where}: the server's schema {p.schema} has no attribute "
                            f"{p.attr}")
            continue
        sub_name = p.sub or ("value" if p.text == MANAGER else "")
        if sub_name and attr.get("subAttributes"):
            sub = _attribute(attr.get("subAttributes"), sub_name)
            if sub is None:
                problems.append(f"{where}: the server's {p.attr} has no sub-attribute "
                                f"{sub_name}")
                continue
            if str(sub.get("mutability") or "").lower() == "readonly":
                attr = sub
        if str(attr.get("mutability") or "").lower() == "readonly":
            problems.append(f"{where}: the server marks it read-only (mutability readOnly)")
    return problems


def _attribute(attributes: Any, name: str) -> Mapping[str, Any] | None:
    for a in attributes or ():
        if isinstance(a, Mapping) and str(a.get("name") or "").lower() == name.lower():
            return a
    return None
