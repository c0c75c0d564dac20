"""The onelogin change feed: users by updated_since, role changes and deletions from events."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dirconnector import settings as config
from dirconnector.connectors import Changes, HasChangeStream, StreamGap
from dirconnector.connectors.feedkit import FeedPosition, iso_ms
from dirconnector.connectors.onelogin.connector import OneLoginConnector
from dirconnector.connectors.onelogin.stream import PREFIX
from dirconnector.state import SqliteStore
from dirconnector.state_space import ConnectorState
from dirconnector.sync import Runner
from tests.emulators.onelogin import Account, OneLoginEmulator
from tests.emulators.onelogin.seed import CLIENT_ID, CLIENT_SECRET, ConnectorFactory, Seed, seed
from tests.integration.scim.conftest import TOKEN as SCIM_TOKEN
from tests.integration.scim.conftest import ScimServer

pytestmark = pytest.mark.integration


def poll(connector: OneLoginConnector, position: str) -> Changes:
    return connector.changes(position, 0)


def primed(account: Account, connector: OneLoginConnector) -> str:
    """Position, full read, then one poll that absorbs the seed's own recent changes."""
    position = connector.stream_position()
    connector.fetch(ConnectorState())
    position = poll(connector, position).position
    with account.lock:
        account.query_log.clear()
    return position


def asked(account: Account) -> list[str]:
    return [path for path, _ in account.query_log]


def test_claims_the_stream_capability_in_feed_mode(make_connector: ConnectorFactory) -> None:
    connector = make_connector()
    assert isinstance(connector, HasChangeStream)
    assert connector.stream_mode().mode == "feed"


def test_quiet_poll_costs_three_requests(account: Account, make_connector: ConnectorFactory,
                                         ids: Seed) -> None:
    """Nothing changed: users (updated_since), events and roles, one request each."""
    connector = make_connector(page_size=50)   # the seed is inside the overlap: one page
    batch = poll(connector, primed(account, connector))
    assert batch.empty
    assert asked(account) == ["/api/2/users", "/api/1/events", "/api/2/roles"]


def test_each_kind_of_change_arrives_as_whole_records(account: Account, ids: Seed,
                                                      make_connector: ConnectorFactory) -> None:
    """Create, suspend, reactivate, email change, role add/remove, delete, role deletion."""
    connector = make_connector()
    pos = primed(account, connector)
    u, r = ids.users, ids.roles

    new = account.add_user("nina@example.com", username="nina", firstname="Nina")
    batch = poll(connector, pos)
    assert set(batch.users) == {str(new)}
    pos = batch.position

    account.update_user(u["u05"], status=2)
    batch = poll(connector, pos)
    assert not batch.users[str(u["u05"])].active
    pos = batch.position

    account.update_user(u["u05"], status=1)
    batch = poll(connector, pos)
    assert batch.users[str(u["u05"])].active
    pos = batch.position

    account.update_user(u["u06"], email="u06.new@example.com")
    batch = poll(connector, pos)
    assert batch.users[str(u["u06"])].email == "u06.new@example.com"
    pos = batch.position

    account.assign(r["Sales"], new)
    account.unassign(r["Engineering"], u["u01"])
    batch = poll(connector, pos)
    assert not batch.users            # a role change does not move updated_at
    assert str(new) in batch.groups[str(r["Sales"])].member_ids
    assert str(u["u01"]) not in batch.groups[str(r["Engineering"])].member_ids
    pos = batch.position

    account.delete_user(u["u00"])
    batch = poll(connector, pos)
    assert batch.removed_users == {str(u["u00"])}
    assert str(u["u00"]) not in batch.groups[str(r["Admins"])].member_ids
    pos = batch.position

    account.delete_role(r["Empty"])
    account.rename_role(r["Admins"], "Administrators")
    batch = poll(connector, pos)
    assert batch.removed_groups == {str(r["Empty"])}
    assert batch.groups[str(r["Admins"])].name == "Administrators"
    assert poll(connector, batch.position).empty


def test_group_moves_in_groups_mode(account: Account, ids: Seed,
                                    make_connector: ConnectorFactory) -> None:
    """groups_from = 'groups': moving a user's group_id re-sends both groups whole."""
    connector = make_connector(groups_from="groups")
    pos = primed(account, connector)
    g = ids.groups
    account.update_user(ids.users["u00"], group_id=g["admins"])
    batch = poll(connector, pos)
    assert set(batch.groups) == {str(g["employees"]), str(g["admins"])}
    assert batch.groups[str(g["admins"])].member_ids == {str(ids.users["u00"])}


def test_events_seen_again_in_the_overlap_are_handed_on_once(
        account: Account, ids: Seed, make_connector: ConnectorFactory) -> None:
    connector = make_connector(feed_overlap="10m")
    pos = primed(account, connector)
    account.assign(ids.roles["Empty"], ids.users["u10"])
    first = poll(connector, pos)
    assert set(first.groups) == {str(ids.roles["Empty"])}
    assert poll(connector, first.position).empty


