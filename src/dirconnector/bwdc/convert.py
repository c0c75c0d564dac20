"""Convert a Bitwarden Directory Connector ``data.json`` into a dirconnector profile.

``convert(data) -> (toml_text, unmapped)``. Field names follow bwdc's models
(shared/reference/bitwarden.md 1.2-1.4: ``directoryType`` 0 LDAP, 1 Entra ID,
2 Google Workspace, 3 Okta, 4 OneLogin; ``directoryLdap|Entra|Gsuite|Okta|Onelogin``;
``sync``; ``environmentUrls``; ``organizationId``). Secrets are never written: each
becomes a ``*_env`` reference and the variable names are listed at the top of the
output. ``unmapped`` names every option that has no equivalent, so nothing is lost
silently. Pure: no I/O, deterministic output.
"""

from __future__ import annotations

import json
import textwrap
from collections.abc import Mapping
from typing import Any

from ..errors import ConfigError
from . import keys as bwdc_keys

DIRECTORY_TYPES = {0: "ldap", 1: "azure", 2: "google", 3: "okta", 4: "onelogin"}
CONFIG_KEYS = {0: ("directoryLdap", "ldap"), 1: ("directoryEntra", "entra", "directoryAzure",
                                                  "azure"),
               2: ("directoryGsuite", "gsuite"), 3: ("directoryOkta", "okta"),
               4: ("directoryOnelogin", "oneLogin", "onelogin")}
SECRET_ENV = {
    "ldap": ("password", "LDAP_BIND_PASSWORD", "the bind password (bwdc: ldap.password)"),
    "azure": ("client_secret", "ENTRA_CLIENT_SECRET", "the app registration's client secret "
              "(bwdc: entra.key)"),
    "google": ("credentials", "GOOGLE_SERVICE_ACCOUNT_JSON", "the service account's JSON key "
               "(bwdc stored clientEmail + privateKey; download a JSON key for {email})"),
    "okta": ("token", "OKTA_API_TOKEN", "the Okta API token (bwdc: okta.token)"),
    "onelogin": ("client_secret", "ONELOGIN_CLIENT_SECRET", "the API credential's secret "
                 "(bwdc: onelogin.secret)"),
}
TARGET_SECRET_ENV = "BW_CLIENTSECRET"
DEFAULT_SERVER = "https://vault.bitwarden.com"


class _Out:
    """Ordered TOML tables with per-key comments."""

    def __init__(self) -> None:
        self.tables: dict[str, list[str]] = {}

    def set(self, table: str, key: str, value: Any, comment: str = "") -> None:
        lines = self.tables.setdefault(table, [])
        if comment:
            lines.extend(f"# {c}" for c in comment.split("\n"))
        lines.append(f"{key} = {_value(value)}")

    def comment(self, table: str, text: str) -> None:
        self.tables.setdefault(table, []).extend(f"# {c}" for c in text.split("\n"))

    def render(self, header: list[str]) -> str:
        parts = ["\n".join(f"# {h}" if h else "#" for h in header)]
        for table, lines in self.tables.items():
            body = "\n".join(lines)
            parts.append(f"[{table}]\n{body}" if table else body)
        return "\n\n".join(parts) + "\n"


def _value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_value(v) for v in value) + "]"
    # A JSON string is a valid TOML basic string (the same escapes, unicode ones included).
    return json.dumps(str(value))


def _locate(data: Mapping[str, Any]) -> Mapping[str, Any]:
    """The object holding ``directoryType``: the top level, or one account-scoped level below."""
    if "directoryType" in data:
        return data
    for value in data.values():
        if isinstance(value, Mapping):
            for inner in (value, value.get("directorySettings")):
                if isinstance(inner, Mapping) and "directoryType" in inner:
                    merged = dict(value)
                    merged.update(inner)
                    merged.update(value.get("directoryConfigurations") or {})
                    return merged
    raise ConfigError("data.json: no directoryType found; is this bwdc's data.json? "
                      "(`bwdc data-file` prints its path)")


