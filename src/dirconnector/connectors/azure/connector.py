"""The ``azure`` (alias ``entra``) connector: Microsoft Entra ID users and groups over Graph v1.0.

A full read lists ``/users`` and ``/groups`` with each group's direct ``/members``, after
taking "sync from now" delta links (``$deltatoken=latest``, delta-query-overview.md) so
that later runs replay only what changed. An incremental read follows the stored
``/users/delta`` and ``/groups/delta`` links and merges the changes into the cached copy
of the tenant (cache.py), so ``fetch`` always returns the complete state. A rejected
delta token, a changed read shape, ``state.force_full`` and ``full_read_interval`` fall
back to a full read. Tokens come from msal (auth.py); HTTP from
:class:`dirconnector.http.HttpClient` (api.py). Guide: connectors/azure.md.
"""

from __future__ import annotations

import hashlib
import logging
import re
import time
from collections.abc import Callable, Mapping
from datetime import timedelta
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, Field, SecretStr, ValidationInfo, field_validator, model_validator

from ...checks import CheckReport
from ...errors import ConfigError, DirconnectorError, SourceError
from ...http import HttpClient
from ...mapping import MANAGER_SOURCE
from ...model import Group, Skipped, Snapshot, User, clean_text
from ...settings import Duration, HttpPluginSettings, parse_duration
from ...state_space import ConnectorState
from .. import Changes, StreamMode
from ..filters import SetFilter, parse_filter
from .api import DeltaExpired, Graph
from .auth import TokenSource
from .cache import DirectoryCache
from .stream import AzureStream

log = logging.getLogger(__name__)

USER_SELECT = "id,mail,userPrincipalName,displayName,givenName,surname,accountEnabled,userType"
GROUP_SELECT = "id,displayName"
GROUP_DELTA_SELECT = "displayName,members"
CACHE_VERSION = 1
_PROPERTY = re.compile(r"^[A-Za-z][A-Za-z0-9_]*(\.[A-Za-z][A-Za-z0-9_]*)?$")


class AzureSettings(HttpPluginSettings):
    """``[source] type = "azure"`` (or ``"entra"``)."""

    type: Literal["azure", "entra"] = "azure"
    tenant_id: str = Field(min_length=1)
    """Directory (tenant) ID, or a verified domain such as contoso.onmicrosoft.com."""
    client_id: str = Field(min_length=1)
    """Application (client) ID of the app registration."""
    client_secret: SecretStr | None = None
    """Client secret value (not its ID); or use certificate_file."""
    certificate_file: Path | None = None
    """PEM with private key and certificate, or a .pfx/.p12 file; instead of a secret."""
    certificate_password: SecretStr | None = None
    """Password of an encrypted key in certificate_file."""
    authority_host: str = "https://login.microsoftonline.com"
    """Login host of the cloud (US Gov: https://login.microsoftonline.us)."""
    graph_url: str = "https://graph.microsoft.com"
    """Graph host of the same cloud (US Gov: https://graph.microsoft.us); /v1.0 is added."""
    user_filter: str | None = None
    """``include:a@x.com,b@x.com`` or ``exclude:...`` by email."""
    include_groups: list[str] = Field(default_factory=list)
    """Only users who are (transitive) members of one of these groups (id or name)."""
    exclude_groups: list[str] = Field(default_factory=list)
    """Never users who are (transitive) members of one of these groups (id or name)."""
    group_filter: str | None = None
    """``include:Name,Other`` or ``exclude:...`` by group display name (or id)."""
    administrative_unit: str | None = None
    """Only groups in this administrative unit (id or name); needs AdministrativeUnit.Read.All."""
    email_attribute: Literal["mail", "userPrincipalName"] = "mail"
    """Where the email comes from; ``mail`` falls back to userPrincipalName when empty."""
    skip_guests: bool = True
    """Leave out B2B guests (userType Guest, ``#EXT#`` in the userPrincipalName)."""
    page_size: int = Field(999, ge=1, le=999)
    """``$top`` for list requests (Graph allows 1..999)."""
    full_read_interval: str = "24h"
    """Do a full read when the last one is older than this (s, m, h, d; 0 = every run)."""
    poll_interval: Duration = timedelta(seconds=15)
    """watch: how often the delta links are polled (two requests when nothing changed).
    Graph throttles per app and tenant; 429 answers are retried after Retry-After."""

    @field_validator("authority_host", "graph_url")
    @classmethod
    def _https(cls, value: str) -> str:
        value = value.strip().rstrip("/")
        if not value.startswith("https://"):
            raise ValueError("must be an https:// URL (msal and Graph require TLS)")
        return value.removesuffix("/v1.0")

    @field_validator("user_filter", "group_filter")
    @classmethod
    def _filter(cls, value: str | None, info: ValidationInfo) -> str | None:
        parsed = parse_filter(value, str(info.field_name))
        if parsed.native:
            raise ValueError("azure filters take no query after '|'; use include_groups, "
                             "exclude_groups or administrative_unit")
        return value

    @field_validator("full_read_interval")
    @classmethod
    def _interval(cls, value: str) -> str:
        parse_interval(value)
        return value

    @model_validator(mode="after")
    def _one_credential(self) -> AzureSettings:
        if self.poll_interval < timedelta(seconds=1):
            raise ValueError("poll_interval: must be at least 1s (Graph throttles tight loops)")
        if (self.client_secret is None) == (self.certificate_file is None):
            raise ValueError("give exactly one of client_secret (or client_secret_env / "
                             "client_secret_file) and certificate_file")
        if self.certificate_password is not None and self.certificate_file is None:
            raise ValueError("certificate_password: set only with certificate_file")
        if self.certificate_file is not None and not self.certificate_file.is_file():
            raise ValueError(f"certificate_file: {self.certificate_file} does not exist")
        return self

    @property
    def graph_root(self) -> str:
        return self.graph_url

    @property
    def full_read_seconds(self) -> float:
        return parse_interval(self.full_read_interval)


