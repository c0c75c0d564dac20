"""The bitwarden target against the test server: contract, convergence, policy, safety."""

from __future__ import annotations

import time
from dataclasses import replace

import pytest

from dirconnector.diff import Policy, diff
from dirconnector.errors import AuthError, TargetError
from dirconnector.model import Group, Snapshot, User
from dirconnector.outcome import Outcome
from dirconnector.plan import CreateUser, Plan
from dirconnector.state_space import ConnectorState
from dirconnector.targets.bitwarden.target import BitwardenTarget
from dirconnector.testing import (
    FakeConnector,
    check_target,
    check_writes_external_id,
    managed_refs,
)
from tests.emulators.bitwarden.org import CUSTOM, REVOKED, STAGED
from tests.emulators.bitwarden.server import BitwardenServer

from .conftest import target_for

pytestmark = pytest.mark.integration

USERS = [User(f"u{i}", f"user{i}@example.com") for i in range(1, 6)]
GROUPS = [Group("g-eng", "Engineering", frozenset({"u1", "u2"}), frozenset({"g-ops"})),
          Group("g-ops", "Ops", frozenset({"u3"})),
          Group("g-all", "Everyone", frozenset(u.external_id for u in USERS))]


def sync(target: BitwardenTarget, desired: Snapshot, policy: Policy | None = None
         ) -> tuple[Plan, list[Outcome]]:
    """One plan + apply; returns the plan and the recorded outcomes."""
    plan = diff(desired, target.snapshot(), policy or Policy(), managed_refs(target))
    outcomes: list[Outcome] = []
    target.apply(plan, outcomes.append)
    return plan, outcomes


def test_contract(bw_server: BitwardenServer, target: BitwardenTarget) -> None:
    """The target passes the shared target contract (its capabilities included) against
    the test server, in an organization with its confirmed owner as every real one has."""
    bw_server.add_owner("owner@example.com")
    check_target(target, USERS, GROUPS)


def test_writes_external_id_contract(bw_server: BitwardenServer,
                                     target: BitwardenTarget) -> None:
    """The target passes the WritesExternalId contract (Public API PUT after a read), and
    every member keeps its role, custom permissions, collections and groups, every group
    its name, collections and members."""
    bw_server.add_owner("owner@example.com")  # PUT needs another confirmed owner to remain
    sync(target, Snapshot.build(USERS, GROUPS))
    collection = {"id": "c0ffee00-0000-4000-8000-00000000000a", "readOnly": False,
                  "hidePasswords": True, "manage": False}
    for m in bw_server.org.members.values():
        if m.email != "owner@example.com":
            m.type, m.permissions = CUSTOM, {"manageGroups": True}
        m.collections = [dict(collection)]
    for g in bw_server.org.groups.values():
        g.collections = [dict(collection)]

    def kept() -> list[object]:
        return [*((m.type, m.permissions, m.collections) for m in bw_server.org.members.values()),
                *((g.name, g.collections, set(g.member_ids)) for g in bw_server.org.groups.values())]

    before = kept()
    bw_server.clear_log()
    check_writes_external_id(target)
    assert kept() == before
    puts = bw_server.calls("PUT", "/public/members/")
    assert puts and all("groups" not in p.body for p in puts)
    assert any(p.body["externalId"] is None for p in puts)  # "" clears: sent as null


def test_connector_to_bitwarden_converges(bw_server: BitwardenServer,
                                          target: BitwardenTarget) -> None:
    """A directory synced once leaves nothing to do; nested groups arrive flattened."""
    desired = FakeConnector(users=USERS, groups=GROUPS).fetch(ConnectorState())
    plan, outcomes = sync(target, desired)
    assert plan.counts()["create_user"] == 5
    assert all(o.status == "ok" for o in outcomes) and len(outcomes) == len(plan.changes)
    assert len(bw_server.imports()) == 1
    eng = bw_server.group_by_external_id("g-eng")
    assert eng is not None
    assert {bw_server.org.members[i].email for i in eng.member_ids} == {
        "user1@example.com", "user2@example.com", "user3@example.com"}
    assert bw_server.member("user1@example.com").status == STAGED  # type: ignore[union-attr]
    bw_server.clear_log()
    again = diff(desired, target.snapshot(), Policy(), managed_refs(target))
    assert again.empty
    target.apply(again, lambda o: None)
    assert not bw_server.calls("POST", "")


def test_links_existing_member_by_email(bw_server: BitwardenServer,
                                        target: BitwardenTarget) -> None:
    """A manually invited member with the directory's email is linked, not duplicated."""
    manual = bw_server.add_member("user1@example.com")
    plan, outcomes = sync(target, Snapshot.build(USERS[:1]))
    assert [c.kind for c in plan.changes] == ["link_user"]
    assert outcomes[0].status == "ok"
    assert manual.external_id == "u1" and len(bw_server.org.members) == 1