def test_a_batch_delivered_twice_is_the_same_whole_state(
        account: Account, ids: Seed, make_connector: ConnectorFactory) -> None:
    connector = make_connector()
    pos = primed(account, connector)
    account.update_user(ids.users["u07"], lastname="Changed")
    account.assign(ids.roles["Empty"], ids.users["u07"])
    first, again = poll(connector, pos), poll(connector, pos)
    assert first.users == again.users and first.groups == again.groups


def test_the_feed_keeps_to_its_share_of_the_rate_limit(
        account: Account, make_connector: ConnectorFactory) -> None:
    """With 50 calls a window and a 20% share, the 11th feed request waits for the reset."""
    account.rate_limit = 50
    waits: list[int] = []
    connector = make_connector(feed_rate_share=0.2, page_size=50,
                               sleep=lambda s: waits.append(len(account.query_log)))
    connector.fetch(ConnectorState())            # not the feed: not counted against it
    with account.lock:
        account.query_log.clear()
    pos = connector.stream_position()
    for _ in range(5):
        pos = poll(connector, pos).position
    # 1 (position) + 4 (event types, users, events, roles) + 3 + 2: the 11th waits.
    assert waits and waits[0] == 10


def test_gaps(account: Account, make_connector: ConnectorFactory) -> None:
    """Too old for the retention, ahead of the server's clock, unreadable, or a failed query."""
    connector = make_connector(feed_retention="30d")
    old = iso_ms(datetime.now(UTC) - timedelta(days=31))
    with pytest.raises(StreamGap, match="retention"):
        poll(connector, FeedPosition(old).dump(PREFIX))
    ahead = iso_ms(datetime.now(UTC) + timedelta(hours=1))
    with pytest.raises(StreamGap, match="ahead"):
        poll(connector, FeedPosition(ahead).dump(PREFIX))
    with pytest.raises(StreamGap):
        poll(connector, "something-else")
    pos = connector.stream_position()
    account.events_failure = 400
    with pytest.raises(StreamGap):
        poll(connector, pos)


# ---------------------------------------------------------------- incremental fetch


def committed(connector: OneLoginConnector) -> ConnectorState:
    state = ConnectorState()
    connector.fetch(state)
    state.commit()
    return state


def test_fetch_in_feed_mode_equals_a_full_read(account: Account, ids: Seed,
                                               make_connector: ConnectorFactory) -> None:
    connector = make_connector(incremental="feed")
    state = committed(connector)
    account.delete_user(ids.users["u02"])
    account.update_user(ids.users["u03"], status=2)
    account.unassign(ids.roles["Sales"], ids.users["u22"])
    with account.lock:
        account.query_log.clear()
    snap = connector.fetch(state)
    assert snap.info["read"] == "incremental (feed)"
    assert ("/api/2/users", "limit=10") not in account.query_log
    assert snap.digest() == make_connector().fetch(ConnectorState()).digest()


def test_fetch_reads_in_full_after_a_gap(account: Account, make_connector: ConnectorFactory,
                                         ids: Seed) -> None:
    later = [0.0]
    connector = make_connector(incremental="feed", full_read_interval="1000d",
                               feed_retention="30d",
                               wall_clock=lambda: time.time() + later[0])
    state = committed(connector)
    later[0] = timedelta(days=31).total_seconds()
    assert connector.fetch(state).info["read"] == "full"
    # An events query that still fails after the retries may have lost events: a full read.
    account.events_failure = 500
    later[0] = 0.0
    assert connector.fetch(committed(connector)).info["read"] == "full"


def runner(emulator: OneLoginEmulator, scim: ScimServer, tmp_path: Path, ca: Path) -> Runner:
    profile = config.load(data={
        "profile": "onelogin-feed",
        "source": {"type": "onelogin", "base_url": emulator.url, "client_id": CLIENT_ID,
                   "client_secret": CLIENT_SECRET, "ca_file": str(ca),
                   "incremental": "feed"},
        "target": {"type": "scim", "url": scim.url, "token": SCIM_TOKEN},
        "sync": {"remove_missing": True, "max_revocation_ratio": 1.0, "max_revocations": 1000,
                 "max_membership_removal_ratio": 1.0, "min_source_ratio": 0.0},
        "state": {"path": str(tmp_path / "state.db")},
    })
    return Runner(profile, SqliteStore(profile.settings.state.path))


