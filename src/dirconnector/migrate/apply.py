"""`migrate plan / apply / rollback`: the I/O around the pure plan in ``migrate``.

Apply writes the id map (CSV) *before* it changes anything, then sets each
account's and group's externalId to what the IdP will send, checks the result
against a fresh read, and freezes the profile (state meta ``frozen``) so ``sync``
and the daemon refuse to fight the IdP. Rollback puts the map's old values back
exactly (an empty old value removes the attribute) and unfreezes.

Every write goes through the target's WritesExternalId capability (targets/__init__),
the same path the target's own relinks take; ``migrate`` knows no target class. What
the built-in targets send:
- ``scim``: ``PATCH replace externalId`` (RFC 7644 3.5.2.3); clearing is ``remove``
  (3.5.2.2), except on Bitwarden, whose PATCH handles only ``replace`` and stores a
  blank value as null (reference 3.2/3.3), and which honours PATCH externalId only
  since PM-19232 (users) / PM-19551 (groups). A server without PATCH gets the resource
  back by PUT without the attribute (RFC 7644 3.5.1). With ``[target.public_api]`` on
  Bitwarden, the Public API's PUT below instead (every server version takes it).
- ``bitwarden``: Public API ``PUT /public/members/{id}`` and ``PUT /public/groups/{id}``
  (SRV MembersController.Put / GroupsController.Put). PUT resets what it is not
  given, so the member's type, custom permissions and collections, and the group's
  name and collections, are read first and sent back unchanged; ``groups`` is left
  out so memberships stay (UpdateOrganizationUserCommand: null groups = unchanged);
  a cleared externalId is sent as null. The import cannot do this: it never relinks a
  member that has an external id.
"""

from __future__ import annotations

import csv
import datetime as dt
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import ConfigError, ProfileFrozen, SafetyLimit, TargetError
from ..model import Snapshot
from ..settings import Profile
from ..state import StateStore
from ..targets import WritesExternalId
from .plan import MigrationPlan, Scope, migrate_plan, migrate_settings

log = logging.getLogger(__name__)

MAP_HEADER = ("kind", "id", "email", "name", "old_external_id", "new_external_id")


@dataclass(frozen=True, slots=True)
class MapRow:
    """One line of the id map: a member or group and its externalId before and after."""

    kind: str
    """"member" or "group"."""
    ref: str
    email: str
    name: str
    old: str
    """The externalId before apply ("" when it had none)."""
    new: str


def write_map(path: Path, rows: Sequence[MapRow]) -> None:
    """Create the map (never overwrite one), flushed to disk before any change is sent."""
    try:
        with path.open("x", encoding="utf-8", newline="") as fh:
            os.chmod(path, 0o600)  # emails and ids: not for every local user
            out = csv.writer(fh, quoting=csv.QUOTE_ALL)
            out.writerow(MAP_HEADER)
            for r in rows:
                out.writerow((r.kind, r.ref, r.email, r.name, r.old, r.new))
            fh.flush()
            os.fsync(fh.fileno())
    except FileExistsError as exc:
        raise ConfigError(f"--map {path}: already exists; not overwriting an id map",
                          hint="pass another --map FILE") from exc
    except OSError as exc:
        raise ConfigError(f"--map {path}: cannot write it: {exc.strerror}") from exc


def read_map(path: Path) -> list[MapRow]:
    try:
        with path.open(encoding="utf-8", newline="") as fh:
            rows = list(csv.reader(fh))
    except OSError as exc:
        raise ConfigError(f"--map {path}: cannot read it: {exc.strerror}") from exc
    if not rows or tuple(rows[0]) != MAP_HEADER:
        raise ConfigError(f"--map {path}: not an id map written by `migrate apply` (header "
                          f"must be {','.join(MAP_HEADER)})")
    out = []
    for n, row in enumerate(rows[1:], 2):
        if len(row) != len(MAP_HEADER) or row[0] not in ("member", "group") or not row[1]:
            raise ConfigError(f"--map {path}: line {n} is not kind,id,email,name,old,new")
        out.append(MapRow(*row))
    return out


# ---------------------------------------------------------------------------- writers