def test_relink_refused_with_reason(bw_server: BitwardenServer,
                                    target: BitwardenTarget) -> None:
    """A member carrying another external id cannot be linked by email: a limitation (the
    runner keeps it as a note); applied anyway, the outcome says why and nothing is sent."""
    bw_server.add_member("user1@example.com", external_id="old-id")
    plan, outcomes = sync(target, Snapshot.build(USERS[:1]))
    assert [c.kind for c in plan.changes] == ["link_user"]
    ((change, why),) = target.limitations(plan)
    assert change is plan.changes[0] and "'old-id', which names no directory entry" in why
    assert outcomes[0].status == "failed" and "never relinks" in outcomes[0].error
    assert bw_server.imports() == []


def test_disabled_user_revoked_by_endpoint(bw_server: BitwardenServer,
                                           target: BitwardenTarget) -> None:
    """deprovision=revoke: a disabled user is revoked through /revoke, never sent deleted."""
    sync(target, Snapshot.build(USERS))
    bw_server.clear_log()
    disabled = Snapshot.build([replace(USERS[0], active=False), *USERS[1:]])
    plan, outcomes = sync(target, disabled, Policy(deprovision="revoke"))
    assert [c.kind for c in plan.changes] == ["revoke_user"]
    assert outcomes[0].status == "ok"
    assert len(bw_server.calls("POST", "/revoke")) == 1
    assert not any(m.get("deleted") for body in bw_server.imports() for m in body["members"])
    assert bw_server.member("user1@example.com").status == REVOKED  # type: ignore[union-attr]
    restored, _ = sync(target, Snapshot.build(USERS))
    assert [c.kind for c in restored.changes] == ["restore_user"]
    assert bw_server.member("user1@example.com").status != REVOKED  # type: ignore[union-attr]


def test_delete_policy_removes_through_import(bw_server: BitwardenServer,
                                              target: BitwardenTarget) -> None:
    """deprovision=delete: the user is sent as deleted:true and leaves the organization."""
    sync(target, Snapshot.build(USERS))
    bw_server.clear_log()
    plan, outcomes = sync(target, Snapshot.build(USERS[1:]),
                          Policy(remove_missing=True, deprovision="delete"))
    assert [c.kind for c in plan.changes] == ["delete_user"]
    assert outcomes[0].status == "ok"
    (body,) = bw_server.imports()
    assert body["members"] == [{"email": "user1@example.com", "externalId": "u1",
                                "deleted": True}]
    assert body["overwriteExisting"] is False
    assert bw_server.member("user1@example.com") is None
    assert not bw_server.calls("POST", "/revoke")


def test_owner_never_removed(bw_server: BitwardenServer, target: BitwardenTarget) -> None:
    """Deleting an owner is refused before sending; the owner stays."""
    bw_server.add_owner("boss@example.com", external_id="boss")
    _, outcomes = sync(target, Snapshot.build(USERS[:1]),
                       Policy(remove_missing=True, deprovision="delete", manage="all"))
    failed = [o for o in outcomes if o.change.kind == "delete_user"]
    assert failed and failed[0].status == "failed" and "owner" in failed[0].error
    assert bw_server.member("boss@example.com") is not None


def test_duplicate_emails_refused_before_sending(bw_server: BitwardenServer,
                                                 target: BitwardenTarget) -> None:
    """Two creates with one email raise a TargetError naming it; no import is sent."""
    current = target.snapshot()
    plan = Plan((CreateUser(User("a", "same@example.com")),
                 CreateUser(User("b", "same@example.com"))), current.digest(), "x")
    with pytest.raises(TargetError, match=r"duplicate email same@example.com"):
        target.apply(plan, lambda o: None)
    assert bw_server.imports() == []


def test_overlong_values_refused(bw_server: BitwardenServer, target: BitwardenTarget) -> None:
    """A group name over 100 characters is refused by name before anything is sent."""
    long = Group("g-long", "L" * 101, frozenset({"u1"}))
    with pytest.raises(TargetError, match="101-character name"):
        sync(target, Snapshot.build(USERS[:1], [long]))
    assert bw_server.imports() == [] and not bw_server.org.members


