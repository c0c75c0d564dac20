"""Incremental reads reuse what did not change and still return the complete state."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from dirconnector.connectors.okta.cache import CACHE_KEY
from dirconnector.connectors.okta.connector import OktaConnector
from dirconnector.errors import SourceError
from dirconnector.state_space import ConnectorState
from dirconnector.testing import check_connector

from .conftest import Org

pytestmark = pytest.mark.integration

Make = Callable[..., OktaConnector]


def member_reads(org: Org) -> list[str]:
    return [p for p in org.state.api_requests("/api/v1/groups/") if "/users" in p]


def user_listings(org: Org) -> list[str]:
    return org.state.api_requests("/api/v1/users")


def primed(org: Org, connector: OktaConnector) -> ConnectorState:
    """A state holding the cache of one committed full read; the request log cleared."""
    state = ConnectorState()
    connector.fetch(state)
    state.commit()
    org.state.requests.clear()
    return state


def test_contract_suite_with_incremental_users(org: Org, make: Make) -> None:
    """The contract (second fetch from committed state equals the first) holds in 'users' mode."""
    check_connector(make(incremental="users"))


def test_unchanged_groups_are_not_re_read(org: Org, make: Make) -> None:
    """In 'memberships' mode a second run reads no group members when none changed."""
    connector = make()
    state = primed(org, connector)
    snap = connector.fetch(state)
    assert member_reads(org) == []
    assert snap.info["read"] == "incremental (memberships)"
    assert snap.digest() == make(incremental="off").fetch(ConnectorState()).digest()


def test_changed_group_alone_is_re_read(org: Org, make: Make) -> None:
    """A membership change re-reads that group's members only, and shows in the snapshot."""
    connector = make()
    state = primed(org, connector)
    org.state.add_member(org.groups["sales"], org.users["erin"])
    snap = connector.fetch(state)
    assert member_reads(org) == [f"/api/v1/groups/{org.groups['sales']}/users?limit=200"]
    assert org.users["erin"] in snap.groups[org.groups["sales"]].member_ids


def test_users_mode_reads_only_changed_users(org: Org, make: Make) -> None:
    """In 'users' mode a run asks for lastUpdated gt <since> and still sees a suspension."""
    connector = make(incremental="users")
    state = primed(org, connector)
    org.state.set_status(org.users["bob"], "SUSPENDED")
    snap = connector.fetch(state)
    assert user_listings(org) and all("lastUpdated+gt" in p for p in user_listings(org))
    assert not snap.users[org.users["bob"]].active
    assert snap.digest() == make(incremental="off").fetch(ConnectorState()).digest()


def test_force_full_and_zero_interval_read_everything(org: Org, make: Make) -> None:
    """force_full, or full_read_interval = 0s, ignores the cache."""
    connector = make(incremental="users")
    state = primed(org, connector)
    forced = ConnectorState(state.snapshot(), force_full=True)
    assert connector.fetch(forced).info["read"] == "full"
    assert len(member_reads(org)) == 4
    every_run = make(incremental="users", full_read_interval="0s")
    assert every_run.fetch(primed(org, every_run)).info["read"] == "full"


def test_cache_from_other_settings_is_ignored(org: Org, make: Make) -> None:
    """A cache written under another group_filter is not reused."""
    state = primed(org, make(group_filter="include:Sales"))
    snap = make().fetch(state)
    assert snap.info["read"] == "full" and len(snap.groups) == 4


def test_failed_read_stages_no_cache(org: Org, make: Make) -> None:
    """A read that fails leaves no cache behind for the next run to trust."""
    state = ConnectorState()
    org.state.forbidden = True
    with pytest.raises(SourceError):
        make().fetch(state)
    assert state.get(CACHE_KEY) is None
