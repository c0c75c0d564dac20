"""The azure connector end to end against the Graph emulator: full read, delta, directory events."""

from __future__ import annotations

import logging
from collections.abc import Callable

import pytest

from dirconnector.connectors.azure.connector import AzureConnector
from dirconnector.plan import AddMembers, CreateUser, RemoveMembers, RestoreUser, RevokeUser
from dirconnector.state_space import ConnectorState
from dirconnector.testing import check_connector
from tests.emulators.graph import GraphEmulator

from .conftest import Pipeline, Tenant

pytestmark = pytest.mark.integration


def kinds(plan: object) -> list[str]:
    return [c.kind for c in plan.changes]  # type: ignore[attr-defined]


def test_contract_suite(make_connector: Callable[..., AzureConnector], tenant: Tenant) -> None:
    """The azure connector passes the connector contract suite (incl. a delta second fetch)."""
    snap = check_connector(make_connector())
    assert set(snap.users) == {tenant.alice, tenant.bob, tenant.carol, tenant.dave}


def test_full_read_maps_users_and_groups(make_connector: Callable[..., AzureConnector],
                                         tenant: Tenant) -> None:
    """Users map id/mail/UPN/names; mail falls back to UPN; nested groups become subgroups."""
    snap = make_connector().fetch(ConnectorState())
    alice = snap.users[tenant.alice]
    assert (alice.email, alice.user_name, alice.given_name, alice.family_name, alice.active) == (
        "alice@contoso.com", "alice@contoso.onmicrosoft.com", "Alice", "Able", True)
    assert snap.users[tenant.carol].email == "carol@contoso.onmicrosoft.com"
    eng = snap.groups[tenant.engineering]
    assert eng.name == "Engineering"
    assert eng.member_ids == {tenant.alice}          # the guest is not a synced user
    assert eng.subgroup_ids == {tenant.platform}
    assert snap.groups[tenant.sales].member_ids == {tenant.bob, tenant.dave}


def test_full_sync_converges(pipeline: Pipeline, tenant: Tenant) -> None:
    """A first run creates 4 users and 3 groups; the next plan against the result is empty."""
    plan = pipeline.run()
    assert kinds(plan).count("create_user") == 4
    assert kinds(plan).count("create_group") == 3
    assert pipeline.plan().empty


def test_second_run_uses_delta_and_plans_nothing(pipeline: Pipeline,
                                                 emulator: GraphEmulator) -> None:
    """The second run follows the stored deltaLinks only (no list calls) and plans no change."""
    pipeline.run()
    emulator.reset_log()
    assert pipeline.run().empty
    paths = [s.path for s in emulator.graph_calls()]
    assert paths == ["users/delta", "groups/delta"]
    assert all("$deltatoken" in s.query for s in emulator.graph_calls())
    assert pipeline.connector.last_read == "delta"


def test_disable_revokes_exactly_that_user(pipeline: Pipeline, emulator: GraphEmulator,
                                           tenant: Tenant) -> None:
    """accountEnabled=false arrives by delta and plans exactly one RevokeUser (disabled)."""
    pipeline.run()
    emulator.directory.disable_user(tenant.bob)
    plan = pipeline.run()
    assert len(plan.changes) == 1
    change = plan.changes[0]
    assert isinstance(change, RevokeUser)
    assert (change.external_id, change.reason) == (tenant.bob, "disabled")
    assert pipeline.plan().empty


def test_soft_delete_revokes_and_restore_brings_back(pipeline: Pipeline,
                                                     emulator: GraphEmulator,
                                                     tenant: Tenant) -> None:
    """@removed reason=changed revokes the user and drops it from its group; restore undoes it."""
    pipeline.run()
    emulator.directory.soft_delete_user(tenant.dave)
    plan = pipeline.run()
    assert sorted(kinds(plan)) == ["remove_members", "revoke_user"]
    revoke = next(c for c in plan.changes if isinstance(c, RevokeUser))
    assert (revoke.external_id, revoke.reason) == (tenant.dave, "missing")
    removal = next(c for c in plan.changes if isinstance(c, RemoveMembers))
    assert removal.group_external_id == tenant.sales
    assert [m.external_id for m in removal.members] == [tenant.dave]

    emulator.directory.restore_user(tenant.dave)
    plan = pipeline.run()
    assert sorted(kinds(plan)) == ["add_members", "restore_user"]
    assert next(c for c in plan.changes if isinstance(c, RestoreUser)).user.external_id == \
        tenant.dave
    assert pipeline.plan().empty


def test_permanent_delete_revokes(pipeline: Pipeline, emulator: GraphEmulator,
                                  tenant: Tenant) -> None:
    """@removed reason=deleted takes the user out of the desired state (one revoke, one removal)."""
    pipeline.run()
    emulator.directory.hard_delete_user(tenant.alice)
    plan = pipeline.run()
    assert sorted(kinds(plan)) == ["remove_members", "revoke_user"]
    assert tenant.alice not in pipeline.connector.fetch(ConnectorState()).users


