"""End to end through the pure pipeline: slapd -> fetch -> diff -> FakeTarget, with changes."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from dirconnector.connectors.ldap.connector import LdapConnector
from dirconnector.diff import Policy, diff
from dirconnector.outcome import Outcome
from dirconnector.plan import AddMembers, Plan, RestoreUser, RevokeUser
from dirconnector.state_space import ConnectorState
from dirconnector.testing import FakeTarget, managed_refs

from .conftest import MakeSettings, ldapdata, ldapmodify

pytestmark = pytest.mark.integration
POLICY = Policy(remove_missing=True)
LOCK = ldapdata.uid(100)      # active, has mail, in no special group
MOVER = ldapdata.uid(101)


def plan_for(connector: LdapConnector, target: FakeTarget) -> Plan:
    return diff(connector.fetch(ConnectorState()), target.snapshot(), POLICY, managed_refs(target))


def apply(target: FakeTarget, plan: Plan) -> None:
    outcomes: list[Outcome] = []
    target.apply(plan, outcomes.append)
    assert all(o.status == "ok" for o in outcomes)


@pytest.fixture
def synced(make_settings: MakeSettings) -> Iterator[tuple[LdapConnector, FakeTarget]]:
    """A FakeTarget after a full sync from slapd."""
    connector = LdapConnector(make_settings())
    target = FakeTarget()
    apply(target, plan_for(connector, target))
    yield connector, target


def test_full_sync_converges(synced: tuple[LdapConnector, FakeTarget]) -> None:
    """After a full sync the next plan is empty; the server holds every active user."""
    connector, target = synced
    assert plan_for(connector, target).empty
    active = [u for u in target.snapshot().users.values() if u.active]
    assert len(active) == sum(1 for u in connector.fetch(ConnectorState()).users.values()
                              if u.active)


def test_locking_a_user_revokes_exactly_them(synced: tuple[LdapConnector, FakeTarget],
                                             slapd: dict[str, str]) -> None:
    """pwdAccountLockedTime added with ldapmodify -> one RevokeUser; removed -> one RestoreUser."""
    connector, target = synced
    dn = ldapdata.user_dn(100)
    ldapmodify(slapd, f"dn: {dn}\nchangetype: modify\nadd: pwdAccountLockedTime\n"
                      f"pwdAccountLockedTime: {ldapdata.LOCKED}\n")
    try:
        plan = plan_for(connector, target)
        assert [type(c) for c in plan.changes] == [RevokeUser]
        assert plan.changes[0].email == f"{LOCK}@example.com"  # type: ignore[union-attr]
        apply(target, plan)
        assert plan_for(connector, target).empty
    finally:
        ldapmodify(slapd, f"dn: {dn}\nchangetype: modify\ndelete: pwdAccountLockedTime\n")
    plan = plan_for(connector, target)
    assert [type(c) for c in plan.changes] == [RestoreUser]


def test_moving_a_user_into_a_nested_group(synced: tuple[LdapConnector, FakeTarget],
                                           slapd: dict[str, str]) -> None:
    """A user added to level4 is added to level4 and every group above it, nothing else."""
    connector, target = synced
    group = ldapdata.group_dn("level4")
    ldapmodify(slapd, f"dn: {group}\nchangetype: modify\nadd: member\n"
                      f"member: {ldapdata.user_dn(101)}\n")
    try:
        plan = plan_for(connector, target)
        assert all(isinstance(c, AddMembers) for c in plan.changes)
        added = {c.group_name: [m.email for m in c.members]  # type: ignore[union-attr]
                 for c in plan.changes}
        assert added == {name: [f"{MOVER}@example.com"] for name in ldapdata.NESTED}
        apply(target, plan)
        assert plan_for(connector, target).empty
    finally:
        ldapmodify(slapd, f"dn: {group}\nchangetype: modify\ndelete: member\n"
                          f"member: {ldapdata.user_dn(101)}\n")
