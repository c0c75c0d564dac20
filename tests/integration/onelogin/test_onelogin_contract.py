"""The connector contract suite against the emulator, in both groups_from modes."""

from __future__ import annotations

import pytest

from dirconnector.connectors.onelogin.connector import OneLoginConnector
from dirconnector.registry import CONNECTORS, find
from dirconnector.state_space import ConnectorState
from dirconnector.testing import check_connector
from tests.emulators.onelogin.seed import ConnectorFactory, Seed

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("groups_from", ["roles", "groups"])
def test_contract(make_connector: ConnectorFactory, groups_from: str) -> None:
    """check() passes and fetch() returns a complete, normalised, repeatable snapshot."""
    snap = check_connector(make_connector(groups_from=groups_from))
    assert len(snap.users) == 43


def test_registered_under_type_onelogin() -> None:
    """`type = "onelogin"` resolves to this connector through the entry point."""
    assert find(CONNECTORS, "onelogin").load() is OneLoginConnector


def test_user_records_are_mapped(make_connector: ConnectorFactory, ids: Seed) -> None:
    """The OneLogin id is the external id; names, username and status map onto the record."""
    snap = make_connector().fetch(ConnectorState())
    u = snap.users[str(ids.users["u07"])]
    assert (u.email, u.user_name, u.given_name, u.family_name, u.display_name, u.active) == (
        "user07@example.com", "user07", "First07", "Person", "First07 Person", True)
    assert snap.users[str(ids.users["suspended"])].active is False
    assert snap.users[str(ids.users["locked"])].active is False
    assert snap.users[str(ids.users["pwexpired"])].active is True
    assert snap.info["groups_from"] == "roles"


def test_check_counts(make_connector: ConnectorFactory) -> None:
    """check() reports the user and role totals from the Total-Count header."""
    report = make_connector().check()
    assert report.ok
    assert report.counts == {"users": 45, "roles": 4}
