"""The ``bitwarden`` target: an organization through Bitwarden's Public API.

Reads members and groups (``GET /public/members``, ``/public/groups``, group
``member-ids``) so a plan shows the server-side difference, and applies a plan the
way Bitwarden allows (see ``importer``): creates, links and group changes in
``POST /public/organization/import``; revoke/restore through their own endpoints;
removals as ``deleted`` members of a final import. Each change's outcome is checked
against a fresh read after the import, because the server skips some entries
silently (an email already in the organization, reference 2.6 step 6).
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from ipaddress import ip_address
from typing import ClassVar, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, Field, SecretStr, field_validator, model_validator

from ...checks import CheckReport
from ...errors import DirconnectorError, StalePlan
from ...model import Group, Snapshot, User, normalize_email
from ...outcome import Outcome
from ...plan import Change, DeleteUser, LinkUser, Plan, UpdateUser
from ...settings import HttpPluginSettings
from .api import BitwardenApi, endpoints, member_records
from .apply import Applier
from .importer import BATCH, NO_RELINK, OWNER_KEPT, email_change_note, plan_work

log = logging.getLogger(__name__)

CLIENT_ID = re.compile(r"^organization\.[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-"
                       r"[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")


class BitwardenSettings(HttpPluginSettings):
    """``[target] type = "bitwarden"``."""

    type: Literal["bitwarden"] = "bitwarden"
    server_url: str = "https://vault.bitwarden.com"
    """https://vault.bitwarden.com (US cloud), https://vault.bitwarden.eu (EU), or yours."""
    api_url: str | None = None
    """Override of the API base (cloud: derived; self-hosted: {server_url}/api)."""
    identity_url: str | None = None
    """Override of the identity base (cloud: derived; self-hosted: {server_url}/identity)."""
    client_id: str
    """The organization API key's client_id: ``organization.<uuid>``."""
    client_secret: SecretStr | None = None
    """The organization API key's client_secret (inline, client_secret_env or _file)."""
    invite_users: bool = False
    """Send invitation emails to new members (inviteUsersAfterProvisioning). When false,
    servers that support it create them Staged, without an email."""
    large_import: Literal["auto"] | bool = "auto"
    """Batch imports at 2,000 objects with largeImport: "auto" when an import exceeds 2,000."""
    concurrency: int = Field(8, ge=1, le=32)
    """Parallel reads of group member ids."""

    @field_validator("client_id")
    @classmethod
    def _client_id(cls, value: str) -> str:
        value = value.strip()
        if not CLIENT_ID.match(value):
            raise ValueError("client_id: must be organization.<uuid> (Admin Console > Settings "
                             "> Organization info > View API key)")
        return value

    @field_validator("server_url", "api_url", "identity_url")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        parts = urlsplit(value.strip())
        if parts.scheme not in ("https", "http") or not parts.hostname:
            raise ValueError(f"not an http(s) URL: {value!r}")
        if parts.scheme == "http" and not _loopback(parts.hostname):
            raise ValueError(f"{value!r} would send the API key in clear; use https "
                             f"(plain http is allowed for 127.0.0.1/localhost only)")
        return value.strip().rstrip("/")

    @model_validator(mode="after")
    def _secret_given(self) -> BitwardenSettings:
        if self.client_secret is None or not self.client_secret.get_secret_value():
            raise ValueError("client_secret: required (client_secret, client_secret_env or "
                             "client_secret_file)")
        return self


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ip_address(host).is_loopback
    except ValueError:
        return False


