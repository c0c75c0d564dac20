"""The ``ldap`` connector: OpenLDAP, 389-DS/FreeIPA, other LDAPv3 servers and Active Directory.

One read = root DSE (server kind, default naming context), the disabled-user search
when ``disabled_filter`` is set (DNs only), the user search, AD tombstones when
``include_deleted``, the group search, then ranged retrieval (AD's
``member;range=1500-*``) for groups whose member list was cut, and member
resolution. Every search is paged (RFC 2696); any limit or lost connection raises,
so a snapshot is always complete. See connectors/ldap.md.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import time
from collections.abc import Iterator
from dataclasses import replace
from datetime import timedelta
from typing import Any, ClassVar

from pydantic import BaseModel

from ...bwdc import keys as bwdc_keys
from ...checks import CheckReport
from ...errors import ConfigError, IncompleteRead, SourceError
from ...model import PreviousKeys, Snapshot
from ...state_space import ConnectorState
from .. import Changes, StreamGap, StreamMode
from .map import (
    ROOT_DSE_ATTRS,
    GroupResolver,
    RawGroup,
    Resolved,
    UserMapper,
    guid_text,
    resolve,
    server_info,
)
from .settings import LdapSettings
from .syntax import normalize_dn
from .wire import SHOW_DELETED_OID, Control, Wire, backend_name, connect, lowered

log = logging.getLogger(__name__)

MARKER_DSE_ATTRS = ("highestCommittedUSN", "dsServiceName")
KNOWN_EMAILS = "known_emails"
"""State key: external id -> email of every user of the last read (include_deleted only)."""

__all__ = ["LdapConnector", "LdapSettings"]


class LdapConnector:
    """Reads users and groups over LDAP; every read is a full read (see module docstring)."""

    settings_model: ClassVar[type[BaseModel]] = LdapSettings

    def __init__(self, settings: LdapSettings) -> None:
        self.settings = settings
        self.backend = backend_name(settings.backend)
        self.previous_keys: str | None = None
        """The tool whose keys ``fetch`` hands over too (``read_previous_keys``)."""
        self._stream_impl: Any = None

    def read_previous_keys(self, tool: str) -> None:
        """Hand over bwdc's keys too: objectGUID text, else the DN (bwdc/keys.py)."""
        if tool != bwdc_keys.TOOL:
            raise ConfigError(f"sync.takeover_from: the ldap connector knows no keys of {tool!r}")
        self.previous_keys = tool

    # ------------------------------------------------------------ HasChangeStream

    def _stream(self) -> Any:
        """The server's change stream: RFC 4533 sync (syncrepl.py) on OpenLDAP and other
        servers with the sync control; Active Directory's (dirsync.py) where present."""
        if self._stream_impl is None:
            if self._is_ad():
                try:
                    from .dirsync import AdStream  # type: ignore[import-not-found,unused-ignore]
                except ImportError:
                    self._stream_impl = _NoStream("this version reads Active Directory "
                                                  "changes by its marker only")
                else:
                    self._stream_impl = AdStream(self)
            else:
                from .syncrepl import SyncreplStream

                self._stream_impl = SyncreplStream(self)
        return self._stream_impl

    def _is_ad(self) -> bool:
        wire = connect(self.settings)
        try:
            return self._resolve(wire).ad
        finally:
            wire.close()

    def stream_mode(self) -> StreamMode:
        mode: StreamMode = self._stream().mode()
        return mode

    def stream_position(self) -> str:
        return str(self._stream().position())

    def changes(self, position: str, wait: float) -> Changes:
        got: Changes = self._stream().changes(position, wait)
        return got

    def close(self) -> None:
        if self._stream_impl is not None:
            self._stream_impl.close()

    def fetch(self, state: ConnectorState) -> Snapshot:
        wire = connect(self.settings)
        try:
            with _gc_paused():
                return self._read(wire, self._resolve(wire), state)
        finally:
            wire.close()

    @property
    def full_read_interval(self) -> timedelta:
        """How long an unchanged marker is trusted (``[source] full_read_interval``)."""
        return self.settings.full_read_interval

    def change_marker(self) -> str | None:
        """A value that changes whenever anything in the directory is written, or None.

        OpenLDAP with the syncprov overlay (what replication uses) keeps ``contextCSN``
        on each database's suffix entry, and advances it on every add, modify, rename
        and delete. Active Directory's root DSE has ``highestCommittedUSN``, which a
        domain controller advances on every write it holds; it is only comparable on
        the same DC, so ``dsServiceName`` is part of the marker. Other servers, and
        OpenLDAP without syncprov, give None: every run reads everything. The runner
        compares the marker with the one taken before the last good read (sync.py).
        """
        wire = connect(self.settings)
        try:
            dse: dict[str, list[bytes]] = {}
            for page in wire.search("", "base", "(objectClass=*)",
                                    [*ROOT_DSE_ATTRS, *MARKER_DSE_ATTRS], page_size=0):
                for _, attrs in page:
                    dse = lowered(attrs)
            r = self._resolved(dse)
            if r.ad:
                usn, dc = _first(dse.get("highestcommittedusn")), _first(dse.get("dsservicename"))
                return f"ad:{dc}:{usn}" if usn and dc else None
            contexts = [nc for nc in {_context_of(base, server_info(dse).naming_contexts)
                                      for base in (r.user_base, r.group_base)} if nc]
            if r.kind != "openldap" or not contexts:
                return None
            csns: list[str] = []
            for nc in sorted(contexts):
                for page in wire.search(nc, "base", "(objectClass=*)", ["contextCSN"],
                                        page_size=0):
                    for _, attrs in page:
                        csns += sorted(v.decode() for v in lowered(attrs).get("contextcsn", ()))
                if not csns:
                    return None          # no syncprov on this database
            return f"openldap:{wire.url}:{'|'.join(csns)}"
        finally:
            wire.close()

    def check(self) -> CheckReport:
        s = self.settings
        report = CheckReport()
        try:
            wire = connect(s)
        except SourceError as exc:
            report.add("connect and bind", False, str(exc))
            return report
        try:
            report.add("connect and bind", True,
                       f"{wire.url} as {s.bind_dn or 'anonymous'} ({self.backend})")
            r = self._resolve(wire)
            report.add("server", True, "Active Directory" if r.ad else r.kind)
            for name, base in (("base_dn", r.base_dn), ("user_base", r.user_base),
                               ("group_base", r.group_base)):
                try:
                    for _ in wire.search(base, "base", "(objectClass=*)", ["1.1"], page_size=0):
                        pass
                    report.add(f"{name} exists", True, base)
                except SourceError as exc:
                    report.add(f"{name} exists", False, str(exc))
            if report.ok:
                snap = self._read(wire, r, ConnectorState())
                no_email = [x for x in snap.skipped if x.reason == "no email"]
                report.counts.update(users=len(snap.users), groups=len(snap.groups),
                                     skipped=len(snap.skipped), no_email=len(no_email))
                report.samples.extend(f"{x.ref}: {x.reason}" for x in no_email[:5])
                report.add("read users and groups", True,
                           f"{len(snap.users)} users, {len(snap.groups)} groups, "
                           f"{len(no_email)} without an email")
        except (SourceError, ConfigError) as exc:
            report.add("read users and groups", False, str(exc))
        finally:
            wire.close()
        return report

    # -------------------------------------------------------------- reading

    def _resolve(self, wire: Wire) -> Resolved:
        dse = {}
        for page in wire.search("", "base", "(objectClass=*)", ROOT_DSE_ATTRS, page_size=0):
            for _, attrs in page:
                dse = lowered(attrs)
        return self._resolved(dse)

    def _resolved(self, dse: dict[str, list[bytes]]) -> Resolved:
        try:
            r = resolve(self.settings, server_info(dse))
        except ValueError as exc:
            raise ConfigError(f"source.{exc}") from exc
        if self.settings.include_deleted and not r.ad:
            raise ConfigError("source.include_deleted: the server is not Active Directory")
        if self.previous_keys and "objectguid" not in r.id_attrs:
            # bwdc keyed an entry on its objectGUID whenever it had one (bwdc/keys.py).
            r = replace(r, user_attrs=(*r.user_attrs, "objectguid"),
                        group_attrs=(*r.group_attrs, "objectguid"))
        return r

    def _read(self, wire: Wire, r: Resolved, state: ConnectorState) -> Snapshot:
        s = self.settings
        started = time.monotonic()
        page = s.page_size
        disabled: frozenset[str] = frozenset()
        if r.disabled_search:
            disabled = frozenset(
                dn
                for entries in wire.search(r.user_base, s.user_scope, r.disabled_search, ["1.1"],
                                           page_size=page)
                for dn, _ in entries)
        users = UserMapper(r, disabled)
        taking_over = bool(self.previous_keys) and "objectguid" not in r.id_attrs
        if taking_over:
            users.guids = {}
        for entries in wire.search(r.user_base, s.user_scope, r.user_search, r.user_attrs,
                                   page_size=page):
            users.add(entries)
        users.finish()
        deleted = 0
        if s.include_deleted:
            deleted = self._read_deleted(wire, r, users, state)
        groups = self._read_groups(wire, r, users)
        resolver = GroupResolver(users, groups)
        resolved = resolver.resolve()
        seconds = time.monotonic() - started
        info = {"server": "Active Directory" if r.ad else r.kind, "url": wire.url,
                "backend": self.backend, "read_seconds": f"{seconds:.2f}",
                "entries_without_stable_id": str(users.dn_ids),
                "unresolved_members": str(resolver.dangling),
                "deleted_users": str(deleted)}
        if users.dn_ids:
            log.warning("ldap source: %d entries have none of %s; they are keyed on their DN, "
                        "so renaming one breaks its link", users.dn_ids, ", ".join(r.id_attrs))
        log.info("ldap source: %d users, %d groups in %.2f s", len(users.users), len(resolved),
                 seconds)
        snap = Snapshot.build(users.users, resolved, users.skipped, info=info)
        if not self.previous_keys:
            return snap
        return replace(snap, previous_keys=_bwdc_keys(users, groups, taking_over))

    def _read_deleted(self, wire: Wire, r: Resolved, users: UserMapper,
                      state: ConnectorState) -> int:
        """Tombstones of users, with the show-deleted control (MS-ADTS 3.1.1.5.5: deleted
        objects move to the domain's CN=Deleted Objects and keep objectGUID)."""
        known: dict[str, str] = dict(state.get(KNOWN_EMAILS) or {})
        count = 0
        for entries in wire.search(f"CN=Deleted Objects,{r.naming_context}", "one",
                                   "(&(objectClass=user)(!(objectClass=computer))(isDeleted=TRUE))",
                                   r.user_attrs, page_size=self.settings.page_size,
                                   controls=[Control(SHOW_DELETED_OID)]):
            count += users.add_deleted(entries, known)
        # Remember every address for the next run: a user deleted before then is a
        # tombstone without mail, and this is how its revocation still finds a name.
        state.set(KNOWN_EMAILS, {u.external_id: u.email for u in users.users})
        return count

    def _read_groups(self, wire: Wire, r: Resolved, users: UserMapper) -> list[RawGroup]:
        s = self.settings
        groups: list[RawGroup] = []
        cut: list[tuple[RawGroup, str, int]] = []
        for entries in wire.search(r.group_base, s.group_scope, r.group_search, r.group_attrs,
                                   page_size=s.page_size):
            for dn, raw in entries:
                a = lowered(raw)
                name = _first(a.get(r.group_name)) or _first(a.get("cn")) or dn
                members = [(attr, v) for attr in r.member_attrs for v in a.get(attr, ())]
                group = RawGroup(dn, users.external_id(dn, a), name, members)
                groups.append(group)
                if users.guids is not None and (guid := a.get("objectguid")):
                    group.guid = guid_text(guid[0])
                for key, values in a.items():
                    attr, sep, span = key.partition(";range=")
                    if not sep or attr not in r.member_attrs:
                        continue
                    members.extend((attr, v) for v in values)
                    high = span.rpartition("-")[2]
                    if high != "*":
                        cut.append((group, attr, int(high) + 1))
        for group, attr, start in cut:
            self._read_range(wire, group, attr, start)
        return groups

    def _read_range(self, wire: Wire, group: RawGroup, attr: str, start: int) -> None:
        """AD returns at most MaxValRange values per read (MS-ADTS 3.1.1.3.1.3.3); ask for
        ``attr;range=N-*`` until the server answers with a range ending in ``*``."""
        while True:
            got: dict[str, list[bytes]] = {}
            for entries in wire.search(group.dn, "base", "(objectClass=*)",
                                       [f"{attr};range={start}-*"], page_size=0):
                for _, a in entries:
                    got = dict(lowered(a))
            key = next((k for k in got if k.startswith(attr + ";range=")), None)
            if key is None:
                raise IncompleteRead(f"ldap source: ranged read of {attr} from {start} on "
                                     f"{group.dn!r} returned nothing; the member list is cut")
            group.members.extend((attr, v) for v in got[key])
            high = key.rpartition("-")[2]
            if high == "*":
                return
            start = int(high) + 1


