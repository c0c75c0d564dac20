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

Requests over ``requests`` through HttpClient: onelogin-python-sdk cannot page v1 groups
(its GetGroups200Response drops ``pagination``) and does not retry 429.
"""

from __future__ import annotations

import ipaddress
import logging
import re
import time
from collections.abc import Callable
from typing import Any, ClassVar, Literal
from urllib.parse import parse_qsl, urlsplit

from pydantic import BaseModel, Field, SecretStr, field_validator, model_validator

from ..checks import CheckReport
from ..errors import DirconnectorError, IncompleteRead, SourceError
from ..http import RetryPolicy
from ..model import Group, Skipped, Snapshot, User, clean_text, looks_like_email
from ..settings import HttpPluginSettings
from ..state_space import ConnectorState
from ._filters import parse_filter
from ._onelogin_api import DEFAULT_RETRY, LABEL, OneLoginApi

log = logging.getLogger(__name__)

REGIONS = {"us": "https://api.us.onelogin.com", "eu": "https://api.eu.onelogin.com"}
STATUS_NAMES = {0: "unactivated", 1: "active", 2: "suspended", 3: "locked",
                4: "password expired", 5: "awaiting password reset", 7: "password pending",
                8: "security questions required"}
# Documented filters of GET /api/2/users (api-docs/2/users/list-users); paging keys are ours.
USER_QUERY_KEYS = frozenset({
    "created_since", "created_until", "updated_since", "updated_until", "last_login_since",
    "last_login_until", "firstname", "lastname", "email", "username", "samaccountname",
    "directory_id", "external_id", "user_ids", "app_id"})
ROLE_QUERY_KEYS = frozenset({"name", "app_id", "app_name"})  # api-docs/2/roles/list-roles
USER_READ_TRIES = 3
_SUBDOMAIN = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$")
_ATTRIBUTE = re.compile(r"^(?:[a-z_]+|custom_attributes\.[A-Za-z0-9_\-]+)$")


class OneLoginSettings(HttpPluginSettings):
    """``[source] type = "onelogin"``."""

    type: Literal["onelogin"] = "onelogin"
    subdomain: str | None = None
    """Account subdomain: ``acme`` for https://acme.onelogin.com (the current API host)."""
    region: Literal["us", "eu"] | None = None
    """Older shared API hosts: https://api.us.onelogin.com or https://api.eu.onelogin.com."""
    base_url: str | None = None
    """A full API origin instead (a proxy, or the test emulator); https unless loopback."""
    client_id: str = Field(min_length=1)
    """The API credential's client id."""
    client_secret: SecretStr | None = None
    """The API credential's client secret (or client_secret_env / client_secret_file)."""
    groups_from: Literal["roles", "groups"] = "roles"
    """Sync OneLogin roles (many per user) or OneLogin groups (one per user) as groups."""
    user_filter: str | None = None
    """``include:a@x.com,b@x.com`` / ``exclude:...`` by email or username, then ``|`` and
    /api/2/users query parameters, e.g. ``| directory_id=12&email=*@example.com``."""
    group_filter: str | None = None
    """``include:`` / ``exclude:`` by role or group name, then ``|`` and /api/2/roles
    query parameters (roles only), e.g. ``| name=Eng*``."""
    email_attribute: str = "email"
    """User field holding the email: ``email``, another field, or ``custom_attributes.x``."""
    email_suffix: str | None = None
    """When the email field is empty: ``username@email_suffix`` (if username has no @)."""
    page_size: int = Field(50, ge=1, le=1000)
    """Items per page asked for (OneLogin returns at most 50 users or groups per page)."""
    active_statuses: tuple[int, ...] = (1, 4, 5, 7, 8)
    """User statuses synced as active."""
    inactive_statuses: tuple[int, ...] = (2, 3)
    """User statuses synced as inactive (their accounts are revoked)."""
    skip_statuses: tuple[int, ...] = (0,)
    """User statuses not synced at all (reported as skipped; never revoked for it)."""

    @field_validator("subdomain")
    @classmethod
    def _subdomain(cls, value: str | None) -> str | None:
        if value is None:
            return None
        text = value.strip().lower().removeprefix("https://").rstrip("/")
        text = text.removesuffix(".onelogin.com")
        if not _SUBDOMAIN.match(text):
            raise ValueError(f"not a OneLogin subdomain: {value!r} (expected e.g. 'acme' "
                             f"for https://acme.onelogin.com)")
        return text

    @field_validator("base_url")
    @classmethod
    def _base_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        parts = urlsplit(value.strip())
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"expected an https:// URL, got {value!r}")
        if parts.scheme == "http" and not _loopback(parts.hostname):
            raise ValueError("plain http would send the client secret in clear; use https "
                             "(http is allowed only on 127.0.0.1/localhost)")
        if parts.query or parts.fragment or parts.path.strip("/"):
            raise ValueError(f"give the origin only (scheme://host[:port]), got {value!r}")
        return f"{parts.scheme}://{parts.netloc}"

    @field_validator("email_attribute")
    @classmethod
    def _attribute(cls, value: str) -> str:
        if not _ATTRIBUTE.match(value):
            raise ValueError(f"expected a user field name or custom_attributes.NAME, "
                             f"got {value!r}")
        return value

    @field_validator("email_suffix")
    @classmethod
    def _suffix(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        text = value.strip().lstrip("@").lower()
        if not looks_like_email(f"x@{text}"):
            raise ValueError(f"not a mail domain: {value!r}")
        return text

    @field_validator("user_filter")
    @classmethod
    def _user_filter(cls, value: str | None) -> str | None:
        native = parse_filter(value, "user_filter").native
        _query(native, "user_filter", USER_QUERY_KEYS, allow_custom=True)
        return value

    @field_validator("group_filter")
    @classmethod
    def _group_filter(cls, value: str | None) -> str | None:
        native = parse_filter(value, "group_filter").native
        _query(native, "group_filter", ROLE_QUERY_KEYS, allow_custom=False)
        return value

    @model_validator(mode="after")
    def _consistent(self) -> OneLoginSettings:
        given = [n for n in ("subdomain", "region", "base_url") if getattr(self, n)]
        if len(given) != 1:
            raise ValueError("set exactly one of subdomain, region or base_url"
                             + (f" (got {', '.join(given)})" if given else ""))
        if self.client_secret is None or not self.client_secret.get_secret_value():
            raise ValueError("client_secret: required (client_secret, client_secret_env "
                             "or client_secret_file)")
        lists = {"active_statuses": self.active_statuses,
                 "inactive_statuses": self.inactive_statuses,
                 "skip_statuses": self.skip_statuses}
        seen: dict[int, str] = {}
        for name, codes in lists.items():
            for code in codes:
                if code not in STATUS_NAMES:
                    raise ValueError(f"{name}: {code} is not a OneLogin user status "
                                     f"(known: {sorted(STATUS_NAMES)})")
                if code in seen:
                    raise ValueError(f"{name}: status {code} is also in {seen[code]}")
                seen[code] = name
        if self.groups_from == "groups" and parse_filter(self.group_filter, "group_filter").native:
            raise ValueError("group_filter: OneLogin groups (/api/1/groups) take no query; "
                             "use include:/exclude: only")
        return self

    @property
    def api_url(self) -> str:
        """The API origin every request goes to."""
        if self.base_url:
            return self.base_url
        if self.region:
            return REGIONS[self.region]
        return f"https://{self.subdomain}.onelogin.com"


class OneLoginConnector:
    """Reads the whole OneLogin account each run (no incremental state: role changes do
    not move a user's ``updated_at``, so ``updated_since`` cannot see them)."""

    settings_model: ClassVar[type[BaseModel]] = OneLoginSettings

    def __init__(self, settings: OneLoginSettings, *, retry: RetryPolicy = DEFAULT_RETRY,
                 sleep: Callable[[float], None] = time.sleep,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.settings = settings
        secret = settings.client_secret.get_secret_value() if settings.client_secret else ""
        self.api = OneLoginApi(settings.api_url, settings.client_id, secret,
                               verify=settings.verify, timeout=settings.timeout,
                               page_size=settings.page_size, retry=retry, sleep=sleep,
                               clock=clock)
        self._user_filter = parse_filter(settings.user_filter, "user_filter")
        self._group_filter = parse_filter(settings.group_filter, "group_filter")

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

    def fetch(self, state: ConnectorState) -> Snapshot:
        started = time.monotonic()
        pages_before = self.api.pages_read
        s = self.settings
        self.api.token()        # a bad credential fails here, with its own one line
        raw_users = self._read_users()
        users: list[User] = []
        skipped: list[Skipped] = []
        for raw in raw_users:
            item = self._user(raw)
            if isinstance(item, User):
                users.append(item)
            else:
                skipped.append(item)
        read_ids = {_user_id(raw) for raw in raw_users}
        if s.groups_from == "roles":
            groups = self._roles(read_ids, skipped)
        else:
            groups = self._groups(raw_users, skipped)
        info = {"source": "onelogin", "api": s.api_url, "groups_from": s.groups_from,
                "pages": str(self.api.pages_read - pages_before),
                "read_seconds": f"{time.monotonic() - started:.2f}"}
        return Snapshot.build(users, groups, skipped, info=info)

    def _read_users(self) -> list[dict[str, Any]]:
        """Every user, once. Paging is by offset (the cursor encodes limit and page), so a
        user added or deleted mid-read shifts later pages and could hide someone: when the
        ``Total-Count`` changes between pages the read is redone, and after
        ``USER_READ_TRIES`` moving reads it fails rather than return a list that may lack
        people."""
        native = _query(self._user_filter.native, "user_filter", USER_QUERY_KEYS, True)
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

    def _user(self, raw: dict[str, Any]) -> User | Skipped:
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
        return User(external_id=ext, email=email, user_name=username,
                    display_name=" ".join(p for p in (given, family) if p),
                    given_name=given, family_name=family, active=active)

    def _email(self, raw: dict[str, Any], username: str) -> str:
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

    def _roles(self, read_ids: set[str], skipped: list[Skipped]) -> list[Group]:
        native = _query(self._group_filter.native, "group_filter", ROLE_QUERY_KEYS, False)
        roles = [r for page in self.api.v2_pages("/api/2/roles", native, "roles") for r in page]
        groups: list[Group] = []
        for role in roles:
            rid, name = str(role.get("id") or ""), clean_text(_text(role.get("name")))
            if not rid or not name:
                raise SourceError(f"{LABEL}: a role without id or name: {role!r:.120}")
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

    def _groups(self, raw_users: list[dict[str, Any]], skipped: list[Skipped]) -> list[Group]:
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
                if not self._group_filter.keeps(name):
                    skipped.append(Skipped("group", name, "filtered out",
                                           f"group_filter {self.settings.group_filter!r}"))
                    continue
                groups.append(Group(gid, name, frozenset(members.get(gid, ()))))
        return groups


def _query(native: str, field: str, keys: frozenset[str], allow_custom: bool) -> dict[str, str]:
    """The native part of a filter as query parameters; unknown keys are an error."""
    if not native:
        return {}
    try:
        pairs = parse_qsl(native.lstrip("?"), keep_blank_values=True, strict_parsing=True)
    except ValueError as exc:
        raise ValueError(f"{field}: the part after '|' must be key=value&key=value, "
                         f"got {native!r}") from exc
    out: dict[str, str] = {}
    for key, value in pairs:
        key = key.strip()
        if key not in keys and not (allow_custom and key.startswith("custom_attributes.")):
            raise ValueError(f"{field}: {key!r} is not a query parameter this connector sends; "
                             f"use one of {', '.join(sorted(keys))}"
                             + (" or custom_attributes.NAME" if allow_custom else ""))
        out[key] = value.strip()
    return out


def _user_id(raw: dict[str, Any]) -> str:
    uid = raw.get("id")
    if not isinstance(uid, int | str) or isinstance(uid, bool) or not str(uid).strip():
        raise SourceError(f"{LABEL}: a user record has no id (fields: {sorted(raw)[:8]})")
    return str(uid).strip()


def _text(value: Any) -> str:
    return "" if value is None else str(value)


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _line(exc: DirconnectorError) -> str:
    return f"{exc} ({exc.hint})" if exc.hint else str(exc)


__all__ = ["OneLoginConnector", "OneLoginSettings"]
