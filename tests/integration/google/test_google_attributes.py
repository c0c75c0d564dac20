"""Mapped attributes from the Google emulator: organizations, phones, custom schemas, manager."""

from __future__ import annotations

from typing import Any

import pytest

from dirconnector.errors import ConfigError
from dirconnector.state_space import ConnectorState

pytestmark = pytest.mark.integration
NAMES = frozenset({"organizations.title", "organizations.department", "phones.work",
                   "phones.mobile", "externalIds.organization", "customSchemas.HR.badge",
                   "manager"})


def test_profile_fields_and_manager_are_read(env: Any) -> None:
    """Each asked field comes from the users resource; relations type manager resolves by
    address to the manager's id; an address of no synced user is dropped."""
    u = env.org.users
    env.directory.set_profile(
        u["alice"],
        organizations=[{"title": "Intern", "department": "Old"},
                       {"title": "CTO", "department": "R&D", "primary": True}],
        phones=[{"value": "+1 555 0100", "type": "work"}],
        externalIds=[{"value": "E0001", "type": "organization"}],
        customSchemas={"HR": {"badge": "B-17"}})
    env.directory.set_profile(u["bob"], relations=[
        {"value": "alice@example.com", "type": "manager"}, {"value": "x@y.z", "type": "friend"}],
        phones=[{"value": "+1 666 0101", "type": "mobile"}])
    env.directory.set_profile(u["carol"], relations=[{"value": "nobody@else.org",
                                                      "type": "manager"}])
    connector = env.connector()
    connector.read_attributes(NAMES)
    users = connector.fetch(ConnectorState()).users
    assert dict(users[u["alice"]].attributes) == {
        "organizations.title": "CTO", "organizations.department": "R&D",
        "phones.work": "+1 555 0100", "externalIds.organization": "E0001",
        "customSchemas.HR.badge": "B-17"}
    assert dict(users[u["bob"]].attributes) == {"phones.mobile": "+1 666 0101",
                                                "manager": u["alice"]}
    assert users[u["carol"]].attributes == ()


def test_custom_schemas_need_the_full_projection(env: Any) -> None:
    """Without a custom schema field asked, users.list is basic and carries none."""
    env.directory.set_profile(env.org.users["alice"], customSchemas={"HR": {"badge": "B-17"}},
                              organizations=[{"title": "CTO", "primary": True}])
    connector = env.connector()
    connector.read_attributes(frozenset({"organizations.title"}))
    users = connector.fetch(ConnectorState()).users
    assert dict(users[env.org.users["alice"]].attributes) == {"organizations.title": "CTO"}


def test_a_field_the_connector_cannot_read_is_refused(env: Any) -> None:
    """organizations.salary is no Directory API field: a config error before any read."""
    with pytest.raises(ConfigError, match="not a Google user field"):
        env.connector().read_attributes(frozenset({"organizations.salary"}))
