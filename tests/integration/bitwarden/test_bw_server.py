"""The test server answers like Bitwarden's (shared/reference/bitwarden.md 2.5, 2.6, 3)."""

from __future__ import annotations

import pytest
import requests

from tests.emulators.bitwarden.org import CONFIRMED, REVOKED, STAGED
from tests.emulators.bitwarden.server import BitwardenServer

from .conftest import PublicApi

pytestmark = pytest.mark.integration


def m(email: str, ext: str, deleted: bool = False) -> dict[str, object]:
    return {"email": email, "externalId": ext, "deleted": deleted}


def test_token_bad_secret_is_invalid_client(bw_server: BitwardenServer) -> None:
    """A wrong client secret gets 400 {"error": "invalid_client"}."""
    resp = requests.post(f"{bw_server.identity_url}/connect/token", data={
        "grant_type": "client_credentials", "client_id": bw_server.client_id,
        "client_secret": "wrong", "scope": "api.organization"}, timeout=5)
    assert resp.status_code == 400 and resp.json() == {"error": "invalid_client"}


def test_public_api_needs_token(bw_server: BitwardenServer) -> None:
    """The Public API answers 401 without a bearer token."""
    assert requests.get(f"{bw_server.api_url}/public/members", timeout=5).status_code == 401


def test_import_links_by_email_and_skips_known_emails(bw_server: BitwardenServer,
                                                      api: PublicApi) -> None:
    """A member without external id is linked by email; one with another id is left alone."""
    manual = bw_server.add_member("manual@x.org")
    other = bw_server.add_member("taken@x.org", external_id="old")
    assert api.import_([m("manual@x.org", "1"), m("taken@x.org", "2")]).status_code == 200
    assert manual.external_id == "1"
    assert other.external_id == "old"
    assert len(bw_server.org.members) == 2


def test_import_new_members_staged_without_invitation(bw_server: BitwardenServer,
                                                      api: PublicApi) -> None:
    """inviteUsersAfterProvisioning=false creates Staged members; absent means Invited."""
    api.import_([m("a@x.org", "1")], inviteUsersAfterProvisioning=False)
    api.post("/public/organization/import", {"members": [m("b@x.org", "2")],
                                             "overwriteExisting": False})
    assert bw_server.member("a@x.org").status == STAGED  # type: ignore[union-attr]
    assert bw_server.member("b@x.org").status_name == "Invited"  # type: ignore[union-attr]


def test_import_deleted_removes_but_never_owners(bw_server: BitwardenServer,
                                                 api: PublicApi) -> None:
    """Members sent as deleted are removed from the org; owners stay."""
    bw_server.add_member("a@x.org", external_id="1")
    bw_server.add_owner("o@x.org", external_id="9")
    assert api.import_([m("a@x.org", "1", True), m("o@x.org", "9", True)]).status_code == 200
    assert bw_server.member("a@x.org") is None
    assert bw_server.member("o@x.org") is not None


def test_overwrite_removes_unlisted_external_members_only(bw_server: BitwardenServer,
                                                          api: PublicApi) -> None:
    """overwriteExisting removes unlisted members with an external id, not manual ones."""
    bw_server.add_member("gone@x.org", external_id="1")
    bw_server.add_member("manual@x.org")
    bw_server.add_owner("o@x.org", external_id="9")
    api.import_([m("keep@x.org", "2")], overwriteExisting=True)
    emails = {x.email for x in bw_server.org.members.values()}
    assert emails == {"manual@x.org", "o@x.org", "keep@x.org"}


def test_group_membership_replaced(bw_server: BitwardenServer, api: PublicApi) -> None:
    """An imported group's membership is replaced by the known external ids sent."""
    a = bw_server.add_member("a@x.org", external_id="1")
    b = bw_server.add_member("b@x.org", external_id="2")
    g = bw_server.add_group("Old", external_id="g", member_ids={a.id})
    api.import_(groups=[{"name": "New", "externalId": "g", "memberExternalIds": ["2", "x"]}])
    assert g.name == "New" and g.member_ids == {b.id}


