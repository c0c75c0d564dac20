"""The ``onelogin`` connector: users, and their roles or groups, from the OneLogin API.

Users come from ``GET /api/2/users`` (cursor paging); the user's integer ``id`` is the
external id. Groups are OneLogin *roles* by default (many-to-many, ``/api/2/roles`` and
``/api/2/roles/{id}/users``, what Bitwarden's connector syncs), or OneLogin *groups*
(``/api/1/groups``; a user holds at most one, through its ``group_id``). Nothing is
nested. Every read goes to the end; a page that cannot be read fails the run
(Bitwarden's connector cuts the list silently at a failed page: never here).

Status (api-docs/2/users; onelogin-python-sdk models/user.py accepts 0-5, 7, 8):
0 unactivated, 1 active, 2 suspended, 3 locked, 4 password expired, 5 awaiting password
reset, 7 password pending, 8 security questions required. Defaults: 1, 4, 5, 7, 8 are
active (the person exists and is entitled; the password state is OneLogin's business);
2 and 3 are inactive (revoked); 0 is not synced (reason "status"). Every list is an option.

Plain REST through HttpClient: onelogin-python-sdk cannot page v1 groups
(its GetGroups200Response drops ``pagination``) and does not retry 429. Settings live in
settings.py, the token and paging plumbing in api.py.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Any, ClassVar

from pydantic import BaseModel

from ...checks import CheckReport
from ...errors import ConfigError, DirconnectorError, IncompleteRead, SourceError
from ...http import RetryPolicy, pause
from ...mapping import MANAGER_SOURCE
from ...model import Group, Skipped, Snapshot, User, clean_text
from ...state_space import ConnectorState
from .. import Changes, StreamGap, StreamMode
from ..feedkit import FeedPosition, Pacer, iso_ms
from ..filters import parse_filter
from .api import DEFAULT_RETRY, LABEL, OneLoginApi
from .settings import (
    ROLE_QUERY_KEYS,
    STATUS_NAMES,
    USER_QUERY_KEYS,
    OneLoginSettings,
    native_query,
)
from .stream import CACHE_KEY, PREFIX, Delta, OneLoginFeed, ReadCache, server_time

log = logging.getLogger(__name__)

USER_READ_TRIES = 3


class OneLoginConnector:
    """Reads the whole OneLogin account, or (``incremental = "feed"``, and in ``watch``)
    follows its change feed (stream.py): role changes do not move a user's
    ``updated_at``, so they come from the Events API."""

    settings_model: ClassVar[type[BaseModel]] = OneLoginSettings

    def __init__(self, settings: OneLoginSettings, *, retry: RetryPolicy = DEFAULT_RETRY,
                 sleep: Callable[[float], None] = pause,
                 clock: Callable[[], float] = time.monotonic,
                 wall_clock: Callable[[], float] = time.time) -> None:
        self.settings = settings
        secret = settings.client_secret.get_secret_value() if settings.client_secret else ""
        self.api = OneLoginApi(settings.api_url, settings.client_id, secret,
                               verify=settings.verify, timeout=settings.timeout,
                               page_size=settings.page_size, retry=retry, sleep=sleep,
                               clock=clock)
        self._user_filter = parse_filter(settings.user_filter, "user_filter")
        self._group_filter = parse_filter(settings.group_filter, "group_filter")
        self._sleep = sleep
        self._wall = wall_clock
        self.feed = OneLoginFeed(
            self.api, slim=self._slim,
            user_query=native_query(self._user_filter.native, "user_filter", USER_QUERY_KEYS,
                                    True),
            role_query=native_query(self._group_filter.native, "group_filter",
                                    ROLE_QUERY_KEYS, False),
            group_filter=self._group_filter, groups_from=settings.groups_from,
            overlap=settings.feed_overlap, share=settings.feed_rate_share,
            retention=settings.feed_retention, clock=wall_clock)
        s = settings
        self._fingerprint = "|".join(map(str, (
            s.api_url, s.user_filter, s.group_filter, s.groups_from, s.email_attribute,
            s.email_suffix)))
        self.pacer = Pacer(settings.feed_poll_interval.total_seconds(), self.feed.budget,
                           sleep)
        self._memory: ReadCache | None = None
        """Users and groups of the last read, kept current by ``changes``."""
        self.extra_attributes: tuple[str, ...] = ()
        """User fields an attribute mapping reads too (``read_attributes``)."""

    def __repr__(self) -> str:
        s = self.settings
        return f"OneLoginConnector({s.api_url!r}, client_id={s.client_id!r})"

    def check(self) -> CheckReport:
        report = CheckReport()
        s = self.settings
        try:
            self.api.token()
        except DirconnectorError as exc:
            report.add(f"token from {s.api_url}", False, _line(exc))
            return report
        report.add(f"token from {s.api_url}", True)
        probes = [("users", "/api/2/users")]
        probes.append(("roles", "/api/2/roles") if s.groups_from == "roles"
                      else ("groups", "/api/1/groups"))
        if s.incremental == "feed":
            probes.append(("events (change feed)", "/api/1/events"))
        for name, path in probes:
            try:
                resp = self.api.get(path, {"limit": 1}, f"{name} (first page)")
            except DirconnectorError as exc:
                report.add(f"read {name}", False, _line(exc))
                continue
            report.add(f"read {name}", True)
            total = resp.headers.get("Total-Count", "")
            if total.isdigit():
                report.counts[name] = int(total)
        return report

    def read_attributes(self, names: frozenset[str]) -> None:
        """Also read these user fields (ReadsAttributes): the user object's standard fields
        (title, department, phone, ...) and ``custom_attributes.<name>``; ``manager`` is
        ``manager_user_id``, the manager's OneLogin id."""
        for name in names:
            head, dot, rest = name.partition(".")
            if not (name == MANAGER_SOURCE or name in STANDARD_FIELDS
                    or (head == "custom_attributes" and dot and rest)):
                raise ConfigError(f"target.mapping: {name!r} is not a OneLogin user field "
                                  f"({', '.join(sorted(STANDARD_FIELDS))}, "
                                  "custom_attributes.<name>, manager)")
        self.extra_attributes = tuple(sorted(names))
        self._fingerprint = "|".join((self._fingerprint.split("|attrs:")[0],
                                      "attrs:" + ",".join(self.extra_attributes)))

    def fetch(self, state: ConnectorState) -> Snapshot:
        started = time.monotonic()
        pages_before = self.api.pages_read
        s = self.settings
        self.api.token()        # a bad credential fails here, with its own one line
        cache = ReadCache.load(state.get(CACHE_KEY), self._fingerprint) \
            if s.incremental == "feed" else None
        read = "full"
        new: ReadCache | None = None
        if cache is not None and not state.force_full and \
                self._wall() - cache.full_at < s.full_read_interval.total_seconds():
            try:
                delta = self.feed.read(FeedPosition.load(cache.position, PREFIX), cache)
                new, read = delta.apply(cache), "incremental (feed)"
            except StreamGap as exc:
                log.warning("%s; reading in full", exc)
        skipped: list[Skipped] = []
        if new is None:
            new = self._full_read(skipped)
        self._memory = new
        if s.incremental == "feed":
            state.set(CACHE_KEY, new.to_json())
        users: list[User] = []
        for slim in new.users.values():
            item = self._user(slim)
            if isinstance(item, User):
                users.append(item)
            else:
                skipped.append(item)
        if MANAGER_SOURCE in self.extra_attributes:
            # manager_user_id names the manager's id; one not read names no one we sync.
            read_ids = new.users.keys()
            users = [u if dict(u.attributes).get(MANAGER_SOURCE, "") in read_ids else
                     replace(u, attributes=tuple(p for p in u.attributes
                                                 if p[0] != MANAGER_SOURCE)) for u in users]
        groups = [Group(gid, str(g["name"]), frozenset(g["members"]))
                  for gid, g in new.groups.items()]
        info = {"source": "onelogin", "api": s.api_url, "groups_from": s.groups_from,
                "read": read, "pages": str(self.api.pages_read - pages_before),
                "read_seconds": f"{time.monotonic() - started:.2f}"}
        return Snapshot.build(users, groups, skipped, info=info)

    def _full_read(self, skipped: list[Skipped]) -> ReadCache:
        """Everything, as the cache a feed read is merged into; group skips into ``skipped``."""
        s = self.settings
        self.api.start_clock()
        raw_users = self._read_users()
        started = server_time(self.api.first_date, self._wall)
        read_ids = {_user_id(raw) for raw in raw_users}
        names: dict[str, str] = {}
        if s.groups_from == "roles":
            groups = self._roles(read_ids, skipped, names)
        else:
            groups = self._groups(raw_users, skipped, names)
        position = FeedPosition(iso_ms(started), {}, {"groups": names})
        return ReadCache(self._fingerprint, self._wall(), position.dump(PREFIX),
                         {_user_id(raw): self._slim(raw) for raw in raw_users},
                         {g.external_id: {"name": g.name, "members": sorted(g.member_ids)}
                          for g in groups})

    # ------------------------------------------------------------------ stream

    def stream_mode(self) -> StreamMode:
        try:
            self.api.get("/api/1/events", {"limit": 1}, "events")
        except DirconnectorError as exc:
            return StreamMode("marker", f"the Events API cannot be read ({_line(exc)}); "
                              "each change is a full read")
        return StreamMode("feed", "users by updated_since, role changes and deletions from "
                          "the Events API")

    def stream_position(self) -> str:
        return self.feed.position_now().dump(PREFIX)

    def changes(self, position: str, wait: float) -> Changes:
        """At most one poll per ``feed_poll_interval`` and within the rate share; between
        polls, waits up to ``wait`` and answers an empty batch at the same position."""
        if not self.pacer.ready(wait):
            return Changes(position=position)
        self.pacer.polled()
        delta = self.feed.read(FeedPosition.load(position, PREFIX), self._memory)
        batch = self._changes(delta)
        if self._memory is not None:
            self._memory = delta.apply(self._memory)
        return batch

    def close(self) -> None:
        """Nothing held open between polls."""

    def _changes(self, delta: Delta) -> Changes:
        users: list[User] = []
        skipped: list[Skipped] = []
        for slim in delta.users.values():
            item = self._user(slim)
            if isinstance(item, User):
                users.append(item)
            else:
                skipped.append(item)
        built = Snapshot.build(users, (), skipped)
        groups = {gid: Group(gid, str(g["name"]), frozenset(g["members"]))
                  for gid, g in delta.groups.items()}
        gone = delta.removed_users | delta.filtered_users
        if self._memory is not None and gone:
            for gid, entry in self._memory.groups.items():
                if gid not in groups and gid not in delta.removed_groups and \
                        gone.intersection(entry["members"]):
                    groups[gid] = Group(gid, str(entry["name"]),
                                        frozenset(set(entry["members"]) - gone))
        return Changes(position=delta.position.dump(PREFIX), users=dict(built.users),
                       groups=groups, removed_users=frozenset(gone),
                       removed_groups=frozenset(delta.removed_groups),
                       skipped=built.skipped, seen_at=dict(delta.seen_at))

    def _slim(self, raw: Mapping[str, Any]) -> dict[str, Any]:
        """What ``_user`` reads of a user record (the cache keeps only this)."""
        slim = {k: raw.get(k) for k in ("id", "username", "firstname", "lastname", "status",
                                        "group_id")}
        attr = self.settings.email_attribute
        if attr.startswith("custom_attributes."):
            custom = raw.get("custom_attributes")
            name = attr.split(".", 1)[1]
            slim["custom_attributes"] = {name: custom.get(name)} if isinstance(custom, dict) \
                else {}
        else:
            slim[attr] = raw.get(attr)
        for name in self.extra_attributes:       # what a mapping reads (``_field``)
            if name == MANAGER_SOURCE:
                slim["manager_user_id"] = raw.get("manager_user_id")
            elif name.startswith("custom_attributes."):
                custom = raw.get("custom_attributes")
                key = name.split(".", 1)[1]
                kept: dict[str, Any] = dict(slim.get("custom_attributes") or {})
                kept[key] = custom.get(key) if isinstance(custom, dict) else None
                slim["custom_attributes"] = kept
            else:
                slim[name] = raw.get(name)
        return slim

    def _read_users(self) -> list[dict[str, Any]]:
        """Every user, once. Paging is by offset (the cursor encodes limit and page), so a
        user added or deleted mid-read shifts later pages and could hide someone: when the
        ``Total-Count`` changes between pages the read is redone, and after
        ``USER_READ_TRIES`` moving reads it fails rather than return a list that may lack
        people."""
        native = native_query(self._user_filter.native, "user_filter", USER_QUERY_KEYS, True)
        for _ in range(USER_READ_TRIES):
            by_id: dict[str, dict[str, Any]] = {}
            for page in self.api.v2_pages("/api/2/users", native, "users"):
                for raw in page:
                    by_id[_user_id(raw)] = raw
            if len(set(self.api.totals)) <= 1:
                return list(by_id.values())
            log.info("%s: the user list changed during the read (Total-Count %s); reading again",
                     LABEL, " -> ".join(self.api.totals))
        raise IncompleteRead(f"{LABEL}: the user list kept changing during {USER_READ_TRIES} "
                             f"reads (Total-Count {' -> '.join(self.api.totals)}); try again "
                             f"when the directory is quiet")

    # ------------------------------------------------------------------ mapping

    def _user(self, raw: Mapping[str, Any]) -> User | Skipped:
        s = self.settings
        ext = _user_id(raw)
        username = clean_text(_text(raw.get("username")))
        email = self._email(raw, username)
        ref = email or username or ext
        if not self._user_filter.keeps(email, username):
            return Skipped("user", ref, "filtered out", f"user_filter {s.user_filter!r}",
                           external_id=ext)
        status = raw.get("status")
        if status in s.skip_statuses:
            return Skipped("user", ref, "status",
                           f"status {status} ({STATUS_NAMES[int(status)]})", external_id=ext)
        if status in s.active_statuses:
            active = True
        elif status in s.inactive_statuses:
            active = False
        else:
            return Skipped("user", ref, "status", f"status {status!r} is in no status list; "
                           f"add it to active_statuses, inactive_statuses or skip_statuses",
                           external_id=ext)
        given = clean_text(_text(raw.get("firstname")))
        family = clean_text(_text(raw.get("lastname")))
        extra: tuple[tuple[str, str], ...] = ()
        if self.extra_attributes:
            extra = tuple((n, v) for n in self.extra_attributes if (v := _field(raw, n)))
        return User(external_id=ext, email=email, user_name=username,
                    display_name=" ".join(p for p in (given, family) if p),
                    given_name=given, family_name=family, active=active, attributes=extra)

    def _email(self, raw: Mapping[str, Any], username: str) -> str:
        attr = self.settings.email_attribute
        if attr.startswith("custom_attributes."):
            custom = raw.get("custom_attributes")
            value = custom.get(attr.split(".", 1)[1]) if isinstance(custom, dict) else None
        else:
            value = raw.get(attr)
        email = _text(value).strip()
        if email:
            return email
        if "@" in username:
            return username
        if username and self.settings.email_suffix:
            return f"{username}@{self.settings.email_suffix}"
        return ""

    def _roles(self, read_ids: set[str], skipped: list[Skipped],
               names: dict[str, str]) -> list[Group]:
        native = native_query(self._group_filter.native, "group_filter", ROLE_QUERY_KEYS, False)
        roles = [r for page in self.api.v2_pages("/api/2/roles", native, "roles") for r in page]
        groups: list[Group] = []
        for role in roles:
            rid, name = str(role.get("id") or ""), clean_text(_text(role.get("name")))
            if not rid or not name:
                raise SourceError(f"{LABEL}: a role without id or name: {role!r:.120}")
            names[rid] = name
            if not self._group_filter.keeps(name):
                skipped.append(Skipped("group", name, "filtered out",
                                       f"group_filter {self.settings.group_filter!r}"))
                continue
            members: set[str] = set()
            for page in self.api.v2_pages(f"/api/2/roles/{rid}/users", {},
                                          f"members of role {name!r}"):
                # get-role-users: "assigned" is false only with include_unassigned=true.
                members.update(str(row["id"]) for row in page
                               if "id" in row and row.get("assigned", True) is not False)
            groups.append(Group(rid, name, frozenset(members & read_ids)))
        return groups

    def _groups(self, raw_users: list[dict[str, Any]], skipped: list[Skipped],
                names: dict[str, str]) -> list[Group]:
        members: dict[str, set[str]] = {}
        for raw in raw_users:
            gid = raw.get("group_id")
            if gid is not None and gid != "":
                members.setdefault(str(gid), set()).add(str(raw["id"]))
        groups: list[Group] = []
        for page in self.api.v1_pages("/api/1/groups", "groups"):
            for row in page:
                gid, name = str(row.get("id") or ""), clean_text(_text(row.get("name")))
                if not gid or not name:
                    raise SourceError(f"{LABEL}: a group without id or name: {row!r:.120}")
                names[gid] = name
                if not self._group_filter.keeps(name):
                    skipped.append(Skipped("group", name, "filtered out",
                                           f"group_filter {self.settings.group_filter!r}"))
                    continue
                groups.append(Group(gid, name, frozenset(members.get(gid, ()))))
        return groups


