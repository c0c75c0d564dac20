"""The ``okta`` connector: users and groups from the Okta Management API.

Reads ``/api/v1/users`` (all statuses: a plain listing omits DEPROVISIONED users,
so they are read by a second, explicit ``status eq "DEPROVISIONED"`` query),
``/api/v1/groups`` and ``/api/v1/groups/{id}/users`` over requests, with an API token
(SSWS) or a service app's private-key JWT (see okta_auth). The official ``okta`` SDK
was measured and not used; connectors/okta.md says why.

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
from typing import Any, ClassVar, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, Field, SecretStr, field_validator, model_validator

from ..checks import CheckReport
from ..errors import DirconnectorError, IncompleteRead, SourceError, TransientError
from ..model import Group, Skipped, Snapshot, User, clean_text, normalize_email
from ..settings import HttpPluginSettings
from ..state_space import ConnectorState
from ._filters import SetFilter, parse_filter
from .okta_api import OktaApi, QueryRefused
from .okta_auth import ServiceAppToken, load_signing_key, ssws

log = logging.getLogger(__name__)

ACTIVE_STATUSES = frozenset({"ACTIVE", "PROVISIONED", "RECOVERY", "PASSWORD_EXPIRED",
                             "LOCKED_OUT"})
INACTIVE_STATUSES = frozenset({"SUSPENDED", "DEPROVISIONED"})
DEFAULT_SCOPES = ("okta.users.read", "okta.groups.read")
_SEARCH_HINT = ("the part after '|' is sent to Okta as the search parameter; see 'search' "
                "under List all users / List all groups in Okta's API reference")
_ATTRIBUTE = re.compile(r"^[A-Za-z_][\w]*(\.[A-Za-z_][\w]*)*$")


class OktaSettings(HttpPluginSettings):
    """``[source] type = "okta"``."""

    type: Literal["okta"] = "okta"
    org_url: str
    """The org's base URL, e.g. https://example.okta.com (not the -admin console host)."""
    token: SecretStr | None = None
    """API token, sent as ``Authorization: SSWS ...`` (token / token_env / token_file)."""
    client_id: str | None = None
    """Client id of an API service app (OAuth 2.0 instead of an API token)."""
    private_key: SecretStr | None = None
    """The service app's private key, PEM or JWK; usually given as private_key_file."""
    key_id: str | None = None
    """The ``kid`` of the key registered on the app (default: the JWK's own kid, if any)."""
    scopes: tuple[str, ...] = DEFAULT_SCOPES
    """OAuth scopes to request; the app must be granted them."""
    user_filter: str | None = None
    """``include:a@x.com,b@x.com | <Okta search expression>``; either part optional."""
    group_filter: str | None = None
    """``include:Name,Other | <Okta group search expression>``, e.g. ``| type eq "OKTA_GROUP"``."""
    email_attribute: str = "profile.email"
    """Dotted path of the address in the user object (profile.login, profile.secondEmail)."""
    page_size: int = Field(200, ge=1, le=200)
    """Entries per page (Okta's maximum for users is 200)."""
    sync_staged: bool = False
    """Sync STAGED users (created, not yet activated) as active."""
    rate_limit_reserve: float = Field(0.1, ge=0.0, lt=1.0)
    """Share of each minute's request budget left to other integrations: wait for the
    reset when X-Rate-Limit-Remaining falls to it."""
    rate_limit_max_wait: float = Field(90.0, gt=0.0, le=600.0)
    """Longest single wait for a rate-limit reset, in seconds."""

    @field_validator("org_url")
    @classmethod
    def _org_url(cls, value: str) -> str:
        url = value.strip().rstrip("/")
        parts = urlsplit(url)
        if parts.scheme != "https" or not parts.netloc:
            raise ValueError(f"give the org's https URL, like https://example.okta.com "
                             f"(got {value!r})")
        if parts.path or parts.query:
            raise ValueError(f"give the org's base URL without a path (got {value!r})")
        if "-admin." in parts.netloc.lower():
            raise ValueError(f"{parts.netloc} is the Admin Console; use the org host without "
                             "'-admin'")
        return url

    @field_validator("user_filter", "group_filter")
    @classmethod
    def _filter(cls, value: str | None, info: Any) -> str | None:
        parse_filter(value, info.field_name)
        return value

    @field_validator("email_attribute")
    @classmethod
    def _attribute(cls, value: str) -> str:
        if not _ATTRIBUTE.match(value):
            raise ValueError(f"expected a dotted attribute path like profile.email "
                             f"(got {value!r})")
        return value

    @model_validator(mode="after")
    def _one_credential(self) -> OktaSettings:
        oauth = self.client_id is not None or self.private_key is not None
        if self.token is not None and oauth:
            raise ValueError("token: give either token or client_id + private_key, not both")
        if self.token is None and not oauth:
            raise ValueError("token: required (or client_id + private_key_file for a service "
                             "app)")
        if oauth and (not self.client_id or self.private_key is None):
            missing = "private_key" if self.client_id else "client_id"
            raise ValueError(f"{missing}: required with "
                             f"{'client_id' if self.client_id else 'private_key'}")
        return self