def test_remove_from_group_plans_one_removal(pipeline: Pipeline, emulator: GraphEmulator,
                                            tenant: Tenant) -> None:
    """members@delta with @removed plans exactly one RemoveMembers for that user and group."""
    pipeline.run()
    emulator.directory.remove_member(tenant.sales, tenant.bob)
    plan = pipeline.run()
    assert len(plan.changes) == 1
    change = plan.changes[0]
    assert isinstance(change, RemoveMembers)
    assert change.group_external_id == tenant.sales
    assert [m.external_id for m in change.members] == [tenant.bob]


def test_nested_membership_change_reaches_parent(pipeline: Pipeline, emulator: GraphEmulator,
                                                 tenant: Tenant) -> None:
    """Adding a user to a nested group adds it to the parent group too (one AddMembers each)."""
    pipeline.run()
    emulator.directory.add_member(tenant.platform, tenant.dave)
    plan = pipeline.run()
    adds = [c for c in plan.changes if isinstance(c, AddMembers)]
    assert kinds(plan) == ["add_members", "add_members"]
    assert {c.group_external_id for c in adds} == {tenant.platform, tenant.engineering}


def test_new_user_arrives_by_delta(pipeline: Pipeline, emulator: GraphEmulator) -> None:
    """A user created after the first run is created by the next, found through delta."""
    pipeline.run()
    uid = emulator.directory.add_user("erin@contoso.com", "Erin")
    plan = pipeline.run()
    assert [c.user.external_id for c in plan.changes if isinstance(c, CreateUser)] == [uid]
    assert pipeline.connector.last_read == "delta"


def test_expired_delta_token_falls_back_to_full_read(pipeline: Pipeline,
                                                     emulator: GraphEmulator, tenant: Tenant,
                                                     caplog: pytest.LogCaptureFixture) -> None:
    """syncStateNotFound makes the connector log one line and do a full read that sees changes."""
    pipeline.run()
    emulator.directory.expire_delta_tokens()
    emulator.directory.disable_user(tenant.bob)
    with caplog.at_level(logging.WARNING, logger="dirconnector.connectors.azure"):
        plan = pipeline.run()
    assert pipeline.connector.last_read == "full"
    assert kinds(plan) == ["revoke_user"]
    assert any("delta token rejected" in r.getMessage() and "syncStateNotFound" in r.getMessage()
               for r in caplog.records)
    assert pipeline.run().empty and pipeline.connector.last_read == "delta"


def test_delta_rounds_over_many_pages(pipeline: Pipeline, emulator: GraphEmulator,
                                      tenant: Tenant) -> None:
    """A delta round split over one-item pages (nextLink) is followed to its deltaLink."""
    pipeline.run()
    emulator.api.delta_page_size = 1
    d = emulator.directory
    new = [d.add_user(f"new{i}@contoso.com", f"New {i}") for i in range(3)]
    for uid in new:
        d.add_member(tenant.sales, uid)
    d.remove_member(tenant.sales, tenant.bob)
    emulator.reset_log()
    snap = pipeline.connector.fetch(pipeline.state)
    assert len(emulator.graph_calls("users/delta")) == 3     # one page per changed user
    assert snap.groups[tenant.sales].member_ids == {tenant.dave, *new}


def test_full_read_interval_forces_full_read(make_connector: Callable[..., AzureConnector],
                                             tenant: Tenant, emulator: GraphEmulator) -> None:
    """Once full_read_interval has passed since the last full read, the next fetch is full."""
    now = [1000.0]
    conn = make_connector(full_read_interval="1h")
    conn._clock = lambda: now[0]
    state = ConnectorState()
    conn.fetch(state)
    state.commit()
    now[0] += 1800
    conn.fetch(state)
    assert conn.last_read == "delta"
    state.commit()
    now[0] += 1801
    conn.fetch(state)
    assert conn.last_read == "full"


def test_force_full_ignores_cache(make_connector: Callable[..., AzureConnector],
                                  tenant: Tenant, emulator: GraphEmulator) -> None:
    """state.force_full reads /users again although delta links are stored."""
    conn = make_connector()
    state = ConnectorState()
    conn.fetch(state)
    state.commit()
    emulator.reset_log()
    conn.fetch(ConnectorState(state.snapshot(), force_full=True))
    assert emulator.graph_calls("users")


def test_rename_and_delete_group_by_delta(pipeline: Pipeline, emulator: GraphEmulator,
                                          tenant: Tenant) -> None:
    """A renamed group plans one RenameGroup; a deleted group leaves the desired state."""
    pipeline.run()
    emulator.directory.rename_group(tenant.sales, "Sales EMEA")
    assert kinds(pipeline.run()) == ["rename_group"]
    emulator.directory.delete_group(tenant.platform)
    snap = pipeline.connector.fetch(pipeline.state)
    assert tenant.platform not in snap.groups
    assert snap.groups[tenant.engineering].subgroup_ids == frozenset()


def test_token_is_cached_across_requests(pipeline: Pipeline, emulator: GraphEmulator) -> None:
    """msal's token cache serves every Graph request of two runs from one token request."""
    pipeline.run()
    pipeline.run()
    assert emulator.token_requests == 1
    assert len(emulator.graph_calls()) > 5
