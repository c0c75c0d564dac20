"""The scim target against an independent SCIM server (scim2-server): contract and directory events."""

from __future__ import annotations

from dataclasses import replace

import pytest

from dirconnector.diff import Policy, diff
from dirconnector.model import Group, Snapshot, User
from dirconnector.outcome import Outcome
from dirconnector.plan import Plan
from dirconnector.targets.scim.target import ScimTarget
from dirconnector.testing import check_target, check_writes_external_id, managed_refs

from .conftest import MakeTarget, ScimServer, directory
from .proxy import FaultProxy

pytestmark = pytest.mark.integration

POLICY = Policy(remove_missing=True)


def sync(target: ScimTarget, users: list[User], groups: list[Group],
         policy: Policy = POLICY) -> tuple[Plan, list[Outcome]]:
    """diff -> apply once; return the plan and the outcomes."""
    plan = diff(Snapshot.build(users, groups), target.snapshot(), policy, managed_refs(target),
                target.user_fields)
    outcomes: list[Outcome] = []
    target.apply(plan, outcomes.append)
    return plan, outcomes


def next_plan(target: ScimTarget, users: list[User], groups: list[Group],
              policy: Policy = POLICY) -> Plan:
    return diff(Snapshot.build(users, groups), target.snapshot(), policy, managed_refs(target),
                target.user_fields)


def with_oncall(users: list[User], groups: list[Group]) -> list[Group]:
    """A group nested in nothing, so a change to it is exactly one membership change."""
    return [*groups, Group("grp-oncall", "On call",
                           frozenset(u.external_id for u in users[:3]))]


def test_contract(make_target: MakeTarget) -> None:
    """The target passes the contract suite every target runs."""
    users, groups = directory(12)
    check_target(make_target(), users, groups)


def test_writes_external_id_contract(make_target: MakeTarget, proxy: FaultProxy) -> None:
    """The target passes the WritesExternalId contract: PATCH replace to set, PATCH remove
    to clear (RFC 7644 3.5.2.2/3.5.2.3)."""
    target = make_target(proxy.url)
    users, groups = directory(5)
    sync(target, users, groups)
    proxy.reset()
    check_writes_external_id(target)
    assert proxy.count("PATCH", "Users") >= 3 and proxy.count("PATCH", "Groups") >= 3
    assert proxy.count("PUT", "Users") == proxy.count("PUT", "Groups") == 0


def test_full_sync_then_empty_plan(make_target: MakeTarget, scim_server: ScimServer) -> None:
    """50 users and nested groups are created, flattened on the server, and a second plan is empty."""
    target = make_target()
    users, groups = directory(50)
    plan, outcomes = sync(target, users, groups)
    assert plan.counts()["create_user"] == 50
    assert [o for o in outcomes if o.status != "ok"] == []
    assert len(outcomes) == len(plan.changes)
    assert all(o.ref for o in outcomes if o.change.kind in ("create_user", "create_group"))
    assert next_plan(target, users, groups).empty
    server_users = scim_server.all("Users")
    assert len(server_users) == 50
    eng = next(g for g in scim_server.all("Groups") if g["externalId"] == "grp-eng")
    by_ref = {u["id"]: u["externalId"] for u in server_users}
    members = {by_ref[m["value"]] for m in eng["members"]}  # type: ignore[attr-defined]
    assert members == {f"ext-{i:03d}" for i in range(30)}  # direct 0-4 + backend + frontend


def test_name_change_is_one_update(make_target: MakeTarget, scim_server: ScimServer) -> None:
    """Changing one name plans exactly one UpdateUser and the server shows the new name."""
    target = make_target()
    users, groups = directory(20)
    sync(target, users, groups)
    users[7] = replace(users[7], display_name="Ada Lovelace", family_name="Lovelace")
    plan, outcomes = sync(target, users, groups)
    assert [c.kind for c in plan.changes] == ["update_user"]
    assert [o.status for o in outcomes] == ["ok"]
    got = scim_server.find_user("ext-007")
    assert got["displayName"] == "Ada Lovelace"
    assert got["name"]["familyName"] == "Lovelace"  # type: ignore[index]
    assert got["name"]["givenName"] == "User"  # type: ignore[index]  # untouched
    assert next_plan(target, users, groups).empty


def test_disable_is_one_revoke(make_target: MakeTarget, scim_server: ScimServer) -> None:
    """Disabling one user plans one RevokeUser, sent as active=false; re-enabling restores."""
    target = make_target()
    users, groups = directory(20)
    sync(target, users, groups)
    disabled = [replace(u, active=False) if u.external_id == "ext-011" else u for u in users]
    plan, outcomes = sync(target, disabled, groups)
    assert [c.kind for c in plan.changes] == ["revoke_user"]
    assert [o.status for o in outcomes] == ["ok"]
    assert scim_server.find_user("ext-011")["active"] is False
    assert next_plan(target, disabled, groups).empty
    plan, _ = sync(target, users, groups)
    assert [c.kind for c in plan.changes] == ["restore_user"]
    assert scim_server.find_user("ext-011")["active"] is True


