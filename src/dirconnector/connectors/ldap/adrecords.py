"""The records of the Active Directory change stream (dirsync.py): where a stream
stands, what a detection round found, and the index of what is in scope. Pure: no I/O."""

from __future__ import annotations

import base64
import binascii
import calendar
import re
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field

from .. import StreamGap
from .map import guid_text
from .syntax import DNError, normalize_dn
from .wire import lowered

GUIDS_PER_SEARCH = 200
"""objectGUIDs ORed into one re-read filter (AD's filters have no practical limit here)."""
_EXTENDED_DN = re.compile(r"^(?:<[^>]*>;)+")


@dataclass(frozen=True, slots=True)
class Position:
    """Where an AD stream stands: the DC, its USN, and (DirSync) the DC's cookie."""

    mode: str
    dc: str
    usn: int
    cookie: bytes = b""

    def text(self) -> str:
        return ":".join(
            [
                self.mode,
                base64.urlsafe_b64encode(self.dc.encode()).decode(),
                str(self.usn),
                base64.urlsafe_b64encode(self.cookie).decode(),
            ]
        )

    @classmethod
    def parse(cls, text: str) -> Position:
        try:
            mode, dc, usn, cookie = text.split(":")
            if mode not in ("dirsync", "usn"):
                raise ValueError(mode)
            return cls(
                mode,
                base64.urlsafe_b64decode(dc).decode(),
                int(usn),
                base64.urlsafe_b64decode(cookie),
            )
        except (ValueError, binascii.Error) as exc:
            raise StreamGap(
                f"ldap source: {text[:40]!r} is not an Active Directory stream position"
            ) from exc


@dataclass(slots=True)
class Found:
    """An object a detection round says changed."""

    guid: str
    dn: str
    deleted: bool
    when: float | None
    parent: str = ""
    """A tombstone's lastKnownParent: where it lived before it was deleted."""
    classes: frozenset[str] = frozenset()


@dataclass(slots=True)
class Index:
    """Every user and group in scope, as the last full or incremental read left them."""

    user_by_dn: dict[str, str] = field(default_factory=dict)
    user_dn: dict[str, str] = field(default_factory=dict)
    group_by_dn: dict[str, str] = field(default_factory=dict)
    group_dn: dict[str, str] = field(default_factory=dict)
    emails: dict[str, str] = field(default_factory=dict)
    names: dict[str, str] = field(default_factory=dict)
    members: dict[str, frozenset[str]] = field(default_factory=dict)
    """Group id -> the ids of its direct members and subgroups."""

    def put_user(self, ext: str, dn: str, email: str = "", name: str = "") -> None:
        old = self.user_dn.get(ext)
        if old is not None and old != dn:
            self.user_by_dn.pop(old, None)
        self.user_by_dn[dn], self.user_dn[ext] = ext, dn
        if email:
            self.emails[ext], self.names[ext] = email, name

    def put_group(self, ext: str, dn: str) -> None:
        old = self.group_dn.get(ext)
        if old is not None and old != dn:
            self.group_by_dn.pop(old, None)
        self.group_by_dn[dn], self.group_dn[ext] = ext, dn

    def drop_user(self, ext: str) -> None:
        dn = self.user_dn.pop(ext, None)
        if dn is not None:
            self.user_by_dn.pop(dn, None)

    def drop_group(self, ext: str) -> None:
        dn = self.group_dn.pop(ext, None)
        if dn is not None:
            self.group_by_dn.pop(dn, None)


def under(dn: str, base: str, scope: str) -> bool:
    """Whether ``dn`` lies in the search scope of ``base`` (DirSync answers with DNs in
    extended form, ``<GUID=..>;DN``: the prefix is dropped)."""
    dn = _EXTENDED_DN.sub("", dn)
    try:
        d, b = normalize_dn(dn), normalize_dn(base)
    except DNError:
        return False
    return d == b or (scope == "sub" and d.endswith("," + b))


def parse_found(entries: Iterable[tuple[str, dict[str, list[bytes]]]]) -> list[Found]:
    """The objects a detection round (uSNChanged search or DirSync) returned."""
    out: list[Found] = []
    for dn, attrs in entries:
        a = lowered(attrs)
        raw = a.get("objectguid")
        if not raw:
            continue
        out.append(
            Found(
                guid_text(raw[0]),
                dn,
                text_of(a.get("isdeleted")).upper() == "TRUE",
                generalized(text_of(a.get("whenchanged"))),
                text_of(a.get("lastknownparent")),
                frozenset(v.decode("utf-8", "replace").lower() for v in a.get("objectclass", ())),
            )
        )
    return out


def guid_filters(found: Iterable[str]) -> list[str]:
    """``(|(objectGUID=\\xx...)...)`` filters of at most GUIDS_PER_SEARCH GUIDs each."""
    guids = sorted(found)
    out = []
    for i in range(0, len(guids), GUIDS_PER_SEARCH):
        terms = "".join(f"(objectGUID={escape_guid(g)})" for g in guids[i : i + GUIDS_PER_SEARCH])
        out.append(f"(|{terms})")
    return out


def escape_guid(guid: str) -> str:
    """A GUID as the escaped octet string an objectGUID filter compares (RFC 4515 3)."""
    return "".join(f"\\{b:02x}" for b in uuid.UUID(guid).bytes_le)


def generalized(text: str) -> float | None:
    """AD's whenChanged (``20261205071500.0Z``) as epoch seconds."""
    try:
        return float(calendar.timegm(time.strptime(text[:14], "%Y%m%d%H%M%S")))
    except ValueError:
        return None


def text_of(values: list[bytes] | None) -> str:
    return values[0].decode("utf-8", "replace").strip() if values else ""
