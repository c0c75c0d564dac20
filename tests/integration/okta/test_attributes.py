"""Mapped attributes from the Okta emulator: profile properties and managerId."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from dirconnector.connectors.okta.connector import OktaConnector
from dirconnector.errors import ConfigError
from dirconnector.state_space import ConnectorState

from .conftest import Org

pytestmark = pytest.mark.integration
Make = Callable[..., OktaConnector]


def attrs(connector: OktaConnector, state: ConnectorState | None = None
          ) -> dict[str, dict[str, str]]:
    snap = connector.fetch(state or ConnectorState())
    return {u.external_id: dict(u.attributes) for u in snap.users.values()}


def test_profile_properties_and_manager_are_read(org: Org, make: Make) -> None:
    """title, profile.department and a managerId (an id or a login) come through; a managerId
    that names no one is dropped."""
    u = org.users
    org.state.update_profile(u["alice"], title="CTO", department="R&D", employeeNumber=7)
    org.state.update_profile(u["bob"], title="Engineer", managerId=u["alice"])
    org.state.update_profile(u["carol"], managerId="Alice@Example.com")
    org.state.update_profile(u["dave"], managerId="someone-else")
    connector = make()
    connector.read_attributes(frozenset({"title", "profile.department", "employeeNumber",
                                         "manager"}))
    seen = attrs(connector)
    assert seen[u["alice"]] == {"title": "CTO", "profile.department": "R&D",
                                "employeeNumber": "7"}
    assert seen[u["bob"]] == {"title": "Engineer", "manager": u["alice"]}
    assert seen[u["carol"]] == {"manager": u["alice"]}
    assert seen[u["dave"]] == {}


def test_a_profile_edit_reaches_an_incremental_read(org: Org, make: Make) -> None:
    """A changed title is read by the next (incremental) read, from the cache's update."""
    connector = make(incremental="users")
    connector.read_attributes(frozenset({"title"}))
    state = ConnectorState()
    attrs(connector, state)
    org.state.update_profile(org.users["bob"], title="Staff Engineer")
    assert attrs(connector, state)[org.users["bob"]]["title"] == "Staff Engineer"


def test_a_name_that_is_no_profile_property_is_refused(make: Make) -> None:
    """An attribute name Okta cannot have is a config error before any read."""
    with pytest.raises(ConfigError, match="not an Okta profile property"):
        make().read_attributes(frozenset({"profile.title-x"}))


def test_a_feed_batch_resolves_a_manager_given_as_a_login(org: Org, make: Make) -> None:
    """Under watch, a changed user whose managerId is a login carries the manager's id, as
    a full read gives it (not the login, which names no synced user)."""
    from .test_feed import poll, primed

    u = org.users
    org.state.update_profile(u["carol"], managerId="Alice@Example.com")
    connector = make(feed_overlap="0s")
    connector.read_attributes(frozenset({"title", "manager"}))
    position = primed(org, connector)
    org.state.update_profile(u["carol"], title="Lead")
    batch = poll(connector, position)
    assert dict(batch.users[u["carol"]].attributes) == {"title": "Lead", "manager": u["alice"]}
