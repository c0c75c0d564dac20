"""Directory events in Google Workspace become exactly the right plan (source -> diff -> target)."""

from __future__ import annotations

from typing import Any

import pytest

from dirconnector.plan import AddMembers, CreateUser, RemoveMembers, RestoreUser, RevokeUser

pytestmark = pytest.mark.integration


def emails(change: Any) -> set[str]:
    return {m.email for m in change.members}


def test_first_sync_creates_active_users_and_groups_then_converges(fresh_pipeline: Any) -> None:
    """The first plan creates the four active users and four groups; the second is empty."""
    pipe = fresh_pipeline
    plan = pipe.apply()
    created = {c.user.email for c in plan.changes if isinstance(c, CreateUser)}
    assert created == {"admin@example.com", "alice@example.com", "bob@example.com",
                       "carol@example.com"}
    assert plan.counts()["create_group"] == 4
    target = pipe.target.snapshot()
    by_name = {g.name: g for g in target.groups.values()}
    refs = {u.email: u.key for u in target.users.values()}
    # Engineering holds Platform's bob through nesting; Everyone is the CUSTOMER member.
    assert by_name["Engineering"].member_ids == {refs["alice@example.com"], refs["bob@example.com"]}
    assert by_name["Everyone"].member_ids == set(refs.values())
    assert pipe.plan().empty


def test_suspending_a_user_revokes_only_that_user(env: Any, pipeline: Any) -> None:
    """users.suspended=true -> one RevokeUser(reason=disabled), nothing else."""
    env.directory.set_suspended(env.org.users["alice"], True)
    plan = pipeline.apply()
    assert len(plan.changes) == 1
    change = plan.changes[0]
    assert isinstance(change, RevokeUser)
    assert (change.email, change.reason) == ("alice@example.com", "disabled")
    assert pipeline.plan().empty


def test_archiving_a_user_revokes_only_that_user(env: Any, pipeline: Any) -> None:
    """users.archived=true -> one RevokeUser for that user."""
    env.directory.set_archived(env.org.users["bob"], True)
    plan = pipeline.apply()
    assert [(type(c), c.email) for c in plan.changes] == [(RevokeUser, "bob@example.com")]
    assert pipeline.plan().empty


def test_reactivating_a_suspended_user_restores_only_that_user(env: Any, pipeline: Any) -> None:
    """Suspend, sync, unsuspend -> one RestoreUser, and the account is active again."""
    uid = env.org.users["carol"]
    env.directory.set_suspended(uid, True)
    pipeline.apply()
    env.directory.set_suspended(uid, False)
    plan = pipeline.apply()
    assert [(type(c), c.user.email) for c in plan.changes] == [(RestoreUser, "carol@example.com")]
    account = next(u for u in pipeline.target.snapshot().users.values() if u.external_id == uid)
    assert account.active
    assert pipeline.plan().empty


def test_unarchiving_a_never_synced_user_creates_them_with_memberships(
        env: Any, pipeline: Any) -> None:
    """erin (archived at first sync) unarchived -> CreateUser plus adds to Sales and Everyone."""
    env.directory.set_archived(env.org.users["erin"], False)
    plan = pipeline.apply()
    assert [c.user.email for c in plan.changes if isinstance(c, CreateUser)] == ["erin@example.com"]
    adds = {c.group_name: emails(c) for c in plan.changes if isinstance(c, AddMembers)}
    assert adds == {"Sales": {"erin@example.com"}, "Everyone": {"erin@example.com"}}
    assert len(plan.changes) == 3
    assert pipeline.plan().empty


def test_adding_to_a_nested_group_adds_to_it_and_its_parent(env: Any, pipeline: Any) -> None:
    """carol joins Platform (inside Engineering) -> AddMembers to both, nothing else."""
    env.directory.add_member(env.org.groups["platform"], env.org.users["carol"])
    plan = pipeline.apply()
    assert all(isinstance(c, AddMembers) for c in plan.changes)
    assert {c.group_name: emails(c) for c in plan.changes} == {
        "Platform": {"carol@example.com"}, "Engineering": {"carol@example.com"}}
    assert pipeline.plan().empty


def test_leaving_a_nested_group_removes_from_it_and_its_parent(env: Any, pipeline: Any) -> None:
    """bob leaves Platform -> RemoveMembers from Platform and Engineering, nothing else."""
    env.directory.remove_member(env.org.groups["platform"], env.org.users["bob"])
    plan = pipeline.apply()
    assert all(isinstance(c, RemoveMembers) for c in plan.changes)
    assert {c.group_name: emails(c) for c in plan.changes} == {
        "Platform": {"bob@example.com"}, "Engineering": {"bob@example.com"}}
    assert pipeline.plan().empty


def test_nesting_a_group_adds_its_active_members_to_the_parent(env: Any, pipeline: Any) -> None:
    """Sales nested in Engineering -> one AddMembers(Engineering, carol); dave/erin inactive."""
    env.directory.add_member(env.org.groups["eng"], env.org.groups["sales"])
    plan = pipeline.apply()
    assert [(type(c), c.group_name, emails(c)) for c in plan.changes] == [
        (AddMembers, "Engineering", {"carol@example.com"})]
    assert pipeline.plan().empty


def test_unnesting_a_group_removes_its_members_from_the_parent(env: Any, pipeline: Any) -> None:
    """Platform taken out of Engineering -> RemoveMembers(Engineering, bob) only."""
    env.directory.remove_member(env.org.groups["eng"], env.org.groups["platform"])
    plan = pipeline.apply()
    assert [(type(c), c.group_name, emails(c)) for c in plan.changes] == [
        (RemoveMembers, "Engineering", {"bob@example.com"})]
    assert pipeline.plan().empty


def test_deleted_user_is_revoked_as_missing(env: Any, pipeline: Any) -> None:
    """A user deleted in Google (gone from users.list) -> RevokeUser(reason=missing)."""
    env.directory.delete_user(env.org.users["carol"])
    plan = pipeline.apply()
    revokes = [c for c in plan.changes if isinstance(c, RevokeUser)]
    assert [(c.email, c.reason) for c in revokes] == [("carol@example.com", "missing")]
    assert pipeline.plan().empty
