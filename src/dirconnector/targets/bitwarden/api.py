"""Bitwarden's identity server and Public API: token, reads and the calls apply makes.

Token: ``POST {identity}/connect/token`` with the organization API key as OAuth
client credentials and scope ``api.organization`` (shared/reference/bitwarden.md 2.5;
SRV ``OrganizationClientProvider``: tokens live 3600 s). It is renewed a minute
before it expires, and once more if the API answers 401 anyway.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import urlsplit

from ...errors import AuthError, TargetError
from ...http import HttpClient, Response, error_detail
from ...model import Group, Snapshot, User, normalize_email

log = logging.getLogger(__name__)

# Cloud vault hosts and their API / identity hosts (bitwarden.com/help/... "cloud server").
CLOUD = {
    "vault.bitwarden.com": ("https://api.bitwarden.com", "https://identity.bitwarden.com"),
    "bitwarden.com": ("https://api.bitwarden.com", "https://identity.bitwarden.com"),
    "vault.bitwarden.eu": ("https://api.bitwarden.eu", "https://identity.bitwarden.eu"),
    "bitwarden.eu": ("https://api.bitwarden.eu", "https://identity.bitwarden.eu"),
}
CLOUD_API_HOSTS = frozenset(urlsplit(a).hostname for a, _ in CLOUD.values())
REVOKED = -1
"""OrganizationUserStatusType.Revoked; Invited 0, Accepted 1, Confirmed 2, Staged: active."""
OWNER = 0
"""OrganizationUserType.Owner."""
CUSTOM = 4
"""OrganizationUserType.Custom: the one type whose permissions are sent."""
EARLY_RENEWAL = 60.0

TOKEN_HINTS = {
    "invalid_client": "wrong client_id or client_secret, or API access is off for the "
                      "organization (Admin Console > Settings > Organization info > API key)",
    "invalid_scope": "the key is not an organization API key (client_id must be "
                     "organization.<uuid>)",
}


def member_update(member: Mapping[str, Any], external_id: str) -> dict[str, Any]:
    """The MemberUpdateRequestModel that changes only ``externalId`` of ``member`` (as read).

    Permissions go back only for the Custom type (SRV MemberUpdateRequestModel.Validate:
    "Only users with the Custom role may use custom permissions"). ``groups`` is left out:
    absent is null, and UpdateOrganizationUserCommand leaves a member's groups alone when
    they are null. An empty ``external_id`` is sent as null (the member then has none).
    """
    kind = member.get("type")
    return {
        "type": kind,
        "externalId": external_id or None,
        "permissions": member.get("permissions") if kind == CUSTOM else None,
        "collections": _collections(member),
    }


def member_records(members: Iterable[Mapping[str, Any]]) -> list[User]:
    """Members as ``GET /public/members`` lists them, as records keyed by member id."""
    return [User(external_id=str(m.get("externalId") or ""),
                 email=normalize_email(m.get("email")),
                 display_name=str(m.get("name") or ""),
                 active=m.get("status") != REVOKED, ref=str(m["id"])) for m in members]


def _collections(body: Mapping[str, Any]) -> list[dict[str, Any]]:
    """A member's or group's collection access as read, in the shape PUT takes back."""
    return [{k: c.get(k) for k in ("id", "readOnly", "hidePasswords", "manage")}
            for c in body.get("collections") or [] if isinstance(c, dict)]


def endpoints(server_url: str, api_url: str | None, identity_url: str | None) -> tuple[str, str]:
    """API and identity base URLs: explicit overrides, the cloud's hosts, or self-hosted paths."""
    base = server_url.rstrip("/")
    host = urlsplit(base).hostname or ""
    cloud = CLOUD.get(host) if urlsplit(base).path in ("", "/") else None
    api = api_url or (cloud[0] if cloud else f"{base}/api")
    identity = identity_url or (cloud[1] if cloud else f"{base}/identity")
    return api.rstrip("/"), identity.rstrip("/")


