"""The Entra ID change stream (connectors/azure/stream.py) against the Graph emulator,
over real HTTPS with msal tokens."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest

from dirconnector.connectors import Changes, HasChangeStream, StreamGap
from dirconnector.connectors.azure.connector import AzureConnector
from dirconnector.model import Snapshot
from dirconnector.state_space import ConnectorState
from tests.emulators.graph import GraphEmulator
from tests.integration.azure.conftest import Tenant

pytestmark = pytest.mark.integration


def full_read(
    make_connector: Callable[..., AzureConnector],
    attributes: frozenset[str] = frozenset(),
    **options: Any,
) -> Snapshot:
    c = make_connector(**options)
    if attributes:
        c.read_attributes(attributes)
    return c.fetch(ConnectorState(force_full=True))


def started(
    make_connector: Callable[..., AzureConnector],
    attributes: frozenset[str] = frozenset(),
    **options: Any,
) -> tuple[AzureConnector, str]:
    """A connector that took a position and then read in full, as watch starts (reading
    ``attributes`` too, as an attribute mapping asks)."""
    c = make_connector(**options)
    if attributes:
        c.read_attributes(attributes)
    pos = c.stream_position()
    c.fetch(ConnectorState())
    return c, pos


def test_is_a_change_stream_in_delta_mode(make_connector: Callable[..., AzureConnector]) -> None:
    """The connector claims the capability, and says how often it polls."""
    c = make_connector(poll_interval="20s")
    assert isinstance(c, HasChangeStream)
    mode = c.stream_mode()
    assert mode.mode == "delta" and "every 20 s" in mode.reason


def test_poll_interval_below_a_second_is_refused(
    make_connector: Callable[..., AzureConnector],
) -> None:
    """poll_interval under 1 s is a configuration error naming the field."""
    with pytest.raises(ValueError, match="poll_interval"):
        make_connector(poll_interval="0.2s")


def test_quiet_poll_costs_two_requests(
    make_connector: Callable[..., AzureConnector], tenant: Tenant, emulator: GraphEmulator
) -> None:
    """Nothing changed: one delta request for users, one for groups, and an empty batch."""
    c, pos = started(make_connector)
    emulator.reset_log()
    batch = c.changes(pos, 0)
    assert batch.empty
    assert [s.path for s in emulator.graph_calls()] == ["users/delta", "groups/delta"]


def test_polls_are_poll_interval_apart(
    make_connector: Callable[..., AzureConnector], tenant: Tenant, emulator: GraphEmulator
) -> None:
    """A second call inside poll_interval sends nothing; it waits for the interval."""
    c, pos = started(make_connector, poll_interval="1s")
    first = c.changes(pos, 0)
    emulator.reset_log()
    again = c.changes(first.position, 0.2)
    assert again.empty and emulator.graph_calls() == []
    t0 = time.monotonic()
    c.changes(again.position, 2.5)
    assert len(emulator.graph_calls()) in (4, 6)  # polls at ~1 s and ~2 s, maybe ~3 s
    assert time.monotonic() - t0 >= 2.0


def test_each_change_kind_as_fetch_maps_it(
    make_connector: Callable[..., AzureConnector], tenant: Tenant, emulator: GraphEmulator
) -> None:
    """Create, disable, email change, soft and hard delete, membership, nesting and rename
    edits arrive as the records a full read gives; a new guest is skipped as fetch skips it."""
    d = emulator.directory
    c, pos = started(make_connector)
    new = d.add_user("nina@contoso.com", "Nina New")
    d.disable_user(tenant.bob)
    d.update_user(tenant.alice, mail="alice.able@contoso.com")
    d.soft_delete_user(tenant.dave)
    d.add_member(tenant.sales, new)
    nested = d.add_group("Sales Nordics", [tenant.alice])
    d.add_member(tenant.sales, nested)
    d.rename_group(tenant.platform, "Platform Team")
    d.add_guest("gus@fabrikam.com", "Gus Guest")

    batch = c.changes(pos, 0)
    full = full_read(make_connector)
    assert set(batch.users) == {new, tenant.bob, tenant.alice}
    for uid in batch.users:
        assert batch.users[uid] == full.users[uid]
    assert batch.users[tenant.bob].active is False
    assert batch.users[tenant.alice].email == "alice.able@contoso.com"
    assert batch.removed_users == {tenant.dave}
    assert set(batch.groups) == {tenant.sales, nested, tenant.platform}
    for gid in batch.groups:
        assert batch.groups[gid] == full.groups[gid]
    assert batch.groups[tenant.sales].member_ids == {tenant.bob, new}  # dave went with delete
    assert batch.groups[tenant.sales].subgroup_ids == {nested}
    assert [s.ref for s in batch.skipped if s.reason == "external member"] == [
        "gus_fabrikam.com#EXT#@contoso.onmicrosoft.com"
    ]


def test_hard_delete_and_group_delete_remove(
    make_connector: Callable[..., AzureConnector], tenant: Tenant, emulator: GraphEmulator
) -> None:
    """A user deleted for good and a deleted group are removals; the parent group of the
    deleted group loses it as a subgroup."""
    d = emulator.directory
    c, pos = started(make_connector)
    d.hard_delete_user(tenant.carol)
    d.delete_group(tenant.platform)
    batch = c.changes(pos, 0)
    assert batch.removed_users == {tenant.carol}
    assert batch.removed_groups == {tenant.platform}
    assert batch.groups[tenant.engineering].subgroup_ids == frozenset()


def test_filters_apply_as_in_fetch(
    make_connector: Callable[..., AzureConnector], tenant: Tenant, emulator: GraphEmulator
) -> None:
    """With include_groups, a user who joins the group enters the scope and one who leaves
    it is removed, as a full read with the same filter would say."""
    d = emulator.directory
    c, pos = started(make_connector, include_groups=["Sales"])
    d.add_member(tenant.sales, tenant.alice)
    d.remove_member(tenant.sales, tenant.dave)
    batch = c.changes(pos, 0)
    full = full_read(make_connector, include_groups=["Sales"])
    assert batch.users[tenant.alice] == full.users[tenant.alice]
    assert batch.removed_users == {tenant.dave}
    assert tenant.dave not in full.users


def test_cut_resumes_without_losing_or_repeating(
    make_connector: Callable[..., AzureConnector], tenant: Tenant, emulator: GraphEmulator
) -> None:
    """A new process resuming from the saved position gets exactly the later changes."""
    d = emulator.directory
    first, pos = started(make_connector)
    d.update_user(tenant.alice, displayName="Alice One")
    batch1 = first.changes(pos, 0)
    d.update_user(tenant.bob, displayName="Bob Two")  # written while cut off

    second = make_connector()  # no read in this process
    batch2 = second.changes(batch1.position, 0)
    assert set(batch1.users) == {tenant.alice}
    assert set(batch2.users) == {tenant.bob}
    assert batch2.users[tenant.bob].display_name == "Bob Two"


@pytest.mark.parametrize("reset", [False, True], ids=["syncStateNotFound", "410-resync"])
def test_expired_delta_token_is_a_gap(
    make_connector: Callable[..., AzureConnector],
    tenant: Tenant,
    emulator: GraphEmulator,
    reset: bool,
) -> None:
    """An expired token (400 syncStateNotFound) or a reset (410 resyncRequired) is a StreamGap."""
    c, pos = started(make_connector)
    emulator.directory.expire_delta_tokens(reset=reset)
    with pytest.raises(StreamGap):
        c.changes(pos, 0)


def test_throttled_poll_waits_and_succeeds(
    make_connector: Callable[..., AzureConnector], tenant: Tenant, emulator: GraphEmulator
) -> None:
    """429 with Retry-After on a poll is retried; the change still arrives."""
    c, pos = started(make_connector)
    emulator.directory.disable_user(tenant.alice)
    emulator.reset_log()
    emulator.throttle(2, retry_after="0.05")
    batch = c.changes(pos, 0)
    assert batch.users[tenant.alice].active is False
    assert [s.status for s in emulator.graph_calls()][:2] == [429, 429]


def test_garbage_position_is_a_gap(
    make_connector: Callable[..., AzureConnector], tenant: Tenant
) -> None:
    """A position that is not a pair of delta links raises StreamGap."""
    with pytest.raises(StreamGap):
        make_connector().changes("dirsync:abc", 0)


MANAGED = frozenset({"manager"})
"""Read each user's manager, as a mapping of the enterprise manager asks."""