def test_incremental_sync_reaches_scim(account: Account, ids: Seed, emulator: OneLoginEmulator,
                                       scim_server: ScimServer, tmp_path: Path,
                                       tls: tuple[object, Path]) -> None:
    """Each edit reaches scim2-server through a feed read after one full sync."""
    def sync() -> None:
        result = runner(emulator, scim_server, tmp_path, tls[1]).run("sync")
        assert result.status in ("ok", "no-changes", "unchanged"), (result.error,
                                                                    result.refused)
        assert result.desired is not None
        assert result.desired.info["read"] == "incremental (feed)"

    first = runner(emulator, scim_server, tmp_path, tls[1]).run("sync")
    assert first.status == "ok", first.error

    def user(uid: int) -> dict[str, object] | None:
        found = [u for u in scim_server.all("Users") if u.get("externalId") == str(uid)]
        return found[0] if found else None

    def members(name: str) -> set[str]:
        ids_ = {str(u["id"]): str(u["externalId"]) for u in scim_server.all("Users")}
        group = next(g for g in scim_server.all("Groups") if g["displayName"] == name)
        return {ids_[str(m["value"])] for m in group.get("members") or []}  # type: ignore[union-attr, index]

    u, r = ids.users, ids.roles
    new = account.add_user("nina@example.com", username="nina", firstname="Nina")
    sync()
    assert user(new) is not None
    account.update_user(u["u05"], status=2)
    sync()
    assert user(u["u05"])["active"] is False  # type: ignore[index]
    account.update_user(u["u05"], status=1)
    sync()
    assert user(u["u05"])["active"] is True  # type: ignore[index]
    account.update_user(u["u06"], email="u06.new@example.com")
    sync()
    assert user(u["u06"])["userName"] == "u06.new@example.com"  # type: ignore[index]
    account.assign(r["Sales"], new)
    account.unassign(r["Engineering"], u["u01"])
    sync()
    assert str(new) in members("Sales") and str(u["u01"]) not in members("Engineering")
    account.delete_user(u["u09"])
    sync()
    gone = user(u["u09"])
    assert gone is None or gone["active"] is False


EDITS = st.lists(st.tuples(st.sampled_from(["create", "suspend", "unsuspend", "email", "assign",
                                            "unassign", "delete", "move"]),
                           st.integers(0, 60), st.integers(0, 10)), min_size=1, max_size=10)


def edit(account: Account, change: tuple[str, int, int], n: int) -> None:
    kind, a, b = change
    uids, rids, gids = sorted(account.users), sorted(account.roles), sorted(account.groups)
    if kind == "create" or not uids:
        account.add_user(f"new{n}@example.com", username=f"new{n}")
        return
    uid = uids[a % len(uids)]
    if kind == "suspend":
        account.update_user(uid, status=2)
    elif kind == "unsuspend":
        account.update_user(uid, status=1)
    elif kind == "email":
        account.update_user(uid, email=f"changed{n}@example.com")
    elif kind == "assign":
        account.assign(rids[b % len(rids)], uid)
    elif kind == "unassign":
        account.unassign(rids[b % len(rids)], uid)
    elif kind == "delete":
        account.delete_user(uid)
    elif kind == "move":
        account.update_user(uid, group_id=gids[b % len(gids)])


@settings(max_examples=15, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rounds=st.lists(EDITS, min_size=1, max_size=3),
       groups_from=st.sampled_from(["roles", "groups"]))
def test_random_edits_through_the_feed_equal_a_full_read(
        make_connector: ConnectorFactory, emulator: OneLoginEmulator,
        rounds: list[list[tuple[str, int, int]]], groups_from: str) -> None:
    """Whatever the edits, feed-merged fetches end where a full read does."""
    account = emulator.account
    with account.lock:
        for table in (account.users, account.roles, account.role_members, account.groups):
            table.clear()
        account.events.clear()
    seed(account)
    connector = make_connector(incremental="feed", groups_from=groups_from)
    state = committed(connector)
    n = 0
    for changes in rounds:
        for change in changes:
            n += 1
            edit(account, change, n)
        snap = connector.fetch(state)
        state.commit()
        assert snap.info["read"] == "incremental (feed)"
    assert snap.digest() == make_connector(groups_from=groups_from).fetch(
        ConnectorState()).digest()


@settings(max_examples=15, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rounds=st.lists(EDITS, min_size=1, max_size=4),
       groups_from=st.sampled_from(["roles", "groups"]))
def test_random_edits_through_changes_merge_into_a_full_read(
        make_connector: ConnectorFactory, emulator: OneLoginEmulator,
        rounds: list[list[tuple[str, int, int]]], groups_from: str) -> None:
    """The watch path: batches merged into the first snapshot equal a full read at the end."""
    account = emulator.account
    with account.lock:
        for table in (account.users, account.roles, account.role_members, account.groups):
            table.clear()
        account.events.clear()
    seed(account)
    connector = make_connector(groups_from=groups_from)
    position = connector.stream_position()
    first = connector.fetch(ConnectorState())
    users, groups = dict(first.users), dict(first.groups)
    n = 0
    for changes in rounds:
        for change in changes:
            n += 1
            edit(account, change, n)
        batch = connector.changes(position, 0)
        position = batch.position
        users.update(batch.users)
        groups.update(batch.groups)
        for uid in batch.removed_users | {s.external_id for s in batch.skipped}:
            users.pop(uid, None)
        for gid in batch.removed_groups:
            groups.pop(gid, None)
    full = make_connector(groups_from=groups_from).fetch(ConnectorState())
    assert users == dict(full.users)
    assert groups == dict(full.groups)


def test_check_in_feed_mode_probes_the_events_api(account: Account,
                                                  make_connector: ConnectorFactory) -> None:
    report = make_connector(incremental="feed").check()
    assert any("events" in item.name and item.ok for item in report.items)
    account.events_failure = 400
    assert not make_connector(incremental="feed").check().ok