def test_large_sync_is_batched(bw_server: BitwardenServer, target: BitwardenTarget) -> None:
    """3,000 users go in two largeImport requests of at most 2,000, and converge."""
    users = [User(f"id{i:05}", f"p{i:05}@example.com") for i in range(3000)]
    groups = [Group("g-big", "Big", frozenset(u.external_id for u in users[:2500]))]
    desired = Snapshot.build(users, groups)
    t0 = time.perf_counter()
    _, outcomes = sync(target, desired)
    elapsed = time.perf_counter() - t0
    bodies = bw_server.imports()
    assert len(bodies) == 3                       # 2,000 + 1,000 members, then the group
    assert all(b["largeImport"] and len(b["members"]) + len(b["groups"]) <= 2000
               for b in bodies)
    assert [len(b["members"]) for b in bodies] == [2000, 1000, 0]
    assert all(o.status == "ok" for o in outcomes)
    assert len(bw_server.org.members) == 3000
    assert diff(desired, target.snapshot(), Policy(), managed_refs(target)).empty
    assert elapsed < 30


def test_large_import_false_refused_on_cloud_sized_import(bw_server: BitwardenServer) -> None:
    """large_import=false with 2,001 members on the cloud is refused before sending."""
    target = target_for(bw_server, large_import=False,
                        api_url="https://api.bitwarden.com",
                        identity_url=bw_server.identity_url)
    users = [User(f"id{i}", f"p{i}@example.com") for i in range(2001)]
    target._last = empty = Snapshot({}, {})        # the state the plan was made against
    plan = Plan(tuple(CreateUser(u) for u in users), empty.digest(), "s")
    with pytest.raises(TargetError, match="largeImport"):
        target.apply(plan, lambda o: None)
    assert bw_server.imports() == []


def test_manual_member_of_synced_group_kept(bw_server: BitwardenServer,
                                            target: BitwardenTarget) -> None:
    """A manual member (no external id) added to a synced group survives the import."""
    sync(target, Snapshot.build(USERS[:2], [Group("g", "G", frozenset({"u1"}))]))
    manual = bw_server.add_member("manual@example.com")
    grp = bw_server.group_by_external_id("g")
    assert grp is not None
    grp.member_ids.add(manual.id)
    plan, outcomes = sync(target, Snapshot.build(USERS[:2], [Group("g", "G",
                                                                   frozenset({"u1", "u2"}))]))
    assert [c.kind for c in plan.changes] == ["add_members"]
    assert outcomes[0].status == "ok"
    assert manual.id in grp.member_ids and len(grp.member_ids) == 3


def test_adopts_group_by_name_keeping_collections(bw_server: BitwardenServer,
                                                  target: BitwardenTarget) -> None:
    """A web-vault group with the directory's name gets its external id; collections stay."""
    grp = bw_server.add_group("Engineering")
    grp.collections = [{"id": "c1", "readOnly": False, "hidePasswords": False, "manage": True}]
    plan, outcomes = sync(target, Snapshot.build(USERS[:1], [Group("g-eng", "Engineering",
                                                                   frozenset({"u1"}))]))
    assert "link_group" in plan.counts()
    assert all(o.status == "ok" for o in outcomes)
    assert grp.external_id == "g-eng" and grp.collections[0]["id"] == "c1"
    assert len(bw_server.org.groups) == 1 and len(grp.member_ids) == 1


def test_describe_names_each_mechanism(target: BitwardenTarget) -> None:
    """describe() says which of import / revoke / remove a plan uses."""
    current = Snapshot.build([])
    desired = Snapshot.build(USERS[:2], GROUPS[:1])
    notes = " ".join(target.describe(diff(desired, current)))
    assert "import: 2 member(s)" in notes and "Staged" in notes
    acct = User("u1", "user1@example.com", ref="r1")
    revoke = diff(Snapshot.build([replace(USERS[0], active=False)]),
                  Snapshot({"r1": acct}, {}), Policy())
    assert "revoke: 1 member(s)" in " ".join(target.describe(revoke))
    remove = diff(Snapshot.build([]), Snapshot({"r1": acct}, {}),
                  Policy(remove_missing=True, deprovision="delete"), frozenset({"r1"}))
    assert "remove: 1 member(s)" in " ".join(target.describe(remove))


def test_bad_secret_is_one_clear_line(bw_server: BitwardenServer) -> None:
    """A wrong client secret gives one AuthError line naming the client id, not the secret."""
    target = target_for(bw_server)
    target.api._secret = "definitely-wrong"
    with pytest.raises(AuthError) as info:
        target.snapshot()
    text = str(info.value)
    assert "\n" not in text and "invalid_client" in text and bw_server.client_id in text
    assert "definitely-wrong" not in text
    report = target.check()
    assert not report.ok and "invalid_client" in report.items[0].detail


def test_token_renewed_after_401(bw_server: BitwardenServer, target: BitwardenTarget) -> None:
    """An access token the server stops honouring is renewed once, transparently."""
    target.snapshot()
    before = bw_server.token_requests
    bw_server.expire_tokens()
    target.snapshot()
    assert bw_server.token_requests == before + 1


