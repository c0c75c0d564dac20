"""Groups re-keyed by a changed ``[target.group_mapping]`` externalId, found by their old key.

A profile that changes how it keys groups (adds ``externalId = "ad-{id}"``, or changes
the template) meets its own groups on the server under keys no directory group has now.
The diff adopts such a group by its displayName only, so a mapping that renames as well
would create every group a second time and leave the old ones, with their members and
whatever access the application grants them. The runner knows the key each directory
group had under the mapping of the last good run and under none (the directory's id
itself); a server group holding one of those keys, while no server group holds the new
one, is that group: the plan relinks it (``RelinkGroup``: its externalId rewritten in
place) and the diff compares it under the new key (a rename, members).

Pure: values in, values out.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace

from .mapping import GroupMapping
from .model import Group, Snapshot
from .plan import RelinkGroup


def previous_keys(source: Snapshot, now: GroupMapping,
                  before: Sequence[GroupMapping]) -> dict[str, tuple[str, ...]]:
    """New key -> the keys the same directory group had under the ``before`` mappings
    (an empty mapping: the directory's id), only where they differ. ``source``: the
    directory read before any mapping."""
    out: dict[str, tuple[str, ...]] = {}
    for gid, g in source.groups.items():
        key = now.map_group(gid, g.name)[0] if now else gid
        old = dict.fromkeys(m.map_group(gid, g.name)[0] if m else gid for m in before)
        old.pop(key, None)
        if old:
            out[key] = tuple(old)
    return out


def relink(desired: Snapshot, current: Snapshot, previous: Mapping[str, tuple[str, ...]]
           ) -> tuple[list[RelinkGroup], Snapshot]:
    """The relinks of server groups found by an old key, and ``current`` with those groups
    under their new keys (the same object when there are none).

    Only unambiguous finds: the new key held by no server group, exactly one server group
    holding an old key, and that old key no directory group's key now."""
    if not previous:
        return [], current
    by_ext: dict[str, list[Group]] = {}
    for g in current.groups.values():
        if g.external_id:
            by_ext.setdefault(g.external_id, []).append(g)
    claims: dict[str, list[tuple[str, Group]]] = {}
    for key, old in previous.items():
        if key not in desired.groups or key in by_ext:
            continue
        found = [g for k in old if k not in desired.groups for g in by_ext.get(k, ())]
        if len(found) == 1:       # none, or ambiguous: left to the diff (by name, or new)
            claims.setdefault(found[0].key, []).append((key, found[0]))
    relinks: list[RelinkGroup] = []
    moves: dict[str, Group] = {}
    for ref, claim in claims.items():
        if len(claim) == 1:       # one server group claimed by two directory groups: neither
            key, grp = claim[0]
            relinks.append(RelinkGroup(ref, key, desired.groups[key].name, grp.external_id))
            moves[ref] = replace(grp, external_id=key)
    if not moves:
        return [], current
    groups = {k: moves.get(k, g) for k, g in current.groups.items()}
    return relinks, replace(current, groups=groups)