def _same_batch(fast: Changes, rebuilt: Changes) -> None:
    assert dict(fast.users) == dict(rebuilt.users)
    assert dict(fast.groups) == dict(rebuilt.groups)
    assert fast.removed_users == rebuilt.removed_users
    assert fast.removed_groups == rebuilt.removed_groups
    assert set(fast.skipped) == set(rebuilt.skipped)


@pytest.mark.parametrize(
    "options", [{}, {"group_filter": "exclude:Platform"}], ids=["all-groups", "filtered-nested"]
)
def test_random_edits_take_the_fast_path_and_equal_a_rebuild(
    make_connector: Callable[..., AzureConnector],
    tenant: Tenant,
    emulator: GraphEmulator,
    options: dict[str, Any],
) -> None:
    """Over 200 random edits in 80 polls (creates, disables, soft and hard deletes, users
    turning guest and back, managers set, changed and cleared (``manager@delta``),
    memberships, nesting, renames across the group filter), each
    fast-path batch equals the batch a whole-snapshot rebuild gives for the same items, no
    batch rebuilds, and the batches merged into the first full read give a full read."""
    import random

    rng = random.Random(20)
    d = emulator.directory
    c, pos = started(make_connector, MANAGED, **options)
    slow, slow_pos = started(make_connector, MANAGED, **options)
    for conn in (c, slow):
        conn._azure_stream().poll_interval = 0.0  # no 1 s pause between the test's polls
    slow._azure_stream().fast_path = False
    first = full_read(make_connector, MANAGED, **options)
    users, groups = dict(first.users), dict(first.groups)
    n = 0

    def edit() -> None:
        nonlocal n
        n += 1
        live, gids = list(d.users), list(d.groups)
        kind = rng.choice(
            [
                "disable",
                "enable",
                "mail",
                "member+",
                "member-",
                "nest",
                "unnest",
                "rename",
                "new",
                "new-member",
                "soft-delete",
                "hard-delete",
                "restore",
                "group-",
                "guest",
                "to-guest",
                "to-member",
                "manager",
                "manager",
            ]
        )
        if kind == "disable":
            d.disable_user(rng.choice(live))
        elif kind == "enable":
            d.enable_user(rng.choice(live))
        elif kind == "mail":
            d.update_user(rng.choice(live), mail=f"m{n}@contoso.com")
        elif kind == "member+":
            d.add_member(rng.choice(gids), rng.choice(live))
        elif kind == "member-":
            gid = rng.choice(gids)
            if d.members[gid]:
                d.remove_member(gid, rng.choice(d.members[gid]))
        elif kind == "nest":
            a, b = rng.sample(gids, 2)
            d.add_member(a, b)
        elif kind == "unnest":
            gid = rng.choice(gids)
            subs = [m for m in d.members[gid] if m in d.groups]
            if subs:
                d.remove_member(gid, rng.choice(subs))
        elif kind == "rename":
            d.rename_group(rng.choice(gids), rng.choice(["Platform", f"G{n}"]))
        elif kind == "new":
            d.add_user(f"n{n}@contoso.com", f"New {n}")
        elif kind == "new-member":
            d.add_member(rng.choice(gids), d.add_user(f"n{n}@contoso.com", f"New {n}"))
        elif kind == "soft-delete" and len(live) > 3:
            d.soft_delete_user(rng.choice(live))
        elif kind == "hard-delete" and len(live) > 3:
            d.hard_delete_user(rng.choice(live))
        elif kind == "restore" and d.deleted_users:
            d.restore_user(rng.choice(list(d.deleted_users)))
        elif kind == "group-" and len(gids) > 3:
            d.delete_group(rng.choice(gids))
        elif kind == "guest":
            d.add_guest(f"g{n}@fabrikam.com", f"Guest {n}")
        elif kind == "to-guest":
            d.update_user(rng.choice(live), userType="Guest")
        elif kind == "to-member":
            d.update_user(rng.choice(live), userType="Member")
        elif kind == "manager":
            d.set_manager(rng.choice(live), rng.choice([*live, None]))
        if rng.random() < 0.15:
            d.add_group(f"New group {n}", rng.sample(list(d.users), 2))

    for _ in range(80):
        for _ in range(rng.choice([1, 1, 2, 4, 5])):
            edit()
        batch, rebuilt = c.changes(pos, 0), slow.changes(slow_pos, 0)
        _same_batch(batch, rebuilt)
        pos, slow_pos = batch.position, rebuilt.position
        users.update(batch.users)
        groups.update(batch.groups)
        for uid in batch.removed_users:
            users.pop(uid, None)
        for gid in batch.removed_groups:
            groups.pop(gid, None)
    full = full_read(make_connector, MANAGED, **options)
    assert users == dict(full.users)
    assert groups == dict(full.groups)
    assert sum(1 for u in users.values() if dict(u.attributes).get("manager")) >= 3
    stream = c._azure_stream()
    assert stream.polls == 80 and stream.rebuilds == 0
    assert slow._azure_stream().rebuilds >= 60  # polls with items (a few edits are no-ops)