def test_import_limit_and_duplicates(bw_server: BitwardenServer, api: PublicApi) -> None:
    """Over 2,000 members needs largeImport (400); duplicate emails answer 500."""
    many = [m(f"u{i}@x.org", str(i)) for i in range(2001)]
    resp = api.import_(many)
    assert resp.status_code == 400 and "this much data" in resp.json()["message"]
    assert api.import_(many, largeImport=True).status_code == 200
    dup = api.import_([m("d@x.org", "a"), m("D@x.org", "b")])
    assert dup.status_code == 500 and "unhandled" in dup.json()["message"]


def test_import_model_state_errors(api: PublicApi) -> None:
    """Group names over 100 characters are a 400 naming the field."""
    resp = api.import_(groups=[{"name": "n" * 101, "externalId": "g", "memberExternalIds": []}])
    assert resp.status_code == 400 and "Groups[0].Name" in resp.json()["errors"]


def test_revoke_restore(bw_server: BitwardenServer, api: PublicApi) -> None:
    """revoke/restore flip the status; revoking twice is a 400."""
    a = bw_server.add_member("a@x.org", external_id="1")
    assert api.post(f"/public/members/{a.id}/revoke").status_code == 200
    assert a.status == REVOKED
    assert api.post(f"/public/members/{a.id}/revoke").status_code == 400
    assert api.post(f"/public/members/{a.id}/restore").status_code == 200
    assert a.status == CONFIRMED


def test_scim_quirks(bw_server: BitwardenServer) -> None:
    """SCIM: userName filter needs @, POST of a known email is 409, groups hide members."""
    a = bw_server.add_member("a@x.org", external_id="1")
    bw_server.add_group("G", external_id="g", member_ids={a.id})
    h = {"Authorization": f"Bearer {bw_server.scim_key}"}
    url = bw_server.scim_url
    assert requests.get(f'{url}/users?filter=userName eq "a"', headers=h,
                        timeout=5).json()["totalResults"] == 0
    assert requests.get(f'{url}/users?filter=userName eq "A@x.org"', headers=h,
                        timeout=5).json()["Resources"][0]["id"] == a.id
    conflict = requests.post(f"{url}/users", json={"userName": "a@x.org"}, headers=h, timeout=5)
    assert conflict.status_code == 409 and "scimType" not in conflict.json()
    group = requests.get(f"{url}/groups", headers=h, timeout=5).json()["Resources"][0]
    assert "members" not in group
    assert requests.get(f"{url}/ServiceProviderConfig", headers=h, timeout=5).status_code == 404
    assert requests.get(f"{url}/users", timeout=5).status_code == 401


def test_scim_patch_active_and_put_ignores_email(bw_server: BitwardenServer) -> None:
    """PATCH replace active revokes; PUT changes only active, never the email."""
    a = bw_server.add_member("a@x.org", external_id="1")
    h = {"Authorization": f"Bearer {bw_server.scim_key}"}
    url = f"{bw_server.scim_url}/users/{a.id}"
    ops = {"Operations": [{"op": "replace", "path": "active", "value": False}]}
    assert requests.patch(url, json=ops, headers=h, timeout=5).status_code == 204
    assert a.status == REVOKED
    body = {"userName": "new@x.org", "active": True}
    assert requests.put(url, json=body, headers=h, timeout=5).json()["userName"] == "a@x.org"
    assert a.status == CONFIRMED


def test_import_sees_member_changes_made_between_imports(bw_server: BitwardenServer,
                                                         api: PublicApi) -> None:
    """The server reuses what its last import indexed only while no member changed: an
    external id cleared in the web vault in between makes the next import link again."""
    assert api.import_([{"email": "a@example.com", "externalId": "a"}]).status_code == 200
    member = bw_server.member("a@example.com")
    assert member is not None
    member.external_id = None
    assert api.import_([{"email": "a@example.com", "externalId": "a2"}]).status_code == 200
    assert bw_server.member("a@example.com").external_id == "a2"  # type: ignore[union-attr]
    assert len(bw_server.org.members) == 1
