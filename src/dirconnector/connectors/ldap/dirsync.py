"""Active Directory's change stream: DirSync where granted, else uSNChanged polling.

Both modes only find *which* objects changed (objectGUID, DN, isDeleted, whenChanged);
the stream then re-reads those objects with the connector's own searches, narrowed to
their GUIDs, and maps them with ``UserMapper`` / ``GroupResolver`` exactly as ``fetch``
does, so a batch holds the records a full read would have given.

- ``dirsync``: the DirSync control (MS-ADTS 3.1.1.3.4.1.3) without the object-security
  flag, which needs the "Replicating Directory Changes" right on the domain. It also
  sees deletions without any right on CN=Deleted Objects.
- ``usn``: ``uSNChanged`` between the stored USN and the DC's ``highestCommittedUSN``
  (MS-ADTS 3.1.1.1.9), with the show-deleted control for tombstones. Works for any
  account; deletions are seen when the account may read CN=Deleted Objects.

Positions are only valid on the DC that gave them (``dsServiceName``); a USN lower than
the stored one (a DC restored from backup), another DC, or a cookie the DC refuses
raise StreamGap. Member DNs resolve against an index of every user and group in
scope, read once when the stream starts and kept current from the batches.
"""

from __future__ import annotations

import logging
import re
import time
from dataclasses import replace
from typing import TYPE_CHECKING

from ...errors import SourceError
from ...model import Skipped, User
from .. import Changes, StreamGap, StreamMode
from .adrecords import (
    GUIDS_PER_SEARCH,
    Found,
    Index,
    Position,
    guid_filters,
    parse_found,
    text_of,
    under,
)
from .map import GroupResolver, RawGroup, Resolved, UserMapper
from .syntax import escape_filter_value
from .wire import SHOW_DELETED_OID, Control, Entry, Wire, connect, lowered

if TYPE_CHECKING:
    from .connector import LdapConnector
    from .wire_ldap3 import Ldap3Wire

log = logging.getLogger(__name__)

_WATCHED_CLASSES = frozenset({"user", "group"})
_EVERY_CLASS = "(objectClass=*)"
_FILTER_ATTR = re.compile(r"\(\s*([A-Za-z][\w-]*)(?:;[\w-]+)*\s*[~<>]?=")
DSE_ATTRS = ("highestCommittedUSN", "dsServiceName")


