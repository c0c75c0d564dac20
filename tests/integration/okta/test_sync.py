"""Okta events become exactly the right plan: emulator -> fetch -> diff -> FakeTarget."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from dirconnector.connectors.okta.connector import OktaConnector
from dirconnector.diff import Policy, diff
from dirconnector.outcome import Outcome
from dirconnector.plan import (
    AddMembers,
    CreateGroup,
    CreateUser,
    Plan,
    RemoveMembers,
    RestoreUser,
    RevokeUser,
)
from dirconnector.state_space import ConnectorState
from dirconnector.testing import FakeTarget, managed_refs

from .conftest import Org

pytestmark = pytest.mark.integration

Make = Callable[..., OktaConnector]


def plan_for(connector: OktaConnector, target: FakeTarget) -> Plan:
    snap = connector.fetch(ConnectorState())
    return diff(snap, target.snapshot(), Policy(), managed_refs(target))


def apply(plan: Plan, target: FakeTarget) -> None:
    outcomes: list[Outcome] = []
    target.apply(plan, outcomes.append)
    assert all(o.status == "ok" for o in outcomes), outcomes


@pytest.fixture
def synced(org: Org, make: Make) -> tuple[OktaConnector, FakeTarget]:
    """A connector and a server that already hold the org (first sync applied)."""
    connector = make(page_size=3)
    target = FakeTarget()
    apply(plan_for(connector, target), target)
    assert plan_for(connector, target).empty
    return connector, target


def test_full_sync_creates_active_users_and_groups_then_converges(org: Org, make: Make) -> None:
    """The first plan creates the 6 active users and 4 groups; the next plan is empty."""
    connector = make()
    target = FakeTarget()
    plan = plan_for(connector, target)
    created = {c.user.email for c in plan.changes if isinstance(c, CreateUser)}
    assert created == {f"{n}@example.com" for n in ("alice", "bob", "carol", "dave", "erin",
                                                    "frank")}
    assert {c.name for c in plan.changes if isinstance(c, CreateGroup)} == {
        "Engineering", "Sales", "AD Admins", "Everyone"}
    apply(plan, target)
    assert plan_for(connector, target).empty


def test_suspend_revokes_exactly_that_user(org: Org, synced: tuple[OktaConnector, FakeTarget],
                                           ) -> None:
    """Suspending a user in Okta plans one RevokeUser (reason disabled) and nothing else."""
    connector, target = synced
    org.state.set_status(org.users["bob"], "SUSPENDED")
    plan = plan_for(connector, target)
    (change,) = plan.changes
    assert isinstance(change, RevokeUser)
    assert (change.email, change.external_id, change.reason) == (
        "bob@example.com", org.users["bob"], "disabled")
    apply(plan, target)
    assert plan_for(connector, target).empty


def test_deprovision_revokes_exactly_that_user(org: Org,
                                               synced: tuple[OktaConnector, FakeTarget]) -> None:
    """Deactivating (DEPROVISIONED) a user plans one RevokeUser, read via the explicit query."""
    connector, target = synced
    org.state.set_status(org.users["carol"], "DEPROVISIONED")
    (change,) = plan_for(connector, target).changes
    assert isinstance(change, RevokeUser)
    assert (change.external_id, change.reason) == (org.users["carol"], "disabled")


def test_reactivate_restores_exactly_that_user(org: Org,
                                               synced: tuple[OktaConnector, FakeTarget]) -> None:
    """A suspended-then-unsuspended user is revoked, then restored by one RestoreUser."""
    connector, target = synced
    org.state.set_status(org.users["dave"], "SUSPENDED")
    apply(plan_for(connector, target), target)
    org.state.set_status(org.users["dave"], "ACTIVE")
    (change,) = plan_for(connector, target).changes
    assert isinstance(change, RestoreUser)
    assert change.user.external_id == org.users["dave"]
    apply(plan_for(connector, target), target)
    assert plan_for(connector, target).empty


def test_group_membership_add_and_remove(org: Org,
                                         synced: tuple[OktaConnector, FakeTarget]) -> None:
    """Adding a user to an Okta group plans one AddMembers; removing one plans RemoveMembers."""
    connector, target = synced
    org.state.add_member(org.groups["sales"], org.users["erin"])
    (change,) = plan_for(connector, target).changes
    assert isinstance(change, AddMembers) and change.group_name == "Sales"
    assert [m.email for m in change.members] == ["erin@example.com"]
    apply(plan_for(connector, target), target)

    org.state.remove_member(org.groups["eng"], org.users["alice"])
    (change,) = plan_for(connector, target).changes
    assert isinstance(change, RemoveMembers) and change.group_name == "Engineering"
    assert [m.email for m in change.members] == ["alice@example.com"]
    apply(plan_for(connector, target), target)
    assert plan_for(connector, target).empty


def test_no_change_in_okta_means_an_empty_plan(org: Org,
                                               synced: tuple[OktaConnector, FakeTarget]) -> None:
    """A profile edit of an unsynced attribute and a re-read change nothing on the server."""
    connector, target = synced
    org.state.update_profile(org.users["alice"], mobilePhone="+1 555 0100")
    assert plan_for(connector, target).empty