def writer_for(target: object) -> WritesExternalId:
    """The target itself, if it can write external ids; else a ConfigError saying what is
    missing."""
    if isinstance(target, WritesExternalId):
        return target
    raise ConfigError(
        f"target.type: `migrate` changes the externalId of existing accounts and groups, and "
        f"the {type(target).__name__} target cannot: it does not implement the "
        f"WritesExternalId capability (set_user_external_id and set_group_external_id, "
        f"dirconnector.targets)", hint="use the scim or bitwarden target for the hand-off")


# ---------------------------------------------------------------------------- commands


@dataclass
class MigrateOutcome:
    """What apply or rollback did: rows done, rows that failed and why."""

    map_path: Path
    done: list[MapRow] = field(default_factory=list)
    unchanged: list[MapRow] = field(default_factory=list)
    failed: list[tuple[MapRow, str]] = field(default_factory=list)
    plan: MigrationPlan | None = None
    frozen: bool = False

    @property
    def exit_code(self) -> int:
        return 1 if self.failed else 0


class Migration:
    """One profile's hand-off: the reads, the plan, apply and rollback."""

    def __init__(self, profile: Profile, store: StateStore, *, connector: Any = None,
                 target: Any = None) -> None:
        from ..sync import build_connector, build_target

        self.profile = profile
        self.store = store
        self.settings = migrate_settings(profile.settings.migrate)
        self.connector = connector if connector is not None else build_connector(profile)
        self.target = target if target is not None else build_target(profile)

    @property
    def name(self) -> str:
        return self.profile.name

    @property
    def schedule(self) -> str:
        """The profile's own [schedule] in words ("" when the daemon does not run it)."""
        s = self.profile.settings.schedule
        return f"every {s.interval}" if s.interval else f"on cron {s.cron!r}" if s.cron else ""

    def plan(self, idp: str | None, scope_groups: Sequence[str] = ()) -> MigrationPlan:
        """Read the directory (full, caches not advanced) and the server; plan the hand-off."""
        idp = idp or self.settings.idp
        if not idp:
            raise ConfigError("migrate: say which identity provider takes over",
                              hint="pass --to-idp entra|okta|onelogin|jumpcloud|ping|custom, "
                                   "or set idp in [migrate]")
        scope = Scope(tuple(scope_groups) or self.settings.scope_groups)
        # A migration read must not move delta tokens on: it is not a sync.
        desired: Snapshot = self.connector.fetch(
            self.store.connector_state(self.name, force_full=True))
        if not desired.complete:
            raise TargetError("the directory read was incomplete; a hand-off plan needs all "
                              "of it", hint="run `dirconnector check` and try again")
        from ..sync import mappings_of

        current: Snapshot = self.target.snapshot()
        mapping, group_mapping = mappings_of(self.profile)
        return migrate_plan(desired, current, self.settings.preset(idp), scope, mapping,
                            group_mapping)

    def default_map(self) -> Path:
        base = Path(self.settings.map_dir) if self.settings.map_dir else \
            self.profile.settings.state.path.parent
        stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
        return base / f"migrate-{_safe(self.name)}-{stamp}.csv"

    def apply(self, idp: str | None, scope_groups: Sequence[str] = (), *,
              map_path: Path | None = None, force: bool = False) -> MigrateOutcome:
        writer_for(self.target)  # a target that cannot write external ids: say so first
        frozen = self.store.frozen(self.name)
        if frozen:
            raise ProfileFrozen(f"profile {self.name!r} was already handed to "
                                f"{frozen.get('idp', '?')} on {frozen.get('at', '?')} "
                                f"(map {frozen.get('map', '?')})",
                                hint="dirconnector migrate rollback --map FILE first")
        with self.store.lock(self.name, self.profile.settings.state.lock_timeout):
            plan = self.plan(idp, scope_groups)
            conflicts = plan.counts()["members.conflict"] + plan.counts()["groups.duplicate"]
            if conflicts and not force:
                raise SafetyLimit(
                    f"{conflicts} member conflict(s) or duplicated group(s): the IdP would "
                    f"answer 409 or create second accounts for them. Nothing was changed",
                    hint="see `dirconnector migrate plan`; fix them, or rerun with --force "
                         "to align the others and leave these as they are")
            rows = [MapRow("member", m.ref, m.email, "", m.current_external_id,
                           m.idp_external_id) for m in plan.member_changes]
            rows += [MapRow("group", g.ref, "", g.name, g.current_external_id,
                            g.idp_external_id) for g in plan.group_changes]
            path = (map_path or self.default_map()).resolve()
            path.parent.mkdir(parents=True, exist_ok=True)
            write_map(path, rows)
            run_id = self.store.start_run(self.name, "migrate apply")
            out = MigrateOutcome(path, plan=plan)
            try:
                self._write(rows, "new", out)
                if out.done or not out.failed:
                    self.store.freeze(self.name, {
                        "at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
                        "idp": plan.idp, "map": str(path),
                        "scope_groups": list(plan.scope.groups),
                        "members": sum(r.kind == "member" for r in out.done),
                        "groups": sum(r.kind == "group" for r in out.done),
                        "failed": len(out.failed)})
                    out.frozen = True
            finally:
                self.store.finish_run(run_id, "partial" if out.failed else "ok",
                                      {"changed": len(out.done), "failed": len(out.failed)},
                                      "; ".join(r for _, r in out.failed[:5]))
            return out

    def rollback(self, map_path: Path, *, force: bool = False) -> MigrateOutcome:
        writer_for(self.target)
        path = map_path.resolve()
        rows = read_map(path)
        frozen = self.store.frozen(self.name) or {}
        if frozen.get("map") and Path(frozen["map"]) != path and not force:
            raise ConfigError(f"--map {path}: profile {self.name!r} was frozen with "
                              f"{frozen['map']}", hint="pass that map, or --force")
        with self.store.lock(self.name, self.profile.settings.state.lock_timeout):
            run_id = self.store.start_run(self.name, "migrate rollback")
            out = MigrateOutcome(path)
            try:
                current = self.target.snapshot()
                todo: list[MapRow] = []
                for row in rows:
                    now = _external_id(current, row)
                    if now is None:
                        out.failed.append((row, f"{row.email or row.name}: {row.ref} is no "
                                                f"longer on the server"))
                    elif now == row.old:
                        out.unchanged.append(row)
                    elif now == row.new or force:
                        todo.append(row)
                    else:
                        out.failed.append((row, f"{row.email or row.name}: externalId is now "
                                                f"{now!r}, neither the old {row.old!r} nor "
                                                f"the new {row.new!r} (changed by the IdP "
                                                f"since?); --force restores it anyway"))
                self._write(todo, "old", out)
                if not out.failed:
                    self.store.freeze(self.name, None)
                out.frozen = bool(self.store.frozen(self.name))
            finally:
                self.store.finish_run(run_id, "partial" if out.failed else "ok",
                                      {"restored": len(out.done), "failed": len(out.failed)},
                                      "; ".join(r for _, r in out.failed[:5]))
            return out

    def _write(self, rows: Sequence[MapRow], to: str, out: MigrateOutcome) -> None:
        """Set each row's ``to`` value, then check every row against a fresh read."""
        if not rows:
            return
        writer = writer_for(self.target)
        sent: list[MapRow] = []
        for row in rows:
            value = row.new if to == "new" else row.old
            try:
                if row.kind == "member":
                    writer.set_user_external_id(row.ref, value)
                else:
                    writer.set_group_external_id(row.ref, value)
            except TargetError as exc:
                out.failed.append((row, f"{row.email or row.name}: {exc}"))
                continue
            sent.append(row)
        after = self.target.snapshot()
        for row in sent:
            want = row.new if to == "new" else row.old
            now = _external_id(after, row)
            if now == want:
                out.done.append(row)
            else:
                out.failed.append((row, f"{row.email or row.name}: the server accepted the "
                                        f"change but holds {now!r}, not {want!r} (a Bitwarden "
                                        f"server before PM-19232/PM-19551 ignores PATCH "
                                        f"externalId)"))


def _external_id(snap: Snapshot, row: MapRow) -> str | None:
    rec = snap.users.get(row.ref) if row.kind == "member" else snap.groups.get(row.ref)
    return None if rec is None else rec.external_id


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)


__all__ = [
    "MAP_HEADER",
    "MapRow",
    "MigrateOutcome",
    "Migration",
    "read_map",
    "write_map",
    "writer_for",
]