def convert(data: dict[str, Any]) -> tuple[str, list[str]]:
    """The dirconnector TOML for a bwdc data.json, and the options it could not map."""
    root = _locate(data)
    try:
        kind = int(root["directoryType"])
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"data.json: directoryType {root['directoryType']!r} is not 0-4") \
            from exc
    if kind not in DIRECTORY_TYPES:
        raise ConfigError(f"data.json: directoryType {kind} is not 0-4 (LDAP, Entra ID, "
                          f"Google, Okta, OneLogin)")
    directory = next((root[k] for k in CONFIG_KEYS[kind] if isinstance(root.get(k), Mapping)),
                     None)
    if directory is None:
        raise ConfigError(f"data.json: directoryType is {kind} but {CONFIG_KEYS[kind][0]} is "
                          f"missing")
    raw_sync = root.get("sync")
    sync: Mapping[str, Any] = raw_sync if isinstance(raw_sync, Mapping) else {}
    out = _Out()
    unmapped: list[str] = []
    source = DIRECTORY_TYPES[kind]
    out.set("", "profile", "bwdc")
    out.set("source", "type", source)
    SOURCES[source](directory, sync, out, unmapped)
    name, env, what = SECRET_ENV[source]
    out.set("source", f"{name}_env", env,
            f"secret: set {env} to {what.format(email=directory.get('clientEmail', '?'))}")
    _target(root, sync, out, unmapped)
    _sync(sync, kind, out, unmapped)
    keys = _keys(source, directory)
    out.set("sync", "takeover_from", "bwdc", "\n".join(textwrap.wrap(
        f"members and groups bwdc created carry bwdc's external ids ({keys}): recognise "
        "them by those keys and relink them (plan: `> relink`). Remove this line once a "
        "plan shows no relink.", 86)))
    header = [
        "dirconnector profile converted from a Bitwarden Directory Connector data.json",
        "by `dirconnector import-bwdc`. Review it, then run `dirconnector config validate`",
        "and `dirconnector plan` (which shows the server-side difference) before `sync`.",
        "",
        "Secrets are not copied. Set these environment variables (or switch to *_file):",
        f"  {env}  {what.format(email=directory.get('clientEmail', '?'))}",
        f"  {TARGET_SECRET_ENV}  the organization API key's client_secret "
        "(bwdc reads the same variable)",
        "",
        "The first `dirconnector plan` is a takeover report ([sync] takeover_from = \"bwdc\"):",
        *textwrap.wrap(f"bwdc keyed this directory on {keys}.", 84),
        *_first_plan(source, directory),
        "It then counts the members already right, the directory users without a member",
        "(+ create), and what differs from what bwdc left (disabled users bwdc sent as",
        "active, groups or memberships bwdc never synced); the safety limits still apply",
        "to those. Members whose bwdc key matches no directory entry are listed and left",
        "as they are. `dirconnector sync` then makes the changes; the next plan is empty.",
    ]
    if unmapped:
        header += ["", "Options with no equivalent (see the list printed by import-bwdc):"]
        header += [f"  - {u}" for u in unmapped]
    return out.render(header), unmapped


def _target(root: Mapping[str, Any], sync: Mapping[str, Any], out: _Out,
            unmapped: list[str]) -> None:
    out.set("target", "type", "bitwarden")
    raw_urls = root.get("environmentUrls")
    urls: Mapping[str, Any] = raw_urls if isinstance(raw_urls, Mapping) else {}
    base = urls.get("base") or urls.get("webVault")
    out.set("target", "server_url", (base or DEFAULT_SERVER).rstrip("/"),
            "US cloud: https://vault.bitwarden.com; EU cloud: https://vault.bitwarden.eu")
    for key, option in (("api", "api_url"), ("identity", "identity_url")):
        if urls.get(key):
            out.set("target", option, str(urls[key]).rstrip("/"))
    for key in ("icons", "notifications", "events", "keyConnector"):
        if urls.get(key):
            unmapped.append(f"environmentUrls.{key}: not used by dirconnector")
    org = root.get("organizationId")
    if org:
        out.set("target", "client_id", f"organization.{org}")
    else:
        out.set("target", "client_id", "organization.00000000-0000-0000-0000-000000000000",
                "REPLACE: the organization API key's client_id (data.json had no "
                "organizationId)")
        unmapped.append("organizationId: missing; set target.client_id by hand")
    out.set("target", "client_secret_env", TARGET_SECRET_ENV,
            "secret: the organization API key's client_secret")
    invite = bool(sync.get("inviteUsersAfterProvisioning", False))
    out.set("target", "invite_users", invite,
            "sync.inviteUsersAfterProvisioning: email invitations to new members")
    out.set("target", "large_import", "auto" if sync.get("largeImport") else False,
            "sync.largeImport: batch imports of more than 2,000 objects")