class BitwardenApi:
    """One organization's Public API, authenticated with its API key."""

    def __init__(self, *, api_url: str, identity_url: str, client_id: str, client_secret: str,
                 verify: bool | str, timeout: float,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.api_url = api_url
        self.identity_url = identity_url
        self.client_id = client_id
        self._secret = client_secret
        self._token = ""
        self._expires = 0.0
        self._clock = clock
        """Seconds on a monotonic scale; the token's expiry is computed on it."""
        self._lock = threading.Lock()
        self.identity = HttpClient(identity_url, side="target", label="bitwarden identity",
                                   verify=verify, timeout=timeout)
        self.http = HttpClient(api_url, side="target", label="bitwarden", verify=verify,
                               timeout=timeout, auth=self._auth)
        self.token_requests = 0

    def __repr__(self) -> str:
        return f"BitwardenApi({self.api_url!r}, client_id={self.client_id!r})"

    @property
    def cloud(self) -> bool:
        """True on Bitwarden's cloud, where imports are limited to 2,000 objects."""
        return urlsplit(self.api_url).hostname in CLOUD_API_HOSTS

    # ------------------------------------------------------------------ token

    def token(self, *, renew: bool = False) -> str:
        with self._lock:
            if renew or not self._token or self._clock() >= self._expires:
                self._fetch_token()
            return self._token

    def _fetch_token(self) -> None:
        form = {"grant_type": "client_credentials", "client_id": self.client_id,
                "client_secret": self._secret, "scope": "api.organization"}
        self.token_requests += 1
        try:
            resp = self.identity.request("POST", "connect/token", data=form, ok=(200, 400, 401))
        except TargetError as exc:
            raise AuthError(f"bitwarden: could not get a token from {self.identity_url}: "
                            f"{exc}", hint=exc.hint) from exc
        if resp.status != 200:
            code = error_detail(resp) or f"HTTP {resp.status}"
            raise AuthError(
                f"bitwarden: {self.identity_url} refused client_id {self.client_id} "
                f"({code}): {TOKEN_HINTS.get(code, 'check client_id and client_secret')}",
                status=resp.status)
        try:
            body = resp.json()
            token = str(body["access_token"])
            lifetime = float(body.get("expires_in", 3600))
        except (ValueError, KeyError, TypeError) as exc:
            raise AuthError(f"bitwarden: {self.identity_url} answered the token request "
                            f"without an access_token") from exc
        self._token = token
        self._expires = self._clock() + max(0.0, lifetime - min(EARLY_RENEWAL, lifetime / 10))

    def _auth(self) -> Mapping[str, str]:
        return {"Authorization": f"Bearer {self.token()}"}

    def call(self, method: str, path: str, *, json: Any = None,
             ok: Iterable[int] = (200, 201, 204)) -> Response:
        """One Public API request; a 401 renews the token once and tries again."""
        try:
            return self.http.request(method, path, json=json, ok=ok)
        except AuthError as exc:
            if exc.status != 401:
                raise
            log.info("bitwarden: API answered 401; renewing the token")
            self.token(renew=True)
            return self.http.request(method, path, json=json, ok=ok)

    def get(self, path: str) -> Any:
        resp = self.call("GET", path)
        try:
            return resp.json()
        except ValueError as exc:
            raise TargetError(f"bitwarden: GET {path} answered with a body that is not "
                              f"JSON") from exc

    # ------------------------------------------------------------------ external ids

    def set_member_external_id(self, member_id: str, external_id: str) -> None:
        """Give a member another external id ("": none) and change nothing else about it.

        ``PUT /public/members/{id}`` resets what it is not sent (SRV MembersController.Put:
        "If a property is not provided, the value of the existing property will be reset";
        UpdateOrganizationUserCommand: collections null removes all collection access,
        groups null leaves groups alone). So the member is read first and its type, custom
        permissions and collections are sent back as they are; groups are left out (null).
        The one path for relinks, ``migrate`` and its rollback alike.
        """
        member = self.get(f"public/members/{member_id}")
        if not isinstance(member, dict):
            raise TargetError(f"bitwarden: GET public/members/{member_id} did not answer a member")
        self.call("PUT", f"public/members/{member_id}",
                  json=member_update(member, external_id))

    def set_group_external_id(self, group_id: str, external_id: str,
                              name: str | None = None) -> None:
        """Give a group another external id ("": none), keeping its collections.

        ``PUT /public/groups/{id}`` replaces name, external id and collections
        (SRV GroupsController.Put); members are not part of it. The group is read first;
        ``name`` renames it in the same request, None keeps the name it has.
        """
        group = self.get(f"public/groups/{group_id}")
        if not isinstance(group, dict):
            raise TargetError(f"bitwarden: GET public/groups/{group_id} did not answer a group")
        self.call("PUT", f"public/groups/{group_id}",
                  json={"name": group.get("name") if name is None else name,
                        "externalId": external_id or None, "collections": _collections(group)})

    # ------------------------------------------------------------------ reads

    def list_all(self, path: str) -> list[dict[str, Any]]:
        """A ListResponseModel's items, following continuationToken if the server pages."""
        items: list[dict[str, Any]] = []
        url = path
        while True:
            body = self.get(url)
            if not isinstance(body, dict) or not isinstance(body.get("data"), list):
                raise TargetError(f"bitwarden: GET {path} did not answer a list")
            items.extend(body["data"])
            token = body.get("continuationToken")
            if not token:
                return items
            url = f"{path}?continuationToken={token}"

    def group_members(self, group_ids: Iterable[str], concurrency: int = 8
                      ) -> dict[str, list[str]]:
        """Member ids of each group (``GET /public/groups/{id}/member-ids``), by group id."""
        ids = list(group_ids)
        with ThreadPoolExecutor(max_workers=max(1, concurrency)) as pool:
            found = list(pool.map(lambda g: self.get(f"public/groups/{g}/member-ids"), ids))
        return {g: [str(m) for m in members or ()] for g, members in zip(ids, found, strict=True)}

    def read(self, *, concurrency: int = 8) -> Snapshot:
        """Members and groups with their member ids."""
        members, groups = self.read_raw(concurrency=concurrency)
        users = member_records(members)
        owners = sorted(str(m["id"]) for m in members if m.get("type") == OWNER)
        return Snapshot({u.ref: u for u in users}, {g.ref: g for g in groups},
                        info={"server": "bitwarden", "owners": ",".join(owners)})

    def read_raw(self, *, members_for: set[str] | None = None, concurrency: int = 8
                 ) -> tuple[list[dict[str, Any]], list[Group]]:
        """The members as the API lists them, and the groups with their member ids.

        ``members_for``: read the member ids only of the groups with these external ids
        (one request per group); the other groups come back with no member ids.
        """
        members = self.list_all("public/members")
        groups = self.list_all("public/groups")
        wanted = [g for g in groups
                  if members_for is None or g.get("externalId") in members_for]
        members_of = self.group_members([str(g["id"]) for g in wanted], concurrency)
        out_groups = [Group(external_id=str(g.get("externalId") or ""), name=str(g["name"]),
                            member_ids=frozenset(map(str, members_of.get(str(g["id"]), ()))),
                            ref=str(g["id"])) for g in groups]
        return members, out_groups
