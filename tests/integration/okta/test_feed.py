"""The okta change feed: users by lastUpdated, groups by lastMembershipUpdated, the System Log."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest

from dirconnector.connectors import Changes, HasChangeStream, StreamGap
from dirconnector.connectors.feedkit import FeedPosition
from dirconnector.connectors.okta.cache import CACHE_KEY, okta_time
from dirconnector.connectors.okta.connector import OktaConnector
from dirconnector.connectors.okta.stream import PREFIX
from dirconnector.state_space import ConnectorState

from .conftest import Org

pytestmark = pytest.mark.integration

Make = Callable[..., OktaConnector]


def primed(org: Org, connector: OktaConnector) -> str:
    """A full read (as the watch engine does first), then one poll from the position taken
    before it: that poll hands on again what the seed wrote within the overlap."""
    position = connector.stream_position()
    connector.fetch(ConnectorState())
    position = poll(connector, position).position
    org.state.requests.clear()
    return position


def poll(connector: OktaConnector, position: str) -> Changes:
    return connector.changes(position, 0)


def test_claims_the_stream_capability_in_feed_mode(org: Org, make: Make) -> None:
    """The connector is a HasChangeStream whose mode is 'feed' when the log is readable."""
    connector = make()
    assert isinstance(connector, HasChangeStream)
    assert connector.stream_mode().mode == "feed"


def test_quiet_poll_costs_three_requests_and_changes_nothing(org: Org, make: Make) -> None:
    """No change: an empty batch from one users, one groups and one System Log request."""
    connector = make()
    batch = poll(connector, primed(org, connector))
    assert batch.empty
    paths = [p.split("?")[0] for p in org.state.api_requests()]
    assert paths == ["/api/v1/users", "/api/v1/groups", "/api/v1/logs"]


def test_each_kind_of_change_arrives_as_whole_records(org: Org, make: Make) -> None:
    """Create, suspend, unsuspend, email change, membership add/remove, delete, group delete."""
    connector = make()
    pos = primed(org, connector)
    st, u, g = org.state, org.users, org.groups

    new = st.add_user("Nina@Example.com", "Nina", "New")
    batch = poll(connector, pos)
    assert set(batch.users) == {new} and batch.users[new].email == "nina@example.com"
    pos = batch.position

    st.set_status(u["bob"], "SUSPENDED")
    batch = poll(connector, pos)
    assert set(batch.users) == {u["bob"]} and not batch.users[u["bob"]].active
    pos = batch.position

    st.set_status(u["bob"], "ACTIVE")
    batch = poll(connector, pos)
    assert batch.users[u["bob"]].active
    pos = batch.position

    st.update_profile(u["alice"], email="alice.new@example.com")
    batch = poll(connector, pos)
    assert batch.users[u["alice"]].email == "alice.new@example.com"
    pos = batch.position

    st.add_member(g["sales"], u["alice"])
    st.remove_member(g["eng"], u["bob"])
    batch = poll(connector, pos)
    assert set(batch.groups) == {g["sales"], g["eng"]}
    assert u["alice"] in batch.groups[g["sales"]].member_ids
    assert u["bob"] not in batch.groups[g["eng"]].member_ids
    assert not batch.users
    pos = batch.position

    st.set_status(u["hank"], "DEPROVISIONED")
    st.delete_user(u["hank"])
    batch = poll(connector, pos)
    assert batch.removed_users == {u["hank"]}
    # Okta drops a deleted user from its groups without a membership stamp: the feed
    # hands on the groups it knew them in, whole, without them.
    assert u["hank"] not in batch.groups[g["eng"]].member_ids
    assert u["hank"] not in batch.groups[g["everyone"]].member_ids
    pos = batch.position

    st.delete_group(g["sales"])
    batch = poll(connector, pos)
    assert batch.removed_groups == {g["sales"]}
    assert poll(connector, batch.position).empty


def test_a_change_seen_again_within_the_overlap_is_handed_on_once(org: Org, make: Make) -> None:
    """The next poll asks from an overlap earlier, yet what it already handed on stays out."""
    connector = make(feed_overlap="10m")
    pos = primed(org, connector)
    org.state.set_status(org.users["bob"], "SUSPENDED")
    first = poll(connector, pos)
    assert set(first.users) == {org.users["bob"]}
    org.state.requests.clear()
    second = poll(connector, first.position)
    assert second.empty
    assert any("lastUpdated" in p for p in org.state.api_requests("/api/v1/users"))


def test_a_batch_delivered_twice_is_the_same_whole_state(org: Org, make: Make) -> None:
    """Polling the same position again (a lost ack) gives the same records, so applying is a no-op."""
    connector = make()
    pos = primed(org, connector)
    org.state.update_profile(org.users["carol"], lastName="Changed")
    org.state.add_member(org.groups["eng"], org.users["carol"])
    first, again = poll(connector, pos), poll(connector, pos)
    assert first.users == again.users and first.groups == again.groups
    assert first.removed_users == again.removed_users


def test_the_feed_keeps_to_its_share_of_the_rate_limit(org: Org, make: Make) -> None:
    """With 50 requests a window and a 20% share, the 11th feed request waits for the reset."""
    org.state.rate.limit = 50
    org.state.requests.clear()
    sent_at_wait: list[int] = []

    def sleep(seconds: float) -> None:
        assert seconds > 0
        sent_at_wait.append(len(org.state.api_requests()))

    connector = make(feed_rate_share=0.2, sleep=sleep)
    pos = connector.stream_position()
    for _ in range(5):
        pos = poll(connector, pos).position
    assert sent_at_wait and sent_at_wait[0] == 10
    assert org.state.throttled == 0


def test_a_position_older_than_the_log_retention_is_a_gap(org: Org, make: Make) -> None:
    """Okta keeps 90 days of System Log; an older position cannot be followed."""
    connector = make()
    old = okta_time(datetime.now(UTC) - timedelta(days=91))
    with pytest.raises(StreamGap, match="retention"):
        poll(connector, FeedPosition(old).dump(PREFIX))


def test_a_position_ahead_of_the_server_clock_is_a_gap(org: Org, make: Make) -> None:
    """A position in the future means a clock went wrong: read in full."""
    connector = make()
    ahead = okta_time(datetime.now(UTC) + timedelta(hours=1))
    with pytest.raises(StreamGap, match="ahead"):
        poll(connector, FeedPosition(ahead).dump(PREFIX))


def test_a_refused_log_query_is_a_gap(org: Org, make: Make) -> None:
    """A System Log query Okta refuses may have lost deletions: a gap, not an empty batch."""
    connector = make()
    pos = primed(org, connector)
    org.state.log_failure = 400
    with pytest.raises(StreamGap):
        poll(connector, pos)


def test_an_unreadable_position_is_a_gap(org: Org, make: Make) -> None:
    connector = make()
    with pytest.raises(StreamGap):
        poll(connector, "opaque-cookie")


# ---------------------------------------------------------------- incremental fetch


def committed(connector: OktaConnector) -> ConnectorState:
    state = ConnectorState()
    connector.fetch(state)
    state.commit()
    return state


def full_digest(make: Make) -> str:
    return make(incremental="off").fetch(ConnectorState()).digest()


def test_fetch_in_feed_mode_merges_changes_into_the_cached_state(org: Org, make: Make) -> None:
    """Between full reads, fetch asks the feed only, and returns what a full read returns."""
    connector = make(incremental="feed")
    state = committed(connector)
    st, u, g = org.state, org.users, org.groups
    st.set_status(u["hank"], "DEPROVISIONED")
    st.delete_user(u["hank"])
    st.update_profile(u["alice"], email="alice2@example.com")
    st.remove_member(g["eng"], u["bob"])
    st.delete_group(g["ad"])
    st.requests.clear()
    snap = connector.fetch(state)
    state.commit()
    assert snap.info["read"] == "incremental (feed)"
    assert not [p for p in st.api_requests("/api/v1/users") if "filter" not in p
                and "search" not in p and not p.startswith("/api/v1/users/")]
    assert snap.digest() == full_digest(make)


def test_fetch_falls_back_to_a_full_read_on_a_gap(org: Org, make: Make) -> None:
    """A cached position older than the retention makes the next fetch a full read."""
    later = [0.0]
    connector = make(incremental="feed", full_read_interval="1000d",
                     clock=lambda: time.time() + later[0])
    state = committed(connector)
    later[0] = timedelta(days=91).total_seconds()
    snap = connector.fetch(state)
    assert snap.info["read"] == "full"
    assert state.get(CACHE_KEY)["position"]


def test_fetch_falls_back_to_a_full_read_when_the_log_fails(org: Org, make: Make) -> None:
    connector = make(incremental="feed")
    state = committed(connector)
    org.state.log_failure = 400
    org.state.add_user("late@example.com", "Late", "Comer")
    snap = connector.fetch(state)
    assert snap.info["read"] == "full"
    org.state.log_failure = 0
    assert snap.digest() == full_digest(make)


def test_check_in_feed_mode_probes_the_system_log(org: Org, make: Make) -> None:
    """With incremental = "feed", check reads the System Log and says when it cannot."""
    report = make(incremental="feed").check()
    assert any("System Log" in item.name and item.ok for item in report.items)
    org.state.log_failure = 400
    report = make(incremental="feed").check()
    assert not report.ok


def test_polls_are_spaced_by_the_poll_interval(org: Org, make: Make) -> None:
    """Asked again within feed_poll_interval, the feed waits (at most ``wait``) and answers an
    empty batch at the same position without a request."""
    waits: list[float] = []
    connector = make(feed_poll_interval="30s", sleep=waits.append)
    pos = connector.stream_position()
    first = connector.changes(pos, 1.0)
    org.state.requests.clear()
    org.state.set_status(org.users["bob"], "SUSPENDED")
    again = connector.changes(first.position, 1.0)
    assert again.empty and again.position == first.position
    assert org.state.api_requests() == [] and waits == [1.0]


def test_a_membership_change_is_handed_on_once_within_the_overlap(org: Org, make: Make) -> None:
    """A group whose members changed (not its profile) is not re-read on the next poll."""
    connector = make(feed_overlap="10m")
    pos = primed(org, connector)
    org.state.add_member(org.groups["sales"], org.users["erin"])
    first = poll(connector, pos)
    assert set(first.groups) == {org.groups["sales"]}
    org.state.requests.clear()
    assert poll(connector, first.position).empty
    assert not [p for p in org.state.api_requests() if "/users?" in p and "groups/" in p]
