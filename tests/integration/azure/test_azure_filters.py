"""Scoping options of the azure connector: guests, filters, groups, administrative units, paging."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from dirconnector.connectors.azure.connector import AzureConnector
from dirconnector.errors import SourceError
from dirconnector.state_space import ConnectorState
from tests.emulators.graph import GraphEmulator

from .conftest import CLIENT_ID, Tenant

pytestmark = pytest.mark.integration


def test_guests_are_skipped_by_default(make_connector: Callable[..., AzureConnector],
                                       tenant: Tenant) -> None:
    """A #EXT# guest is left out and reported as an external member."""
    snap = make_connector().fetch(ConnectorState())
    assert tenant.guest not in snap.users
    assert [s.reason for s in snap.skipped if "#EXT#" in s.ref] == ["external member"]


def test_guests_kept_when_asked(make_connector: Callable[..., AzureConnector],
                                tenant: Tenant) -> None:
    """skip_guests = false syncs the guest with its mail and keeps its group membership."""
    snap = make_connector(skip_guests=False).fetch(ConnectorState())
    assert snap.users[tenant.guest].email == "gina@fabrikam.com"
    assert tenant.guest in snap.groups[tenant.engineering].member_ids


def test_small_page_size_follows_every_next_link(make_connector: Callable[..., AzureConnector],
                                                 emulator: GraphEmulator, tenant: Tenant,
                                                 ) -> None:
    """page_size = 2 reads 11 users over 6 pages via $skiptoken nextLinks, none lost."""
    for i in range(6):
        emulator.directory.add_user(f"p{i}@contoso.com", f"P {i}")
    snap = make_connector(page_size=2).fetch(ConnectorState())
    calls = emulator.graph_calls("users")
    assert len(calls) == 6
    assert calls[0].query["$top"] == "2" and "$skiptoken" not in calls[0].query
    assert all("$skiptoken" in c.query for c in calls[1:])
    assert len(snap.users) == 10                     # 11 minus the guest


def test_user_filter_include_and_exclude(make_connector: Callable[..., AzureConnector],
                                         tenant: Tenant) -> None:
    """include:/exclude: match emails case-insensitively; excluded users are reported."""
    inc = make_connector(user_filter="include:ALICE@contoso.com, bob@contoso.com").fetch(
        ConnectorState())
    assert set(inc.users) == {tenant.alice, tenant.bob}
    exc = make_connector(user_filter="exclude:bob@contoso.com").fetch(ConnectorState())
    assert tenant.bob not in exc.users and tenant.alice in exc.users
    assert any(s.reason == "filtered out" and s.ref == "bob@contoso.com" for s in exc.skipped)


def test_email_attribute_upn(make_connector: Callable[..., AzureConnector],
                             tenant: Tenant) -> None:
    """email_attribute = userPrincipalName uses the UPN even when mail is set."""
    snap = make_connector(email_attribute="userPrincipalName").fetch(ConnectorState())
    assert snap.users[tenant.alice].email == "alice@contoso.onmicrosoft.com"


def test_include_groups_is_transitive(make_connector: Callable[..., AzureConnector],
                                      emulator: GraphEmulator, tenant: Tenant) -> None:
    """include_groups by name keeps members of nested groups, read with transitiveMembers."""
    snap = make_connector(include_groups=["engineering"]).fetch(ConnectorState())
    assert set(snap.users) == {tenant.alice, tenant.carol}
    assert emulator.graph_calls(f"groups/{tenant.engineering}/transitiveMembers")


def test_exclude_groups_by_id(make_connector: Callable[..., AzureConnector],
                              tenant: Tenant) -> None:
    """exclude_groups by object id drops its transitive members only."""
    snap = make_connector(exclude_groups=[tenant.platform]).fetch(ConnectorState())
    assert set(snap.users) == {tenant.alice, tenant.bob, tenant.dave}


def test_unknown_scope_group_fails(make_connector: Callable[..., AzureConnector],
                                   tenant: Tenant) -> None:
    """A misspelt include_groups entry fails the read instead of putting nobody in scope."""
    with pytest.raises(SourceError, match=r"include_groups: no group .* 'Engneering'"):
        make_connector(include_groups=["Engneering"]).fetch(ConnectorState())


def test_group_filter_keeps_nested_users(make_connector: Callable[..., AzureConnector],
                                         tenant: Tenant) -> None:
    """group_filter drops Platform, and Engineering then holds Platform's users directly."""
    snap = make_connector(group_filter="exclude:Platform").fetch(ConnectorState())
    assert set(snap.groups) == {tenant.engineering, tenant.sales}
    eng = snap.groups[tenant.engineering]
    assert eng.member_ids == {tenant.alice, tenant.carol} and not eng.subgroup_ids
    inc = make_connector(group_filter="include:Sales").fetch(ConnectorState())
    assert set(inc.groups) == {tenant.sales}


def test_administrative_unit_scopes_groups(make_connector: Callable[..., AzureConnector],
                                           emulator: GraphEmulator, tenant: Tenant) -> None:
    """administrative_unit keeps only the groups in that unit (AdministrativeUnit.Read.All)."""
    emulator.directory.add_admin_unit("Europe", [tenant.sales, tenant.alice])
    emulator.issuer.apps[CLIENT_ID].roles.add("AdministrativeUnit.Read.All")
    snap = make_connector(administrative_unit="europe").fetch(ConnectorState())
    assert set(snap.groups) == {tenant.sales}


def test_administrative_unit_needs_permission(make_connector: Callable[..., AzureConnector],
                                              emulator: GraphEmulator, tenant: Tenant) -> None:
    """Without AdministrativeUnit.Read.All the 403 line names that permission."""
    emulator.directory.add_admin_unit("Europe", [tenant.sales])
    with pytest.raises(SourceError, match=r"AdministrativeUnit\.Read\.All"):
        make_connector(administrative_unit="Europe").fetch(ConnectorState())


def test_entra_alias_and_registry() -> None:
    """type = "entra" loads the same connector through the entry point."""
    from dirconnector.registry import CONNECTORS, find

    assert find(CONNECTORS, "entra").load() is AzureConnector
    assert find(CONNECTORS, "azure").load() is AzureConnector