class AdStream:
    """The change stream of one AD domain controller (see module docstring)."""

    def __init__(self, connector: LdapConnector) -> None:
        self.connector = connector
        self.settings = connector.settings
        self.poll_interval = self.settings.poll_interval.total_seconds()
        self._wire: Wire | None = None
        self._dirsync_wire: Ldap3Wire | None = None
        self._resolved: Resolved | None = None
        self._mode: StreamMode | None = None
        self._index: Index | None = None
        self._last_poll = float("-inf")
        self.polls = 0
        """Root DSE polls so far (the benchmark's requests-per-quiet-poll figure)."""

    # ------------------------------------------------------------ the protocol

    def mode(self) -> StreamMode:
        """``dirsync`` when the DC grants DirSync to this account, else ``usn`` and why."""
        if self._mode is None:
            self._mode = self._probe()
        return self._mode

    def position(self) -> str:
        dc, usn = self._dse()
        try:
            return self._position(dc, usn)
        finally:
            # The index holds what was in scope from this position on, so a deletion
            # after it is known to have been in scope (see _build). Read afresh: a new
            # position follows a gap, after which the old index cannot be trusted.
            self._index = None
            self._index_now()

    def _position(self, dc: str, usn: int) -> str:
        if self.mode().mode != "dirsync":
            return Position("usn", dc, usn).text()
        # A DirSync cookie for "now" without listing the domain: a round whose filter
        # matches nothing still returns the DC's current watermark (the cookie does not
        # depend on the filter; MS-ADTS 3.1.1.3.4.1.3).
        cookie = b""
        more = True
        while more:
            _, cookie, more = self._dirsync("(&(objectClass=user)(!(objectClass=user)))", cookie)
        return Position("dirsync", dc, usn, cookie).text()

    def changes(self, position: str, wait: float) -> Changes:
        start = Position.parse(position)
        mode = self.mode().mode
        if start.mode != mode:
            raise StreamGap(
                f"ldap source: the position is for {start.mode}, the stream now "
                f"runs {mode} ({self.mode().reason})"
            )
        deadline = time.monotonic() + max(wait, 0.0)
        while True:
            # Polls are poll_interval apart across calls too: watch calls in a loop.
            pause = self._last_poll + self.poll_interval - time.monotonic()
            if pause > 0:
                if time.monotonic() + pause > deadline:
                    time.sleep(max(deadline - time.monotonic(), 0.0))
                    return Changes(position=position)
                time.sleep(pause)
            self._last_poll = time.monotonic()
            dc, usn = self._dse()
            if dc != start.dc:
                raise StreamGap(
                    f"ldap source: the position is from {start.dc!r}, this DC is "
                    f"{dc!r}; USNs are only comparable on one DC"
                )
            if usn < start.usn:
                raise StreamGap(
                    f"ldap source: highestCommittedUSN is {usn}, below the stored "
                    f"{start.usn}: the DC was restored from a backup"
                )
            if usn > start.usn:
                break
            if time.monotonic() >= deadline:
                return Changes(position=position)
        if mode == "dirsync":
            found, cookie = self._dirsync_changes(start.cookie)
            end = Position("dirsync", dc, usn, cookie)
        else:
            found = self._usn_changes(start.usn + 1, usn)
            end = Position("usn", dc, usn)
        return self._build(found, end.text())

    def close(self) -> None:
        for wire in (self._wire, self._dirsync_wire):
            if wire is not None:
                wire.close()
        self._wire = self._dirsync_wire = None

    # ------------------------------------------------------------ connections

    def _conn(self) -> Wire:
        if self._wire is None:
            self._wire = connect(self.settings)
        return self._wire

    def _r(self) -> Resolved:
        if self._resolved is None:
            self._resolved = self.connector._resolve(self._conn())
        return self._resolved

    def _dse(self) -> tuple[str, int]:
        self.polls += 1
        dse: dict[str, list[bytes]] = {}
        try:
            for page in self._conn().search("", "base", "(objectClass=*)", DSE_ATTRS, page_size=0):
                for _, attrs in page:
                    dse = lowered(attrs)
        except SourceError:
            self.close()  # the next call reconnects
            raise
        usn, dc = text_of(dse.get("highestcommittedusn")), text_of(dse.get("dsservicename"))
        if not usn.isdigit() or not dc:
            raise SourceError(
                "ldap source: the root DSE has no highestCommittedUSN; "
                "not an Active Directory domain controller"
            )
        return dc, int(usn)

    def _dirsync(self, filterstr: str, cookie: bytes) -> tuple[list[Entry], bytes, bool]:
        from .wire_ldap3 import DirSyncRefused, Ldap3Wire

        if self._dirsync_wire is None:
            # ldap3, whatever the read backend: Samba answers python-ldap's DirSync
            # request with "Critical extension is unavailable" (tried on Samba 4.17).
            wire = connect(self.settings.model_copy(update={"backend": "ldap3"}))
            assert isinstance(wire, Ldap3Wire)
            self._dirsync_wire = wire
        wire = self._dirsync_wire
        try:
            return wire.dirsync(self._r().naming_context, filterstr, self._attrs(), cookie)
        except DirSyncRefused as exc:
            if cookie:
                raise StreamGap(f"{exc}; the cookie is no longer valid on this DC") from exc
            raise
        except SourceError:
            self.close()
            raise

    # ------------------------------------------------------------ mode

    def _probe(self) -> StreamMode:
        from .wire_ldap3 import DirSyncRefused

        r = self._r()
        if not r.ad:
            return StreamMode("marker", "the server is not Active Directory")
        # Samba shows tombstones to DirSync only when the account may read them, as
        # for a plain search (Windows needs Replicating Directory Changes alone).
        blind = (
            ""
            if self._tombstones_readable(r)
            else (
                "; deletions are not visible to this account (no List Contents + Read "
                "Property on CN=Deleted Objects): they reach the server at the next full read"
            )
        )
        try:
            self._dirsync("(&(objectClass=user)(!(objectClass=user)))", b"")
            return StreamMode(
                "dirsync",
                "DirSync granted (the account has Replicating "
                "Directory Changes on the domain)" + blind,
            )
        except DirSyncRefused as exc:
            why = (
                f'DirSync refused ({exc}): grant the account "Replicating Directory '
                'Changes" on the domain to use it'
            )
        except ImportError:
            why = "DirSync needs ldap3 (pip install 'dirconnector[ldap]')"
        return StreamMode("usn", f"polling uSNChanged: {why}{blind}")

    def _tombstones_readable(self, r: Resolved) -> bool:
        """Whether the account may read CN=Deleted Objects: the container itself carries
        isDeleted=TRUE, and shows it only to an account with Read Property on it (the
        documented delegation grants List Contents and Read Property together)."""
        seen: dict[str, list[bytes]] = {}
        try:
            for page in self._conn().search(
                f"CN=Deleted Objects,{r.naming_context}",
                "base",
                "(objectClass=*)",
                ["isDeleted"],
                page_size=0,
                controls=[Control(SHOW_DELETED_OID)],
            ):
                for _, attrs in page:
                    seen = lowered(attrs)
        except SourceError:
            return False
        return text_of(seen.get("isdeleted")).upper() == "TRUE"

    def _attrs(self) -> list[str]:
        """What a detection round asks for: the mapped attributes, the ones the filters
        test (a change to them may move an object in or out of scope), and the markers."""
        r, s = self._r(), self.settings
        named = {
            m.group(1).lower()
            for f in (s.user_filter, s.group_filter, s.disabled_filter)
            if f
            for m in _FILTER_ATTR.finditer(f)
        }
        return sorted(
            {
                "objectguid",
                "isdeleted",
                "whenchanged",
                "name",
                "objectclass",
                "lastknownparent",
                *r.user_attrs,
                *r.group_attrs,
                *named,
            }
            - {"memberof"}
        )

    # ------------------------------------------------------------ detection

    def _dirsync_changes(self, cookie: bytes) -> tuple[list[Found], bytes]:
        found: list[Found] = []
        more = True
        while more:
            # Every object class, as in the usn search: with the object class in the filter,
            # Samba walks the objectClass index (2.1-2.7 s per poll at 100k users instead of
            # 0.6-1.0 s). DirSync returns only the changed attributes, so a modified entry
            # usually comes without objectClass: those, and users and groups, are kept (the
            # re-read below finds which are in scope); an entry whose classes are known and
            # are neither (an OU, a container) is dropped.
            entries, cookie, more = self._dirsync(_EVERY_CLASS, cookie)
            found += [f for f in parse_found(entries)
                      if not f.classes or f.classes & _WATCHED_CLASSES]
        return found, cookie

    def _usn_changes(self, low: int, high: int) -> list[Found]:
        r = self._r()
        found: list[Found] = []
        # The object class is checked here, not in the filter: with it, Samba's ldb picks the
        # objectClass index (every user a candidate, each loaded) over the uSNChanged range:
        # 2.55 s instead of 0.74 s per search at 100k users (README, the AD watch figures).
        filterstr = f"(&(uSNChanged>={low})(uSNChanged<={high}))"
        try:
            for entries in self._conn().search(
                r.naming_context,
                "sub",
                filterstr,
                ["objectGUID", "isDeleted", "whenChanged", "lastKnownParent", "objectClass"],
                page_size=self.settings.page_size,
                controls=[Control(SHOW_DELETED_OID)],
            ):
                found += [f for f in parse_found(entries) if f.classes & _WATCHED_CLASSES]
        except SourceError:
            self.close()
            raise
        return found

    # ------------------------------------------------------------ re-read

    def _index_now(self) -> Index:
        """Every user and group in scope: DN -> id (and users' emails, for tombstones)."""
        if self._index is not None:
            return self._index
        r, s, wire = self._r(), self.settings, self._conn()
        index = Index()
        users = UserMapper(r)
        for entries in wire.search(
            r.user_base, s.user_scope, r.user_search, r.user_attrs, page_size=s.page_size
        ):
            users.add(entries)
        for u in users.users:
            index.emails[u.external_id], index.names[u.external_id] = u.email, u.user_name
        for dn, ext in users.by_dn.items():
            index.put_user(ext, dn)
        raw = self.connector._read_groups(wire, r, users)
        for g in raw:
            index.put_group(g.external_id, g.dn)
        for group in GroupResolver(users, raw).resolve():
            index.members[group.external_id] = group.member_ids | group.subgroup_ids
        log.info(
            "ldap stream: indexed %d users and %d groups", len(index.user_dn), len(index.group_dn)
        )
        self._index = index
        return index

    def _build(self, found: list[Found], position: str) -> Changes:
        index = self._index_now()
        if not found:
            return Changes(position=position)
        r, s, wire = self._r(), self.settings, self._conn()
        live = {f.guid: f for f in found if not f.deleted}
        deleted = {f.guid for f in found if f.deleted} - live.keys()
        seen_at = {f.guid: f.when for f in found if f.when is not None}
        if missing := [g for g in live if g not in seen_at]:
            seen_at.update(self._when(wire, r, missing))

        # Users: the user search narrowed to the changed GUIDs.
        mapper = UserMapper(r, self._disabled(wire, r, live))
        mapper.known = index.user_by_dn  # managers outside the batch
        for part in guid_filters(live):
            for entries in wire.search(
                r.user_base,
                s.user_scope,
                f"(&{r.user_search}{part})",
                r.user_attrs,
                page_size=s.page_size,
            ):
                mapper.add(entries)
        mapper.finish()
        entered = [dn for dn, ext in mapper.by_dn.items() if ext not in index.user_dn]
        for dn, ext in mapper.by_dn.items():
            index.put_user(ext, dn)
        users = {u.external_id: u for u in mapper.users}
        for u in users.values():
            index.emails[u.external_id], index.names[u.external_id] = u.email, u.user_name
        skipped: tuple[Skipped, ...] = tuple(mapper.skipped)
        in_scope = set(users) | {x.external_id for x in skipped}
        removed_users: set[str] = set()
        # Deleted before the index was read (a stream resumed after a restart): the
        # tombstone's lastKnownParent says whether it was in scope.
        unknown = {
            f.guid: f
            for f in found
            if f.deleted
            and f.guid not in index.user_dn
            and f.guid not in index.group_dn
            and f.parent
        }
        for f in unknown.values():
            if "group" not in f.classes and under(f.parent, r.user_base, s.user_scope):
                removed_users.add(f.guid)
        for guid in (live.keys() | deleted) - in_scope:
            if guid not in index.user_dn:
                continue
            index.drop_user(guid)
            email = index.emails.get(guid, "")
            if guid in deleted and s.include_deleted and email:
                # As fetch reads tombstones: an inactive user under the last known address.
                users[guid] = User(guid, email, index.names.get(guid, ""), active=False)
            else:
                removed_users.add(guid)

        # Groups: the group search narrowed the same way, members resolved on the index.
        # A group that held a removed user or group is read again too: AD drops the link
        # of a deleted object without touching the group's uSNChanged (seen on Samba),
        # and a member moved out of scope no longer resolves, as in a full read.
        gone = removed_users | {g for g in live.keys() | deleted if g in index.group_dn}
        parents = {p for p, held in index.members.items() if held & gone}
        # A user or group that comes into scope (created, or moved in from elsewhere) may
        # already be a member of groups: they resolve it now, so they are read again too.
        wanted = live.keys() | parents | self._holders(wire, r, entered)
        raw = self._groups(wire, r, mapper, wanted)
        new_groups = [g.dn for g in raw if g.external_id not in index.group_dn]
        raw += self._groups(
            wire, r, mapper, self._holders(wire, r, new_groups) - {g.external_id for g in raw}
        )
        for g in raw:
            index.put_group(g.external_id, g.dn)
        resolver_users = UserMapper(r)
        resolver_users.by_dn = index.user_by_dn
        groups = {
            g.external_id: g
            for g in GroupResolver(resolver_users, raw, index.group_by_dn).resolve()
        }
        for group in groups.values():
            index.members[group.external_id] = group.member_ids | group.subgroup_ids
        removed_groups: set[str] = set()
        for guid in (live.keys() | deleted) - groups.keys():
            if guid in index.group_dn:
                index.drop_group(guid)
                index.members.pop(guid, None)
                removed_groups.add(guid)
        for f in unknown.values():
            if not (f.classes & {"user", "person"}) and under(
                f.parent, r.group_base, s.group_scope
            ):
                removed_groups.add(f.guid)
        log.debug(
            "ldap stream: %d found, %d users, %d groups, %d removed",
            len(found),
            len(users),
            len(groups),
            len(removed_users) + len(removed_groups),
        )
        return Changes(
            position=position,
            users=users,
            groups=groups,
            removed_users=frozenset(removed_users),
            removed_groups=frozenset(removed_groups),
            skipped=skipped,
            seen_at={
                k: v
                for k, v in seen_at.items()
                if k in users or k in groups or k in removed_users or k in removed_groups
            },
        )

    def _groups(
        self, wire: Wire, r: Resolved, mapper: UserMapper, guids: set[str]
    ) -> list[RawGroup]:
        """The group search narrowed to these GUIDs (members read whole, ranges too)."""
        raw: list[RawGroup] = []
        for part in guid_filters(guids):
            narrowed = replace(r, group_search=f"(&{r.group_search}{part})")
            raw += self.connector._read_groups(wire, narrowed, mapper)
        return raw

    def _holders(self, wire: Wire, r: Resolved, dns: list[str]) -> set[str]:
        """GUIDs of the groups in scope whose member attribute names one of ``dns``."""
        found: set[str] = set()
        for i in range(0, len(dns), GUIDS_PER_SEARCH):
            terms = "".join(
                f"({attr}={escape_filter_value(dn)})"
                for dn in dns[i : i + GUIDS_PER_SEARCH]
                for attr in r.member_attrs
            )
            for entries in wire.search(
                r.group_base,
                self.settings.group_scope,
                f"(&{r.group_search}(|{terms}))",
                ["objectGUID"],
                page_size=self.settings.page_size,
            ):
                found.update(f.guid for f in parse_found(entries))
        return found

    def _when(self, wire: Wire, r: Resolved, guids: list[str]) -> dict[str, float]:
        """whenChanged of these objects: DirSync returns only replicated attributes, and
        whenChanged is not one (MS-ADA1 When-Changed: systemFlags FLAG_ATTR_NOT_REPLICATED)."""
        out: dict[str, float] = {}
        for part in guid_filters(guids):
            for entries in wire.search(
                r.naming_context, "sub", part, ["objectGUID", "whenChanged"], page_size=0
            ):
                for f in parse_found(entries):
                    if f.when is not None:
                        out[f.guid] = f.when
        return out

    def _disabled(self, wire: Wire, r: Resolved, live: dict[str, Found]) -> frozenset[str]:
        if not r.disabled_search:
            return frozenset()
        return frozenset(
            dn
            for part in guid_filters(live)
            for entries in wire.search(
                r.user_base,
                self.settings.user_scope,
                f"(&{r.disabled_search}{part})",
                ["1.1"],
                page_size=self.settings.page_size,
            )
            for dn, _ in entries
        )


__all__ = ["AdStream", "Position"]