class BitwardenTarget:
    """A Bitwarden organization, provisioned like bwdc does, but reading the server first."""

    settings_model: ClassVar[type[BaseModel]] = BitwardenSettings
    user_fields: ClassVar[tuple[str, ...]] = ("email",)
    """User fields this server holds for a directory to compare. Names belong to the
    person's own Bitwarden account and cannot be set by the import; a core that honours
    this attribute plans no name updates for Bitwarden."""

    def __init__(self, settings: BitwardenSettings, *,
                 clock: Callable[[], float] = time.monotonic) -> None:
        """``clock``: monotonic seconds, for the access token's lifetime."""
        self.settings = settings
        api_url, identity_url = endpoints(settings.server_url, settings.api_url,
                                          settings.identity_url)
        secret = settings.client_secret.get_secret_value() if settings.client_secret else ""
        self.api = BitwardenApi(api_url=api_url, identity_url=identity_url,
                                client_id=settings.client_id, client_secret=secret,
                                verify=settings.verify, timeout=settings.timeout,
                                clock=clock)
        self._last: Snapshot | None = None

    def __repr__(self) -> str:
        return f"BitwardenTarget({self.api.api_url!r}, client_id={self.settings.client_id!r})"

    @property
    def large(self) -> bool | None:
        """None for auto."""
        value = self.settings.large_import
        return None if value == "auto" else bool(value)

    # ------------------------------------------------------------------ protocol

    def check(self) -> CheckReport:
        report = CheckReport()
        try:
            self.api.token()
        except DirconnectorError as exc:
            report.add("organization API key", False, str(exc))
            return report
        report.add("organization API key", True, f"token from {self.api.identity_url}")
        try:
            members = self.api.list_all("public/members")
            groups = self.api.list_all("public/groups")
        except DirconnectorError as exc:
            report.add("Public API read", False, str(exc))
            return report
        report.add("Public API read", True, f"{len(members)} members, {len(groups)} groups")
        report.counts.update(members=len(members), groups=len(groups),
                             with_external_id=sum(1 for m in members if m.get("externalId")))
        report.samples.extend(str(m.get("email")) for m in members[:5])
        return report

    def snapshot(self) -> Snapshot:
        self._last = self.api.read(concurrency=self.settings.concurrency)
        return self._last

    def describe(self, plan: Plan) -> tuple[str, ...]:
        return describe(plan, invite_users=self.settings.invite_users, large=self.large)

    def limitations(self, plan: Plan) -> list[tuple[Change, str]]:
        """Email changes (the import never changes a member's email), links by email of a
        member that carries another external id (the import never relinks), and removals
        of owners (the import never removes one): notes for the operator, not failures."""
        server = plan.computed_from or self._last
        owners = set((server.info.get("owners", "") if server else "").split(","))
        out: list[tuple[Change, str]] = []
        for change in plan.changes:
            if isinstance(change, UpdateUser):
                out.append((change, email_change_note("the import", change)))
            elif isinstance(change, LinkUser) and change.previous_external_id:
                out.append((change, NO_RELINK.format(old=change.previous_external_id)))
            elif isinstance(change, DeleteUser) and change.ref in owners:
                out.append((change, OWNER_KEPT))
        return out

    def apply(self, plan: Plan, record: Callable[[Outcome], None],
              stop: threading.Event | None = None) -> None:
        if plan.empty:
            return
        current = self._current(plan)
        owners = frozenset(o for o in current.info.get("owners", "").split(",") if o)
        work = plan_work(plan, current, large=self.large, owners=owners, cloud=self.api.cloud)
        Applier(self.api, current, self.settings.invite_users,
                self.settings.concurrency).run(plan, work, record, stop or threading.Event())

    # ------------------------------------------------------------------ ReadsSome

    def read_users(self, external_ids: Sequence[str], emails: Sequence[str] = ()
                   ) -> list[User]:
        """The members with these external ids or emails (the Public API lists members in
        one response and filters nothing, so the list is read and filtered here)."""
        ids, mails = set(external_ids), {normalize_email(e) for e in emails}
        return [u for u in member_records(self.api.list_all("public/members"))
                if u.external_id in ids or u.email in mails]

    def read_groups(self, external_ids: Sequence[str], names: Sequence[str] = ()
                    ) -> list[Group]:
        """The groups with these external ids or names, with their member ids (one
        ``member-ids`` request per group)."""
        ids, folded = set(external_ids), {n.casefold() for n in names}
        wanted = [g for g in self.api.list_all("public/groups")
                  if g.get("externalId") in ids or str(g.get("name", "")).casefold() in folded]
        members = self.api.group_members([str(g["id"]) for g in wanted],
                                         self.settings.concurrency)
        return [Group(str(g.get("externalId") or ""), str(g["name"]),
                      frozenset(members.get(str(g["id"]), ())), ref=str(g["id"]))
                for g in wanted]

    # ------------------------------------------------------------------ WritesExternalId

    def set_user_external_id(self, ref: str, external_id: str) -> None:
        """``PUT /public/members/{ref}`` after a read, all but externalId sent back as read
        (BitwardenApi.set_member_external_id, the path relinks take)."""
        self.api.set_member_external_id(ref, external_id)

    def set_group_external_id(self, ref: str, external_id: str) -> None:
        """``PUT /public/groups/{ref}`` after a read, name and collections kept."""
        self.api.set_group_external_id(ref, external_id)

    def _current(self, plan: Plan) -> Snapshot:
        """The server state the plan was computed against (read again if not cached)."""
        if plan.computed_from is not None and plan.computed_from.info.get("cut") == "watch":
            # Watch mode read exactly the records this plan touches just before
            # (incremental.cut_current): they are the state it was computed against.
            return plan.computed_from
        if self._last is not None and (plan.computed_from is self._last
                                       or self._last.digest() == plan.target_digest):
            return self._last
        fresh = self.snapshot()
        if fresh.digest() != plan.target_digest:
            raise StalePlan("bitwarden: the organization changed since the plan was made; "
                            "make the plan again", hint="run `dirconnector plan` again")
        return fresh


