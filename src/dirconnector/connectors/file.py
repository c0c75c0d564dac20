"""The ``file`` connector: users and groups from a CSV, JSON or LDIF export.

The demo's embedded source, and a real feature for HR exports. Field names in the
file are mapped to record fields by ``[source.fields]``; group membership is a
list of user ids (CSV: separated by ``member_separator``).
"""

from __future__ import annotations

import base64
import csv
import json
import logging
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from ..checks import CheckReport
from ..errors import ConfigError, SourceError
from ..model import Group, Skipped, Snapshot, User
from ..settings import PluginSettings
from ..state_space import ConnectorState

log = logging.getLogger(__name__)

Rows = list[Mapping[str, Any]]
FALSE_WORDS = frozenset({"false", "0", "no", "n", "disabled", "inactive", "suspended", ""})


class FieldMap(BaseModel):
    """Which column or JSON key holds each field."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    external_id: str = "id"
    email: str = "email"
    user_name: str = "user_name"
    display_name: str = "display_name"
    given_name: str = "given_name"
    family_name: str = "family_name"
    active: str = "active"
    group_id: str = "id"
    group_name: str = "name"
    group_members: str = "members"
    group_subgroups: str = "groups"


class FileSettings(PluginSettings):
    """``[source] type = "file"``."""

    type: Literal["file"] = "file"
    users: Path
    """CSV, JSON or LDIF file of users (a JSON or LDIF file may hold groups too)."""
    groups: Path | None = None
    """CSV or JSON file of groups, when not in the users file."""
    format: Literal["auto", "csv", "json", "ldif"] = "auto"
    member_separator: str = ";"
    encoding: str = "utf-8"
    fields: FieldMap = Field(default_factory=FieldMap)

    @model_validator(mode="after")
    def _paths_exist(self) -> FileSettings:
        for name in ("users", "groups"):
            path = getattr(self, name)
            if path is not None and not path.is_file():
                raise ValueError(f"{name}: file {path} does not exist")
        return self


class FileConnector:
    """Reads an export file each run (files are small; no incremental state)."""

    settings_model: ClassVar[type[BaseModel]] = FileSettings

    def __init__(self, settings: FileSettings) -> None:
        self.settings = settings
        self.extra_attributes: tuple[str, ...] = ()
        """Columns or keys an attribute mapping reads too (``read_attributes``)."""

    def read_attributes(self, names: frozenset[str]) -> None:
        """Also read these columns / JSON keys / LDIF attributes (ReadsAttributes); a CSV
        header without one of them is a ConfigError. ``manager`` holds the manager's id
        (LDIF: the manager's DN)."""
        self.extra_attributes = tuple(sorted(names))

    def check(self) -> CheckReport:
        report = CheckReport()
        try:
            snap = self.fetch(ConnectorState())
        except SourceError as exc:
            report.add(f"read {self.settings.users}", False, str(exc))
            return report
        report.add(f"read {self.settings.users}", True)
        report.counts.update(users=len(snap.users), groups=len(snap.groups),
                             skipped=len(snap.skipped))
        report.samples.extend(f"{s.ref}: {s.reason}" for s in snap.skipped[:5])
        return report

    def fetch(self, state: ConnectorState) -> Snapshot:
        s = self.settings
        users_raw, groups_raw = self._read(s.users)
        if s.groups is not None:
            _, groups_raw = self._read(s.groups, groups_only=True)
        f = s.fields
        users: list[User] = []
        skipped: list[Skipped] = []
        extra = self.extra_attributes
        if extra and users_raw:
            self._check_columns(users_raw, extra)
        for n, row in enumerate(users_raw, 1):
            ext = _text(row.get(f.external_id))
            if not ext:
                skipped.append(Skipped("user", f"{s.users.name} record {n}", "no email",
                                       f"no {f.external_id!r} value"))
                continue
            users.append(User(
                external_id=ext, email=_text(row.get(f.email)),
                user_name=_text(row.get(f.user_name)),
                display_name=_text(row.get(f.display_name)),
                given_name=_text(row.get(f.given_name)),
                family_name=_text(row.get(f.family_name)),
                active=_flag(row.get(f.active, True)),
                attributes=_extra(row, extra) if extra else ()))
        groups = [Group(external_id=_text(g.get(f.group_id)), name=_text(g.get(f.group_name)),
                        member_ids=frozenset(self._ids(g.get(f.group_members))),
                        subgroup_ids=frozenset(self._ids(g.get(f.group_subgroups))))
                  for g in groups_raw if _text(g.get(f.group_id))]
        return Snapshot.build(users, groups, skipped, info={"source": str(s.users)})

    def _check_columns(self, rows: Rows, names: tuple[str, ...]) -> None:
        """A CSV's header is its schema: a mapped column it lacks is a config error. JSON
        and LDIF records may omit a key, so only a key no record has is one."""
        seen = {k.lower() for row in rows for k in row}
        missing = [n for n in names if n.lower() not in seen]
        if missing:
            raise ConfigError(f"target.mapping: {self.settings.users} has no column or key "
                              f"{', '.join(map(repr, missing))}")

    def _ids(self, value: Any) -> Iterator[str]:
        if value is None:
            return
        sep = self.settings.member_separator
        items = value if isinstance(value, list) else str(value).split(sep)
        for item in items:
            text = _text(item)
            if text:
                yield text

    def _read(self, path: Path, groups_only: bool = False) -> tuple[Rows, Rows]:
        fmt: str = self.settings.format
        if fmt == "auto":
            fmt = {".json": "json", ".ldif": "ldif", ".csv": "csv"}.get(path.suffix.lower(), "csv")
        try:
            text = path.read_text(encoding=self.settings.encoding)
        except (OSError, UnicodeDecodeError) as exc:
            raise SourceError(f"file source: cannot read {path}: {exc}") from exc
        if fmt == "json":
            try:
                data = json.loads(text)
            except json.JSONDecodeError as exc:
                raise SourceError(f"file source: {path} is not valid JSON: {exc}") from exc
            if isinstance(data, list):
                return ([], data) if groups_only else (data, [])
            if not isinstance(data, dict):
                raise SourceError(f"file source: {path}: expected an object with users/groups")
            return list(data.get("users", [])), list(data.get("groups", []))
        if fmt == "ldif":
            return _from_ldif(text, path)
        rows: Rows = list(csv.DictReader(text.splitlines()))
        return ([], rows) if groups_only else (rows, [])


def _extra(row: Mapping[str, Any], names: tuple[str, ...]) -> tuple[tuple[str, str], ...]:
    """The non-empty values of ``names`` in a record (names case-insensitively); the first
    of a list."""
    lower = {k.lower(): v for k, v in row.items()}
    out = []
    for name in names:
        value = row.get(name, lower.get(name.lower()))
        if isinstance(value, list):
            value = value[0] if value else None
        text = _text(value)
        if text:
            out.append((name, text))
    return tuple(out)


def _text(value: Any) -> str:
    return "" if value is None else str(value).strip()


def _flag(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    return str(value).strip().lower() not in FALSE_WORDS


def _from_ldif(text: str, path: Path) -> tuple[Rows, Rows]:
    """Users (person classes) and groups (groupOfNames & co.) from an LDIF export."""
    users: Rows = []
    groups: Rows = []
    entries = list(_ldif_entries(text, path))
    dn_to_id: dict[str, str] = {}
    for attrs in entries:
        dn = attrs["dn"][0]
        dn_to_id[dn.lower()] = (attrs.get("entryuuid") or attrs.get("objectguid") or [dn])[0]
    group_classes = {"groupofnames", "groupofuniquenames", "group"}
    group_ids = {dn_to_id[a["dn"][0].lower()] for a in entries
                 if {c.lower() for c in a.get("objectclass", [])} & group_classes}
    for attrs in entries:
        classes = {c.lower() for c in attrs.get("objectclass", [])}
        ext = dn_to_id[attrs["dn"][0].lower()]
        if classes & group_classes:
            members = [dn_to_id.get(m.lower(), m) for m in
                       attrs.get("member", []) + attrs.get("uniquemember", [])]
            groups.append({"id": ext, "name": (attrs.get("cn") or [ext])[0],
                           "members": [m for m in members if m not in group_ids],
                           "groups": [m for m in members if m in group_ids]})
        elif classes & {"person", "inetorgperson", "user"}:
            locked = bool(attrs.get("pwdaccountlockedtime"))
            # Every attribute, for a mapping (the first value); manager as the manager's id.
            extra: dict[str, Any] = {k: v[0] for k, v in attrs.items() if v and k != "dn"}
            if "manager" in extra:
                extra["manager"] = dn_to_id.get(str(extra["manager"]).lower(), "")
            users.append({**extra, "id": ext, "email": (attrs.get("mail") or [""])[0],
                          "user_name": (attrs.get("uid") or [""])[0],
                          "display_name": (attrs.get("displayname") or attrs.get("cn") or [""])[0],
                          "given_name": (attrs.get("givenname") or [""])[0],
                          "family_name": (attrs.get("sn") or [""])[0], "active": not locked})
    return users, groups


def _ldif_entries(text: str, path: Path) -> Iterator[dict[str, list[str]]]:
    lines: list[str] = []
    for raw in text.splitlines():
        if raw.startswith(" ") and lines:
            lines[-1] += raw[1:]
        else:
            lines.append(raw)
    entry: dict[str, list[str]] = {}
    for n, line in enumerate([*lines, ""], 1):
        if not line.strip():
            if entry:
                if "dn" not in entry:
                    raise SourceError(f"file source: {path}: LDIF entry before line {n} has no dn")
                yield entry
            entry = {}
            continue
        if line.startswith("#"):
            continue
        name, sep, value = line.partition(":")
        if not sep:
            raise SourceError(f"file source: {path}: LDIF line {n} has no ':'")
        if value.startswith(":"):
            value = base64.b64decode(value[1:].strip()).decode("utf-8", "replace")
        entry.setdefault(name.strip().lower(), []).append(value.strip())