STANDARD_FIELDS = frozenset({
    "phone", "title", "department", "company", "comment", "samaccountname",
    "userprincipalname", "distinguished_name", "member_of", "external_id", "manager_ad_id",
    "directory_id", "firstname", "lastname", "username", "email", "state", "group_id"})
"""Fields of the v2 user object (OneLogin API reference, Users) a mapping may read."""


def _field(raw: Mapping[str, Any], name: str) -> str:
    if name == MANAGER_SOURCE:
        value = raw.get("manager_user_id")
    elif name.startswith("custom_attributes."):
        custom = raw.get("custom_attributes")
        value = custom.get(name.split(".", 1)[1]) if isinstance(custom, dict) else None
    else:
        value = raw.get(name)
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        return ""
    return clean_text(str(value))


def _user_id(raw: Mapping[str, Any]) -> str:
    uid = raw.get("id")
    if not isinstance(uid, int | str) or isinstance(uid, bool) or not str(uid).strip():
        raise SourceError(f"{LABEL}: a user record has no id (fields: {sorted(raw)[:8]})")
    return str(uid).strip()


def _text(value: Any) -> str:
    return "" if value is None else str(value)


def _line(exc: DirconnectorError) -> str:
    return f"{exc} ({exc.hint})" if exc.hint else str(exc)


__all__ = ["OneLoginConnector", "OneLoginSettings"]