def members_provider(settings: BitwardenSettings
                     ) -> Callable[[Sequence[Group]], Mapping[str, Iterable[str]]]:
    """Group members for the ``scim`` target's bitwarden flavor, read through the Public API.

    Bitwarden's SCIM endpoint never returns group members (reference 3.3: "use the
    Public API"); SCIM ids of users and groups are the same member and group ids the
    Public API uses, so its ``member-ids`` answer is the membership the SCIM target needs.
    """
    api = BitwardenTarget(settings).api

    def provide(groups: Sequence[Group]) -> Mapping[str, Iterable[str]]:
        return api.group_members([g.ref for g in groups], settings.concurrency)

    return provide


def describe(plan: Plan, *, invite_users: bool, large: bool | None) -> tuple[str, ...]:
    """Which of import / revoke / restore / remove a plan will use, in plain words."""
    counts = plan.counts()
    notes: list[str] = []
    members = counts["create_user"] + counts["link_user"]
    group_exts = {getattr(c, "external_id", "") or getattr(c, "group_external_id", "")
                  for c in plan.changes if c.kind in ("create_group", "link_group",
                                                       "rename_group", "add_members",
                                                       "remove_members")}
    if members or group_exts:
        total = members + len(group_exts)
        batched = total > BATCH if large is None else large
        requests = (-(-members // BATCH) + -(-len(group_exts) // BATCH)) if batched else 1
        notes.append(
            f"import: {members} member(s) ({counts['create_user']} new, {counts['link_user']} "
            f"linked by email) and {len(group_exts)} group(s) in {requests} request(s) to "
            f"POST /public/organization/import"
            f"{' with largeImport' if batched else ''}; overwriteExisting stays off; each "
            f"group sent gets its full membership replaced")
        if counts["create_user"]:
            notes.append("new members are invited by email" if invite_users else
                         "new members are created without an invitation email (Staged where "
                         "the server supports it); set invite_users = true to email them")
    if counts["relink_user"]:
        notes.append(f"relink: {counts['relink_user']} member(s) get the directory's external "
                     f"id through PUT /public/members/{{id}}, each read first so its type, "
                     f"custom permissions, collections and groups stay as they are; no "
                     f"invitation is sent (they are members already)")
    if counts["relink_group"]:
        notes.append(f"relink: {counts['relink_group']} group(s) get the directory's external "
                     f"id through PUT /public/groups/{{id}} (collections kept)")
    if counts["link_group"]:
        notes.append(f"adopt: {counts['link_group']} existing group(s) get the directory's "
                     f"external id through PUT /public/groups/{{id}} (collections kept)")
    if counts["restore_user"]:
        notes.append(f"restore: {counts['restore_user']} revoked member(s) through "
                     f"POST /public/members/{{id}}/restore")
    if counts["revoke_user"]:
        notes.append(f"revoke: {counts['revoke_user']} member(s) through "
                     f"POST /public/members/{{id}}/revoke (restorable; the seat stays used)")
    if counts["delete_user"]:
        notes.append(f"remove: {counts['delete_user']} member(s) removed from the organization "
                     f"(sent as deleted in a final import, or DELETE /public/members/{{id}} "
                     f"for members without an external id); not restorable, owners are kept")
    if counts["delete_group"]:
        notes.append(f"delete: {counts['delete_group']} group(s) through "
                     f"DELETE /public/groups/{{id}}")
    return tuple(notes)


__all__ = ["BitwardenSettings", "BitwardenTarget", "describe", "members_provider"]

