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
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, Field, SecretStr, field_validator, model_validator

from ...checks import CheckReport
from ...errors import ConfigError, SourceError
from ...http import pause
from ...model import Snapshot, looks_like_email
from ...settings import HttpPluginSettings
from ...state_space import ConnectorState
from ..filters import SetFilter, parse_filter
from .api import DEFAULT_ENDPOINT, DirectoryClient
from .map import check_names, read_directory

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
                 sleep: Callable[[float], None] = pause) -> None:
        self.settings = settings
        self.user_filter: SetFilter = parse_filter(settings.user_filter, "user_filter")
        self.group_filter: SetFilter = parse_filter(settings.group_filter, "group_filter")
        self._sleep = sleep
        self._client: DirectoryClient | None = None
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

    def fetch(self, state: ConnectorState) -> Snapshot:
        """Everything, every run: the Directory API offers no delta for lists (``state`` unused)."""
        s = self.settings
        started = time.monotonic()
        snap = read_directory(self.client, s.scope, self.user_filter, self.group_filter,
                              include_archived=s.include_archived, page_size=s.page_size,
                              info={"source": "google", "endpoint": self.endpoint, **s.scope},
                              extra=self.extra_attributes)
        log.info("google: read %d users and %d groups in %.1fs (%d requests)",
                 len(snap.users), len(snap.groups), time.monotonic() - started,
                 self.client.requests_sent)
        return snap

    @property
    def endpoint(self) -> str:
        return self.settings.api_endpoint or DEFAULT_ENDPOINT