def test_remove_from_group_is_one_remove_members(make_target: MakeTarget,
                                                 scim_server: ScimServer) -> None:
    """Removing one user from a group plans one RemoveMembers and the server drops the member."""
    target = make_target()
    users, groups = directory(20)
    groups = with_oncall(users, groups)
    sync(target, users, groups)
    smaller = [*groups[:-1], replace(groups[-1], member_ids=frozenset({"ext-000", "ext-002"}))]
    plan, outcomes = sync(target, users, smaller)
    assert [c.kind for c in plan.changes] == ["remove_members"]
    assert [o.status for o in outcomes] == ["ok"]
    oncall = next(g for g in scim_server.all("Groups") if g["externalId"] == "grp-oncall")
    gone = scim_server.find_user("ext-001")["id"]
    assert gone not in {m["value"] for m in oncall["members"]}  # type: ignore[attr-defined]
    assert len(oncall["members"]) == 2  # type: ignore[arg-type]
    assert next_plan(target, users, smaller).empty


def test_member_chunks(make_target: MakeTarget, proxy: FaultProxy) -> None:
    """Membership changes are split into PATCH requests of member_chunk members."""
    target = make_target(proxy.url, member_chunk=4, bulk="off")
    users, _ = directory(10)
    group = [Group("grp-big", "Big", frozenset(u.external_id for u in users))]
    sync(target, users, group)
    # 1 group create + ceil(10 / 4) = 3 member PATCHes on the group.
    assert proxy.count("PATCH", "Groups") == 3
    assert next_plan(target, users, group).empty


def test_delete_policy_deletes(make_target: MakeTarget, scim_server: ScimServer) -> None:
    """With deprovision=delete a missing user is DELETEd and a missing group too."""
    target = make_target()
    users, groups = directory(10)
    policy = Policy(remove_missing=True, deprovision="delete", delete_missing_groups=True)
    sync(target, users, groups, policy)
    plan, outcomes = sync(target, users[1:], groups[:-1], policy)
    assert sorted(c.kind for c in plan.changes) == ["delete_group", "delete_user"]
    assert [o.status for o in outcomes] == ["ok", "ok"]
    assert "ext-000" not in {u["externalId"] for u in scim_server.all("Users")}
    assert "grp-all" not in {g["externalId"] for g in scim_server.all("Groups")}
    assert next_plan(target, users[1:], groups[:-1], policy).empty


def test_paging_with_small_pages(make_target: MakeTarget, proxy: FaultProxy) -> None:
    """A snapshot reads every page (startIndex/count) up to totalResults."""
    users, groups = directory(23)
    sync(make_target(), users, groups)
    target = make_target(proxy.url, page_size=5)
    snap = target.snapshot()
    assert len(snap.users) == 23 and len(snap.groups) == 5
    assert proxy.count("GET", "Users") == 5  # 5+5+5+5+3
    assert {u.email for u in snap.users.values()} == {u.email for u in users}


def test_link_existing_account(make_target: MakeTarget, scim_server: ScimServer) -> None:
    """An account created by hand with the same email is linked (externalId set), not duplicated."""
    import requests

    from .conftest import TOKEN
    requests.post(f"{scim_server.url}/Users", timeout=10,
                  headers={"Authorization": f"Bearer {TOKEN}",
                           "Content-Type": "application/scim+json"},
                  json={"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
                        "userName": "user000@example.org"}).raise_for_status()
    target = make_target()
    users, groups = directory(5)
    plan, outcomes = sync(target, users, groups)
    assert plan.counts()["link_user"] == 1 and plan.counts()["create_user"] == 4
    assert all(o.status == "ok" for o in outcomes)
    assert len(scim_server.all("Users")) == 5
    assert scim_server.find_user("ext-000")["userName"] == "user000@example.org"
    assert next_plan(target, users, groups).empty


def test_email_change_moves_login_only_when_login_is_the_email(
        make_target: MakeTarget, scim_server: ScimServer) -> None:
    """An email change moves userName when it was the old email; a 'jdoe' login is kept."""
    import requests

    from .conftest import TOKEN
    requests.post(f"{scim_server.url}/Users", timeout=10,
                  headers={"Authorization": f"Bearer {TOKEN}",
                           "Content-Type": "application/scim+json"},
                  json={"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
                        "userName": "jdoe", "emails": [{"value": "user001@example.org",
                                                        "primary": True}]}).raise_for_status()
    target = make_target()
    users, groups = directory(3)
    sync(target, users, groups)  # user001 is linked to the jdoe account
    users[0] = replace(users[0], email="first@example.org")
    users[1] = replace(users[1], email="second@example.org")
    plan, outcomes = sync(target, users, groups)
    assert sorted(c.kind for c in plan.changes) == ["update_user", "update_user"]
    assert all(o.status == "ok" for o in outcomes)
    created, linked = scim_server.find_user("ext-000"), scim_server.find_user("ext-001")
    assert created["userName"] == "first@example.org"
    assert linked["userName"] == "jdoe"
    assert linked["emails"][0]["value"] == "second@example.org"  # type: ignore[index]
    assert next_plan(target, users, groups).empty
