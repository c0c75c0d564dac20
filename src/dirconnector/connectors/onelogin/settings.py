"""Settings of the ``onelogin`` connector: API host, credential, mapping and filters.

Every error names its TOML key; the host, status lists and the native query parts of
the filters are checked here, so a bad value fails ``config validate``, not a run.
"""

from __future__ import annotations

import ipaddress
import re
from datetime import timedelta
from typing import Literal
from urllib.parse import parse_qsl, urlsplit

from pydantic import Field, SecretStr, field_validator, model_validator

from ...model import looks_like_email
from ...settings import Duration, HttpPluginSettings
from ..filters import parse_filter

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
    incremental: Literal["off", "feed"] = "off"
    """``feed``: between full reads, a run asks only the change feed (stream.py: users by
    ``updated_since``, role changes and deletions from the Events API) and merges it into
    the users and groups kept from the last read."""
    full_read_interval: Duration = timedelta(hours=24)
    """With ``incremental = "feed"``: read everything afresh at least this often."""
    feed_poll_interval: Duration = timedelta(seconds=30)
    """Under ``watch``: ask OneLogin at most this often (a quiet poll is 3 requests)."""
    feed_overlap: Duration = timedelta(minutes=2)
    """How far back each change-feed poll asks again (clock skew, event lag)."""
    feed_rate_share: float = Field(0.2, gt=0.0, le=1.0)
    """Largest share of the account's hourly rate limit the change feed may use."""
    feed_retention: Duration = timedelta(days=30)
    """How long the account keeps events; an older feed position means a full read.
    OneLogin does not document it for the API: keep this at or below your plan's."""

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
        native_query(native, "user_filter", USER_QUERY_KEYS, allow_custom=True)
        return value

    @field_validator("group_filter")
    @classmethod
    def _group_filter(cls, value: str | None) -> str | None:
        native = parse_filter(value, "group_filter").native
        native_query(native, "group_filter", ROLE_QUERY_KEYS, allow_custom=False)
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


def native_query(native: str, field: str, keys: frozenset[str], allow_custom: bool,
                 ) -> dict[str, str]:
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


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
