"""The google change feed: Admin audit activities, then the users and groups they name."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dirconnector import settings as config
from dirconnector.connectors import Changes, HasChangeStream, StreamGap
from dirconnector.connectors.feedkit import FeedPosition, iso_ms
from dirconnector.connectors.google.api import REPORTS_SCOPE, SCOPES
from dirconnector.connectors.google.connector import GoogleConnector
from dirconnector.connectors.google.stream import PREFIX
from dirconnector.state import SqliteStore
from dirconnector.state_space import ConnectorState
from dirconnector.sync import Runner
from tests.integration.scim.conftest import TOKEN as SCIM_TOKEN
from tests.integration.scim.conftest import ScimServer

Env = Any  # the conftest fixture (this folder is not a package)

pytestmark = pytest.mark.integration


@pytest.fixture
def feed_env(env: Env) -> Env:
    """The account with the Reports API scope delegated too."""
    env.directory.oauth.delegate(env.account.client_id, [*SCOPES, REPORTS_SCOPE])
    return env


def poll(connector: GoogleConnector, position: str) -> Changes:
    return connector.changes(position, 0)


def primed(env: Env, connector: GoogleConnector) -> str:
    position = connector.stream_position()
    connector.fetch(ConnectorState())
    position = poll(connector, position).position
    env.directory.calls.clear()
    return position


def ops(env: Env) -> list[str]:
    return [op for op, _ in env.directory.calls]


def test_check_names_the_missing_reports_scope(env: Env) -> None:
    """Without the Reports scope, check fails in feed mode and says which scope to add."""
    report = env.connector(incremental="feed").check()
    assert not report.ok
    assert REPORTS_SCOPE in report.items[-1].detail
    assert env.connector().stream_mode().mode == "marker"


def test_stream_mode_is_feed_with_the_scope(feed_env: Env) -> None:
    connector = feed_env.connector()
    assert isinstance(connector, HasChangeStream)
    assert connector.stream_mode().mode == "feed"
    assert feed_env.connector(incremental="feed").check().ok


def test_stream_mode_while_a_read_runs_in_another_thread(feed_env: Env) -> None:
    """watch reads on one thread while `check`, status or a test asks for the stream mode
    on another: each thread gets its own answers (httplib2 is not thread-safe, so the
    probe must not share the reads' connection: two threads on one socket read each
    other's bytes and both time out)."""
    import threading

    connector = feed_env.connector(timeout=3)
    expected = set(connector.fetch(ConnectorState()).users)
    failures: list[BaseException] = []
    reads: list[int] = []

    def reader() -> None:
        try:
            for _ in range(15):
                reads.append(len(set(connector.fetch(ConnectorState()).users) ^ expected))
        except BaseException as exc:  # reported by the assert below
            failures.append(exc)

    thread = threading.Thread(target=reader)
    thread.start()
    modes = []
    while thread.is_alive():
        modes.append(connector.stream_mode().mode)
    thread.join()
    assert not failures, failures
    assert reads == [0] * 15
    assert len(modes) >= 3 and set(modes) == {"feed"}


def test_quiet_poll_is_one_request(feed_env: Env) -> None:
    connector = feed_env.connector()
    batch = poll(connector, primed(feed_env, connector))
    assert batch.empty and ops(feed_env) == ["activities.list"]


def test_each_kind_of_change(feed_env: Env) -> None:
    """Create, suspend, unsuspend, rename, membership add/remove, a nested change, deletes."""
    d, org = feed_env.directory, feed_env.org
    connector = feed_env.connector()
    pos = primed(feed_env, connector)
    u, g = org.users, org.groups

    new = d.add_user("nina", "Nina", "New")
    batch = poll(connector, pos)
    assert batch.users[new].email == "nina@example.com"
    # "Everyone" holds the whole account (a CUSTOMER member): the new user joins it.
    assert new in batch.groups[g["all"]].member_ids
    pos = batch.position

    d.set_suspended(u["alice"], True)
    batch = poll(connector, pos)
    assert set(batch.users) == {u["alice"]} and not batch.users[u["alice"]].active
    pos = batch.position

    d.set_suspended(u["alice"], False)
    batch = poll(connector, pos)
    assert batch.users[u["alice"]].active
    pos = batch.position

    d.rename_user(u["bob"], "robert")
    batch = poll(connector, pos)
    assert batch.users[u["bob"]].email == "robert@example.com"
    pos = batch.position

    d.add_member(g["sales"], new)
    d.remove_member(g["sales"], u["carol"])
    batch = poll(connector, pos)
    assert new in batch.groups[g["sales"]].member_ids
    assert u["carol"] not in batch.groups[g["sales"]].member_ids
    pos = batch.position

    # A nested change: Platform sits inside Engineering; Engineering itself stays the same.
    d.add_member(g["platform"], u["carol"])
    batch = poll(connector, pos)
    assert u["carol"] in batch.groups[g["platform"]].member_ids
    assert g["platform"] in connector.fetch(ConnectorState()).groups[g["eng"]].subgroup_ids
    pos = batch.position

    d.delete_user(u["carol"])
    batch = poll(connector, pos)
    assert batch.removed_users == {u["carol"]}
    assert u["carol"] not in batch.groups[g["platform"]].member_ids
    pos = batch.position

    d.delete_group(g["sales"])
    batch = poll(connector, pos)
    assert batch.removed_groups == {g["sales"]}
    assert poll(connector, batch.position).empty


def test_events_seen_twice_are_handed_on_once(feed_env: Env) -> None:
    connector = feed_env.connector()
    pos = primed(feed_env, connector)
    feed_env.directory.set_suspended(feed_env.org.users["alice"], True)
    first = poll(connector, pos)
    assert set(first.users) == {feed_env.org.users["alice"]}
    assert poll(connector, first.position).empty


def test_the_feed_keeps_to_its_share_of_the_quota(feed_env: Env) -> None:
    """2,400 queries a minute, a share of 1/2400: the second feed request waits."""
    waits: list[float] = []
    s = feed_env.settings(feed_rate_share=1 / 2400)
    connector = GoogleConnector(s, sleep=waits.append)
    pos = primed(feed_env, connector)
    poll(connector, poll(connector, pos).position)
    assert waits and 0 < waits[0] <= 60


def test_gaps(feed_env: Env) -> None:
    connector = feed_env.connector()
    connector.fetch(ConnectorState())
    old = iso_ms(datetime.now(UTC) - timedelta(days=181))
    with pytest.raises(StreamGap, match="retention"):
        poll(connector, FeedPosition(old).dump(PREFIX))
    ahead = iso_ms(datetime.now(UTC) + timedelta(hours=1))
    with pytest.raises(StreamGap, match="ahead"):
        poll(connector, FeedPosition(ahead).dump(PREFIX))
    pos = connector.stream_position()
    feed_env.directory.fail("activities.list", status=400, reason="invalid", times=5)
    with pytest.raises(StreamGap):
        poll(connector, pos)


def test_no_search_queries_with_the_feed(feed_env: Env) -> None:
    with pytest.raises(ValueError, match="user_filter"):
        feed_env.settings(incremental="feed", user_filter="| orgUnitPath='/Sales'")


# ---------------------------------------------------------------- incremental fetch


def committed(connector: GoogleConnector) -> ConnectorState:
    state = ConnectorState()
    connector.fetch(state)
    state.commit()
    return state


def test_fetch_in_feed_mode_equals_a_full_read(feed_env: Env) -> None:
    d, org = feed_env.directory, feed_env.org
    connector = feed_env.connector(incremental="feed")
    state = committed(connector)
    d.delete_user(org.users["bob"])
    d.set_archived(org.users["alice"], True)
    d.add_member(org.groups["eng"], org.users["carol"])
    d.calls.clear()
    snap = connector.fetch(state)
    assert snap.info["read"] == "incremental (feed)"
    assert "users.list" not in ops(feed_env)
    assert snap.digest() == feed_env.connector().fetch(ConnectorState()).digest()


def test_fetch_reads_in_full_after_a_gap(feed_env: Env) -> None:
    later = [0.0]
    s = feed_env.settings(incremental="feed", full_read_interval="1000d")
    connector = GoogleConnector(s, sleep=feed_env.sleeps.append,
                                clock=lambda: time.time() + later[0])
    state = committed(connector)
    later[0] = timedelta(days=181).total_seconds()
    assert connector.fetch(state).info["read"] == "full"


def runner(env: Env, scim: ScimServer, tmp_path: Path) -> Runner:
    profile = config.load(data={
        "profile": "google-feed",
        "source": {"type": "google", "credentials_file": str(env.key_file),
                   "admin_email": "admin@example.com", "api_endpoint": env.emulator.base_url,
                   "ca_file": str(env.emulator.ca_file), "incremental": "feed"},
        "target": {"type": "scim", "url": scim.url, "token": SCIM_TOKEN},
        "sync": {"remove_missing": True, "max_revocation_ratio": 1.0, "max_revocations": 1000,
                 "max_membership_removal_ratio": 1.0, "min_source_ratio": 0.0},
        "state": {"path": str(tmp_path / "state.db")},
    })
    return Runner(profile, SqliteStore(profile.settings.state.path))


def test_incremental_sync_reaches_scim(feed_env: Env, scim_server: ScimServer,
                                       tmp_path: Path) -> None:
    d, u, g = feed_env.directory, feed_env.org.users, feed_env.org.groups

    def sync() -> Any:
        result = runner(feed_env, scim_server, tmp_path).run("sync")
        assert result.status in ("ok", "no-changes", "unchanged"), (result.error,
                                                                    result.refused)
        assert result.desired is not None
        assert result.desired.info["read"] == "incremental (feed)"
        return result

    def user(uid: str) -> dict[str, Any] | None:
        found = [x for x in scim_server.all("Users") if x.get("externalId") == uid]
        return found[0] if found else None

    def members(name: str) -> set[str]:
        ids = {str(x["id"]): str(x["externalId"]) for x in scim_server.all("Users")}
        group = next(x for x in scim_server.all("Groups") if x["displayName"] == name)
        return {ids[str(m["value"])] for m in group.get("members") or []}  # type: ignore[union-attr, index]

    first = runner(feed_env, scim_server, tmp_path).run("sync")
    assert first.status == "ok", first.error
    new = d.add_user("nina", "Nina", "New")
    sync()
    assert user(new) is not None
    d.set_suspended(u["alice"], True)
    sync()
    assert user(u["alice"])["active"] is False  # type: ignore[index]
    d.set_suspended(u["alice"], False)
    sync()
    assert user(u["alice"])["active"] is True  # type: ignore[index]
    d.rename_user(u["bob"], "robert")
    sync()
    assert user(u["bob"])["userName"] == "robert@example.com"  # type: ignore[index]
    d.add_member(g["sales"], new)
    d.remove_member(g["sales"], u["carol"])
    sync()
    assert new in members("Sales") and u["carol"] not in members("Sales")
    d.add_member(g["platform"], new)
    sync()
    assert new in members("Platform")
    d.delete_user(u["carol"])
    sync()
    gone = user(u["carol"])
    assert gone is None or gone["active"] is False


EDITS = st.lists(st.tuples(st.sampled_from(["create", "suspend", "unsuspend", "rename", "join",
                                            "leave", "delete", "archive", "nest",
                                            "rename_group", "drop_group"]),
                           st.integers(0, 40), st.integers(0, 10)), min_size=1, max_size=8)


def edit(d: Any, change: tuple[str, int, int], n: int) -> None:
    kind, a, b = change
    uids = sorted(k for k, v in d.users.items() if not v.get("isAdmin"))
    gids = sorted(d.groups)
    if kind == "create" or not uids:
        d.add_user(f"new{n}", "New", str(n))
        return
    uid = uids[a % len(uids)]
    if kind == "suspend":
        d.set_suspended(uid, True)
    elif kind == "unsuspend":
        d.set_suspended(uid, False)
    elif kind == "archive":
        d.set_archived(uid, not d.users[uid]["archived"])
    elif kind == "rename":
        d.rename_user(uid, f"renamed{n}")
    elif kind == "delete":
        d.delete_user(uid)
    elif not gids:
        return
    elif kind == "join":
        d.add_member(gids[b % len(gids)], uid)
    elif kind == "leave":
        gid = gids[b % len(gids)]
        if d.members[gid]:
            d.remove_member(gid, d.members[gid][a % len(d.members[gid])]["id"])
    elif kind == "nest" and len(gids) > 1:
        parent, child = gids[b % len(gids)], gids[(b + 1 + a) % len(gids)]
        if parent != child:
            d.add_member(parent, child)
    elif kind == "rename_group":
        d.rename_group(gids[b % len(gids)], f"Group {n}")
    elif kind == "drop_group":
        d.delete_group(gids[b % len(gids)])


@settings(max_examples=15, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rounds=st.lists(EDITS, min_size=1, max_size=3))
def test_random_edits_through_the_feed_equal_a_full_read(
        feed_env: Env, rounds: list[list[tuple[str, int, int]]]) -> None:
    """Whatever the edits (nesting included), feed-merged fetches end where a full read does."""
    d = feed_env.directory
    connector = feed_env.connector(incremental="feed", group_filter="exclude:Platform")
    state = committed(connector)
    n = 0
    for changes in rounds:
        for change in changes:
            n += 1
            edit(d, change, n)
        snap = connector.fetch(state)
        state.commit()
        assert snap.info["read"] == "incremental (feed)"
    full = feed_env.connector(group_filter="exclude:Platform").fetch(ConnectorState())
    assert snap.digest() == full.digest()
    # Reset the account for the next example.
    seed_again(feed_env)


def seed_again(env: Env) -> None:
    from tests.emulators.google.seed import seed

    d = env.directory
    with d.lock:
        d.users.clear()
        d.groups.clear()
        d.members.clear()
        d.activities.clear()
    env.org = seed(d)


def merged(users: dict[str, Any], groups: dict[str, Any], batch: Changes) -> None:
    """What the watch engine does with a batch: whole records in, removed and skipped out."""
    users.update(batch.users)
    groups.update(batch.groups)
    for uid in batch.removed_users | {s.external_id for s in batch.skipped}:
        users.pop(uid, None)
    for gid in batch.removed_groups:
        groups.pop(gid, None)


@settings(max_examples=15, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rounds=st.lists(EDITS, min_size=1, max_size=4))
def test_random_edits_through_changes_merge_into_a_full_read(
        feed_env: Env, rounds: list[list[tuple[str, int, int]]]) -> None:
    """The watch path: batches merged into the first snapshot equal a full read at the end."""
    d = feed_env.directory
    connector = feed_env.connector(group_filter="exclude:Platform")
    position = connector.stream_position()
    first = connector.fetch(ConnectorState())
    users, groups = dict(first.users), dict(first.groups)
    n = 0
    for changes in rounds:
        for change in changes:
            n += 1
            edit(d, change, n)
        batch = poll(connector, position)
        position = batch.position
        merged(users, groups, batch)
    full = feed_env.connector(group_filter="exclude:Platform").fetch(ConnectorState())
    assert users == dict(full.users)
    assert groups == dict(full.groups)
    seed_again(feed_env)
