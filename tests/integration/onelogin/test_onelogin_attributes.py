"""Mapped attributes from the OneLogin emulator: standard fields, custom attributes, manager."""

from __future__ import annotations

import pytest

from dirconnector.errors import ConfigError
from dirconnector.state_space import ConnectorState
from tests.emulators.onelogin import Account
from tests.emulators.onelogin.seed import ConnectorFactory, Seed

pytestmark = pytest.mark.integration


def test_standard_and_custom_fields_and_manager_are_read(
        make_connector: ConnectorFactory, ids: Seed, account: Account) -> None:
    """title, department, custom_attributes.costcenter and manager_user_id come through; a
    manager id that is no user read is dropped."""
    u = ids.users
    account.update_user(u["u00"], title="CTO", department="R&D",
                        custom_attributes={"costcenter": "CC-1"})
    account.update_user(u["u01"], title="Engineer", manager_user_id=u["u00"])
    account.update_user(u["u02"], manager_user_id=999999)
    connector = make_connector()
    connector.read_attributes(frozenset({"title", "department", "custom_attributes.costcenter",
                                         "manager"}))
    users = connector.fetch(ConnectorState()).users
    assert dict(users[str(u["u00"])].attributes) == {
        "title": "CTO", "department": "R&D", "custom_attributes.costcenter": "CC-1"}
    assert dict(users[str(u["u01"])].attributes) == {"title": "Engineer",
                                                     "manager": str(u["u00"])}
    assert users[str(u["u02"])].attributes == ()


def test_an_unknown_field_is_refused(make_connector: ConnectorFactory) -> None:
    """A name that is no OneLogin user field is a config error before any read."""
    with pytest.raises(ConfigError, match="not a OneLogin user field"):
        make_connector().read_attributes(frozenset({"jobtitle"}))
