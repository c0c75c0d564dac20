"""The google change feed: Admin audit activities, then reads of what they name.

- Reports API ``activities.list`` (admin.reports_v1 discovery; developers.google.com/
  workspace/admin/reports/v1/reference/activities/list): ``GET admin/reports/v1/activity/
  users/all/applications/admin?startTime=<RFC 3339>``, newest first, ``maxResults`` up to
  1000, ``nextPageToken``; scope ``admin.reports.audit.readonly``. Each activity carries
  ``id.time``, ``id.uniqueQualifier`` and ``events[]`` of ``{type, name, parameters[]}``.
  Admin audit events ("Admin Audit Activity Events": user settings, group settings)
  name the user by ``USER_EMAIL`` and the group by ``GROUP_EMAIL``; ``NEW_VALUE`` holds
  the new address of a rename. ``DELETE_USER`` / ``DELETE_GROUP`` remove.
- Then the Directory API reads what the events name: ``users.get`` / ``groups.get`` by
  address (404: gone) and the changed group's ``members.list``. The read is merged into
  the last complete read (map.Raw) and mapped by the same ``build`` as a full read.
- Retention: the Admin log keeps six months ("Data retention and lag times"); events
  arrive with a lag of minutes, hence the default overlap of 10 minutes.
- Quota: Directory and Reports calls count against per-minute quotas Google does not
  report in headers (Directory API: 2,400 queries per minute per user per project by
  default); the feed keeps under its share of that, counted here.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from ...errors import IncompleteRead
from .. import StreamGap
from ..feedkit import FeedPosition, ShareBudget, check_age, check_clock, epoch, iso_ms, parse_time
from ..filters import SetFilter
from .api import ApiError, DirectoryClient
from .map import Raw, kept_groups, read_members, slim_group, slim_user

log = logging.getLogger(__name__)

PREFIX = "google-feed:1:"
CACHE_KEY = "google.cache.v1"
RETENTION = timedelta(days=180)
QUOTA_PER_MINUTE = 2400
LABEL = "google"


@dataclass
class Edit:
    """Which records one poll changed in the raw read, by id."""

    users: set[str] = field(default_factory=set)
    gone_users: set[str] = field(default_factory=set)
    groups: set[str] = field(default_factory=set)
    gone_groups: set[str] = field(default_factory=set)
    seen_at: dict[str, float] = field(default_factory=dict)


@dataclass
class Touched:
    """What one poll's activities name, by address."""

    users: set[str] = field(default_factory=set)
    deleted_users: set[str] = field(default_factory=set)
    groups: set[str] = field(default_factory=set)
    deleted_groups: set[str] = field(default_factory=set)
    seen_at: dict[str, float] = field(default_factory=dict)
    """Address -> when the event happened."""


