"""The ``scim`` target: any SCIM 2.0 service provider (RFC 7643/7644), Bitwarden's included.

Reads page /Users and /Groups by startIndex/count until totalResults (short pages
are fine; a read that ends early raises, never returns a partial server). Writes
follow the plan's phases; within a phase independent changes run on a bounded
thread pool, and changes to the same resource run one after another. User creates
go in /Bulk requests when the ServiceProviderConfig offers Bulk.

Group membership on the server is read as *direct user members*: dirconnector
pushes flattened membership (model.flatten) and never creates nested groups, so a
member whose value is not a User (a nested group someone else made) is left out of
the snapshot and therefore never removed.

Bitwarden's endpoint (flavor "bitwarden", shared/reference/bitwarden.md section 3)
never returns group members. They come from ``members_provider`` when the core or
the Bitwarden helper supplies one; without it the snapshot marks them unknown
(``info["group_members"] == "unknown"``) and leaves ``member_ids`` empty, so a
plan can add members (Bitwarden ignores adds of existing members) but can never
remove one it cannot see.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, Field, SecretStr, field_validator

from ...checks import CheckReport
from ...diff import USER_FIELDS
from ...errors import AuthError, DirconnectorError, TargetError
from ...http import HttpClient
from ...model import Group, Snapshot, User
from ...plan import AddMembers, Change, CreateUser, Plan, RemoveMembers, RevokeUser, UpdateUser
from ...settings import HttpPluginSettings
from .. import Record, WritesExternalId
from ..bitwarden.importer import email_change_note
from ..bitwarden.target import BitwardenSettings
from . import wire as wire
from .bulk import BulkCreator
from .ops import ScimWriter
from .pool import run_phase

log = logging.getLogger(__name__)

MembersProvider = Callable[[Sequence[Group]], Mapping[str, Iterable[str]]]
"""Given the server's groups, return each group's member user refs, keyed by group ref."""


class ScimSettings(HttpPluginSettings):
    """``[target] type = "scim"``."""

    type: Literal["scim"] = "scim"
    url: str
    """SCIM base URL: the path before /Users and /Groups."""
    token: SecretStr | None = None
    """Bearer token (RFC 6750); or token_env / token_file."""
    concurrency: int = Field(8, ge=1, le=64)
    """Independent changes sent at once."""
    bulk: Literal["auto", "off"] = "auto"
    """auto: create users through /Bulk when the ServiceProviderConfig offers it."""
    bulk_size: int = Field(500, ge=1, le=10000)
    """Operations per Bulk request (capped at the server's bulk.maxOperations)."""
    member_chunk: int = Field(100, ge=1, le=10000)
    """Members added or removed per PATCH request."""
    public_api: BitwardenSettings | None = None
    """Bitwarden only: the organization's Public API key, to read group members
    (Bitwarden's SCIM endpoint never returns them). Without it, members are only
    added, never removed."""
    flavor: Literal["auto", "generic", "bitwarden"] = "auto"
    """auto: bitwarden when the URL ends in /v2/<organization id>, or when the server has no
    ServiceProviderConfig and pages the way Bitwarden does; else generic."""
    page_size: int = Field(500, ge=1, le=10000)
    """Resources asked for per page (count); servers may return fewer."""

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        value = value.strip()
        if not value.startswith(("https://", "http://")) or len(value.split("://", 1)[1]) < 1:
            raise ValueError("must be an http(s):// URL")
        return value.rstrip("/")


class ScimTarget:
    """A SCIM 2.0 server."""

    settings_model: ClassVar[type[BaseModel]] = ScimSettings

    def __init__(self, settings: ScimSettings, *,
                 members_provider: MembersProvider | None = None) -> None:
        self.settings = settings
        self.relink: WritesExternalId | None = None
        """Bitwarden with [target.public_api]: relinks go through the Public API (Bitwarden's
        SCIM endpoint honours PATCH externalId only since PM-19232 / PM-19551; the Public
        API member and group updates always have). SCIM ids are the Public API's ids."""
        if settings.public_api is not None:
            from ..bitwarden.target import BitwardenTarget
            from ..bitwarden.target import members_provider as public_api_members

            if members_provider is None:
                members_provider = public_api_members(settings.public_api)
            self.relink = BitwardenTarget(settings.public_api)
        self.members_provider = members_provider
        token = settings.token
        self.http = HttpClient(
            settings.url, side="target", label="SCIM", verify=settings.verify,
            timeout=settings.timeout, pool_size=max(16, settings.concurrency + 2),
            headers={"Accept": f"{wire.SCIM_JSON}, application/json"},
            auth=(lambda: {"Authorization": f"Bearer {token.get_secret_value()}"})
            if token is not None else None)
        self._caps: wire.Capabilities | None = None
        self._caps_lock = threading.Lock()
        self._users_by_ext: dict[str, str] = {}
        self._logins: dict[str, str] = {}
        self._groups_by_ext: dict[str, str] = {}
        self._versions: dict[str, str] = {}
        self._id_writer: ScimWriter | None = None
        self.bulk_requests = 0
        """Bulk requests the last apply sent (for reports and tests)."""

    @property
    def user_fields(self) -> tuple[str, ...]:
        """The user attributes diff may compare (Target.user_fields).

        Bitwarden's SCIM endpoint cannot change names and does not return givenName /
        familyName (reference 3.2, 3.4), so only the email is compared there: an email
        change is planned and then refused with its reason, name changes are not planned.
        """
        try:
            flavor = self.capabilities().flavor
        except DirconnectorError:
            flavor = "bitwarden" if self.settings.flavor == "bitwarden" else "generic"
        return ("email",) if flavor == "bitwarden" else USER_FIELDS

    # ------------------------------------------------------------ discovery

    def capabilities(self) -> wire.Capabilities:
        """ServiceProviderConfig (RFC 7644 4), read once; absent on Bitwarden."""
        with self._caps_lock:
            if self._caps is None:
                self._caps = self._discover()
            return self._caps

    def _discover(self) -> wire.Capabilities:
        flavor = self.settings.flavor
        if flavor == "auto":
            flavor = "bitwarden" if wire.looks_like_bitwarden(self.settings.url) else "generic"
        if flavor == "bitwarden":
            return wire.capabilities(None, "bitwarden")
        resp = self.http.request("GET", "ServiceProviderConfig", ok=(200, 400, 403, 404, 405,
                                                                      500, 501))
        config: Any = None
        if resp.status == 200:
            try:
                config = resp.json()
            except ValueError:
                config = None
        if not isinstance(config, dict):
            if self.settings.flavor == "auto" and self._behaves_like_bitwarden():
                log.info("SCIM: no ServiceProviderConfig and Bitwarden paging; flavor bitwarden")
                return wire.capabilities(None, "bitwarden")
            log.info("SCIM: no ServiceProviderConfig (HTTP %s); assuming PATCH, no Bulk, "
                     "no ETags", resp.status)
            return wire.capabilities(None, "generic")
        return wire.capabilities(config, "generic")

    def _behaves_like_bitwarden(self) -> bool:
        """Bitwarden echoes the requested count as itemsPerPage even on an empty page.

        RFC 7644 3.4.2 defines itemsPerPage as the number of resources returned; Bitwarden's
        GetUsersListQuery sets it to the count asked (reference 3.2). A page far past the
        end tells the two apart without reading or changing anything. (ASP.NET routing is
        case-insensitive, so "Users" reaches Bitwarden's lower-case route.)
        """
        probe = 7
        try:
            body = self.http.get_json("Users", params={"startIndex": 10_000_000, "count": probe})
        except AuthError:
            raise
        except DirconnectorError:
            return False  # a server that refuses the probe is no Bitwarden
        return (isinstance(body, dict) and not body.get("Resources")
                and _total(body, -1) >= 0 and body.get("itemsPerPage") == probe)

    # ------------------------------------------------------------ check

    def check(self) -> CheckReport:
        report = CheckReport()
        try:
            caps = self.capabilities()
            report.add("server", True, _describe_caps(caps))
            users = self.http.get_json(caps.users_path, params={"count": 1})
            groups = self.http.get_json(caps.groups_path, params={"count": 1})
        except AuthError as exc:
            report.add("credentials", False, f"the server rejected the bearer token ({exc}); "
                       f"check token / token_env / token_file")
            return report
        except DirconnectorError as exc:
            hint = f" ({exc.hint})" if exc.hint else ""
            report.add("connection", False, f"{exc}{hint}")
            return report
        n_users = _total(users)
        n_groups = _total(groups)
        report.add("credentials", True, f"token accepted; {n_users} users, {n_groups} groups")
        if self.settings.token is None:
            report.add("token", True, "no token configured: the server accepts anonymous calls")
        report.counts.update(users=n_users, groups=n_groups)
        return report

    # ------------------------------------------------------------ read

    def snapshot(self) -> Snapshot:
        caps = self.capabilities()
        generic = caps.flavor == "generic"
        user_res = self._list(caps.users_path, wire.USER_ATTRIBUTES if generic else None, caps)
        users = [wire.user_from(r) for r in user_res]
        user_refs = frozenset(u.ref for u in users)
        group_res = self._list(caps.groups_path, wire.GROUP_ATTRIBUTES if generic else None,
                               caps)
        groups = [wire.group_from(r, user_refs) for r in group_res]
        info = {"server": "scim", "flavor": caps.flavor, "group_members": "read"}
        if caps.flavor == "bitwarden" and not any("members" in r for r in group_res):
            # Reference 3.3: Bitwarden's groups never carry members.
            groups, info["group_members"] = self._bitwarden_members(groups, user_refs)
        if caps.flavor == "bitwarden":
            # Reference 3.2: the user resource has no givenName/familyName, so they read as
            # empty and cannot be compared; a diff that honours this key stops planning
            # updates of them (PUT/PATCH would ignore them anyway, reference 3.4).
            info["unreadable_user_fields"] = "given_name,family_name"
        self._users_by_ext = {u.external_id: u.ref for u in users if u.external_id}
        self._logins = {u.ref: u.user_name for u in users}
        self._groups_by_ext = {g.external_id: g.ref for g in groups if g.external_id}
        versions: dict[str, str] = {}
        for res in (*user_res, *group_res):
            meta = res.get("meta")
            if isinstance(meta, dict) and meta.get("version"):
                versions[str(res["id"])] = str(meta["version"])
        self._versions = versions
        self._id_writer = None  # made again with these versions when next needed
        return Snapshot({u.ref: u for u in users}, {g.ref: g for g in groups}, info=info)

    # ------------------------------------------------------------ read some (ReadsSome)

    READ_SOME_CHUNK = 40
    """Clauses OR'ed in one filter: short enough for any server's URL limit."""

    def read_users(self, external_ids: Sequence[str], emails: Sequence[str] = ()
                   ) -> list[User]:
        """Accounts by externalId or userName (RFC 7644 3.4.2.2 filters, OR'ed, chunked)."""
        caps = self.capabilities()
        clauses = [wire.eq_filter("externalId", e) for e in sorted(set(external_ids)) if e]
        clauses += [wire.eq_filter("userName", e) for e in sorted(set(emails)) if e]
        attrs = wire.USER_ATTRIBUTES if caps.flavor == "generic" else None
        found = self._read_some(caps.users_path, attrs, caps, clauses)
        users = [wire.user_from(r) for r in found]
        for u in users:
            if u.external_id:
                self._users_by_ext[u.external_id] = u.ref
            self._logins[u.ref] = u.user_name
        return users

    def read_groups(self, external_ids: Sequence[str], names: Sequence[str] = ()
                    ) -> list[Group]:
        """Groups by externalId or displayName, with their members."""
        caps = self.capabilities()
        clauses = [wire.eq_filter("externalId", e) for e in sorted(set(external_ids)) if e]
        clauses += [wire.eq_filter("displayName", n) for n in sorted(set(names)) if n]
        attrs = wire.GROUP_ATTRIBUTES if caps.flavor == "generic" else None
        found = self._read_some(caps.groups_path, attrs, caps, clauses)
        refs = frozenset(str(m["value"]) for r in found for m in r.get("members") or ()
                         if isinstance(m, dict) and m.get("value"))
        groups = [wire.group_from(r, refs) for r in found]
        if caps.flavor == "bitwarden" and not any("members" in r for r in found) and groups:
            if self.members_provider is None:
                raise TargetError("SCIM: this server's groups carry no members and no "
                                  "[target.public_api] reads them; watch reads the server "
                                  "in full instead")
            got = self.members_provider(groups)
            groups = [Group(g.external_id, g.name, frozenset(got.get(g.ref) or ()), ref=g.ref)
                      for g in groups]
        for g in groups:
            if g.external_id:
                self._groups_by_ext[g.external_id] = g.ref
        return groups

    def _read_some(self, path: str, attributes: str | None, caps: wire.Capabilities,
                   clauses: list[str]) -> list[dict[str, Any]]:
        found: dict[str, dict[str, Any]] = {}
        step = self.READ_SOME_CHUNK
        for i in range(0, len(clauses), step):
            for res in self._list(path, attributes, caps, " or ".join(clauses[i:i + step])):
                found[str(res["id"])] = res
                meta = res.get("meta")
                if isinstance(meta, dict) and meta.get("version"):
                    self._versions[str(res["id"])] = str(meta["version"])
        return list(found.values())

    def _bitwarden_members(self, groups: list[Group], user_refs: frozenset[str]
                           ) -> tuple[list[Group], str]:
        if self.members_provider is None:
            return groups, "unknown"
        found = self.members_provider(groups)
        out = []
        for g in groups:
            members = found.get(g.ref)
            if members is None:
                return groups, "unknown"  # one unknown group makes the whole read unknown
            out.append(Group(g.external_id, g.name, frozenset(m for m in members
                                                              if m in user_refs), ref=g.ref))
        return out, "provider"

    def _list(self, path: str, attributes: str | None, caps: wire.Capabilities,
              filter_: str | None = None) -> list[dict[str, Any]]:
        """Every resource at ``path`` (RFC 7644 3.4.2.4: 1-based startIndex, count)."""
        count = self.settings.page_size
        if caps.filter_max_results:
            count = min(count, caps.filter_max_results)
        seen: dict[str, dict[str, Any]] = {}
        start, total = 1, 0
        while True:
            params: dict[str, Any] = {"startIndex": start, "count": count}
            if attributes:
                params["attributes"] = attributes
            if filter_:
                params["filter"] = filter_
            body = self.http.get_json(path, params=params)
            resources = body.get("Resources", []) if isinstance(body, dict) else None
            if not isinstance(resources, list) or not _valid_total(body):
                # An answer of another shape must not read as an empty server: the plan
                # would re-create everyone (RFC 7644 3.4.2: ListResponse).
                raise TargetError(f"SCIM: GET {path} did not return a ListResponse "
                                  f"(Resources a list, totalResults a number)",
                                  hint="is url the SCIM base URL of the service?")
            page = [r for r in resources if isinstance(r, dict)]
            if len(page) != len(resources):
                raise TargetError(f"SCIM: GET {path} returned resources that are not objects")
            total = _total(body, len(page) + start - 1)
            new = 0
            for res in page:
                if not res.get("id"):
                    raise TargetError(f"SCIM: GET {path} returned a resource without an id")
                new += str(res["id"]) not in seen
                seen[str(res["id"])] = res
            start += len(page)
            if not page or not new or start > total:
                break
        if len(seen) < total:
            raise TargetError(f"SCIM: GET {path} announced {total} resources but returned "
                              f"{len(seen)}; not planning from a partial read",
                              hint="run again; if it persists lower page_size")
        return list(seen.values())

    # ------------------------------------------------------------ write

    def apply(self, plan: Plan, record: Record, stop: threading.Event | None = None) -> None:
        stop = stop or threading.Event()
        caps = self.capabilities()
        writer = ScimWriter(self.http, caps, member_chunk=self.settings.member_chunk,
                            users_by_ext=self._users_by_ext, groups_by_ext=self._groups_by_ext,
                            versions=self._versions, logins=self._logins,
                            relink=self.relink if caps.flavor == "bitwarden" else None)
        self.bulk_requests = 0
        for batch in plan.by_phase():
            if stop.is_set():
                return                   # interrupted: the next phase does not start
            pending: list[Change] = list(batch)
            uncertain: set[int] = set()
            creates = [c for c in pending if isinstance(c, CreateUser)]
            if creates and self._bulk_usable(caps, len(creates)):
                bulk = BulkCreator(self.http, writer, caps, self.settings.bulk_size)
                left = bulk.create(creates, record, stop)
                self.bulk_requests += bulk.requests
                pending = [c for c in pending if not isinstance(c, CreateUser)]
                pending += [c for c, _ in left]
                uncertain = {id(c) for c, unsure in left if unsure}
            run_phase(pending, writer, record, uncertain, self.settings.concurrency, stop)

    # ------------------------------------------------------------ WritesExternalId

    def set_user_external_id(self, ref: str, external_id: str) -> None:
        """As a RelinkUser is written: PATCH externalId (remove to clear), or the Public API
        on Bitwarden with [target.public_api] (ScimWriter.set_user_external_id)."""
        self._external_ids().set_user_external_id(ref, external_id)

    def set_group_external_id(self, ref: str, external_id: str) -> None:
        """As a RelinkGroup is written (ScimWriter.set_group_external_id)."""
        self._external_ids().set_group_external_id(ref, external_id)

    def _external_ids(self) -> ScimWriter:
        """The writer for WritesExternalId calls: one per snapshot, sending If-Match with the
        versions that snapshot read (a writer per call would copy them every time)."""
        writer = self._id_writer
        if writer is None:
            caps = self.capabilities()
            writer = ScimWriter(self.http, caps, member_chunk=self.settings.member_chunk,
                                users_by_ext={}, groups_by_ext={}, versions=self._versions,
                                relink=self.relink if caps.flavor == "bitwarden" else None)
            self._id_writer = writer
        return writer

    def _bulk_usable(self, caps: wire.Capabilities, creates: int) -> bool:
        return self.settings.bulk == "auto" and caps.bulk and creates > 1

    def limitations(self, plan: Plan) -> list[tuple[Change, str]]:
        """Bitwarden's SCIM endpoint ignores email changes (reference 3.4): notes, not
        failures. A generic SCIM server can make every change a plan holds."""
        try:
            flavor = self.capabilities().flavor
        except DirconnectorError:
            return []
        if flavor != "bitwarden":
            return []
        return [(c, email_change_note("Bitwarden's SCIM endpoint", c))
                for c in plan.changes if isinstance(c, UpdateUser)]

    # ------------------------------------------------------------ describe

    def describe(self, plan: Plan) -> tuple[str, ...]:
        try:
            caps = self.capabilities()
        except DirconnectorError:
            return ("SCIM server capabilities unknown (ServiceProviderConfig unreadable)",)
        notes: list[str] = []
        counts = plan.counts()
        creates = counts.get("create_user", 0)
        if creates and self._bulk_usable(caps, creates):
            bulk = BulkCreator(self.http, ScimWriter(self.http, caps, member_chunk=1,
                                                     users_by_ext={}, groups_by_ext={},
                                                     versions={}), caps, self.settings.bulk_size)
            batches = bulk.batches([c for c in plan.changes if isinstance(c, CreateUser)])
            notes.append(f"{creates} creates go in {len(batches)} Bulk request(s) of up to "
                         f"{bulk.size}")
        elif creates:
            notes.append(f"{creates} creates are one POST each, {self.settings.concurrency} "
                         f"at a time")
        relinks = counts.get("relink_user", 0) + counts.get("relink_group", 0)
        if relinks and caps.flavor == "bitwarden" and self.relink is not None:
            notes.append(f"relink: {relinks} member(s) and group(s) get the directory's external "
                         f"id through the Public API (PUT /public/members|groups/{{id}}, each "
                         f"read first: type, permissions and collections kept)")
        elif relinks:
            notes.append(f"relink: {relinks} member(s) and group(s) get the directory's external "
                         f"id by PATCH replace externalId")
        if counts.get("revoke_user"):
            notes.append("revocations are PATCH active=false (restorable)")
        if counts.get("delete_user"):
            notes.append("deletions are DELETE /Users/{id} (not restorable)")
        members = sum(len(c.members) for c in plan.changes
                      if isinstance(c, AddMembers | RemoveMembers))
        if members:
            notes.append(f"{members} membership changes go in PATCH requests of up to "
                         f"{self.settings.member_chunk} members")
        if caps.flavor == "bitwarden":
            notes.extend(_bitwarden_notes(plan))
        elif caps.etag and any(c.kind in ("update_user", "link_user", "restore_user",
                                          "revoke_user", "rename_group", "link_group")
                               for c in plan.changes):
            notes.append("updates carry If-Match with the version read (ETags)")
        return tuple(notes)


def _bitwarden_notes(plan: Plan) -> list[str]:
    # Email and name updates never reach here: they are limitations (plan notes).
    notes = ["Bitwarden SCIM: revocations revoke the member (seat kept, restorable)"]
    if any(isinstance(c, RevokeUser) for c in plan.changes):
        notes.append("revoked members keep their group memberships on Bitwarden")
    return notes


def _describe_caps(caps: wire.Capabilities) -> str:
    if caps.flavor == "bitwarden":
        return "flavor bitwarden (no ServiceProviderConfig, no Bulk, no ETags)"
    if not caps.advertised:
        return "flavor generic; no ServiceProviderConfig (assuming PATCH, no Bulk, no ETags)"
    feats = [f for f, on in (("PATCH", caps.patch), ("ETags", caps.etag)) if on]
    if caps.bulk:
        feats.append(f"Bulk (max {caps.bulk_max_operations or '?'} operations)")
    return "flavor generic; " + (", ".join(feats) or "no optional features")


def _valid_total(body: dict[str, Any]) -> bool:
    value = body.get("totalResults", 0)
    return (isinstance(value, int) and not isinstance(value, bool)) or (
        isinstance(value, str) and value.isdigit())


def _total(body: Any, default: int = 0) -> int:
    try:
        return int(body.get("totalResults", default)) if isinstance(body, dict) else default
    except (TypeError, ValueError):
        return default


__all__ = ["MembersProvider", "ScimSettings", "ScimTarget"]