def test_a_duplicate_email_rebuilds_until_it_is_gone(
    make_connector: Callable[..., AzureConnector], tenant: Tenant, emulator: GraphEmulator
) -> None:
    """Two active users with one email: neither is synced, which only a rebuild can tell
    (the duplicate's partner did not change); once one email changes, both are back and
    the batches after that take the fast path again."""
    d = emulator.directory
    c, pos = started(make_connector)
    stream = c._azure_stream()
    stream.poll_interval = 0.0
    d.update_user(tenant.bob, mail="alice@contoso.com")
    batch = c.changes(pos, 0)
    assert batch.removed_users == {tenant.alice, tenant.bob}
    assert stream.rebuilds == 1
    d.update_user(tenant.bob, mail="bob@contoso.com")
    batch = c.changes(batch.position, 0)
    full = full_read(make_connector)
    assert batch.users == {k: full.users[k] for k in (tenant.alice, tenant.bob)}
    assert stream.rebuilds == 2
    d.disable_user(tenant.dave)
    c.changes(batch.position, 0)
    assert stream.rebuilds == 2


def test_member_of_a_filtered_out_nested_group_reaches_its_parent(
    make_connector: Callable[..., AzureConnector], tenant: Tenant, emulator: GraphEmulator
) -> None:
    """Platform is filtered out and nested in Engineering: a user added to Platform becomes
    a member of Engineering, as a full read looks through the filtered-out group."""
    c, pos = started(make_connector, group_filter="exclude:Platform")
    emulator.directory.add_member(tenant.platform, tenant.dave)
    batch = c.changes(pos, 0)
    full = full_read(make_connector, group_filter="exclude:Platform")
    assert batch.groups[tenant.engineering] == full.groups[tenant.engineering]
    assert tenant.dave in batch.groups[tenant.engineering].member_ids
    assert c._azure_stream().rebuilds == 0