class GoogleFeed:
    """Polls the admin audit log and patches a Raw read with what it names."""

    def __init__(self, client: Callable[[], DirectoryClient], *, scope: Mapping[str, str],
                 group_filter: SetFilter, page_size: int, overlap: timedelta, share: float,
                 sleep: Callable[[float], None], clock: Callable[[], float] = time.time,
                 ) -> None:
        self._client = client
        self.scope = dict(scope)
        self.group_filter = group_filter
        self.page_size = page_size
        self.extra: tuple[str, ...] = ()
        """User fields an attribute mapping reads (the connector's ``read_attributes``)."""
        self.overlap = overlap
        self.clock = clock
        self.sleep = sleep
        self.budget = ShareBudget(share, LABEL, clock)
        self._window_end = 0.0

    @property
    def client(self) -> DirectoryClient:
        return self._client()

    def position_now(self) -> FeedPosition:
        return FeedPosition(iso_ms(datetime.fromtimestamp(self.clock(), UTC)))

    def read(self, position: FeedPosition, raw: Raw) -> tuple[Raw, FeedPosition, Edit]:
        """The raw read with this poll applied, the new position, and what changed."""
        check_age(position, self.clock(), RETENTION, self.overlap, LABEL, "Admin audit log")
        started = datetime.fromtimestamp(self.clock(), UTC)
        check_clock(position, started, LABEL)
        new = FeedPosition(position.at)
        client = self.client
        client.before_request = self._spend
        try:
            touched = self._activities(position, new)
            patched, edit = self._apply(raw, touched)
        except (IncompleteRead, ApiError) as exc:
            if isinstance(exc, ApiError) and exc.status != 400:
                raise                    # rights, auth: the operator's to fix, not a gap
            raise StreamGap(f"{LABEL}: a feed query failed, events may be lost: {exc}") from exc
        finally:
            client.before_request = None
        new.settle(started, self.overlap)
        return patched, new, edit

    def _spend(self) -> None:
        """Count one request against the feed's share of the per-minute quota."""
        self.budget.pause(self.sleep)
        now = self.clock()
        if now >= self._window_end:
            self._window_end = now + 60.0
        self.budget.observe(QUOTA_PER_MINUTE, self._window_end - now)

    def _activities(self, old: FeedPosition, new: FeedPosition) -> Touched:
        since = iso_ms(parse_time(old.at) - self.overlap)
        touched = Touched()
        params: dict[str, Any] = {"userKey": "all", "applicationName": "admin",
                                  "startTime": since, "maxResults": 1000}
        if "customer" in self.scope and self.scope["customer"] != "my_customer":
            params["customerId"] = self.scope["customer"]
        for page in self.client.activities("activities.list (admin)", **params):
            for activity in page:
                ident = activity.get("id") or {}
                stamp = str(ident.get("time") or "")
                key = f"e:{stamp}/{ident.get('uniqueQualifier')}"
                if not new.fresh(key, stamp, old):
                    continue
                when = epoch(stamp)
                for event in activity.get("events") or []:
                    self._event(event, touched, when)
        return touched

    def _event(self, event: Mapping[str, Any], touched: Touched, when: float | None) -> None:
        name = str(event.get("name") or "")
        values = {str(p.get("name")): str(p.get("value") or "")
                  for p in event.get("parameters") or [] if isinstance(p, dict)}
        group, user, new_value = (values.get("GROUP_EMAIL", "").casefold(),
                                  values.get("USER_EMAIL", "").casefold(),
                                  values.get("NEW_VALUE", "").casefold())
        named: list[str] = []
        if group:
            (touched.deleted_groups if name == "DELETE_GROUP" else touched.groups).add(group)
            named.append(group)
            if "@" in new_value:
                touched.groups.add(new_value)
                named.append(new_value)
        elif user:
            (touched.deleted_users if name == "DELETE_USER" else touched.users).add(user)
            named.append(user)
            if "@" in new_value:         # RENAME_USER: the new primary address
                touched.users.add(new_value)
                named.append(new_value)
        if when is not None:
            for address in named:
                touched.seen_at[address] = max(when, touched.seen_at.get(address, 0.0))

    def _apply(self, raw: Raw, touched: Touched) -> tuple[Raw, Edit]:
        client = self.client
        users = dict(raw.users)
        groups = dict(raw.groups)
        members = dict(raw.members)
        user_ids = {str(u.get("primaryEmail") or "").casefold(): uid for uid, u in users.items()}
        group_ids = {str(g.get("email") or "").casefold(): gid for gid, g in groups.items()}
        seen_at: dict[str, float] = {}
        found_users: set[str] = set()
        gone_users: set[str] = set()
        for address in sorted(touched.users - touched.deleted_users):
            custom = any(n.startswith("customSchemas.") for n in self.extra)
            item = client.get_one("users", f"users.get {address}", userKey=address,
                                  projection="full" if custom else "basic")
            if item is not None and self._in_scope(str(item.get("primaryEmail") or "")):
                uid = str(item.get("id") or "")
                users[uid] = slim_user(item, self.extra)
                found_users.add(uid)
                _when(seen_at, uid, touched.seen_at.get(address))
            elif address in user_ids:
                gone_users.add(user_ids[address])
        for address in touched.deleted_users:
            if address in user_ids:
                gone_users.add(user_ids[address])
                _when(seen_at, user_ids[address], touched.seen_at.get(address))
        holders: set[str] = set()
        for uid in gone_users - found_users:
            users.pop(uid, None)
            # Google drops a deleted user from its groups without a membership event.
            for gid, listed in members.items():
                if listed is not None and any(m["id"] == uid for m in listed):
                    members[gid] = [m for m in listed if m["id"] != uid]
                    holders.add(gid)
        found_groups: set[str] = set()
        gone_groups: set[str] = set()
        for address in sorted(touched.groups - touched.deleted_groups):
            item = client.get_one("groups", f"groups.get {address}", groupKey=address)
            if item is not None and self._in_scope(str(item.get("email") or "")):
                gid = str(item.get("id") or "")
                groups[gid] = slim_group(item)
                found_groups.add(gid)
                _when(seen_at, gid, touched.seen_at.get(address))
            elif address in group_ids:
                gone_groups.add(group_ids[address])
        for address in touched.deleted_groups:
            if address in group_ids:
                gone_groups.add(group_ids[address])
                _when(seen_at, group_ids[address], touched.seen_at.get(address))
        for gid in gone_groups - found_groups:
            groups.pop(gid, None)
            members.pop(gid, None)
            # Google drops a deleted group from the groups it was nested in, unannounced.
            for parent, listed in members.items():
                if listed is not None and any(m["id"] == gid for m in listed):
                    members[parent] = [m for m in listed if m["id"] != gid]
                    holders.add(parent)
        patched = Raw(users, groups, members)
        kept = kept_groups(patched, self.group_filter)
        # A nested group the filter leaves out still counts (its users fold into the parent).
        reread = sorted(gid for gid in found_groups if gid in kept or gid in raw.members)
        if reread:
            read_members(client, patched, reread, self.group_filter, self.page_size, again=True)
        new_nested = patched.members.keys() - raw.members.keys()
        return patched, Edit(found_users, gone_users - found_users,
                             found_groups | new_nested | holders, gone_groups - found_groups,
                             seen_at)

    def _in_scope(self, email: str) -> bool:
        domain = self.scope.get("domain")
        return not domain or email.casefold().endswith("@" + domain.casefold())


def _when(seen_at: dict[str, float], oid: str, when: float | None) -> None:
    if when is not None:
        seen_at[oid] = when