def _sync(sync: Mapping[str, Any], kind: int, out: _Out, unmapped: list[str]) -> None:
    remove_disabled = bool(sync.get("removeDisabled", False))
    overwrite = bool(sync.get("overwriteExisting", False))
    out.set("sync", "remove_disabled", remove_disabled, "sync.removeDisabled")
    out.set("sync", "remove_missing", overwrite,
            "sync.overwriteExisting: take away members no longer in the directory")
    if overwrite:
        out.set("sync", "manage", "external_id",
                "bwdc's overwrite reached every member with an external id (never owners or\n"
                "manually invited members); \"linked\" would limit it to accounts this tool "
                "created or linked")
    if remove_disabled or overwrite:
        out.set("sync", "deprovision", "revoke",
                "bwdc REMOVED these members from the organization. dirconnector revokes them\n"
                "(restorable; the seat stays used). Set \"delete\" for bwdc's behaviour.")
    out.set("sync", "sync_groups", bool(sync.get("groups", False)),
            "sync.groups (OneLogin: roles)" if kind == 4 else "sync.groups")
    if not sync.get("users", False):
        unmapped.append("sync.users = false: dirconnector always reads users (groups "
                        "without users cannot be provisioned through the import)")
    interval = sync.get("interval")
    if isinstance(interval, int | float) and interval > 0:
        out.set("schedule", "interval", f"{max(5, int(interval))}m",
                "sync.interval (minutes); used by `dirconnector daemon`")


# ---------------------------------------------------------------------- sources


def _ldap(d: Mapping[str, Any], sync: Mapping[str, Any], out: _Out, unmapped: list[str]) -> None:
    """LdapConfiguration + the LDAP fields of SyncConfiguration (reference 1.2, 2.2.1)."""
    host = str(d.get("hostname") or "")
    if not host:
        unmapped.append("directoryLdap.hostname: empty; set source.url by hand")
        host = "REPLACE.example.com"
    port = int(d.get("port") or 389)
    ssl, start_tls = bool(d.get("ssl")), bool(d.get("startTls"))
    # bwdc: ssl && !startTls -> ldaps://; ssl && startTls -> ldap:// + STARTTLS.
    scheme = "ldaps" if ssl and not start_tls else "ldap"
    out.set("source", "url", f"{scheme}://{host.lower()}:{port}")
    if ssl and start_tls:
        out.set("source", "start_tls", True)
    ca = d.get("tlsCaPath") if start_tls else d.get("sslCaPath")
    if ssl and ca:
        out.set("source", "ca_file", str(ca), "tlsCaPath / sslCaPath")
    if d.get("sslAllowUnauthorized"):
        out.set("source", "verify_tls", False,
                "sslAllowUnauthorized: certificates are NOT verified; set ca_file instead")
    for key in ("sslCertPath", "sslKeyPath"):
        if d.get(key):
            unmapped.append(f"directoryLdap.{key}: TLS client certificates are not supported")
    if d.get("username"):
        out.set("source", "bind_dn", str(d["username"]))
    ad = bool(d.get("ad", True))
    out.set("source", "active_directory", ad, "directoryLdap.ad")
    if d.get("pagedSearch") is False:
        out.set("source", "page_size", 0, "directoryLdap.pagedSearch = false")
    root_path = str(d.get("rootPath") or "")
    if root_path:
        out.set("source", "base_dn", root_path, "directoryLdap.rootPath")
    for key, option in (("userPath", "user_base"), ("groupPath", "group_base")):
        if sync.get(key):
            out.set("source", option, _search_base(str(sync[key]), root_path), f"sync.{key}")
    simple = (("userObjectClass", "user_object_class"), ("userEmailAttribute", "email_attribute"),
              ("groupObjectClass", "group_object_class"),
              ("groupNameAttribute", "group_name_attribute"),
              ("memberAttribute", "member_attribute"), ("userFilter", "user_filter"),
              ("groupFilter", "group_filter"))
    for key, option in simple:
        if sync.get(key):
            out.set("source", option, str(sync[key]), f"sync.{key}")
    if sync.get("useEmailPrefixSuffix"):
        if sync.get("emailPrefixAttribute") and sync.get("emailSuffix"):
            out.set("source", "email_prefix_attribute", str(sync["emailPrefixAttribute"]))
            out.set("source", "email_suffix", str(sync["emailSuffix"]))
        else:
            unmapped.append("sync.useEmailPrefixSuffix: prefix attribute or suffix missing")
    if sync.get("revisionDateAttribute"):
        unmapped.append("sync.revisionDateAttribute: not needed; the ldap connector picks "
                        "its change attribute (modifyTimestamp/whenChanged/uSNChanged) itself")
    for key in ("domain", "currentUser"):
        if d.get(key):
            unmapped.append(f"directoryLdap.{key}: unused by bwdc's LDAP sync too")


