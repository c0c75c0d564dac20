"""``[source] type = "okta"``: the okta connector's options (connectors/okta.md)."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, field_validator, model_validator

from ...settings import Duration, HttpPluginSettings
from ..filters import parse_filter

DEFAULT_SCOPES = ("okta.users.read", "okta.groups.read")
_ATTRIBUTE = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*$")


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
    """Entries per page of users, groups and group members (Okta's maximum for users: 200)."""
    sync_staged: bool = False
    """Sync STAGED users (created, not yet activated) as active."""
    incremental: Literal["off", "memberships", "users", "feed"] = "memberships"
    """What a run may reuse from the previous one (cache.py): nothing; group members of
    groups whose membership did not change; also users via ``lastUpdated gt``; or
    everything, through the change feed (stream.py, needs okta.logs.read)."""
    feed_poll_interval: Duration = timedelta(seconds=30)
    """Under ``watch``: ask Okta at most this often (a quiet poll is 3 requests)."""
    feed_overlap: Duration = timedelta(minutes=2)
    """How far back each feed poll asks again (clock skew, the System Log's lag)."""
    feed_rate_share: float = Field(0.2, gt=0.0, le=1.0)
    """Largest share of a rate-limit window the change feed may use (0.2 = 20%)."""
    full_read_interval: Duration = timedelta(hours=24)
    """Read everything afresh at least this often (30m, 24h, 1d; 0s = every run)."""
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
    def _consistent(self) -> OktaSettings:
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
        if (self.incremental == "feed" and self.client_id is not None
                and "okta.logs.read" not in self.scopes):
            if self.scopes != DEFAULT_SCOPES:
                raise ValueError("scopes: incremental = 'feed' reads the System Log; add "
                                 "okta.logs.read (and grant it to the service app)")
            object.__setattr__(self, "scopes", (*DEFAULT_SCOPES, "okta.logs.read"))
        if self.incremental == "users" and parse_filter(self.user_filter, "user_filter").native:
            # A user who stops matching the search would never show up as changed.
            raise ValueError("incremental: 'users' cannot be combined with a search expression "
                             "in user_filter; use 'memberships'")
        return self