def parse_interval(text: str) -> float:
    """Seconds in ``"90s"``, ``"30m"``, ``"24h"``, ``"7d"`` or a bare number of seconds."""
    return parse_duration(text).total_seconds()


class AzureConnector:
    """Reads users and groups from Microsoft Entra ID through Microsoft Graph."""

    settings_model: ClassVar[type[BaseModel]] = AzureSettings

    def __init__(self, settings: AzureSettings, *,
                 clock: Callable[[], float] = time.time) -> None:
        self.settings = settings
        self.tokens = TokenSource(settings)
        self.http = HttpClient(settings.graph_root + "/v1.0", side="source", label="azure",
                               verify=settings.verify, timeout=settings.timeout,
                               auth=self.tokens.headers)
        self.graph = Graph(self.http, self.tokens.who)
        self.user_filter: SetFilter = parse_filter(settings.user_filter, "user_filter")
        self.group_filter: SetFilter = parse_filter(settings.group_filter, "group_filter")
        self._clock = clock
        self.extra_attributes: tuple[str, ...] = ()
        """User properties an attribute mapping reads too (``read_attributes``)."""
        self._extra_select: tuple[str, ...] = ()
        self._sent_before = 0
        self.last_read = ""
        """How the last fetch read the tenant: "full" or "delta"."""
        self.cache: DirectoryCache | None = None
        """The tenant as the last fetch left it (the change stream starts from it)."""
        self.last_snapshot: Snapshot | None = None
        """What the last fetch returned (scope filters as they stood then)."""
        self.reads = 0
        """How many fetches have set ``cache``."""
        self._stream: AzureStream | None = None
        self._manager_of: dict[str, str] = {}
        """User id -> manager id as the last snapshot read them; the change stream keeps
        it up to date from ``manager@delta`` and maps users with it."""

    # ------------------------------------------------------------ change stream (watch)

    def _azure_stream(self) -> AzureStream:
        if self._stream is None:
            self._stream = AzureStream(self)
        return self._stream

    def stream_mode(self) -> StreamMode:
        return self._azure_stream().mode()

    def stream_position(self) -> str:
        return self._azure_stream().position()

    def changes(self, position: str, wait: float) -> Changes:
        return self._azure_stream().changes(position, wait)

    def close(self) -> None:
        if self._stream is not None:
            self._stream.close()

    def read_attributes(self, names: frozenset[str]) -> None:
        """Also read these user properties (ReadsAttributes), added to ``$select`` (Graph
        answers 400 for a property the user type lacks, before anything is planned); a
        complex one by ``property.sub`` (``employeeOrgData.division``). ``manager`` is read
        with ``$expand=manager($select=id)`` on every run (user-list-manager.md)."""
        for name in names:
            if not _PROPERTY.match(name):
                raise ConfigError(f"target.mapping: {name!r} is not a Graph user property "
                                  "(jobTitle, department, employeeOrgData.division, manager)")
        self.extra_attributes = tuple(sorted(names))
        self._extra_select = tuple(sorted({n.partition(".")[0] for n in names
                                           if n != MANAGER_SOURCE}))

    @property
    def _user_select(self) -> str:
        return ",".join([USER_SELECT, *self._extra_select])

    @property
    def stream_user_select(self) -> str:
        """``$select`` of the change stream's users delta: what a read selects, and
        ``manager`` when the mapping reads it (changes come as ``manager@delta``)."""
        manager = MANAGER_SOURCE in self.extra_attributes
        return self._user_select + (",manager" if manager else "")

    # ------------------------------------------------------------ check

    def check(self) -> CheckReport:
        report = CheckReport()
        s = self.settings
        steps: list[tuple[str, Callable[[], object]]] = [
            (f"token for {self.tokens.who}", lambda: self.tokens.token()),
            ("read users (User.Read.All)",
             lambda: self.graph.get("users", {"$select": "id", "$top": "1"})),
            ("read groups (GroupMember.Read.All)",
             lambda: self.graph.get("groups", {"$select": "id", "$top": "1"})),
        ]
        if s.administrative_unit:
            steps.append(("read administrative units (AdministrativeUnit.Read.All)",
                          lambda: self.graph.get("directory/administrativeUnits",
                                                 {"$select": "id", "$top": "1"})))
        for name, step in steps:
            try:
                step()
            except DirconnectorError as exc:
                report.add(name, False, str(exc))
                return report
            report.add(name, True)
        try:
            snap = self.fetch(ConnectorState(force_full=True))
        except DirconnectorError as exc:
            report.add("full read", False, str(exc))
            return report
        report.add("full read", True, f"{len(snap.users)} users, {len(snap.groups)} groups")
        report.counts.update(users=len(snap.users), groups=len(snap.groups),
                             skipped=len(snap.skipped))
        report.samples.extend(f"{k.ref}: {k.reason}" for k in snap.skipped[:5])
        return report

    # ------------------------------------------------------------ fetch

    def fetch(self, state: ConnectorState) -> Snapshot:
        started = self._clock()
        self._sent_before = self.http.requests_sent
        cache, reason = self._incremental(state)
        if cache is None:
            log.info("azure: full read of tenant %s (%s)", self.settings.tenant_id, reason)
            cache = self._full_read(state, started)
            self.last_read = "full"
        else:
            self.last_read = "delta"
        state.set("cache", cache.to_json())
        snap = self._snapshot(cache, started)
        self.cache, self.last_snapshot, self.reads = cache, snap, self.reads + 1
        return snap

    def _fingerprint(self) -> str:
        s = self.settings
        key = (f"{CACHE_VERSION}|{s.tenant_id}|{s.graph_root}|{self._user_select}|"
               f"{GROUP_DELTA_SELECT}")
        return hashlib.sha256(key.encode()).hexdigest()[:16]

    def _incremental(self, state: ConnectorState) -> tuple[DirectoryCache | None, str]:
        """The cache brought up to date by delta rounds, or None and why a full read is due."""
        if state.force_full:
            return None, "full read requested"
        if state.get("fingerprint") != self._fingerprint():
            return None, "first run or changed settings"
        cache = DirectoryCache.from_json(state.get("cache"))
        users_link, groups_link = state.get("users_delta"), state.get("groups_delta")
        if cache is None or not users_link or not groups_link:
            return None, "no cached state"
        age = self._clock() - float(state.get("full_read_at") or 0)
        if age >= self.settings.full_read_seconds:
            return None, f"last full read {age / 3600:.1f}h ago"
        try:
            user_items, new_users_link = self.graph.delta(str(users_link))
            group_items, new_groups_link = self.graph.delta(str(groups_link))
        except DeltaExpired as exc:
            log.warning("azure: delta token rejected, doing a full read instead (%s)", exc)
            return None, "delta token rejected"
        ucounts = cache.merge_users(user_items, self._extra_select)
        gcounts = cache.merge_groups(group_items)
        log.info("azure: delta read: users %s; groups %s", _fmt(ucounts), _fmt(gcounts))
        state.set("users_delta", new_users_link)
        state.set("groups_delta", new_groups_link)
        return cache, ""

    def _full_read(self, state: ConnectorState, started: float) -> DirectoryCache:
        # Take the delta links first: a change made while we list is then replayed by the
        # next incremental read (merging is idempotent), never lost.
        users_link = self._latest_link("users/delta", self._user_select)
        groups_link = self._latest_link("groups/delta", GROUP_DELTA_SELECT)
        top = str(self.settings.page_size)
        cache = DirectoryCache()
        for item in self.graph.collect("users", {"$select": self._user_select, "$top": top}):
            cache.put_user(item, self._extra_select)
        for item in self.graph.collect("groups", {"$select": GROUP_SELECT, "$top": top}):
            gid = str(item["id"])
            members = self.graph.collect(f"groups/{gid}/members",
                                         {"$select": "id", "$top": top})
            cache.put_group(gid, str(item.get("displayName") or ""), members)
        state.set("users_delta", users_link)
        state.set("groups_delta", groups_link)
        state.set("full_read_at", started)
        state.set("fingerprint", self._fingerprint())
        return cache

    def _latest_link(self, path: str, select: str) -> str:
        """A deltaLink that starts tracking now (``$deltatoken=latest``)."""
        _, link = self.graph.delta(path, {"$select": select, "$deltatoken": "latest"})
        if not link:
            raise SourceError(f"azure: GET /v1.0/{path} returned no @odata.deltaLink")
        return link

    # ------------------------------------------------------------ snapshot

    def _scope(self, cache: DirectoryCache, names: list[str], option: str) -> set[str] | None:
        """Transitive user members of the named groups (transitiveMembers), or None if unset."""
        if not names:
            return None
        by_name: dict[str, list[str]] = {}
        for gid, g in cache.groups.items():
            by_name.setdefault(g.name.casefold(), []).append(gid)
        users: set[str] = set()
        for name in names:
            ids = [name] if name in cache.groups else by_name.get(name.casefold(), [])
            if not ids:
                # A typo must not turn into "nobody is in scope" and revoke everyone.
                raise SourceError(f"azure: {option}: no group has the id or name {name!r}")
            for gid in ids:
                params = {"$select": "id", "$top": str(self.settings.page_size)}
                for m in self.graph.collect(f"groups/{gid}/transitiveMembers", params):
                    if m.get("@odata.type") == "#microsoft.graph.user":
                        users.add(str(m["id"]))
        return users

    def _admin_unit_groups(self) -> set[str] | None:
        au = self.settings.administrative_unit
        if not au:
            return None
        units = self.graph.collect("directory/administrativeUnits",
                                   {"$select": "id,displayName"})
        ids = [str(u["id"]) for u in units
               if u.get("id") == au or str(u.get("displayName") or "").casefold() == au.casefold()]
        if len(ids) != 1:
            raise SourceError(f"azure: administrative_unit: {len(ids)} units match {au!r}; "
                              "give its id")
        members = self.graph.collect(f"directory/administrativeUnits/{ids[0]}/members",
                                     {"$select": "id"})
        return {str(m["id"]) for m in members if m.get("@odata.type") == "#microsoft.graph.group"}

    def _managers(self) -> dict[str, str]:
        """User id -> manager id, one paged list (user-list-manager.md: $expand=manager).
        Not kept in the cache: delta rounds would need manager@delta bookkeeping, and
        this read costs one request per page."""
        out: dict[str, str] = {}
        params = {"$select": "id", "$expand": "manager($select=id)",
                  "$top": str(self.settings.page_size)}
        for item in self.graph.collect("users", params):
            boss = item.get("manager")
            if isinstance(boss, dict) and boss.get("id"):
                out[str(item["id"])] = str(boss["id"])
        return out

    def map_user(self, uid: str, u: Mapping[str, Any], include: set[str] | None = None,
                 exclude: set[str] | frozenset[str] = frozenset()) -> User | Skipped:
        """One cached user as ``fetch`` hands it on, or why it is skipped."""
        s = self.settings
        upn = str(u.get("userPrincipalName") or "")
        mail = str(u.get("mail") or "")
        email = mail if s.email_attribute == "mail" and mail else upn
        if s.skip_guests and (u.get("userType") == "Guest" or "#EXT#" in upn.upper()):
            return Skipped("user", upn or uid, "external member", "guest")
        if not self.user_filter.keeps(email, upn, mail):
            return Skipped("user", email or uid, "filtered out", "user_filter")
        if (include is not None and uid not in include) or uid in exclude:
            return Skipped("user", email or uid, "filtered out",
                           "include_groups" if uid not in exclude else "exclude_groups")
        return User(external_id=uid, email=email, user_name=upn,
                    display_name=str(u.get("displayName") or ""),
                    given_name=str(u.get("givenName") or ""),
                    family_name=str(u.get("surname") or ""),
                    active=u.get("accountEnabled") is not False,
                    attributes=_extra(u, self.extra_attributes, self._manager_of.get(uid, ""))
                    if self.extra_attributes else ())

    def _snapshot(self, cache: DirectoryCache, started: float) -> Snapshot:
        s = self.settings
        include = self._scope(cache, s.include_groups, "include_groups")
        exclude = self._scope(cache, s.exclude_groups, "exclude_groups") or set()
        au_groups = self._admin_unit_groups()
        if MANAGER_SOURCE in self.extra_attributes:
            self._manager_of = self._managers()
        users: list[User] = []
        skipped: list[Skipped] = []
        for uid, u in cache.users.items():
            record = self.map_user(uid, u, include, exclude)
            if isinstance(record, User):
                users.append(record)
            else:
                skipped.append(record)
        kept = {gid for gid, g in cache.groups.items()
                if self.group_filter.keeps(g.name, gid)
                and (au_groups is None or gid in au_groups)}
        for gid in set(cache.groups) - kept:
            skipped.append(Skipped("group", cache.groups[gid].name or gid, "filtered out",
                                   "group_filter" if au_groups is None or gid in au_groups
                                   else "administrative_unit"))
        synced = {u.external_id for u in users}
        groups = [Group(gid, cache.groups[gid].name or gid, frozenset(members & synced),
                        frozenset(subs))
                  for gid, (members, subs) in cache.effective(kept).items()]
        info = {"source": "Microsoft Graph", "tenant": s.tenant_id, "read": self.last_read,
                "seconds": f"{self._clock() - started:.2f}",
                "requests": str(self.http.requests_sent - self._sent_before)}
        return Snapshot.build(users, groups, skipped, info=info)


def _extra(user: Mapping[str, Any], names: tuple[str, ...], manager: str
           ) -> tuple[tuple[str, str], ...]:
    """The asked properties' values as text (a list's first item, ``a.b`` inside ``a``)."""
    out = []
    for name in names:
        if name == MANAGER_SOURCE:
            value: Any = manager
        else:
            head, _, sub = name.partition(".")
            value = user.get(head)
            if sub:
                value = value.get(sub) if isinstance(value, Mapping) else None
        if isinstance(value, list):
            value = value[0] if value else None
        if isinstance(value, bool):
            value = "true" if value else "false"
        text = clean_text(str(value)) if isinstance(value, str | int | float) else ""
        if text:
            out.append((name, text))
    return tuple(out)


def _fmt(counts: dict[str, int]) -> str:
    return ", ".join(f"{v} {k}" for k, v in counts.items() if v) or "no changes"