class OktaConnector:
    """Reads the whole org each run; the read fails rather than returning part of it."""

    settings_model: ClassVar[type[BaseModel]] = OktaSettings

    def __init__(self, settings: OktaSettings, *,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.settings = s = settings
        self.user_filter: SetFilter = parse_filter(s.user_filter, "user_filter")
        self.group_filter: SetFilter = parse_filter(s.group_filter, "group_filter")
        auth: Callable[[], Mapping[str, str]]
        if s.token is not None:
            auth = ssws(s.token.get_secret_value())
            self.auth_mode = "API token"
            hint = ("the API token is wrong, revoked, or expired (Okta expires tokens unused "
                    "for 30 days); create one under Security > API > Tokens")
        else:
            assert s.client_id is not None and s.private_key is not None  # validated above
            key = load_signing_key(s.private_key.get_secret_value(), s.key_id)
            auth = ServiceAppToken(s.org_url, s.client_id, key, s.scopes, verify=s.verify,
                                   timeout=s.timeout).headers
            self.auth_mode = f"service app {s.client_id}"
            hint = "the access token was refused; check the service app is active"
        self.api = OktaApi(s.org_url, auth, verify=s.verify, timeout=s.timeout,
                           reserve_ratio=s.rate_limit_reserve, max_wait=s.rate_limit_max_wait,
                           sleep=sleep, auth_hint=hint)

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
        for name, path, params in probes:
            try:
                self.api.get(path, params)
            except DirconnectorError as exc:
                detail = str(exc) + (f" ({exc.hint})" if exc.hint else "")
                report.add(name, False, detail)
                if path == "api/v1/users" and "search" not in params:
                    return report
                continue
            report.add(name, True)
        gauge = self.api.gauge
        if gauge.lowest_remaining is not None:
            report.add("rate limit", True, f"{gauge.lowest_remaining} requests left in this "
                       "window")
        return report

    # ------------------------------------------------------------------ fetch

    def fetch(self, state: ConnectorState) -> Snapshot:
        started = time.monotonic()
        try:
            raw_users = self._read_users()
            groups, group_skips = self._read_groups()
        except TransientError as exc:
            raise IncompleteRead(f"okta: the read did not finish, so nothing is planned from "
                                 f"it: {exc}") from exc
        users: list[User] = []
        skipped: list[Skipped] = list(group_skips)
        for raw in raw_users.values():
            user, skip = self._user(raw)
            if user is not None:
                users.append(user)
            if skip is not None:
                skipped.append(skip)
        info = {"source": self.settings.org_url, "auth": self.auth_mode,
                "users read": str(len(raw_users)), "pages": str(self.api.pages_read),
                "requests": str(self.api.http.requests_sent),
                "rate-limit wait": f"{self.api.gauge.waited:.1f}s",
                "read time": f"{time.monotonic() - started:.1f}s"}
        return Snapshot.build(users, groups, skipped, info=info)

    def _read_users(self) -> dict[str, dict[str, Any]]:
        """Every user the filter allows, DEPROVISIONED included, keyed by Okta id."""
        native = self.user_filter.native
        limit = self.settings.page_size
        gone = 'status eq "DEPROVISIONED"'
        if native:
            # search matches all statuses, but ask for DEPROVISIONED explicitly too so the
            # result does not hang on that detail; duplicates merge by id.
            queries = [{"search": native}, {"search": f"({native}) and {gone}"}]
        else:
            queries = [{}, {"filter": gone}]
        found: dict[str, dict[str, Any]] = {}
        for query in queries:
            try:
                for user in self._items("api/v1/users", {**query, "limit": limit}):
                    found[str(user["id"])] = user
            except QueryRefused as exc:
                raise SourceError(f"{exc} [user_filter search: {native!r}]" if native else
                                  str(exc), hint=_SEARCH_HINT) from exc
        return found

    def _read_groups(self) -> tuple[list[Group], list[Skipped]]:
        params: dict[str, Any] = {"limit": 200}
        if self.group_filter.native:
            params["search"] = self.group_filter.native
        groups: list[Group] = []
        skipped: list[Skipped] = []
        try:
            raw_groups = list(self._items("api/v1/groups", params))
        except QueryRefused as exc:
            raise SourceError(f"{exc} [group_filter search: {self.group_filter.native!r}]",
                              hint=_SEARCH_HINT) from exc
        for raw in raw_groups:
            gid = str(raw["id"])
            name = clean_text(_lookup(raw, "profile.name")) or gid
            if not self.group_filter.keeps(name):
                skipped.append(Skipped("group", name, "filtered out", "group_filter",
                                       external_id=gid))
                continue
            members = frozenset(str(u["id"]) for u in
                                self._items(f"api/v1/groups/{gid}/users", {"limit": 200}))
            groups.append(Group(gid, name, members))
        return groups, skipped

    def _items(self, path: str, params: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
        for page in self.api.pages(path, params):
            for item in page:
                if not isinstance(item, dict) or not item.get("id"):
                    raise IncompleteRead(f"okta: GET {path} returned an entry without an id; "
                                         "the read stopped")
                yield item

    def _user(self, raw: Mapping[str, Any]) -> tuple[User | None, Skipped | None]:
        uid = str(raw["id"])
        status = str(raw.get("status") or "")
        email = clean_text(_lookup(raw, self.settings.email_attribute))
        login = clean_text(_lookup(raw, "profile.login"))
        if status == "STAGED" and not self.settings.sync_staged:
            return None, Skipped("user", normalize_email(email or login) or uid, "status", "STAGED",
                                 external_id=uid)
        if status not in ACTIVE_STATUSES | INACTIVE_STATUSES | {"STAGED"}:
            # A status this code does not know: neither create nor revoke on a guess.
            return None, Skipped("user", normalize_email(email or login) or uid, "status",
                                 f"unknown status {status!r}", external_id=uid)
        if not self.user_filter.keeps(email):
            # Filtered-out users count as absent (bwdc's semantics): no external_id here.
            return None, Skipped("user", normalize_email(email) or uid, "filtered out",
                                 "user_filter")
        first = clean_text(_lookup(raw, "profile.firstName"))
        last = clean_text(_lookup(raw, "profile.lastName"))
        display = clean_text(_lookup(raw, "profile.displayName")) or f"{first} {last}".strip()
        return User(external_id=uid, email=email, user_name=login, display_name=display,
                    given_name=first, family_name=last,
                    active=status not in INACTIVE_STATUSES), None


def _lookup(obj: Mapping[str, Any], path: str) -> str:
    value: Any = obj
    for part in path.split("."):
        if not isinstance(value, Mapping):
            return ""
        value = value.get(part)
    return value if isinstance(value, str) else ""
