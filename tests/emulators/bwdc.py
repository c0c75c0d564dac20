"""What Bitwarden Directory Connector (bwdc) leaves on a Bitwarden server, for takeover tests.

bwdc's rules re-implemented from its source (bitwarden/directory-connector,
libs/services/, read for this: no code copied) and shared/reference/bitwarden.md 2.1-2.4,
independently of dirconnector's connectors: directories are read with plain ldap3
searches or from the emulators' own state, never through dirconnector. Then:

- ``bwdc_requests``: bwdc's sync.service.ts pipeline: filterUnsupportedUsers (email
  length <= 256), flattenUsersToGroups (its depth-first walk with a visited set per
  top-level group), removeDuplicateUsers, and single-request-builder.ts or, with
  largeImport and more than 2,000 objects, batch-request-builder.ts (member batches of
  2,000 first, then group batches), each body exactly as OrganizationImportRequest
  serialises (``inviteUsersAfterProvisioning`` false unless asked: members are Staged);
- ``seed``: POSTs them to the test server's /public/organization/import with a token
  from its identity endpoint, as bwdc's api.service.ts does;
- ``data_json``: the ``data.json`` bwdc keeps for that configuration (stateVersion 8).
"""

from __future__ import annotations

import ssl
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import requests

BATCH = 2000
"""sync.service.ts ``batchSize``."""


@dataclass
class UserEntry:
    """libs/models/userEntry.ts."""

    external_id: str | int
    email: str | None
    disabled: bool = False
    deleted: bool = False


@dataclass
class GroupEntry:
    """libs/models/groupEntry.ts."""

    reference_id: str | int
    external_id: str | int
    name: str
    user_ids: set[str | int] = field(default_factory=set)
    group_refs: set[str | int] = field(default_factory=set)


# ---------------------------------------------------------------------- LDAP / AD


def buf_to_guid(raw: bytes) -> str:
    """ldap-directory.service.ts ``bufToGuid``: bytes 0-3, 4-5, 6-7 reversed, hex, lower."""
    parts = [raw[0:4][::-1], raw[4:6][::-1], raw[6:8][::-1], raw[8:10], raw[10:]]
    return "-".join(p.hex() for p in parts).lower()


def _search_path(prefix: str | None, root_path: str) -> str:
    """``makeSearchPath``."""
    if "dc=" not in root_path.lower():
        return prefix or ""
    trimmed = root_path.strip().lower()
    path = trimmed[trimmed.index("dc="):]
    return f"{prefix.strip()},{path}" if prefix and prefix.strip() else path


def _first(attrs: Mapping[str, list[bytes]], name: str) -> bytes | None:
    values = attrs.get(name.lower())
    return values[0] if values else None


def ldap_entries(url: str, bind_dn: str, password: str, root_path: str,
                 sync: Mapping[str, Any], ad: bool) -> tuple[list[GroupEntry], list[UserEntry]]:
    """``LdapDirectoryService.getEntries`` of a full sync (force: not a delta)."""
    import ldap3

    tls = ldap3.Tls(validate=ssl.CERT_NONE) if url.startswith("ldaps") else None
    conn = ldap3.Connection(ldap3.Server(url, tls=tls, get_info=ldap3.NONE), bind_dn, password,
                            auto_bind=True, raise_exceptions=True)
    try:
        def search(base: str, flt: str) -> list[tuple[str, dict[str, list[bytes]]]]:
            found = conn.extend.standard.paged_search(base, flt, ldap3.SUBTREE,
                                                      attributes=ldap3.ALL_ATTRIBUTES,
                                                      paged_size=500, generator=False)
            return [(e["dn"], {k.lower(): list(v) for k, v in e["raw_attributes"].items()})
                    for e in found if e.get("type") == "searchResEntry"]

        def external_id(dn: str, attrs: Mapping[str, list[bytes]]) -> str:
            guid = _first(attrs, "objectGUID")
            return buf_to_guid(guid) if guid is not None else dn

        def base_filter(cls: str, extra: str | None) -> str:
            flt = f"(&(objectClass={cls}))"
            return f"(&{flt}{extra})" if extra and extra.strip() else flt

        user_filter = base_filter(sync["userObjectClass"], sync.get("userFilter"))
        user_path = _search_path(sync.get("userPath"), root_path)
        users: list[UserEntry] = []
        entries = search(user_path, user_filter)
        for dn, attrs in entries:
            raw = _first(attrs, sync["userEmailAttribute"])
            email = raw.decode() if raw is not None else None
            if email is None and sync.get("useEmailPrefixSuffix") and sync.get("emailSuffix"):
                prefix = _first(attrs, sync.get("emailPrefixAttribute") or "")
                email = prefix.decode() + sync["emailSuffix"] if prefix is not None else None
            email = email.strip().lower() if email is not None else None
            if not email:
                continue
            uac = _first(attrs, "userAccountControl")
            disabled = uac is not None and (int(uac) & 2) == 2
            users.append(UserEntry(external_id(dn, attrs), email, disabled))
        groups: list[GroupEntry] = []
        if sync.get("groups"):
            by_dn = {dn: external_id(dn, attrs) for dn, attrs in entries}
            by_uid = {(_first(a, "uid") or b"").decode().lower(): external_id(dn, a)
                      for dn, a in entries if _first(a, "uid") is not None}
            group_path = _search_path(sync.get("groupPath"), root_path)
            for dn, attrs in search(group_path, base_filter(sync["groupObjectClass"],
                                                            sync.get("groupFilter"))):
                raw_name = _first(attrs, sync.get("groupNameAttribute") or "cn") or _first(
                    attrs, "cn")
                if raw_name is None:
                    continue
                group = GroupEntry(dn, external_id(dn, attrs), raw_name.decode())
                for value in attrs.get(sync["memberAttribute"].lower(), []):
                    member = value.decode()
                    if "=" in member and "," in member:
                        if member in by_dn:
                            group.user_ids.add(by_dn[member])
                        else:
                            group.group_refs.add(member)
                    elif member.lower() in by_uid:
                        group.user_ids.add(by_uid[member.lower()])
                groups.append(group)
        return groups, users
    finally:
        conn.unbind()