def _keys(source: str, directory: Mapping[str, Any]) -> str:
    """bwdc's external ids for this directory type, in words (keys.py)."""
    if source != "ldap":
        return bwdc_keys.rule(source)
    if bool(directory.get("ad", True)):
        return "objectGUID as GUID text, as dirconnector does"
    return ("the entry DN (objectGUID where an entry has one), where dirconnector uses "
            "entryUUID (nsUniqueId, ipaUniqueID)")


def _first_plan(source: str, directory: Mapping[str, Any]) -> list[str]:
    if source == "ldap" and not bool(directory.get("ad", True)):
        return ["Every member and group bwdc created shows as `> relink user: \"<DN>\" ->",
                "<entryUUID>`: its external id is rewritten through PUT /public/members/{id}",
                "(read first: its type, permissions, collections and groups stay) and",
                "PUT /public/groups/{id} (collections kept); nobody is invited again."]
    return ["The external ids are the same in both tools, so the members bwdc created",
            "are found as they are: nothing needs relinking."]


def _search_base(prefix: str, root_path: str) -> str:
    """bwdc's makeSearchPath: prefix + the part of rootPath from its first dc=, or the prefix."""
    low = root_path.lower()
    at = low.find("dc=")
    return f"{prefix},{low[at:]}" if at >= 0 else prefix


def _azure(d: Mapping[str, Any], sync: Mapping[str, Any], out: _Out,
           unmapped: list[str]) -> None:
    """EntraIdConfiguration and Entra's filter syntax (reference 1.2, 1.4)."""
    out.set("source", "tenant_id", str(d.get("tenant") or "REPLACE-tenant"))
    out.set("source", "client_id", str(d.get("applicationId") or "REPLACE-application-id"))
    for key in ("tenant", "applicationId"):
        if not d.get(key):
            unmapped.append(f"directoryEntra.{key}: empty; set it by hand")
    authority = str(d.get("identityAuthority") or "login.microsoftonline.com")
    if authority == "login.microsoftonline.us":
        out.set("source", "authority_host", "https://login.microsoftonline.us",
                "US Government cloud")
        out.set("source", "graph_url", "https://graph.microsoft.us")
    elif authority != "login.microsoftonline.com":
        unmapped.append(f"directoryEntra.identityAuthority: {authority!r} is not a cloud bwdc "
                        "supports")
    users = str(sync.get("userFilter") or "").strip()
    if users:
        clauses = [c.strip() for c in users.split("|") if c.strip()]
        first = True
        email_filter: str | None = None
        for clause in clauses:
            key, _, values = clause.partition(":")
            items = [v.strip() for v in values.split(",") if v.strip()]
            key = key.strip()
            if key == "includeGroup" and first:
                out.set("source", "include_groups", items, "userFilter includeGroup:")
            elif key == "excludeGroup" and (first or clauses[0].startswith("includeGroup")):
                out.set("source", "exclude_groups", items, "userFilter excludeGroup:")
            elif key in ("include", "exclude") and email_filter is None and (
                    first or clauses[0].startswith("includeGroup")):
                email_filter = f"{key}:{','.join(items)}"
                out.set("source", "user_filter", email_filter, "userFilter")
            else:
                unmapped.append(f"sync.userFilter clause {clause!r}: not understood")
            first = False
    groups = str(sync.get("groupFilter") or "").strip()
    if groups:
        key, _, values = groups.partition(":")
        items = [v.strip() for v in values.split(",") if v.strip()]
        if key.strip() in ("include", "exclude"):
            out.set("source", "group_filter", f"{key.strip()}:{','.join(items)}", "groupFilter")
        elif key.strip() == "includeAdministrativeUnit" and len(items) == 1:
            out.set("source", "administrative_unit", items[0], "groupFilter")
        else:
            unmapped.append(f"sync.groupFilter {groups!r}: only include:/exclude: names or one "
                            "includeAdministrativeUnit: id map")
    _group_scoping_note(sync, unmapped)


