"""A takeover on a generic SCIM server: accounts another tool keyed on the DN are relinked
with PATCH replace externalId (RFC 7644 3.5.2), against the independent scim2-server."""

from __future__ import annotations

import dataclasses

import pytest
import requests

from dirconnector.connectors.ldap.syntax import normalize_dn
from dirconnector.diff import Policy, diff
from dirconnector.model import Group, PreviousKeys, Snapshot, User
from dirconnector.outcome import Outcome

from .conftest import TOKEN, MakeTarget, ScimServer

pytestmark = pytest.mark.integration


def _post(server: ScimServer, path: str, body: dict[str, object]) -> str:
    resp = requests.post(f"{server.url}/{path}", json=body, timeout=10,
                         headers={"Authorization": f"Bearer {TOKEN}"})
    resp.raise_for_status()
    return str(resp.json()["id"])


def test_generic_scim_relinks_by_patch(scim_server: ScimServer, make_target: MakeTarget) -> None:
    """Users and a group created with DN external ids get the directory's ids by PATCH;
    their SCIM ids and memberships stay, and the next plan is empty."""
    people = [User(f"uuid-{i}", f"p{i}@example.org", display_name=f"P {i}") for i in range(5)]
    refs = {}
    for i, u in enumerate(people):
        refs[u.external_id] = _post(scim_server, "Users", {
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
            "userName": u.email, "externalId": f"uid=p{i},ou=People,dc=example,dc=org",
            "displayName": u.display_name, "active": True,
            "emails": [{"value": u.email, "primary": True, "type": "work"}]})
    group_ref = _post(scim_server, "Groups", {
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"], "displayName": "Staff",
        "externalId": "cn=staff,ou=Groups,dc=example,dc=org",
        "members": [{"value": refs["uuid-0"]}, {"value": refs["uuid-1"]}]})
    keys = PreviousKeys("bwdc", "the entry DN",
                        {f"UID=p{i}, ou=people,dc=example,dc=org": f"uuid-{i}" for i in range(5)},
                        {"cn=staff,ou=groups,dc=example,dc=org": "g-staff"}, normalize_dn)
    want = dataclasses.replace(
        Snapshot.build(people, [Group("g-staff", "Staff", frozenset({"uuid-0", "uuid-1"}))]),
        previous_keys=keys)
    target = make_target()
    plan = diff(want, target.snapshot(), Policy(), fields=target.user_fields)
    assert sorted(c.kind for c in plan.changes) == ["relink_group"] + ["relink_user"] * 5
    assert any("PATCH replace externalId" in n for n in target.describe(plan))
    outcomes: list[Outcome] = []
    target.apply(plan, outcomes.append)
    assert [o.status for o in outcomes] == ["ok"] * 6
    for u in people:
        found = scim_server.find_user(u.external_id)
        assert found["id"] == refs[u.external_id]
    group = scim_server.get(f"Groups/{group_ref}")
    assert group["externalId"] == "g-staff"
    assert diff(want, make_target().snapshot(), Policy(), fields=target.user_fields).empty
