"""``[source] type = "ldap"``: the settings model, validated before any connection.

Options left unset (None) are filled per server kind once the root DSE has been
read (see map.Resolved): Active Directory and other LDAPv3 servers differ in
object classes, member attributes and the stable id attribute.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, field_validator, model_validator

from ...settings import Duration, PluginSettings
from .syntax import DNError, FilterError, check_filter, parse_dn


class LdapSettings(PluginSettings):
    """Every option of the LDAP / Active Directory connector (connectors/ldap.md)."""

    type: Literal["ldap"] = "ldap"
    url: list[str]
    """``ldap://host[:port]`` or ``ldaps://host[:port]``; a list is tried in order (failover)."""
    start_tls: bool = False
    """Upgrade an ``ldap://`` connection with StartTLS (RFC 4511 4.14) before binding."""
    ca_file: Path | None = None
    """PEM file of the CA that signed the server's certificate (else the system store)."""
    verify_tls: bool = True
    """Verify the server's certificate and name. Turning it off logs a warning every run."""
    bind_dn: str | None = None
    """Who to bind as (a DN, or ``user@domain`` / ``DOMAIN\\user`` on AD); unset = anonymous."""
    password: SecretStr | None = None
    """The bind password (or ``password_env`` / ``password_file``)."""
    timeout: float = Field(30.0, gt=0)
    """Seconds to wait for the connection and for each response (one page)."""
    page_size: int = Field(500, ge=0, le=100_000)
    """Entries per page (RFC 2696 paged results). 0 turns paging off for servers without it."""
    base_dn: str | None = None
    """Where to search; unset = the server's default naming context from the root DSE."""
    user_base: str | None = None
    """Base for the user search (default: base_dn). Relative values are prefixed to base_dn."""
    user_object_class: str | None = None
    """Users' object class. Default: ``user`` (+ objectCategory=person) on AD, else ``person``."""
    user_filter: str | None = None
    """An extra LDAP filter ANDed with the object class, e.g. ``(memberOf=cn=staff,...)``."""
    user_scope: Literal["sub", "one"] = "sub"
    """``sub``: the whole subtree under user_base; ``one``: direct children only."""
    group_base: str | None = None
    """Base for the group search (default: base_dn). Relative values are prefixed to base_dn."""
    group_object_class: list[str] | None = None
    """Group classes. Default: ``group`` on AD, else groupOfNames, groupOfUniqueNames and
    posixGroup."""
    group_filter: str | None = None
    """An extra LDAP filter ANDed with the group classes."""
    group_scope: Literal["sub", "one"] = "sub"
    """Like user_scope, for groups."""
    member_attribute: str | None = None
    """Membership attribute. Default by class: member, uniqueMember, memberUid."""
    email_attribute: str = "mail"
    """Attribute holding the email address."""
    email_prefix_attribute: str | None = None
    """When a user has no email: this attribute + email_suffix makes one (e.g. sAMAccountName)."""
    email_suffix: str | None = None
    """Domain for the fallback address, e.g. ``@example.com``."""
    user_name_attribute: str | None = None
    """Login name. Default: sAMAccountName on AD, else uid."""
    display_name_attribute: str = "displayName"
    """Full name (falls back to cn)."""
    given_name_attribute: str = "givenName"
    family_name_attribute: str = "sn"
    group_name_attribute: str = "cn"
    external_id_attribute: str | None = None
    """Stable id. Default: objectGUID (AD), entryUUID (OpenLDAP), nsUniqueId (389-DS),
    ipaUniqueID (FreeIPA); the DN only if the entry has none (renames then break links)."""
    disabled_filter: str | None = None
    """Users matching this filter are disabled, e.g. ``(pwdAccountLockedTime=*)``."""
    active_directory: Literal["auto"] | bool = "auto"
    """Treat the server as Active Directory; ``auto`` reads the root DSE's capabilities."""
    include_deleted: bool = False
    """AD: also read deleted users (show-deleted control) so they are revoked every run."""
    full_read_interval: Duration = timedelta(hours=24)
    """Longest time between full reads. In between, a run whose directory proves that
    nothing was written since the last good run (OpenLDAP contextCSN with syncprov, AD
    highestCommittedUSN) reads nothing else (connectors/ldap.md). "0s": read every run."""
    poll_interval: Duration = timedelta(seconds=1)
    """watch on Active Directory: how often the DC's highestCommittedUSN is read to see
    whether anything was written (one base search of the root DSE per poll)."""
    backend: Literal["auto", "ldap3", "python-ldap"] = "auto"
    """Wire library: python-ldap (C libldap, fast) when importable, else ldap3 (pure Python)."""

    @field_validator("url", mode="before")
    @classmethod
    def _one_or_many(cls, value: object) -> object:
        return [value] if isinstance(value, str) else value

    @field_validator("url")
    @classmethod
    def _urls(cls, value: list[str]) -> list[str]:
        if not value:
            raise ValueError("give at least one ldap:// or ldaps:// URL")
        for url in value:
            parts = urlsplit(url)
            if parts.scheme.lower() not in ("ldap", "ldaps") or not parts.hostname:
                raise ValueError(f"{url!r} is not an ldap://host or ldaps://host URL")
            try:
                parts.port  # noqa: B018  # raises ValueError on a bad port
            except ValueError as exc:
                raise ValueError(f"{url!r} has a bad port") from exc
        return value

    @field_validator("group_object_class", mode="before")
    @classmethod
    def _classes(cls, value: object) -> object:
        return [value] if isinstance(value, str) else value


    @field_validator("user_filter", "group_filter", "disabled_filter")
    @classmethod
    def _filter(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        try:
            return check_filter(value)
        except FilterError as exc:
            raise ValueError(f"not a valid LDAP filter (RFC 4515): {exc}") from exc

    @field_validator("base_dn", "user_base", "group_base")
    @classmethod
    def _dn(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        try:
            parse_dn(value)
        except DNError as exc:
            raise ValueError(str(exc)) from exc
        return value.strip()

    @model_validator(mode="after")
    def _consistent(self) -> LdapSettings:
        schemes = {urlsplit(u).scheme.lower() for u in self.url}
        if self.start_tls and "ldaps" in schemes:
            raise ValueError("start_tls: use ldap:// URLs with start_tls (ldaps:// is TLS already)")
        if self.ca_file is not None and not self.ca_file.is_file():
            raise ValueError(f"ca_file: {self.ca_file} does not exist")
        if self.bind_dn and self.password is None:
            raise ValueError("password: bind_dn is set but no password (or password_env/_file)")
        if self.password is not None and not self.bind_dn:
            raise ValueError("bind_dn: a password is set but no bind_dn to bind as")
        if (self.email_prefix_attribute is None) != (self.email_suffix is None):
            raise ValueError("email_suffix: set both email_prefix_attribute and email_suffix, "
                             "or neither")
        if self.full_read_interval < timedelta(0):
            raise ValueError("full_read_interval: must not be negative (0s: read every run)")
        if self.poll_interval <= timedelta(0):
            raise ValueError("poll_interval: must be more than 0s")
        if self.include_deleted and self.active_directory is False:
            raise ValueError("include_deleted: only Active Directory keeps deleted objects")
        return self
