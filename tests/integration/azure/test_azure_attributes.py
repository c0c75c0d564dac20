"""Mapped attributes from the Graph emulator: extra $select properties and the manager."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from dirconnector.connectors.azure.connector import AzureConnector
from dirconnector.errors import ConfigError, SourceError
from dirconnector.state_space import ConnectorState
from tests.emulators.graph import GraphEmulator

from .conftest import Tenant

pytestmark = pytest.mark.integration
Make = Callable[..., AzureConnector]
NAMES = frozenset({"jobTitle", "department", "businessPhones", "employeeId", "manager"})


def attrs(connector: AzureConnector, state: ConnectorState) -> dict[str, dict[str, str]]:
    return {u.external_id: dict(u.attributes) for u in connector.fetch(state).users.values()}


def test_selected_properties_and_manager_are_read(make_connector: Make, tenant: Tenant,
                                                  emulator: GraphEmulator) -> None:
    """jobTitle, department, the first businessPhone, employeeId and the manager's id come
    through; a user without them carries none."""
    d = emulator.directory
    d.update_user(tenant.alice, jobTitle="CTO", department="R&D", employeeId="E1",
                  businessPhones=["+1 555 0100", "+1 555 0101"])
    d.update_user(tenant.bob, jobTitle="Engineer")
    d.set_manager(tenant.bob, tenant.alice)
    connector = make_connector()
    connector.read_attributes(NAMES)
    seen = attrs(connector, ConnectorState())
    assert seen[tenant.alice] == {"jobTitle": "CTO", "department": "R&D", "employeeId": "E1",
                                  "businessPhones": "+1 555 0100"}
    assert seen[tenant.bob] == {"jobTitle": "Engineer", "manager": tenant.alice}
    assert seen[tenant.dave] == {}


def test_a_delta_read_carries_changed_properties_and_managers(
        make_connector: Make, tenant: Tenant, emulator: GraphEmulator) -> None:
    """After the first read, a changed jobTitle (delta) and a new manager are both seen."""
    connector = make_connector()
    connector.read_attributes(NAMES)
    state = ConnectorState()
    attrs(connector, state)
    emulator.directory.update_user(tenant.dave, jobTitle="Sales Lead")
    emulator.directory.set_manager(tenant.dave, tenant.bob)
    seen = attrs(connector, state)
    assert connector.last_read == "delta"
    assert seen[tenant.dave] == {"jobTitle": "Sales Lead", "manager": tenant.bob}


def test_a_property_graph_does_not_have_fails_the_read(make_connector: Make,
                                                       tenant: Tenant) -> None:
    """Graph refuses an unknown $select property (400): the read fails, nothing is planned."""
    connector = make_connector()
    connector.read_attributes(frozenset({"jobTitel"}))
    with pytest.raises(SourceError, match="jobTitel"):
        connector.fetch(ConnectorState())
    with pytest.raises(ConfigError, match="not a Graph user property"):
        connector.read_attributes(frozenset({"job title"}))
