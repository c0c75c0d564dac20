"""Okta (emulated) -> the independent SCIM server through incremental sync on the change feed."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dirconnector import settings as config
from dirconnector.connectors.okta.connector import OktaConnector
from dirconnector.state import SqliteStore
from dirconnector.state_space import ConnectorState
from dirconnector.sync import Runner
from tests.emulators.okta import OktaEmulator, OktaState
from tests.integration.scim.conftest import TOKEN as SCIM_TOKEN
from tests.integration.scim.conftest import ScimServer

from .conftest import TOKEN, Org, seed

pytestmark = pytest.mark.integration


def runner(emulator: OktaEmulator, scim: ScimServer, tmp_path: Path) -> Runner:
    profile = config.load(data={
        "profile": "okta-feed",
        "source": {"type": "okta", "org_url": emulator.url, "token": TOKEN,
                   "ca_file": str(emulator.ca_file), "incremental": "feed"},
        "target": {"type": "scim", "url": scim.url, "token": SCIM_TOKEN},
        "sync": {"remove_missing": True, "max_revocation_ratio": 1.0,
                 "max_revocations": 1000, "max_membership_removal_ratio": 1.0,
                 "min_source_ratio": 0.0},
        "state": {"path": str(tmp_path / "state.db")},
    })
    return Runner(profile, SqliteStore(profile.settings.state.path))


def scim_users(scim: ScimServer) -> dict[str, dict[str, object]]:
    return {str(u["externalId"]): u for u in scim.all("Users")}


def scim_members(scim: ScimServer, name: str) -> set[str]:
    users = {str(u["id"]): str(u["externalId"]) for u in scim.all("Users")}
    group = next(g for g in scim.all("Groups") if g["displayName"] == name)
    return {users[str(m["value"])] for m in group.get("members") or []}  # type: ignore[union-attr, index]


def test_incremental_sync_carries_each_change_to_scim(org: Org, emulator: OktaEmulator,
                                                      scim_server: ScimServer,
                                                      tmp_path: Path) -> None:
    """After one full sync, each edit reaches scim2-server through a feed read, not a full one."""
    first = runner(emulator, scim_server, tmp_path).run("sync")
    assert first.status == "ok", first.error
    st_, u, g = org.state, org.users, org.groups

    def sync() -> None:
        st_.requests.clear()
        result = runner(emulator, scim_server, tmp_path).run("sync")
        assert result.status in ("ok", "no-changes", "unchanged"), (result.error, result.refused)
        # A feed read: never the plain listing of every user.
        assert "/api/v1/users?limit=200" not in st_.api_requests()

    nina = st_.add_user("nina@example.com", "Nina", "New")
    sync()
    assert scim_users(scim_server)[nina]["active"] is True

    st_.set_status(u["bob"], "SUSPENDED")
    sync()
    assert scim_users(scim_server)[u["bob"]]["active"] is False

    st_.set_status(u["bob"], "ACTIVE")
    sync()
    assert scim_users(scim_server)[u["bob"]]["active"] is True

    st_.update_profile(u["alice"], email="alice.renamed@example.com")
    sync()
    assert scim_users(scim_server)[u["alice"]]["userName"] == "alice.renamed@example.com"

    st_.add_member(g["sales"], nina)
    st_.remove_member(g["eng"], u["alice"])
    sync()
    assert nina in scim_members(scim_server, "Sales")
    assert u["alice"] not in scim_members(scim_server, "Engineering")

    st_.set_status(u["alice"], "DEPROVISIONED")
    st_.delete_user(u["alice"])
    sync()
    alice = scim_users(scim_server).get(u["alice"])
    assert alice is None or alice["active"] is False

    st_.requests.clear()
    again = runner(emulator, scim_server, tmp_path).run("plan")
    assert again.status in ("no-changes", "unchanged")


EDITS = st.lists(st.tuples(st.sampled_from(["create", "suspend", "unsuspend", "email",
                                            "join", "leave", "delete", "rename",
                                            "drop_group"]),
                           st.integers(0, 50), st.integers(0, 50)),
                 min_size=1, max_size=12)


def apply_edit(state: OktaState, edit: tuple[str, int, int], n: int) -> None:
    kind, a, b = edit
    uids = sorted(state.users)
    gids = sorted(state.groups)
    if kind == "create" or not uids:
        state.add_user(f"new{n}@example.com", "New", str(n))
        return
    uid = uids[a % len(uids)]
    status = state.users[uid]["status"]
    if kind == "suspend" and status == "ACTIVE":
        state.set_status(uid, "SUSPENDED")
    elif kind == "unsuspend" and status == "SUSPENDED":
        state.set_status(uid, "ACTIVE")
    elif kind == "email":
        state.update_profile(uid, email=f"changed{n}@example.com")
    elif kind == "delete":
        if status != "DEPROVISIONED":
            state.set_status(uid, "DEPROVISIONED")
        state.delete_user(uid)
    elif gids and kind == "join":
        state.add_member(gids[b % len(gids)], uid)
    elif gids and kind == "leave":
        gid = gids[b % len(gids)]
        if state.members[gid]:
            state.remove_member(gid, state.members[gid][a % len(state.members[gid])])
    elif gids and kind == "rename":
        state.rename_group(gids[b % len(gids)], f"Renamed {n}")
    elif gids and kind == "drop_group":
        state.delete_group(gids[b % len(gids)])


@settings(max_examples=20, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rounds=st.lists(EDITS, min_size=1, max_size=3))
def test_random_edits_through_the_feed_equal_a_full_read(
        emulator: OktaEmulator, make: Callable[..., OktaConnector],
        rounds: list[list[tuple[str, int, int]]]) -> None:
    """Whatever the edits, feed-merged fetches end where a full read does (plan --full empty)."""
    state = emulator.use(OktaState())
    seed(state)
    connector = make(incremental="feed")
    cstate = ConnectorState()
    connector.fetch(cstate)
    cstate.commit()
    n = 0
    for edits in rounds:
        for edit in edits:
            n += 1
            apply_edit(state, edit, n)
        snap = connector.fetch(cstate)
        cstate.commit()
        assert snap.info["read"] == "incremental (feed)"
    full = make(incremental="off").fetch(ConnectorState())
    assert snap.digest() == full.digest()
    assert snap.skipped_ids == full.skipped_ids


@settings(max_examples=15, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rounds=st.lists(EDITS, min_size=1, max_size=4))
def test_random_edits_through_changes_merge_into_a_full_read(
        emulator: OktaEmulator, make: Callable[..., OktaConnector],
        rounds: list[list[tuple[str, int, int]]]) -> None:
    """The watch path: batches merged into the first snapshot equal a full read at the end."""
    state = emulator.use(OktaState())
    seed(state)
    connector = make()
    position = connector.stream_position()
    first = connector.fetch(ConnectorState())
    users, groups = dict(first.users), dict(first.groups)
    n = 0
    for edits in rounds:
        for change in edits:
            n += 1
            apply_edit(state, change, n)
        batch = connector.changes(position, 0)
        position = batch.position
        users.update(batch.users)
        groups.update(batch.groups)
        for uid in batch.removed_users | {s.external_id for s in batch.skipped}:
            users.pop(uid, None)
        for gid in batch.removed_groups:
            groups.pop(gid, None)
    full = make(incremental="off").fetch(ConnectorState())
    assert users == dict(full.users)
    assert groups == dict(full.groups)