# ---------------------------------------------------------------------- the sync


def flatten(level: list[GroupEntry], every: list[GroupEntry],
            visited: set[str | int] | None = None) -> set[str | int]:
    """sync.service.ts ``flattenUsersToGroups`` (mutates the groups, as bwdc does)."""
    users: set[str | int] = set()
    for group in level:
        seen = visited if visited is not None else set()
        if group.reference_id in seen:
            continue
        seen.add(group.reference_id)
        children = [g for g in every if g.reference_id in group.group_refs]
        group.user_ids.update(flatten(children, every, seen))
        users |= group.user_ids
    return users


def bwdc_requests(groups: list[GroupEntry], users: list[UserEntry], sync: Mapping[str, Any]
                  ) -> list[dict[str, Any]]:
    """The import bodies one ``bwdc sync`` sends for these entries."""
    users = [u for u in users if u.email is not None and len(u.email) <= 256]
    if groups:
        flatten(groups, groups)
    active: dict[str, UserEntry] = {}
    unique: list[UserEntry] = []
    for u in users:                      # removeDuplicateUsers (no duplicates expected here)
        if u.email in active:
            raise AssertionError(f"bwdc would stop: duplicate email {u.email}")
        if not u.deleted:
            active[str(u.email)] = u
        unique.append(u)
    remove_disabled = bool(sync.get("removeDisabled"))
    invite = bool(sync.get("inviteUsersAfterProvisioning", False))
    members = [{"email": u.email, "externalId": u.external_id,
                "deleted": u.deleted or (remove_disabled and u.disabled)} for u in unique]
    group_bodies = [{"name": g.name, "externalId": g.external_id,
                     "memberExternalIds": list(g.user_ids)} for g in groups]
    if sync.get("largeImport") and len(groups) + len(unique) > BATCH:
        if sync.get("overwriteExisting"):
            raise AssertionError("bwdc refuses overwriteExisting with large imports")
        out = [_body([], members[i:i + BATCH], False, True, invite)
               for i in range(0, len(members), BATCH)]
        out += [_body(group_bodies[i:i + BATCH], [], False, True, invite)
                for i in range(0, len(group_bodies), BATCH)]
        return out
    return [_body(group_bodies, members, bool(sync.get("overwriteExisting")), False, invite)]


def _body(groups: list[dict[str, Any]], members: list[dict[str, Any]], overwrite: bool,
          large: bool, invite: bool) -> dict[str, Any]:
    """OrganizationImportRequest, in its field order."""
    return {"groups": groups, "members": members, "overwriteExisting": overwrite,
            "largeImport": large, "inviteUsersAfterProvisioning": invite}


def seed(server: Any, bodies: Iterable[dict[str, Any]]) -> None:
    """POST each body as bwdc does (token from the identity server, then the imports)."""
    token = requests.post(f"{server.identity_url}/connect/token", data={
        "grant_type": "client_credentials", "client_id": server.client_id,
        "client_secret": server.client_secret, "scope": "api.organization",
        "deviceType": "8", "deviceIdentifier": "bwdc-test", "deviceName": "bwdc"},
        timeout=30)
    token.raise_for_status()
    headers = {"Authorization": f"Bearer {token.json()['access_token']}",
               "Content-Type": "application/json; charset=utf-8",
               "User-Agent": "Bitwarden_DC/2026.6.1 (Linux)"}
    for body in bodies:
        resp = requests.post(f"{server.api_url}/public/organization/import", json=body,
                             headers=headers, timeout=120)
        assert resp.status_code == 200, f"bwdc's import failed: {resp.status_code} {resp.text}"


