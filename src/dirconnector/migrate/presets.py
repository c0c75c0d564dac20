"""IdP presets for `dirconnector migrate`, and the ``[migrate]`` table that overrides them.

A preset says what one IdP's SCIM client sends by default (userName, externalId, a
group's externalId) and which filters it tries before it POSTs. Sources are in each
preset and in connectors/migrate.md. Where the directory record lacks the IdP's
source attribute (Entra's mailNickname), the preset names its stand-in.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ..errors import ConfigError

UserNameFrom = Literal["email", "user_name"]
IdFrom = Literal["external_id", "user_name", "email", "email_local_part", "user_name_local_part"]
GroupIdFrom = Literal["external_id", "name", "none"]
UserLookup = Literal["userName", "externalId"]
GroupLookup = Literal["displayName", "externalId"]
MemberVerdictKind = Literal["adopt_external_id", "adopt_user_name", "conflict", "new",
                            "unmanaged"]
GroupVerdictKind = Literal["matched_external_id", "matched_display_name", "duplicate", "new",
                           "unmanaged"]
IDPS = ("entra", "okta", "onelogin", "jumpcloud", "ping", "custom")


@dataclass(frozen=True, slots=True)
class Preset:
    """What one IdP's SCIM client sends and how it finds existing accounts, by default."""

    name: str
    title: str
    user_name_from: UserNameFrom
    """Which directory field stands for the IdP's userName."""
    external_id_from: IdFrom
    """Which directory field stands for the IdP's externalId."""
    group_external_id_from: GroupIdFrom
    """What the IdP sends as a group's externalId ("none": it sends none)."""
    user_lookup: tuple[UserLookup, ...]
    """The filters the IdP tries before it POSTs a user, in order."""
    group_lookup: tuple[GroupLookup, ...]
    """The filters the IdP tries before it POSTs a group, in order."""
    sends: str
    """The IdP's documented default mapping, in words."""
    approximation: str
    """How this tool stands in for source attributes the directory record lacks."""
    sources: tuple[str, ...] = ()
    """Where the defaults come from."""


PRESETS: dict[str, Preset] = {p.name: p for p in (
    Preset("entra", "Microsoft Entra ID", "user_name", "user_name_local_part", "external_id",
           ("userName",), ("displayName",),
           "userName <- userPrincipalName, externalId <- mailNickname, emails[work] <- mail; "
           "groups: displayName <- displayName, externalId <- objectId; matching: userName "
           "(users), displayName (groups)",
           "mailNickname is not read by the azure connector: the UPN prefix (user_name before "
           "@) stands for it, which is what Entra typically fills mailNickname with for "
           "portal-created users; synced users often carry sAMAccountName (set external_id_from). "
           "Group externalId = objectId is exact with the azure connector only",
           ("https://learn.microsoft.com/en-us/entra/identity/app-provisioning/"
            "use-scim-to-provision-users-and-groups",
            "https://bitwarden.com/help/microsoft-entra-id-scim-integration/")),
    Preset("okta", "Okta", "user_name", "external_id", "none", ("userName",), ("displayName",),
           "userName <- Okta username (login, usually the email), externalId <- Okta user id; "
           "Okta looks users up by userName before creating; pushed groups are matched by "
           "name and sent without externalId",
           "exact when the source is the okta connector (user_name = login, external_id = "
           "Okta id)",
           ("https://developer.okta.com/docs/api/openapi/okta-scim/guides/scim-20",
            "https://bitwarden.com/help/okta-scim-integration/")),
    Preset("onelogin", "OneLogin", "email", "external_id", "external_id", ("userName",),
           ("displayName",),
           "SCIM Provisioner (SCIM v2 Enterprise): userName <- SCIM Username parameter "
           "(Email by default), externalId per the app's SCIM JSON template (the OneLogin "
           "user id); roles/groups by name",
           "exact for the id when the source is the onelogin connector; check the SCIM JSON "
           "template of your app",
           ("https://bitwarden.com/help/onelogin-scim-integration/",)),
    Preset("jumpcloud", "JumpCloud", "email", "external_id", "external_id", ("userName",),
           ("displayName",),
           "userName <- email; pre-existing users are not duplicated (matched by userName); "
           "existing groups are taken over when the names match",
           "no connector reads JumpCloud ids: external_id stands for the JumpCloud id, set "
           "external_id_from if yours differs",
           ("https://jumpcloud.com/support/integrate-with-bitwarden",
            "https://bitwarden.com/help/jumpcloud-scim-integration/")),
    Preset("ping", "Ping Identity (PingOne SCIM Outbound)", "email", "external_id",
           "external_id", ("userName",), ("displayName",),
           "SCIM Outbound connection: userName <- email (as mapped in the connection), "
           "externalId per the attribute mapping",
           "external_id stands for the Ping user id; check the connection's attribute mapping",
           ("https://bitwarden.com/help/ping-identity-scim-integration/",)),
    Preset("custom", "Custom SCIM client", "email", "external_id", "external_id",
           ("userName", "externalId"), ("externalId", "displayName"),
           "whatever [migrate] says", "as configured", ()),
)}


class MigrateSettings(BaseModel):
    """``[migrate]``: which IdP, which scope, and overrides of its preset."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    idp: Literal["entra", "okta", "onelogin", "jumpcloud", "ping", "custom"] | None = None
    """Default for --to-idp."""
    scope_groups: tuple[str, ...] = ()
    """Groups assigned to the app in the IdP (default for --scope-group); empty: everyone read."""
    user_name_from: UserNameFrom | None = None
    external_id_from: IdFrom | None = None
    group_external_id_from: GroupIdFrom | None = None
    user_lookup: tuple[UserLookup, ...] | None = Field(None, min_length=1)
    group_lookup: tuple[GroupLookup, ...] | None = Field(None, min_length=1)
    map_dir: str | None = None
    """Where `migrate apply` writes id maps (default: beside the state database)."""

    def preset(self, idp: str) -> Preset:
        """The IdP's preset with this table's overrides applied."""
        base = PRESETS[idp]
        changes = {k: getattr(self, k) for k in ("user_name_from", "external_id_from",
                                                  "group_external_id_from", "user_lookup",
                                                  "group_lookup")
                   if getattr(self, k) is not None}
        return replace(base, **changes) if changes else base


def migrate_settings(table: Mapping[str, Any]) -> MigrateSettings:
    """Validate ``[migrate]``; errors name the TOML path (``migrate.xxx``)."""
    from ..settings import format_errors

    try:
        return MigrateSettings.model_validate(dict(table))
    except ValidationError as exc:
        raise ConfigError(format_errors(exc, MigrateSettings, set(), prefix="migrate")) from exc


__all__ = ["IDPS", "PRESETS", "GroupIdFrom", "GroupLookup", "GroupVerdictKind", "IdFrom",
           "MemberVerdictKind", "MigrateSettings", "Preset", "UserLookup", "UserNameFrom",
           "migrate_settings"]