def _bwdc_keys(users: UserMapper, groups: list[RawGroup], keyed_otherwise: bool
               ) -> PreviousKeys:
    """The keys bwdc stored for these entries, where they differ from ours (bwdc/keys.py).

    On Active Directory (objectGUID is the id) they are the ids: nothing to hand over.
    Elsewhere bwdc used the DN, the one the read already indexed to resolve members,
    and objectGUID text for the rare entries that carry one.
    """
    if not keyed_otherwise:
        return PreviousKeys(bwdc_keys.TOOL, bwdc_keys.LDAP_GUID)
    user_keys: dict[str, str] = users.by_dn
    if users.guids:
        user_keys = {**users.by_dn, **users.guids}
    group_keys = {g.dn: g.external_id for g in groups}
    group_keys.update((g.guid, g.external_id) for g in groups if g.guid)
    return PreviousKeys(bwdc_keys.TOOL, bwdc_keys.LDAP_DN, user_keys, group_keys, normalize_dn)


class _NoStream:
    """A server this version cannot follow: the engine polls the change marker."""

    def __init__(self, reason: str) -> None:
        self.reason = reason

    def mode(self) -> StreamMode:
        return StreamMode("marker", self.reason)

    def position(self) -> str:
        raise StreamGap(self.reason)

    def changes(self, position: str, wait: float) -> Changes:
        raise StreamGap(self.reason)

    def close(self) -> None:
        return None


@contextlib.contextmanager
def _gc_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector during a read.

    A read allocates hundreds of thousands of small acyclic objects (values, dicts,
    records); the collector's passes over them cost a quarter of the CPU time of a
    100k-user read (measured with scripts/bench_ldap.py) and free nothing.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _context_of(base: str, contexts: tuple[str, ...]) -> str:
    """The naming context (database suffix) that holds ``base``, or ""."""
    key = normalize_dn(base)
    holders = [nc for nc in contexts
               if key == (k := normalize_dn(nc)) or key.endswith("," + k)]
    return max(holders, key=len, default="")


def _first(values: list[bytes] | None) -> str:
    return values[0].decode("utf-8", "replace").strip() if values else ""
