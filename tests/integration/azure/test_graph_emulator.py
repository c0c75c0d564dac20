"""The Graph emulator itself answers in the documented wire format (so the connector tests mean something)."""

from __future__ import annotations

from typing import Any

import pytest
import requests

from tests.emulators.graph import GraphEmulator

from .conftest import CLIENT_ID, SECRET, Tenant

pytestmark = pytest.mark.integration


@pytest.fixture
def get(emulator: GraphEmulator) -> Any:
    session = requests.Session()
    form = {"grant_type": "client_credentials", "client_id": CLIENT_ID, "client_secret": SECRET,
            "scope": emulator.origin + "/.default"}
    tok = session.post(f"{emulator.origin}/{emulator.tenant_id}/oauth2/v2.0/token", data=form,
                       verify=str(emulator.ca_file), timeout=5).json()

    def call(url: str, token: str | None = tok["access_token"]) -> requests.Response:
        if not url.startswith("https://"):
            url = f"{emulator.origin}/v1.0/{url}"
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return session.get(url, headers=headers, verify=str(emulator.ca_file), timeout=5)
    return call


def test_token_response_shape(emulator: GraphEmulator) -> None:
    """The token endpoint answers token_type/expires_in/ext_expires_in/access_token."""
    body = requests.post(f"{emulator.origin}/{emulator.tenant_id}/oauth2/v2.0/token", data={
        "grant_type": "client_credentials", "client_id": CLIENT_ID, "client_secret": SECRET,
        "scope": emulator.origin + "/.default"}, verify=str(emulator.ca_file), timeout=5).json()
    assert set(body) == {"token_type", "expires_in", "ext_expires_in", "access_token"}
    assert body["token_type"] == "Bearer"


def test_last_page_has_no_next_link(get: Any, tenant: Tenant) -> None:
    """paging.md: every page but the last has @odata.nextLink; the last omits the key."""
    page = get("users?$select=id,mail&$top=3").json()
    assert page["@odata.context"].endswith("/v1.0/$metadata#users(id,mail)")
    assert len(page["value"]) == 3 and "$skiptoken=" in page["@odata.nextLink"]
    last = get(page["@odata.nextLink"]).json()
    assert "@odata.nextLink" not in last and len(last["value"]) == 2


def test_default_user_properties_lack_account_enabled(get: Any, tenant: Tenant) -> None:
    """user-list.md: without $select, accountEnabled is not returned."""
    user = get("users").json()["value"][0]
    assert "accountEnabled" not in user and "userPrincipalName" in user


def test_members_carry_odata_type(get: Any, tenant: Tenant) -> None:
    """group-list-members.md: directoryObjects carry @odata.type (user or group)."""
    body = get(f"groups/{tenant.engineering}/members?$select=id").json()
    assert body["@odata.context"].endswith("$metadata#directoryObjects(id)")
    assert {m["@odata.type"] for m in body["value"]} == {"#microsoft.graph.user",
                                                         "#microsoft.graph.group"}


def test_error_envelope_and_statuses(get: Any, emulator: GraphEmulator, tenant: Tenant) -> None:
    """errors.md envelope for 401 (no token), 400 ($top > 999), 404, and 429 with Retry-After."""
    r = get("users", token=None)
    assert r.status_code == 401 and "WWW-Authenticate" in r.headers
    err = r.json()["error"]
    assert err["code"] == "InvalidAuthenticationToken"
    assert {"date", "request-id", "client-request-id"} <= set(err["innerError"])
    r = get("users?$top=1000")
    assert r.status_code == 400 and "between 1 and 999" in r.json()["error"]["message"]
    assert get("groups/00000000-0000-0000-0000-000000000000/members").status_code == 404
    emulator.throttle(1, retry_after="2.128")
    r = get("users")
    assert r.status_code == 429 and r.headers["Retry-After"] == "2.128"
    assert r.json()["error"]["code"] == "TooManyRequests"


def test_delta_latest_then_changes(get: Any, emulator: GraphEmulator, tenant: Tenant) -> None:
    """$deltatoken=latest gives only a deltaLink; the link then returns @removed and changes."""
    first = get("users/delta?$select=displayName&$deltatoken=latest").json()
    assert first["value"] == [] and "@odata.nextLink" not in first
    emulator.directory.soft_delete_user(tenant.bob)
    emulator.directory.hard_delete_user(tenant.dave)
    emulator.directory.update_user(tenant.alice, displayName="Alice B. Able")
    body = get(first["@odata.deltaLink"]).json()
    by_id = {u["id"]: u for u in body["value"]}
    assert by_id[tenant.bob]["@removed"] == {"reason": "changed"}
    assert by_id[tenant.dave]["@removed"] == {"reason": "deleted"}
    assert by_id[tenant.alice] == {"id": tenant.alice, "displayName": "Alice B. Able"}
    assert "$deltatoken=" in body["@odata.deltaLink"]


def test_users_delta_tracks_the_manager_when_selected(
    get: Any, emulator: GraphEmulator, tenant: Tenant
) -> None:
    """With ``manager`` in $select a users delta reports a new manager as ``manager@delta``
    and a removed one with ``@removed`` (delta-query-overview.md); without it, a manager
    change does not bring the user into the delta at all."""
    d = emulator.directory
    tracked = get("users/delta?$select=displayName,manager&$deltatoken=latest").json()
    untracked = get("users/delta?$select=displayName&$deltatoken=latest").json()
    d.set_manager(tenant.bob, tenant.alice)
    body = get(tracked["@odata.deltaLink"]).json()
    assert body["value"] == [{"id": tenant.bob, "displayName": "Bob Baker", "manager@delta": [
        {"@odata.type": "#microsoft.graph.user", "id": tenant.alice}]}]
    d.set_manager(tenant.bob, None)
    again = get(body["@odata.deltaLink"]).json()
    assert again["value"][0]["manager@delta"] == [{
        "@odata.type": "#microsoft.graph.user", "id": tenant.alice,
        "@removed": {"reason": "deleted"}}]
    assert get(untracked["@odata.deltaLink"]).json()["value"] == []
    initial = get("users/delta?$select=id,manager").json()
    assert all("manager@delta" not in u for u in initial["value"])
    d.set_manager(tenant.dave, tenant.bob)
    initial = get("users/delta?$select=id,manager").json()
    assert [u["manager@delta"] for u in initial["value"] if "manager@delta" in u] == [
        [{"@odata.type": "#microsoft.graph.user", "id": tenant.bob}]]


def test_expired_delta_token(get: Any, emulator: GraphEmulator, tenant: Tenant) -> None:
    """An expired delta token answers 400 syncStateNotFound (Graph blog, July 2020)."""
    link = get("groups/delta?$deltatoken=latest").json()["@odata.deltaLink"]
    emulator.directory.expire_delta_tokens()
    r = get(link)
    assert r.status_code == 400 and r.json()["error"]["code"] == "syncStateNotFound"
