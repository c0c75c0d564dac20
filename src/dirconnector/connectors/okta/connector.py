"""The ``okta`` connector: users and groups from the Okta Management API.

Reads ``/api/v1/users`` (all statuses: a plain listing omits DEPROVISIONED users,
so they are read by a second, explicit ``status eq "DEPROVISIONED"`` query),
``/api/v1/groups`` and ``/api/v1/groups/{id}/users`` through HttpClient, with an API token
(SSWS) or a service app's private-key JWT (auth.py). The official ``okta`` SDK was
measured and not used; connectors/okta.md says why. Incremental reads: cache.py.

Status mapping (Okta API reference, User object ``status``): ACTIVE, PROVISIONED,
RECOVERY, PASSWORD_EXPIRED and LOCKED_OUT are people who still belong (a locked-out or
expired password is a sign-in problem, not a departure); SUSPENDED and DEPROVISIONED
are inactive; STAGED (created, never activated) is synced only with ``sync_staged``.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any, ClassVar
from urllib.parse import urlsplit

from pydantic import BaseModel

from ...checks import CheckReport
from ...errors import ConfigError, DirconnectorError, IncompleteRead, SourceError, TransientError
from ...http import pause
from ...mapping import MANAGER_SOURCE
from ...model import Group, Skipped, Snapshot, User, clean_text, normalize_email
from ...state_space import ConnectorState
from .. import Changes, StreamGap, StreamMode
from ..feedkit import FeedPosition, Pacer
from ..filters import SetFilter, parse_filter
from .api import OktaApi, QueryRefused
from .auth import ApiToken, ServiceApp, load_signing_key
from .cache import CACHE_KEY, ReadCache, fingerprint, next_since, okta_time
from .settings import OktaSettings
from .stream import PREFIX, Delta, OktaFeed

__all__ = ["OktaConnector", "OktaSettings"]

log = logging.getLogger(__name__)

ACTIVE_STATUSES = frozenset({"ACTIVE", "PROVISIONED", "RECOVERY", "PASSWORD_EXPIRED",
                             "LOCKED_OUT"})
INACTIVE_STATUSES = frozenset({"SUSPENDED", "DEPROVISIONED"})
DEPROVISIONED = 'status eq "DEPROVISIONED"'
_SEARCH_HINT = ("the part after '|' is sent to Okta as the search parameter; see 'search' "
                "under List all users / List all groups in Okta's API reference")

_PROFILE_NAME = re.compile(r"^(profile\.)?[A-Za-z_][A-Za-z0-9_]*$")
Slim = dict[str, str]
"""The user fields the connector maps, as cached: id, status, email, login, names."""


class OktaConnector:
    """Reads the org; a read that cannot finish raises rather than returning part of it."""

    settings_model: ClassVar[type[BaseModel]] = OktaSettings

    def __init__(self, settings: OktaSettings, *,
                 sleep: Callable[[float], None] = pause,
                 clock: Callable[[], float] = time.time) -> None:
        self.settings = s = settings
        self.user_filter: SetFilter = parse_filter(s.user_filter, "user_filter")
        self.group_filter: SetFilter = parse_filter(s.group_filter, "group_filter")
        self._clock = clock
        auth: ApiToken | ServiceApp
        if s.token is not None:
            auth = ApiToken(s.token.get_secret_value())
        else:
            assert s.client_id is not None and s.private_key is not None  # validated
            key = load_signing_key(s.private_key.get_secret_value(), s.key_id)
            auth = ServiceApp(s.org_url, s.client_id, key, s.scopes, verify=s.verify,
                              timeout=s.timeout)
        self.auth = auth
        self.auth_mode = auth.description
        self.api = OktaApi(s.org_url, auth, verify=s.verify, timeout=s.timeout,
                           reserve_ratio=s.rate_limit_reserve, max_wait=s.rate_limit_max_wait,
                           sleep=sleep, clock=clock)
        self._fingerprint = fingerprint(s.org_url, s.user_filter, s.group_filter,
                                        s.email_attribute, s.incremental)
        self._sleep = sleep
        self.feed = OktaFeed(self.api, slim=self._slim, user_filter=self.user_filter,
                             group_filter=self.group_filter, page_size=s.page_size,
                             overlap=s.feed_overlap, share=s.feed_rate_share, clock=clock)
        self.pacer = Pacer(s.feed_poll_interval.total_seconds(), self.feed.budget, sleep)
        self._memory: ReadCache | None = None
        """The users and memberships of the last read, kept up to date by ``changes``
        (a deleted user's groups are handed on without them)."""
        self.extra_attributes: tuple[str, ...] = ()
        """Profile properties an attribute mapping reads too (``read_attributes``)."""

    def read_attributes(self, names: frozenset[str]) -> None:
        """Also read these user profile properties (ReadsAttributes): ``title`` or
        ``profile.title``; ``manager`` is ``profile.managerId`` (the manager's Okta id or
        login), resolved to the manager's id. A changed list means one full read (the
        cache's fingerprint covers it)."""
        for name in names:
            if not _PROFILE_NAME.match(name):
                raise ConfigError(f"target.mapping: {name!r} is not an Okta profile property "
                                  "(letters, digits and _; optionally profile.<name>)")
        self.extra_attributes = tuple(sorted(names))
        s = self.settings
        self._fingerprint = fingerprint(s.org_url, s.user_filter, s.group_filter,
                                        s.email_attribute, s.incremental,
                                        *self.extra_attributes)

    def __repr__(self) -> str:
        return f"OktaConnector(org_url={self.settings.org_url!r}, auth={self.auth_mode!r})"

    # ------------------------------------------------------------------ check

    def check(self) -> CheckReport:
        report = CheckReport()
        host = urlsplit(self.settings.org_url).netloc
        probes: list[tuple[str, str, dict[str, Any]]] = [
            (f"read users of {host} ({self.auth_mode})", "api/v1/users", {"limit": 1}),
            ("read groups", "api/v1/groups", {"limit": 1})]
        if self.user_filter.native:
            probes.append(("user_filter search expression", "api/v1/users",
                           {"limit": 1, "search": self.user_filter.native}))
        if self.group_filter.native:
            probes.append(("group_filter search expression", "api/v1/groups",
                           {"limit": 1, "search": self.group_filter.native}))
        if self.settings.incremental == "feed":
            probes.append(("System Log (change feed; okta.logs.read)", "api/v1/logs",
                           {"limit": 1}))
        for name, path, params in probes:
            try:
                self.api.get(path, params)
            except DirconnectorError as exc:
                report.add(name, False, str(exc) + (f" ({exc.hint})" if exc.hint else ""))
                if path == "api/v1/users" and "search" not in params:
                    return report        # nothing else can work without credentials
                continue
            report.add(name, True)
        if self.api.gauge.lowest_remaining is not None:
            report.add("rate limit", True, f"{self.api.gauge.lowest_remaining} requests left "
                       "in this window")
        return report

    # ------------------------------------------------------------------ fetch

    def fetch(self, state: ConnectorState) -> Snapshot:
        s = self.settings
        started = time.monotonic()
        cache = None if s.incremental == "off" else ReadCache.load(state.get(CACHE_KEY),
                                                                    self._fingerprint)
        full = (cache is None or state.force_full
                or self._clock() - cache.full_at >= s.full_read_interval.total_seconds())
        self.api.start_clock()
        # The counters are per connector; a daemon reuses it, so report this read's share.
        pages, sent, waited = (self.api.pages_read, self.api.http.requests_sent,
                               self.api.gauge.waited)
        fed: Delta | None = None
        if cache is not None and not full and s.incremental == "feed":
            try:
                fed = self.feed.read(FeedPosition.load(cache.position, PREFIX))
            except StreamGap as exc:
                log.warning("%s; reading in full", exc)
                full = True
        group_skips: list[Skipped] = []
        try:
            if fed is not None and cache is not None:
                slims, memberships = _merged(cache, fed)
            else:
                if cache is not None and not full and s.incremental == "users":
                    slims = self._changed_users(cache)
                else:
                    slims = self._read_users()
                _, group_skips, memberships = self._read_groups(None if full else cache)
        except TransientError as exc:
            raise IncompleteRead(f"okta: the read did not finish, so nothing is planned from "
                                 f"it: {exc}") from exc
        new = ReadCache(self._fingerprint, self._clock() if full or cache is None
                        else cache.full_at, "", slims, memberships)
        if fed is not None:
            new.position = fed.position.dump(PREFIX)
        elif self.api.server_start is not None:
            new.since = next_since(self.api.server_start)
            new.position = FeedPosition(okta_time(self.api.server_start)).dump(PREFIX)
        self._memory = new
        if s.incremental != "off":
            state.set(CACHE_KEY, new.to_json())
        groups = [Group(gid, str(m.get("name") or gid), frozenset(m["members"]))
                  for gid, m in memberships.items()]
        users: list[User] = []
        skipped: list[Skipped] = list(group_skips)
        for slim in slims.values():
            user, skip = self._user(slim)
            if user is not None:
                users.append(user)
            if skip is not None:
                skipped.append(skip)
        if MANAGER_SOURCE in self.extra_attributes:
            users = _with_managers(users, slims)
        info = {"source": s.org_url, "auth": self.auth_mode,
                "read": "full" if full or cache is None else f"incremental ({s.incremental})",
                "users read": str(len(slims)), "pages": str(self.api.pages_read - pages),
                "requests": str(self.api.http.requests_sent - sent),
                "rate-limit wait": f"{self.api.gauge.waited - waited:.1f}s",
                "read time": f"{time.monotonic() - started:.1f}s"}
        return Snapshot.build(users, groups, skipped, info=info)

    # ------------------------------------------------------------------ stream

    def stream_mode(self) -> StreamMode:
        try:
            self.api.get("api/v1/logs", {"limit": 1, "since": okta_time(
                datetime.fromtimestamp(self._clock(), UTC))})
        except SourceError as exc:
            return StreamMode("marker", f"the System Log cannot be read ({exc}); deletions "
                              "would go unseen, so each change is a full read")
        return StreamMode("feed", "users by lastUpdated, groups by lastMembershipUpdated, "
                          "deletions from the System Log")

    def stream_position(self) -> str:
        return self.feed.position_now().dump(PREFIX)

    def changes(self, position: str, wait: float) -> Changes:
        """At most one poll per ``feed_poll_interval`` and within the rate share; between
        polls, waits up to ``wait`` and answers an empty batch at the same position."""
        if not self.pacer.ready(wait):
            return Changes(position=position)
        self.pacer.polled()
        delta = self.feed.read(FeedPosition.load(position, PREFIX))
        batch = self._changes(delta)
        if self._memory is not None:
            slims, memberships = _merged(self._memory, delta)
            self._memory = ReadCache(self._memory.fingerprint, self._memory.full_at,
                                     self._memory.since, slims, memberships)
        return batch

    def close(self) -> None:
        """Nothing held open: each poll is a few plain HTTPS requests."""

    def _changes(self, delta: Delta) -> Changes:
        users: list[User] = []
        skipped: list[Skipped] = []
        removed_users = set(delta.removed_users | delta.filtered_users)
        for slim in delta.users.values():
            user, skip = self._user(slim)
            if user is not None:
                users.append(user)
            elif skip is not None and skip.reason == "filtered out":
                removed_users.add(slim["id"])
            elif skip is not None:
                skipped.append(skip)
        if MANAGER_SOURCE in self.extra_attributes:
            # A managerId given as a login resolves against every user, as in a full read.
            known = dict(self._memory.users) if self._memory is not None else {}
            known.update(delta.users)
            users = _with_managers(users, known)
        # What a full read would make of them (email normalised, no email: skipped).
        built = Snapshot.build(users, (), skipped)
        groups = {gid: Group(gid, str(m["name"]), frozenset(m["members"]))
                  for gid, m in delta.groups.items()}
        if self._memory is not None and delta.removed_users:
            for gid, entry in self._memory.groups.items():
                members = set(entry.get("members", []))
                if gid not in groups and gid not in delta.removed_groups and \
                        members & delta.removed_users:
                    groups[gid] = Group(gid, str(entry.get("name") or gid),
                                        frozenset(members - delta.removed_users))
        return Changes(position=delta.position.dump(PREFIX), users=dict(built.users), groups=groups,
                       removed_users=frozenset(removed_users),
                       removed_groups=frozenset(delta.removed_groups),
                       skipped=built.skipped, seen_at=dict(delta.seen_at))

    def _read_users(self) -> dict[str, Slim]:
        """Every user the search allows, DEPROVISIONED included, keyed by Okta id."""
        native = self.user_filter.native
        if native:
            # search matches all statuses, but ask for DEPROVISIONED explicitly too so the
            # result does not hang on that detail; duplicates merge by id.
            queries = [{"search": native}, {"search": f"({native}) and {DEPROVISIONED}"}]
        else:
            queries = [{}, {"filter": DEPROVISIONED}]
        return self._query_users(queries, {})

    def _changed_users(self, cache: ReadCache) -> dict[str, Slim]:
        """The cached users with those updated since the last read replaced."""
        changed = f'lastUpdated gt "{cache.since}"'
        queries = [{"filter": changed}, {"filter": f"{changed} and {DEPROVISIONED}"}]
        return self._query_users(queries, dict(cache.users))

    def _query_users(self, queries: list[dict[str, str]],
                     found: dict[str, Slim]) -> dict[str, Slim]:
        native = self.user_filter.native
        for query in queries:
            try:
                for raw in self._items("api/v1/users",
                                       {**query, "limit": self.settings.page_size}):
                    found[str(raw["id"])] = self._slim(raw)
            except QueryRefused as exc:
                raise SourceError(f"{exc} [user_filter search: {native!r}]" if native else
                                  str(exc), hint=_SEARCH_HINT) from exc
        return found

    def _read_groups(self, cache: ReadCache | None,
                     ) -> tuple[list[Group], list[Skipped], dict[str, dict[str, Any]]]:
        params: dict[str, Any] = {"limit": self.settings.page_size}
        if self.group_filter.native:
            params["search"] = self.group_filter.native
        try:
            raw_groups = list(self._items("api/v1/groups", params))
        except QueryRefused as exc:
            raise SourceError(f"{exc} [group_filter search: {self.group_filter.native!r}]",
                              hint=_SEARCH_HINT) from exc
        groups: list[Group] = []
        skipped: list[Skipped] = []
        memberships: dict[str, dict[str, Any]] = {}
        for raw in raw_groups:
            gid = str(raw["id"])
            name = clean_text(_lookup(raw, "profile.name")) or gid
            if not self.group_filter.keeps(name):
                skipped.append(Skipped("group", name, "filtered out", "group_filter",
                                       external_id=gid))
                continue
            stamp = _lookup(raw, "lastMembershipUpdated")
            members = cache.members(gid, stamp) if cache is not None else None
            if members is None:
                members = frozenset(str(u["id"]) for u in
                                    self._items(f"api/v1/groups/{gid}/users",
                                                {"limit": self.settings.page_size}))
            memberships[gid] = {"stamp": stamp, "members": sorted(members), "name": name}
            groups.append(Group(gid, name, members))
        return groups, skipped, memberships

    def _items(self, path: str, params: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
        for page in self.api.pages(path, params):
            for item in page:
                if not isinstance(item, dict) or not item.get("id"):
                    raise IncompleteRead(f"okta: GET {path} returned an entry without an id; "
                                         "the read stopped")
                yield item

    def _slim(self, raw: Mapping[str, Any]) -> Slim:
        slim = {"id": str(raw["id"]), "status": str(raw.get("status") or ""),
                "email": clean_text(_lookup(raw, self.settings.email_attribute)),
                "login": clean_text(_lookup(raw, "profile.login")),
                "first": clean_text(_lookup(raw, "profile.firstName")),
                "last": clean_text(_lookup(raw, "profile.lastName")),
                "display": clean_text(_lookup(raw, "profile.displayName"))}
        for name in self.extra_attributes:
            path = "profile.managerId" if name == MANAGER_SOURCE else (
                name if name.startswith("profile.") else f"profile.{name}")
            value = clean_text(_scalar(raw, path))
            if value:
                slim["x:" + name] = value
        return slim

    def _user(self, slim: Slim) -> tuple[User | None, Skipped | None]:
        uid, status, email = slim["id"], slim["status"], slim["email"]
        ref = normalize_email(email or slim["login"]) or uid
        if status == "STAGED" and not self.settings.sync_staged:
            return None, Skipped("user", ref, "status", "STAGED", external_id=uid)
        if status not in ACTIVE_STATUSES | INACTIVE_STATUSES | {"STAGED"}:
            # A status this code does not know: neither create nor revoke on a guess.
            return None, Skipped("user", ref, "status", f"unknown status {status!r}",
                                 external_id=uid)
        if not self.user_filter.keeps(email):
            # Filtered-out users count as absent (bwdc's semantics): no external_id here.
            return None, Skipped("user", normalize_email(email) or uid, "filtered out",
                                 "user_filter")
        display = slim["display"] or f"{slim['first']} {slim['last']}".strip()
        extra = tuple(sorted((k[2:], v) for k, v in slim.items() if k.startswith("x:")))
        return User(external_id=uid, email=email, user_name=slim["login"], display_name=display,
                    given_name=slim["first"], family_name=slim["last"],
                    active=status not in INACTIVE_STATUSES, attributes=extra), None


def _with_managers(users: list[User], slims: Mapping[str, Slim]) -> list[User]:
    """profile.managerId is free text (Okta's default profile): the manager's Okta id, or
    failing that a login; anything else names no one and is dropped."""
    by_login = {s["login"].lower(): uid for uid, s in slims.items() if s["login"]}
    out = []
    for user in users:
        boss = dict(user.attributes).get(MANAGER_SOURCE)
        if boss is None:
            out.append(user)
            continue
        ext = boss if boss in slims else by_login.get(boss.lower(), "")
        kept = [(k, v) for k, v in user.attributes if k != MANAGER_SOURCE]
        if ext:
            kept.append((MANAGER_SOURCE, ext))
        out.append(replace(user, attributes=tuple(sorted(kept))))
    return out


def _scalar(obj: Mapping[str, Any], path: str) -> str:
    """A profile property as text: strings, numbers and booleans; a list's first item."""
    value: Any = obj
    for part in path.split("."):
        if not isinstance(value, Mapping):
            return ""
        value = value.get(part)
    if isinstance(value, list):
        value = value[0] if value else None
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value) if isinstance(value, str | int | float) else ""


def _merged(cache: ReadCache, delta: Delta,
            ) -> tuple[dict[str, Slim], dict[str, dict[str, Any]]]:
    """The cached users and memberships with one feed poll applied."""
    slims = dict(cache.users)
    slims.update(delta.users)
    for uid in delta.removed_users | delta.filtered_users:
        slims.pop(uid, None)
    gone = delta.removed_users     # deleted users leave their groups; filtered ones do not
    memberships = dict(cache.groups)
    memberships.update(delta.groups)
    for gid in delta.removed_groups:
        memberships.pop(gid, None)
    if gone:
        for gid, entry in memberships.items():
            members = entry.get("members", [])
            if gone.intersection(members):
                memberships[gid] = {**entry, "members": [m for m in members if m not in gone]}
    return slims, memberships


def _lookup(obj: Mapping[str, Any], path: str) -> str:
    value: Any = obj
    for part in path.split("."):
        if not isinstance(value, Mapping):
            return ""
        value = value.get(part)
    return value if isinstance(value, str) else ""
