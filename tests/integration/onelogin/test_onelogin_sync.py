"""End to end through the pure pipeline: OneLogin -> diff -> FakeTarget, and each event's change."""

from __future__ import annotations

import pytest

from dirconnector.diff import Policy
from dirconnector.plan import AddMembers, RemoveMembers, RevokeUser
from dirconnector.testing import FakeTarget
from tests.emulators.onelogin import Account
from tests.emulators.onelogin.seed import ConnectorFactory, Seed, sync

pytestmark = pytest.mark.integration


def _members(target: FakeTarget, name: str) -> set[str]:
    state = target.snapshot()
    group = next(g for g in state.groups.values() if g.name == name)
    return {state.users[ref].external_id for ref in group.member_ids}


@pytest.mark.parametrize("groups_from", ["roles", "groups"])
def test_full_sync_converges(make_connector: ConnectorFactory, groups_from: str) -> None:
    """A first sync creates everyone and every group; the second plan is empty."""
    connector = make_connector(groups_from=groups_from)
    target = FakeTarget()
    first = sync(connector, target)
    assert not first.empty
    assert sync(connector, target).empty
    state = target.snapshot()
    assert len([u for u in state.users.values() if u.active]) == 41   # 43 minus 2 inactive
    expected = ({"Engineering", "Sales", "Admins", "Empty"} if groups_from == "roles"
                else {"employees", "contractors", "managers", "admins"})
    assert {g.name for g in state.groups.values()} == expected


def test_roles_become_groups_with_their_members(make_connector: ConnectorFactory,
                                                 ids: Seed) -> None:
    """Role members (resolved from /api/2/roles/{id}/users to user ids) land in the group."""
    target = FakeTarget()
    sync(make_connector(), target)
    assert _members(target, "Admins") == {str(ids.users[n]) for n in ("u00", "u01", "pwexpired")}
    assert str(ids.users["locked"]) not in _members(target, "Engineering")   # never created


def test_suspending_a_user_revokes_exactly_them(make_connector: ConnectorFactory,
                                                account: Account, ids: Seed) -> None:
    """OneLogin status 2 (suspended) -> exactly one RevokeUser, nothing else."""
    connector = make_connector()
    target = FakeTarget()
    sync(connector, target)
    account.update_user(ids.users["u05"], status=2)
    plan = sync(connector, target)
    assert len(plan.changes) == 1
    change = plan.changes[0]
    assert isinstance(change, RevokeUser)
    assert (change.external_id, change.email, change.reason) == (
        str(ids.users["u05"]), "user05@example.com", "disabled")
    assert sync(connector, target).empty


def test_role_membership_changes(make_connector: ConnectorFactory, account: Account,
                                 ids: Seed) -> None:
    """Unassigning and assigning roles -> one RemoveMembers and one AddMembers, exactly."""
    connector = make_connector()
    target = FakeTarget()
    sync(connector, target)
    account.unassign(ids.roles["Engineering"], ids.users["u03"])
    account.assign(ids.roles["Admins"], ids.users["u30"])
    plan = sync(connector, target)
    assert [type(c) for c in plan.changes] == [AddMembers, RemoveMembers]
    add, remove = plan.changes
    assert isinstance(add, AddMembers) and isinstance(remove, RemoveMembers)
    assert (add.group_name, [m.external_id for m in add.members]) == (
        "Admins", [str(ids.users["u30"])])
    assert (remove.group_name, [m.external_id for m in remove.members]) == (
        "Engineering", [str(ids.users["u03"])])
    assert str(ids.users["u30"]) in _members(target, "Admins")
    assert str(ids.users["u03"]) not in _members(target, "Engineering")
    assert sync(connector, target).empty


def test_moving_a_user_between_groups(make_connector: ConnectorFactory, account: Account,
                                      ids: Seed) -> None:
    """groups_from = "groups": a new group_id -> added to the new group, removed from the old."""
    connector = make_connector(groups_from="groups")
    target = FakeTarget()
    sync(connector, target)
    account.update_user(ids.users["u10"], group_id=ids.groups["admins"])
    plan = sync(connector, target)
    assert [(type(c).__name__, c.group_name, [m.external_id for m in c.members])
            for c in plan.changes if isinstance(c, AddMembers | RemoveMembers)] == [
        ("AddMembers", "admins", [str(ids.users["u10"])]),
        ("RemoveMembers", "employees", [str(ids.users["u10"])])]
    assert len(plan.changes) == 2


def test_new_role_and_new_user(make_connector: ConnectorFactory, account: Account) -> None:
    """A new user in a new role -> CreateUser, CreateGroup and its AddMembers; then converged."""
    connector = make_connector()
    target = FakeTarget()
    sync(connector, target)
    uid = account.add_user("fresh@example.com", username="fresh")
    account.add_role("Support", [uid])
    plan = sync(connector, target)
    assert sorted(c.kind for c in plan.changes) == ["add_members", "create_group", "create_user"]
    assert sync(connector, target).empty


def test_deleted_user_is_revoked_only_with_remove_missing(make_connector: ConnectorFactory,
                                                          account: Account, ids: Seed) -> None:
    """A user deleted in OneLogin is revoked when remove_missing is on, left alone otherwise."""
    connector = make_connector()
    target = FakeTarget()
    sync(connector, target)
    account.delete_user(ids.users["u20"])
    keep = sync(connector, target, Policy(remove_missing=False))
    assert not any(isinstance(c, RevokeUser) for c in keep.changes)
    plan = sync(connector, target, Policy(remove_missing=True))
    revokes = [c for c in plan.changes if isinstance(c, RevokeUser)]
    assert [(c.external_id, c.reason) for c in revokes] == [(str(ids.users["u20"]), "missing")]
