"""Relinks on Bitwarden, through either target: the Public API member update keeps the
member's type, custom permissions, collections and groups; the scim target with
flavor "bitwarden" and [target.public_api] sends the same requests."""

from __future__ import annotations

import dataclasses

import pytest

from dirconnector.connectors.ldap.syntax import normalize_dn
from dirconnector.diff import Policy, diff
from dirconnector.model import Group, PreviousKeys, Snapshot, User
from dirconnector.outcome import Outcome
from dirconnector.targets.bitwarden.target import BitwardenSettings
from dirconnector.targets.scim.target import ScimSettings, ScimTarget
from tests.emulators import bwdc
from tests.emulators.bitwarden.org import CUSTOM, INVITED
from tests.emulators.bitwarden.server import BitwardenServer

from .conftest import target_for

pytestmark = pytest.mark.integration

PEOPLE = "ou=People,dc=example,dc=org"
USERS = [User(f"uuid-{i}", f"p{i}@example.org") for i in range(6)]
COLLECTION = {"id": "c0ffee00-0000-4000-8000-00000000000a", "readOnly": False,
              "hidePasswords": True, "manage": False}


def seeded(server: BitwardenServer) -> Snapshot:
    """bwdc's import of six people (DN keys) in one group; the directory keyed by uuid."""
    server.add_owner("owner@example.org")
    users = [bwdc.UserEntry(f"uid=p{i},{PEOPLE}", u.email) for i, u in enumerate(USERS)]
    group = bwdc.GroupEntry("cn=g", "cn=staff,ou=Groups,dc=example,dc=org", "Staff",
                            {users[0].external_id, users[1].external_id})
    bwdc.seed(server, bwdc.bwdc_requests([group], users,
                                         {"inviteUsersAfterProvisioning": True}))
    keys = PreviousKeys("bwdc", "the entry DN",
                        {f"uid=p{i},{PEOPLE}": u.external_id for i, u in enumerate(USERS)},
                        {"cn=staff,ou=Groups,dc=example,dc=org": "g-staff"}, normalize_dn)
    return dataclasses.replace(
        Snapshot.build(USERS, [Group("g-staff", "Staff", frozenset({"uuid-0", "uuid-1"}))]),
        previous_keys=keys)


def custom_member(server: BitwardenServer) -> tuple[int, object, object]:
    m = server.member("p0@example.org")
    assert m is not None
    m.type = CUSTOM
    m.permissions = {"manageGroups": True, "accessReports": True}
    m.collections = [dict(COLLECTION)]
    group = server.group_by_external_id("cn=staff,ou=Groups,dc=example,dc=org")
    assert group is not None
    group.collections = [dict(COLLECTION)]
    return m.type, dict(m.permissions), [dict(COLLECTION)]


def test_bitwarden_target_relinks_keep_everything(bw_server: BitwardenServer) -> None:
    """PUT /public/members/{id} after a read: type, permissions, collections, groups and
    status unchanged, the group's collections too; no import, no invitation."""
    want = seeded(bw_server)
    before = custom_member(bw_server)
    groups_before = {g.id: set(g.member_ids) for g in bw_server.org.groups.values()}
    target = target_for(bw_server)
    plan = diff(want, target.snapshot(), Policy(), fields=target.user_fields)
    assert sorted(c.kind for c in plan.changes) == ["relink_group"] + ["relink_user"] * 6
    bw_server.clear_log()
    outcomes: list[Outcome] = []
    target.apply(plan, outcomes.append)
    assert [o.status for o in outcomes] == ["ok"] * 7
    assert bw_server.imports() == []
    assert len(bw_server.calls("PUT", "/public/members/")) == 6
    assert len(bw_server.calls("GET", "/public/members/")) == 6     # each read first
    m = bw_server.member("p0@example.org")
    assert m is not None and (m.type, m.permissions, m.collections) == before
    assert m.external_id == "uuid-0" and m.status == INVITED
    assert {g.id: set(g.member_ids) for g in bw_server.org.groups.values()} == groups_before
    group = bw_server.group_by_external_id("g-staff")
    assert group is not None and group.collections == [COLLECTION]
    assert diff(want, target_for(bw_server).snapshot(), Policy(),
                fields=target.user_fields).empty


def test_failed_relink_keeps_the_member_in_its_groups(bw_server: BitwardenServer) -> None:
    """A relink the server refuses is recorded failed; the group import that follows lists
    the member under both ids, so it stays a member."""
    want = seeded(bw_server)
    want = dataclasses.replace(want, groups={"g-staff": Group(
        "g-staff", "Staff", frozenset({"uuid-0", "uuid-1", "uuid-2"}))})
    target = target_for(bw_server)
    plan = diff(want, target.snapshot(), Policy(), fields=target.user_fields)
    victim = bw_server.member("p1@example.org")
    assert victim is not None
    bw_server.fail_next.append((f"/public/members/{victim.id}", 400, "Refused for the test."))
    outcomes: list[Outcome] = []
    target.apply(plan, outcomes.append)
    failed = [o for o in outcomes if o.status != "ok"]
    assert [o.change.kind for o in failed] == ["relink_user"]
    assert "Refused for the test." in failed[0].error
    group = bw_server.group_by_external_id("g-staff")
    assert group is not None and victim.id in group.member_ids
    assert victim.external_id == f"uid=p1,{PEOPLE}"


def test_scim_flavor_relinks_through_the_public_api(bw_server: BitwardenServer) -> None:
    """The scim target (flavor bitwarden, [target.public_api]) relinks by the Public API's
    member update, keeping what the member has; the next plan is empty."""
    want = seeded(bw_server)
    before = custom_member(bw_server)
    api = BitwardenSettings(type="bitwarden", server_url=bw_server.url,
                            client_id=bw_server.client_id, client_secret=bw_server.client_secret)
    target = ScimTarget(ScimSettings(type="scim", url=bw_server.scim_url,
                                     token=bw_server.scim_key, public_api=api))
    plan = diff(want, target.snapshot(), Policy(), fields=target.user_fields)
    assert any("through the Public API" in n for n in target.describe(plan))
    bw_server.clear_log()
    outcomes: list[Outcome] = []
    target.apply(plan, outcomes.append)
    assert [o.status for o in outcomes] == ["ok"] * 7
    assert len(bw_server.calls("PUT", "/public/members/")) == 6
    assert bw_server.calls("PATCH", "/v2/") == []
    m = bw_server.member("p0@example.org")
    assert m is not None and (m.type, m.permissions, m.collections) == before
    assert diff(want, target.snapshot(), Policy(), fields=target.user_fields).empty