def _group_scoping_note(sync: Mapping[str, Any], unmapped: list[str]) -> None:
    if sync.get("groupFilter") and sync.get("groups"):
        unmapped.append("sync.groupFilter also limited USERS to members of the kept groups in "
                        "bwdc; dirconnector filters users only by user_filter")


def _filters(sync: Mapping[str, Any], out: _Out) -> None:
    """include:/exclude: + '|' native query: the same syntax in both tools (reference 1.4)."""
    for key, option in (("userFilter", "user_filter"), ("groupFilter", "group_filter")):
        if str(sync.get(key) or "").strip():
            out.set("source", option, str(sync[key]).strip(), f"sync.{key}")


def _google(d: Mapping[str, Any], sync: Mapping[str, Any], out: _Out,
            unmapped: list[str]) -> None:
    out.set("source", "admin_email", str(d.get("adminUser") or "REPLACE-admin@example.com"),
            "directoryGsuite.adminUser (impersonated through domain-wide delegation)")
    if not d.get("adminUser"):
        unmapped.append("directoryGsuite.adminUser: empty; set source.admin_email by hand")
    if d.get("domain"):
        out.set("source", "domain", str(d["domain"]))
    if d.get("customer"):
        out.set("source", "customer", str(d["customer"]))
    _filters(sync, out)
    _group_scoping_note(sync, unmapped)


def _okta(d: Mapping[str, Any], sync: Mapping[str, Any], out: _Out,
          unmapped: list[str]) -> None:
    out.set("source", "org_url", str(d.get("orgUrl") or "https://REPLACE.okta.com").rstrip("/"))
    if not d.get("orgUrl"):
        unmapped.append("directoryOkta.orgUrl: empty; set source.org_url by hand")
    _filters(sync, out)
    if "|" in str(sync.get("userFilter") or ""):
        out.comment("source", "bwdc passed the part after '|' as an Okta `filter`; dirconnector "
                    "uses `search`, which accepts the same expressions and more")
    _group_scoping_note(sync, unmapped)


def _onelogin(d: Mapping[str, Any], sync: Mapping[str, Any], out: _Out,
              unmapped: list[str]) -> None:
    out.set("source", "region", str(d.get("region") or "us"), "directoryOnelogin.region")
    out.set("source", "client_id", str(d.get("clientId") or "REPLACE-client-id"))
    if not d.get("clientId"):
        unmapped.append("directoryOnelogin.clientId: empty; set source.client_id by hand")
    out.set("source", "groups_from", "roles", "bwdc synced OneLogin roles as groups")
    _filters(sync, out)
    if sync.get("useEmailPrefixSuffix") and sync.get("emailSuffix"):
        out.set("source", "email_suffix", str(sync["emailSuffix"]).lstrip("@"),
                "sync.emailSuffix: username@suffix when a user has no email")
    _group_scoping_note(sync, unmapped)


SOURCES = {"ldap": _ldap, "azure": _azure, "google": _google, "okta": _okta,
           "onelogin": _onelogin}
