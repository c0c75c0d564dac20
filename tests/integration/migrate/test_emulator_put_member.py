"""The test server's PUT /public/members/{id}, added for `migrate` (SRV MembersController.Put)."""

from __future__ import annotations

import pytest
import requests

from tests.emulators.bitwarden.org import USER
from tests.emulators.bitwarden.server import BitwardenServer

pytestmark = pytest.mark.integration


def token(server: BitwardenServer) -> dict[str, str]:
    resp = requests.post(f"{server.identity_url}/connect/token", timeout=5, data={
        "grant_type": "client_credentials", "client_id": server.client_id,
        "client_secret": server.client_secret, "scope": "api.organization"})
    return {"Authorization": f"Bearer {resp.json()['access_token']}"}


def put(server: BitwardenServer, member_id: str, body: object) -> requests.Response:
    return requests.put(f"{server.api_url}/public/members/{member_id}", json=body,
                        headers=token(server), timeout=5)


def test_type_is_required_and_external_id_is_replaced(bw_server: BitwardenServer):
    """No type: 400 with the model-state error; with a type the externalId is replaced,
    and an absent externalId resets it to null."""
    m = bw_server.add_member("a@example.com", external_id="old")
    bad = put(bw_server, m.id, {"externalId": "new"})
    assert bad.status_code == 400 and bad.json()["errors"] == {
        "Type": ["The Type field is required."]}
    ok = put(bw_server, m.id, {"type": USER, "externalId": "new"})
    assert ok.status_code == 200 and ok.json()["externalId"] == "new"
    assert put(bw_server, m.id, {"type": USER}).json()["externalId"] is None
    assert m.external_id is None


def test_groups_null_keeps_memberships_and_list_replaces_them(bw_server: BitwardenServer):
    """groups omitted leaves memberships; a groups list replaces them."""
    m = bw_server.add_member("a@example.com")
    g1 = bw_server.add_group("One", member_ids={m.id})
    g2 = bw_server.add_group("Two")
    put(bw_server, m.id, {"type": USER, "externalId": "x"}).raise_for_status()
    assert m.id in g1.member_ids
    put(bw_server, m.id, {"type": USER, "groups": [g2.id]}).raise_for_status()
    assert m.id not in g1.member_ids and m.id in g2.member_ids


def test_last_confirmed_owner_rule():
    """Without another confirmed owner the update is refused, as the real server does."""
    with BitwardenServer() as server:
        m = server.add_member("a@example.com")
        resp = put(server, m.id, {"type": USER, "externalId": "x"})
        assert resp.status_code == 400
        assert resp.json()["message"] == "Organization must have at least one confirmed owner."