def test_a_poll_graph_keeps_refusing_waits_for_retry_after(
    make_connector: Callable[..., AzureConnector], tenant: Tenant, emulator: GraphEmulator
) -> None:
    """When Graph refuses a poll with 429 past the client's retries, the poll fails, and the
    next one is not sent before the last Retry-After has passed."""
    from dirconnector.errors import IncompleteRead

    c, pos = started(make_connector, poll_interval="1s")
    emulator.throttle(float("inf"), retry_after="30")
    with pytest.raises(IncompleteRead):
        c.changes(pos, 0)
    emulator.throttle(0)
    emulator.reset_log()
    assert c.changes(pos, 1.5).empty  # past poll_interval (1 s), within Retry-After
    assert emulator.graph_calls() == []


def test_mapped_properties_and_the_manager_arrive_in_a_batch(
    make_connector: Callable[..., AzureConnector], tenant: Tenant, emulator: GraphEmulator
) -> None:
    """With jobTitle and the manager mapped, the stream's users deltaLink selects both: a
    changed jobTitle, a new manager and a removed one arrive as a full read maps them."""
    d = emulator.directory
    names = frozenset({"jobTitle", "manager"})
    d.set_manager(tenant.dave, tenant.bob)
    c, pos = started(make_connector, names)
    c._azure_stream().poll_interval = 0.0
    d.update_user(tenant.alice, jobTitle="Staff Engineer")
    d.set_manager(tenant.alice, tenant.bob)
    d.set_manager(tenant.dave, None)
    batch = c.changes(pos, 0)
    full = full_read(make_connector, names)
    assert set(batch.users) == {tenant.alice, tenant.dave}
    assert batch.users[tenant.alice] == full.users[tenant.alice]
    assert dict(batch.users[tenant.alice].attributes) == {
        "jobTitle": "Staff Engineer",
        "manager": tenant.bob,
    }
    assert batch.users[tenant.dave] == full.users[tenant.dave]
    assert "manager" not in dict(batch.users[tenant.dave].attributes)
    assert c._azure_stream().rebuilds == 0
