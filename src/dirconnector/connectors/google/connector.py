"""The ``google`` connector: users and groups of Google Workspace (Admin SDK Directory API).

Reads ``users.list``, ``groups.list`` and ``members.list`` to the last page on every run
(the Directory API has no delta query for lists; ``users.watch`` push channels need a
public HTTPS receiver). Mapping (developers.google.com/workspace/admin/directory/
reference/rest/v1/users): ``id`` -> external_id, ``primaryEmail`` -> email,
``name.fullName/givenName/familyName``; ``suspended`` or ``archived`` -> inactive.
Members (reference/rest/v1/members): ``USER`` -> member, ``GROUP`` -> subgroup,
``CUSTOMER`` -> every user of the account; users outside the account's user list are
reported as skipped "external member".
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, Field, SecretStr, field_validator, model_validator

from ...checks import CheckReport
from ...errors import ConfigError, SourceError
from ...http import pause
from ...model import Group, Snapshot, User, looks_like_email
from ...settings import Duration, HttpPluginSettings
from ...state_space import ConnectorState
from .. import Changes, StreamGap, StreamMode
from ..feedkit import FeedPosition, Pacer
from ..filters import SetFilter, parse_filter
from .api import DEFAULT_ENDPOINT, REPORTS_SCOPE, DirectoryClient
from .map import Raw, build, changed_records, check_names, read_raw
from .stream import CACHE_KEY, PREFIX, GoogleFeed

log = logging.getLogger(__name__)

KEY_FIELDS = ("type", "client_email", "client_id", "private_key", "private_key_id", "token_uri")


class GoogleSettings(HttpPluginSettings):
    """``[source] type = "google"``."""

    type: Literal["google"] = "google"
    credentials: SecretStr | None = None
    """The service-account JSON key (give it as credentials_file, credentials_env or inline)."""
    admin_email: str
    """The administrator impersonated through domain-wide delegation (JWT ``sub``)."""
    customer: str | None = None
    """Customer id (``C0xxxxxxx``); ``my_customer`` (the admin's own account) when unset."""
    domain: str | None = None
    """Read only users and groups of this domain instead of the whole customer."""
    api_endpoint: str | None = None
    """Directory API base URL instead of https://admin.googleapis.com/ (proxies, emulator)."""
    user_filter: str | None = None
    """``include:a@x.com,b@x.com | <users.list query>``; set part by primary email."""
    group_filter: str | None = None
    """``exclude:Staff,all@x.com | <groups.list query>``; set part by name or email."""
    include_archived: bool = True
    """Read archived users as inactive (revoked); false leaves them out and untouched."""
    page_size: int = Field(500, ge=1, le=500)
    """maxResults per page: users up to 500, groups and members up to 200."""
    incremental: Literal["off", "feed"] = "off"
    """``feed``: between full reads, a run asks only the change feed (stream.py: Admin audit
    activities, then the users and groups they name); needs the Reports API scope."""
    full_read_interval: Duration = timedelta(hours=24)
    """With ``incremental = "feed"``: read everything afresh at least this often."""
    feed_poll_interval: Duration = timedelta(seconds=30)
    """Under ``watch``: ask Google at most this often (a quiet poll is 1 request)."""
    feed_overlap: Duration = timedelta(minutes=10)
    """How far back each feed poll asks again (the audit log's lag of minutes)."""
    feed_rate_share: float = Field(0.2, gt=0.0, le=1.0)
    """Largest share of the per-minute API quota the change feed may use."""

    @field_validator("admin_email")
    @classmethod
    def _admin_email(cls, value: str) -> str:
        value = value.strip()
        if not looks_like_email(value):
            raise ValueError("must be the email address of a Workspace administrator")
        return value

    @field_validator("api_endpoint")
    @classmethod
    def _endpoint(cls, value: str | None) -> str | None:
        if value and not value.startswith(("https://", "http://")):
            raise ValueError("must be an http(s):// URL")
        return value.rstrip("/") + "/" if value else None

    @field_validator("user_filter", "group_filter")
    @classmethod
    def _filter(cls, value: str | None, info: Any) -> str | None:
        parse_filter(value, str(info.field_name))
        return value

    @model_validator(mode="after")
    def _key(self) -> GoogleSettings:
        # An "after" validator: the error location is the model, so format_errors
        # never echoes the key text (it would for an error on the field itself).
        if self.credentials is None:
            raise ValueError("credentials: required: set credentials_file to the service "
                             "account's JSON key file (or credentials_env)")
        info = self.key_info()
        missing = [k for k in KEY_FIELDS if not info.get(k)]
        if missing:
            raise ValueError(f"credentials: the JSON key lacks {', '.join(missing)}; download "
                             "a new JSON key of the service account")
        if info["type"] != "service_account":
            raise ValueError(f"credentials: type is {info['type']!r}, expected "
                             "'service_account' (a service-account JSON key)")
        for name in ("user_filter", "group_filter"):
            if self.incremental == "feed" and parse_filter(getattr(self, name), name).native:
                # Whether a changed entry still matches a search only a full read can tell.
                raise ValueError(f"{name}: incremental = 'feed' cannot be combined with a "
                                 "search query; keep include:/exclude: lists only")
        return self

    def key_info(self) -> dict[str, Any]:
        """The parsed JSON key (raises ValueError without quoting it)."""
        assert self.credentials is not None
        try:
            info = json.loads(self.credentials.get_secret_value())
        except ValueError:
            raise ValueError("credentials: not valid JSON; give the service-account JSON "
                             "key file") from None
        if not isinstance(info, dict):
            raise ValueError("credentials: expected a JSON object (a service-account key)")
        return info

    @property
    def scope(self) -> dict[str, str]:
        """The ``customer`` / ``domain`` parameters of users.list and groups.list."""
        params = {}
        if self.customer or not self.domain:
            params["customer"] = self.customer or "my_customer"
        if self.domain:
            params["domain"] = self.domain
        return params


class GoogleConnector:
    """Reads Google Workspace through the Directory API with a delegated service account."""

    settings_model: ClassVar[type[BaseModel]] = GoogleSettings

    def __init__(self, settings: GoogleSettings, *,
                 sleep: Callable[[float], None] = pause,
                 clock: Callable[[], float] = time.time) -> None:
        self.settings = settings
        self.user_filter: SetFilter = parse_filter(settings.user_filter, "user_filter")
        self.group_filter: SetFilter = parse_filter(settings.group_filter, "group_filter")
        self._sleep = sleep
        self._client: DirectoryClient | None = None
        self.feed = GoogleFeed(lambda: self.client, scope=settings.scope,
                               group_filter=self.group_filter, page_size=settings.page_size,
                               overlap=settings.feed_overlap, share=settings.feed_rate_share,
                               sleep=sleep, clock=clock)
        self._clock = clock
        self.pacer = Pacer(settings.feed_poll_interval.total_seconds(), self.feed.budget,
                           sleep)
        s = settings
        self._fingerprint = "|".join(map(str, (s.customer, s.domain, s.api_endpoint,
                                               s.user_filter, s.group_filter)))
        self._raw: Raw | None = None
        self._last: Snapshot | None = None
        self._users: dict[str, User] = {}
        self._groups: dict[str, Group] = {}
        """The last snapshot's records, kept current by ``changes``."""
        self.extra_attributes: tuple[str, ...] = ()
        """User fields an attribute mapping reads too (``read_attributes``)."""

    @property
    def client(self) -> DirectoryClient:
        if self._client is None:
            s = self.settings
            self._client = DirectoryClient(
                s.key_info(), s.admin_email, api_endpoint=s.api_endpoint,
                ca_file=str(s.ca_file) if s.ca_file else None, verify_tls=s.verify_tls,
                timeout=s.timeout, sleep=self._sleep)
        return self._client

    def check(self) -> CheckReport:
        """Token (delegation and scopes), then one small page of each list call, in order."""
        report = CheckReport()
        s = self.settings
        where = ", ".join(f"{k} {v}" for k, v in s.scope.items())
        try:
            client = self.client
            client.fetch_token()
        except SourceError as exc:
            report.add(f"token for {s.admin_email} (domain-wide delegation)", False, str(exc))
            return report
        report.add(f"token for {s.admin_email} (domain-wide delegation)", True,
                   f"service account {client.client_email}")
        # The native filter queries go along, so a query Google rejects shows up here.
        uq = {"query": self.user_filter.native} if self.user_filter.native else {}
        gq = {"query": self.group_filter.native} if self.group_filter.native else {}
        probes: list[tuple[str, str, str, dict[str, Any]]] = [
            ("users.list", "users", "users", {"maxResults": 1, **uq}),
            ("groups.list", "groups", "groups", {"maxResults": 1, **gq})]
        for name, resource, items, params in probes:
            try:
                page = next(client.pages(resource, items, name, **s.scope, **params), [])
            except SourceError as exc:
                report.add(f"{name} ({where})", False, str(exc))
                return report
            report.add(f"{name} ({where})", True)
            report.samples.extend(str(i.get("primaryEmail") or i.get("email")) for i in page)
            if resource == "groups" and page:
                try:
                    next(client.pages("members", "members", "members.list",
                                      groupKey=page[0]["id"], maxResults=1), [])
                except SourceError as exc:
                    report.add("members.list", False, str(exc))
                    return report
                report.add("members.list", True)
        missing = client.reports_scope_missing()
        feed = s.incremental == "feed"
        if missing:
            report.add("Reports API scope (change feed)", not feed,
                       f"not delegated: add {REPORTS_SCOPE} for client id {client.client_id} "
                       "in the domain-wide delegation console"
                       + ("" if feed else "; only watch and incremental = 'feed' need it"))
        elif missing is False:
            report.add("Reports API scope (change feed)", True, REPORTS_SCOPE)
        return report

    def read_attributes(self, names: frozenset[str]) -> None:
        """Also read these user fields (ReadsAttributes): ``organizations.title``,
        ``phones.<type>``, ``externalIds.<type>``, ``customSchemas.<schema>.<field>``, a few
        top-level ones; ``manager`` from ``relations`` (type manager), resolved by address."""
        try:
            check_names(names)
        except ValueError as exc:
            raise ConfigError(f"target.mapping: {exc}") from exc
        self.extra_attributes = tuple(sorted(names))
        self.feed.extra = self.extra_attributes
        self._fingerprint = "|".join((self._fingerprint.split("|attrs:")[0],
                                      "attrs:" + ",".join(self.extra_attributes)))

    def fetch(self, state: ConnectorState) -> Snapshot:
        """Everything; with ``incremental = "feed"``, the last read patched by the feed."""
        s = self.settings
        started = time.monotonic()
        info = {"source": "google", "endpoint": self.endpoint, **s.scope}
        cached = state.get(CACHE_KEY) if s.incremental == "feed" else None
        raw: Raw | None = None
        position = ""
        if isinstance(cached, dict) and cached.get("fingerprint") == self._fingerprint and \
                not state.force_full and \
                self._clock() - float(cached.get("full_at", 0)) < \
                s.full_read_interval.total_seconds():
            old = Raw.from_json(cached.get("raw"))
            if old is not None:
                try:
                    raw, pos, _ = self.feed.read(FeedPosition.load(str(cached["position"]),
                                                                   PREFIX), old)
                    position, info["read"] = pos.dump(PREFIX), "incremental (feed)"
                except StreamGap as exc:
                    log.warning("%s; reading in full", exc)
        full_at = float(cached.get("full_at", 0)) if raw is not None and cached else \
            self._clock()
        if raw is None:
            position = self.feed.position_now().dump(PREFIX)
            raw = read_raw(self.client, s.scope, self.user_filter, self.group_filter,
                           page_size=s.page_size, extra=self.extra_attributes)
            info["read"] = "full"
        snap = build(raw, self.user_filter, self.group_filter,
                     include_archived=s.include_archived, info=info,
                     extra=self.extra_attributes)
        self._raw, self._last = raw, snap
        self._users, self._groups = dict(snap.users), dict(snap.groups)
        if s.incremental == "feed":
            state.set(CACHE_KEY, {"fingerprint": self._fingerprint, "full_at": full_at,
                                  "position": position, "raw": raw.to_json()})
        log.info("google: read %d users and %d groups in %.1fs (%d requests)",
                 len(snap.users), len(snap.groups), time.monotonic() - started,
                 self.client.requests_sent)
        return snap

    # ------------------------------------------------------------------ stream

    def stream_mode(self) -> StreamMode:
        if self.user_filter.native or self.group_filter.native:
            return StreamMode("marker", "a search query in user_filter or group_filter: "
                              "whether a changed entry still matches only a full read tells")
        try:
            missing = self.client.reports_scope_missing()
        except SourceError as exc:
            missing, why = True, str(exc)
        else:
            why = f"{REPORTS_SCOPE} is not delegated"
        if missing:
            return StreamMode("marker", f"{why}; each change is a full read")
        return StreamMode("feed", "Admin audit activities (Reports API), then users.get, "
                          "groups.get and members.list of what they name")

    def stream_position(self) -> str:
        return self.feed.position_now().dump(PREFIX)

    def changes(self, position: str, wait: float) -> Changes:
        """At most one poll per ``feed_poll_interval`` and within the rate share; between
        polls, waits up to ``wait`` and answers an empty batch at the same position.

        Only the records the poll touched are mapped again (map.changed_records), so a
        change costs the same at 100 users as at 100,000."""
        if not self.pacer.ready(wait):
            return Changes(position=position)
        if self._raw is None or self._last is None:
            raise StreamGap("google: no complete read to follow changes from")
        self.pacer.polled()
        raw, pos, edit = self.feed.read(FeedPosition.load(position, PREFIX), self._raw)
        users, groups = self._users, self._groups
        new_users, gone_users, skipped, new_groups, gone_groups = changed_records(
            raw, users, groups, edit.users, edit.gone_users, edit.groups, edit.gone_groups,
            self.user_filter, self.group_filter, self.settings.include_archived,
            self.extra_attributes)
        self._raw = raw
        users.update(new_users)
        groups.update(new_groups)
        for uid in gone_users:
            users.pop(uid, None)
        for gid in gone_groups:
            groups.pop(gid, None)
        return Changes(position=pos.dump(PREFIX), users=new_users, groups=new_groups,
                       removed_users=frozenset(gone_users - {s.external_id for s in skipped}),
                       removed_groups=frozenset(gone_groups), skipped=tuple(skipped),
                       seen_at=dict(edit.seen_at))

    def close(self) -> None:
        """Nothing held open between polls."""

    @property
    def endpoint(self) -> str:
        return self.settings.api_endpoint or DEFAULT_ENDPOINT