def data_json(server: Any, directory_type: int, config_key: str, directory: dict[str, Any],
              sync: dict[str, Any]) -> dict[str, Any]:
    """bwdc's data.json (libs/models/state.model.ts) for this server and directory."""
    return {"stateVersion": 8, "organizationId": server.org_id, "directoryType": directory_type,
            config_key: directory, "sync": {"users": True, "interval": 5, **sync},
            "environmentUrls": {"base": server.url, "api": None, "identity": None}}


def flat_members(groups: list[GroupEntry]) -> dict[str, set[str]]:
    """Group external id -> member external ids after flattening (for assertions)."""
    return {str(g.external_id): {str(u) for u in g.user_ids} for g in groups}


# ---------------------------------------------------------------------- cloud directories


def entra_entries(directory: Any) -> tuple[list[GroupEntry], list[UserEntry]]:
    """``EntraIdDirectoryService`` of a first sync, read from the Graph emulator's tenant:
    ``id`` as external id (l. 386-387, 502-503); ``mail``, replaced by the UPN when empty
    or an onmicrosoft.com address; ``!accountEnabled``; active users without an email or
    with '#' in it are skipped (l. 497); group members as listed, nested groups by id."""
    users = []
    for uid, u in directory.users.items():
        email = u.get("mail")
        if not email or "onmicrosoft.com" in email:
            email = u.get("userPrincipalName")
        email = email.strip().lower() if email else None
        enabled = u.get("accountEnabled")
        disabled = False if enabled is None else not enabled
        if not disabled and (email is None or "#" in email):
            continue
        users.append(UserEntry(uid, email, disabled))
    groups = []
    for gid, g in directory.groups.items():
        group = GroupEntry(gid, gid, g["displayName"])
        for mid in directory.members.get(gid, []):
            if mid in directory.groups:
                group.group_refs.add(mid)
            elif mid in directory.users:
                group.user_ids.add(mid)
        groups.append(group)
    return groups, users


def okta_entries(state: Any) -> tuple[list[GroupEntry], list[UserEntry]]:
    """``OktaDirectoryService`` of a first sync from the Okta emulator's org: ``id`` (l. 111,
    145), ``profile.email``, DEPROVISIONED as deleted and SUSPENDED as disabled (l. 113-115);
    the default list plus the DEPROVISIONED query is every user; every group with all its
    users."""
    users = []
    for uid, u in state.users.items():
        email = u["profile"].get("email")
        users.append(UserEntry(uid, email.strip().lower() if email else None,
                               disabled=u["status"] == "SUSPENDED",
                               deleted=u["status"] == "DEPROVISIONED"))
    groups = [GroupEntry(gid, gid, g["profile"]["name"], set(state.members.get(gid, [])))
              for gid, g in state.groups.items()]
    return groups, users


_VALID_EMAIL = __import__("re").compile(r"^\S+@\S+\.\S+$")
"""onelogin-directory.service.ts ``ValidEmailRegex``."""


def onelogin_entries(account: Any, sync: Mapping[str, Any]
                     ) -> tuple[list[GroupEntry], list[UserEntry]]:
    """``OneLoginDirectoryService`` from the OneLogin emulator's account: ``id`` (a number,
    l. 90, 130); ``email``, else a username that is an email, else username + suffix, kept
    only if it looks like an email (l. 94-107); status 2 disabled; roles as groups, their
    members the users whose ``role_id`` holds the role."""
    users = []
    for uid, u in account.users.items():
        email = u.get("email")
        username = u.get("username")
        if not (email and _VALID_EMAIL.match(email)) and username:
            if _VALID_EMAIL.match(username):
                email = username
            elif sync.get("useEmailPrefixSuffix") and sync.get("emailSuffix") is not None:
                email = username + sync["emailSuffix"]
        email = email.strip().lower() if email is not None else None
        if not (email and _VALID_EMAIL.match(email)):
            continue
        users.append(UserEntry(uid, email, disabled=u.get("status") == 2))
    groups = [GroupEntry(rid, rid, r["name"], {u for u in account.role_members.get(rid, ())
                                               if u in account.users})
              for rid, r in account.roles.items()]
    return groups, users


def google_entries(directory: Any) -> tuple[list[GroupEntry], list[UserEntry]]:
    """``GSuiteDirectoryService`` from the Google emulator's account: ``id`` (l. 141-142,
    192-193), ``primaryEmail``, suspended or archived as disabled; group members: USER
    members with status ACTIVE, GROUP members nested, CUSTOMER as every user."""
    users = [UserEntry(uid, str(u["primaryEmail"]).strip().lower(),
                       disabled=bool(u.get("suspended") or u.get("archived")))
             for uid, u in directory.users.items() if u.get("emails")]
    groups = []
    for gid, g in directory.groups.items():
        group = GroupEntry(gid, gid, g["name"])
        for m in directory.members.get(gid, []):
            if m["type"] == "USER" and m.get("status") == "ACTIVE":
                group.user_ids.add(m["id"])
            elif m["type"] == "GROUP":
                group.group_refs.add(m["id"])
            elif m["type"] == "CUSTOMER":
                group.user_ids.update(u.external_id for u in users)
        groups.append(group)
    return groups, users