def test_token_renewed_before_expiry(bw_server: BitwardenServer) -> None:
    """A token is renewed before its expires_in runs out, without a 401 first."""
    now = [1000.0]
    bw_server.clock = lambda: now[0]        # the server's and the client's clock, moved by hand
    bw_server.token_lifetime = 1
    target = target_for(bw_server, clock=lambda: now[0])
    target.snapshot()
    now[0] += 1.0                           # the server would now refuse the first token
    target.snapshot()
    assert bw_server.token_requests == 2
    assert not [r for r in bw_server.requests if r.status == 401]


def test_import_failure_fails_its_changes(bw_server: BitwardenServer,
                                          target: BitwardenTarget) -> None:
    """A server error on the import fails every change it carried, with the server's words."""
    bw_server.fail_next.append(("organization/import", 400, "Seat limit has been reached."))
    plan, outcomes = sync(target, Snapshot.build(USERS[:2], GROUPS[1:2]))
    assert len(outcomes) == len(plan.changes)
    assert all(o.status == "failed" and "Seat limit" in o.error for o in outcomes)


def test_silently_skipped_create_is_failed(bw_server: BitwardenServer,
                                           target: BitwardenTarget) -> None:
    """An entry the server skips although it answered 200 is recorded as failed."""
    bw_server.org.seats = 10**6
    current = target.snapshot()
    bw_server.add_member("user1@example.com", external_id="other")  # appears after the plan
    plan = diff(Snapshot.build(USERS[:1]), current)
    outcomes: list[Outcome] = []
    target._last = current
    target.apply(plan, outcomes.append)
    assert outcomes[0].status == "failed" and "already a member" in outcomes[0].error


def test_directory_names_do_not_cause_endless_updates(target: BitwardenTarget) -> None:
    """Users with display names converge: Bitwarden members own their names."""
    named = [replace(u, display_name=f"User {u.external_id}") for u in USERS]
    desired = Snapshot.build(named)
    sync(target, desired)
    assert diff(desired, target.snapshot(), Policy(), managed_refs(target),
                target.user_fields).empty


def test_shared_external_id_on_server_refused(bw_server: BitwardenServer,
                                              target: BitwardenTarget) -> None:
    """Two members with one external id (the server would answer 500) stop the import."""
    bw_server.add_member("a@example.com", external_id="dup")
    bw_server.add_member("b@example.com", external_id="dup")
    with pytest.raises(TargetError, match=r"'dup' on a@example.com, b@example.com"):
        sync(target, Snapshot.build(USERS[:1]))
    assert bw_server.imports() == []


def test_accepted_import_checked_without_reading_group_members(
        bw_server: BitwardenServer, target: BitwardenTarget) -> None:
    """After a 200 import, group members follow from the member list: no per-group reads.

    A member the server skipped (its email already held under another external id) is
    still reported as not added to its groups.
    """
    bw_server.org.seats = 10**6
    current = target.snapshot()
    bw_server.add_member("user1@example.com", external_id="other")  # appears after the plan
    plan = diff(Snapshot.build(USERS, GROUPS), current)
    bw_server.clear_log()
    outcomes: list[Outcome] = []
    target._last = current
    target.apply(plan, outcomes.append)
    assert bw_server.calls("GET", "member-ids") == []
    failed = {o.change.kind: o.error for o in outcomes if o.status == "failed"}
    assert failed.keys() == {"create_user", "add_members"}
    assert "not added: user1@example.com" in failed["add_members"]
    assert sum(o.status == "ok" for o in outcomes) == len(plan.changes) - 3  # u1, g-eng, g-all


def test_ambiguous_import_reads_back_only_its_groups(bw_server: BitwardenServer,
                                                    target: BitwardenTarget) -> None:
    """An import answered 500 has the member ids of its groups read back, and no others."""
    sync(target, Snapshot.build(USERS, GROUPS))
    moved = [GROUPS[0], replace(GROUPS[1], member_ids=frozenset({"u3", "u4"})), GROUPS[2]]
    current = target.snapshot()
    plan = diff(Snapshot.build(USERS, moved), current)
    assert [c.kind for c in plan.changes] == ["add_members", "add_members"]  # ops, eng
    bw_server.fail_next.append(("organization/import", 500, "An unhandled error."))
    bw_server.clear_log()
    outcomes: list[Outcome] = []
    target.apply(plan, outcomes.append)
    ops = bw_server.group_by_external_id("g-ops")
    eng = bw_server.group_by_external_id("g-eng")
    assert ops is not None and eng is not None
    reads = {r.path.split("/")[-2] for r in bw_server.calls("GET", "member-ids")}
    assert reads == {ops.id, eng.id}
    assert all(o.status == "failed" and "unhandled" in o.error for o in outcomes)
