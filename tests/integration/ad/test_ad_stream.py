"""The Active Directory change stream (connectors/ldap/dirsync.py) against a real Samba DC.

Both modes run every change test: ``dirsync`` as an account granted "Replicating
Directory Changes" (samba-tool dsacl, as an admin would grant it), ``usn`` as the
plain read account, which the DC refuses DirSync. Each test writes its own objects
(named ``st-...``) with an admin connection, so tests do not depend on each other.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import ldap3
import pytest

from dirconnector.connectors import Changes, StreamGap
from dirconnector.model import Snapshot
from dirconnector.state_space import ConnectorState
from tests.integration.ad.conftest import AdServer
from tests.integration.ad.streams import DISABLED, STREAMER_PASSWORD, Admin, names

pytestmark = pytest.mark.integration


@pytest.fixture(params=["dirsync", "usn"])
def stream_settings(
    request: pytest.FixtureRequest, ad_settings: Callable[..., Any], streamer: str
) -> Callable[..., Any]:
    """Settings for one mode: the granted account (dirsync) or the plain reader (usn)."""

    def make(**overrides: Any) -> Any:
        if request.param == "dirsync":
            overrides = {"bind_dn": streamer, "password": STREAMER_PASSWORD, **overrides}
        return ad_settings(poll_interval="0.2s", **overrides)

    make.mode = request.param  # type: ignore[attr-defined]
    return make


def connector(settings: Any) -> Any:
    from dirconnector.connectors.ldap.connector import LdapConnector

    return LdapConnector(settings)


@pytest.fixture
def stream(stream_settings: Callable[..., Any]) -> Iterator[Any]:
    c = connector(stream_settings())
    assert c.stream_mode().mode == stream_settings.mode  # type: ignore[attr-defined]
    yield c
    c.close()


def drain(c: Any, position: str, wait: float = 3.0) -> Changes:
    """The changes since ``position``, merged over the few polls they may take."""
    batch = c.changes(position, wait)
    return batch


def fetch(settings: Any) -> Snapshot:
    snap: Snapshot = connector(settings).fetch(ConnectorState())
    return snap


def test_mode_is_usn_without_the_right_and_says_why(ad_settings: Callable[..., Any]) -> None:
    """The plain read account is refused DirSync, so the stream polls uSNChanged and says why."""
    c = connector(ad_settings())
    mode = c.stream_mode()
    c.close()
    assert mode.mode == "usn"
    assert "Replicating Directory Changes" in mode.reason
    assert "insufficient" in mode.reason.lower()
    assert "deletions are not visible" not in mode.reason  # the reader may read tombstones


def test_mode_says_when_deletions_are_invisible(
    ad_settings: Callable[..., Any], admin: Admin, ad_server: AdServer
) -> None:
    """An account that may not read CN=Deleted Objects is told deletions wait for a full read."""
    name = f"st-blind-{next(names)}"
    dn = f"CN={name},OU=Service Accounts,{ad_server.ou}"
    admin.conn.add(dn, ["top", "person", "organizationalPerson", "user"], {"sAMAccountName": name})
    ad_server.samba_tool("user", "setpassword", name, f"--newpassword={STREAMER_PASSWORD}")
    ad_server.samba_tool("user", "enable", name)
    c = connector(ad_settings(bind_dn=dn, password=STREAMER_PASSWORD))
    mode = c.stream_mode()
    c.close()
    assert mode.mode == "usn" and "deletions are not visible" in mode.reason


def test_mode_is_dirsync_with_the_right(ad_settings: Callable[..., Any], streamer: str) -> None:
    """An account granted Replicating Directory Changes streams through DirSync."""
    c = connector(ad_settings(bind_dn=streamer, password=STREAMER_PASSWORD))
    assert c.stream_mode().mode == "dirsync"
    c.close()


def test_quiet_directory_gives_an_empty_batch(stream: Any) -> None:
    """Nothing written: the call waits, then returns an empty batch at the same position."""
    pos = stream.stream_position()
    batch = stream.changes(pos, 0.5)
    assert batch.empty and batch.position == pos


def test_each_change_kind_as_fetch_maps_it(
    stream: Any, stream_settings: Callable[..., Any], admin: Admin
) -> None:
    """Create, disable, email change, rename, move, membership and nesting edits arrive as
    the records a full read gives for those objects."""
    keep = admin.user()
    renamed = admin.user()
    moved = admin.user()
    sub = admin.group(keep)
    grp = admin.group(renamed)
    pos = stream.stream_position()

    new = admin.user()
    admin.modify(keep, userAccountControl=str(DISABLED))
    address = f"renamed.{next(names)}@dirconn.test"  # unique: a duplicate is skipped
    admin.modify(renamed, mail=address)
    renamed = admin.rename(renamed, "CN=st-renamed-" + str(next(names)))
    moved = admin.rename(moved, moved.split(",", 1)[0], f"OU=Service Accounts,{admin.ad.ou}")
    admin.add_members(grp, new, sub)
    admin.remove_members(grp, renamed)
    admin.add_members(grp, moved)

    batch = drain(stream, pos)
    ids = {dn: admin.guid(dn) for dn in (keep, renamed, moved, new, sub, grp)}
    full = fetch(stream_settings())
    for dn in (keep, renamed, moved, new):
        assert batch.users[ids[dn]] == full.users[ids[dn]], dn
    assert batch.users[ids[keep]].active is False
    assert batch.users[ids[renamed]].email == address
    assert batch.groups[ids[grp]] == full.groups[ids[grp]]
    assert batch.groups[ids[grp]].member_ids == {ids[new], ids[moved]}
    assert batch.groups[ids[grp]].subgroup_ids == {ids[sub]}
    assert not batch.removed_users and not batch.removed_groups
    assert all(batch.seen_at[ids[dn]] > 0 for dn in (keep, new))


def test_delete_and_move_out_of_scope_remove(stream: Any, admin: Admin) -> None:
    """A deleted user, a user moved out of the base and a deleted group are removals; the
    group that held the deleted user comes back without it."""
    gone, out, stay = admin.user(), admin.user(), admin.user()
    grp = admin.group(gone, stay)
    doomed = admin.group(stay)
    ids = {dn: admin.guid(dn) for dn in (gone, out, stay, grp, doomed)}
    pos = stream.stream_position()

    admin.delete(gone)
    admin.rename(out, out.split(",", 1)[0], f"CN=Users,{admin.ad.base_dn}")
    admin.delete(doomed)

    batch = drain(stream, pos)
    assert batch.removed_users == {ids[gone], ids[out]}
    assert batch.removed_groups == {ids[doomed]}
    assert batch.groups[ids[grp]].member_ids == {ids[stay]}


def test_deleted_user_with_include_deleted_is_an_inactive_user(
    stream_settings: Callable[..., Any], admin: Admin
) -> None:
    """With include_deleted, a deletion arrives as fetch gives a tombstone: inactive, same email."""
    c = connector(stream_settings(include_deleted=True))
    gone = admin.user()
    ext = admin.guid(gone)
    pos = c.stream_position()
    c.changes(pos, 0)  # the index sees the user alive
    admin.delete(gone)
    batch = c.changes(pos, 3.0)
    c.close()
    user = batch.users[ext]
    assert user.active is False and user.email == gone.split(",")[0][3:] + "@dirconn.test"


def test_cut_resumes_without_losing_or_repeating(
    stream_settings: Callable[..., Any], admin: Admin
) -> None:
    """A stream dropped after a batch resumes from the saved position in a new process:
    the next batch has exactly the changes written since, none of the earlier ones."""
    a, b = admin.user(), admin.user()
    first = connector(stream_settings())
    p0 = first.stream_position()
    admin.modify(a, displayName="First change")
    batch1 = first.changes(p0, 3.0)
    first.close()  # the cut
    admin.modify(b, displayName="Second change")
    admin.modify(a, givenName="Later")

    second = connector(stream_settings())  # a new process, same position
    batch2 = second.changes(batch1.position, 3.0)
    again = second.changes(batch2.position, 0.3)
    second.close()
    ga, gb = admin.guid(a), admin.guid(b)
    assert set(batch1.users) == {ga}
    assert set(batch2.users) == {ga, gb}
    assert batch2.users[ga].given_name == "Later"
    assert batch2.users[gb].display_name == "Second change"
    assert again.empty


def test_position_from_the_future_is_a_gap(stream: Any) -> None:
    """A stored USN above the DC's (a DC restored from backup) raises StreamGap."""
    from dirconnector.connectors.ldap.dirsync import Position

    now = Position.parse(stream.stream_position())
    restored = Position(now.mode, now.dc, now.usn + 100_000, now.cookie).text()
    with pytest.raises(StreamGap, match="restored"):
        stream.changes(restored, 0)


def test_position_from_another_dc_is_a_gap(stream: Any) -> None:
    """USNs are per DC: a position taken on another DC raises StreamGap."""
    from dirconnector.connectors.ldap.dirsync import Position

    now = Position.parse(stream.stream_position())
    other = Position(now.mode, "CN=NTDS Settings,CN=DC2", now.usn, now.cookie).text()
    with pytest.raises(StreamGap, match="DC"):
        stream.changes(other, 0)


def test_garbage_position_is_a_gap(stream: Any) -> None:
    """A position that is not one of ours raises StreamGap, not a crash."""
    with pytest.raises(StreamGap):
        stream.changes("not-a-position", 0)


def test_invalid_dirsync_cookie_is_a_gap(
    ad_settings: Callable[..., Any], streamer: str, admin: Admin
) -> None:
    """A DirSync cookie the DC refuses raises StreamGap."""
    from dirconnector.connectors.ldap.dirsync import Position

    c = connector(ad_settings(bind_dn=streamer, password=STREAMER_PASSWORD))
    now = Position.parse(c.stream_position())
    bad = Position("dirsync", now.dc, now.usn, b"\x01" * 40).text()
    admin.user()
    with pytest.raises(StreamGap, match="cookie"):
        c.changes(bad, 2.0)
    c.close()


def test_random_edits_merged_equal_a_full_read(
    stream: Any, stream_settings: Callable[..., Any], admin: Admin
) -> None:
    """Batches merged into a full read give what a full read gives after 40 random edits
    (disable, enable, mail, rename, moves in and out of scope, deletes, memberships,
    nesting, new users and groups) in 15 polls."""
    import random

    rng = random.Random(20)
    people = [admin.user() for _ in range(6)]
    teams = [admin.group(*people[:2]), admin.group(people[2])]
    outside = f"CN=Users,{admin.ad.base_dn}"
    moved_out: list[str] = []
    pos = stream.stream_position()
    first = fetch(stream_settings())
    users, groups = dict(first.users), dict(first.groups)

    def edit() -> None:
        kind = rng.choice(
            [
                "disable",
                "enable",
                "mail",
                "rename",
                "move-out",
                "move-in",
                "delete",
                "member+",
                "member-",
                "nest",
                "new",
                "new-group",
                "group-",
            ]
        )
        if kind in ("disable", "enable") and people:
            flag = DISABLED if kind == "disable" else DISABLED & ~0x2
            admin.modify(rng.choice(people), userAccountControl=str(flag))
        elif kind == "mail" and people:
            admin.modify(rng.choice(people), mail=f"r{next(names)}@dirconn.test")
        elif kind == "rename" and people:
            i = rng.randrange(len(people))
            people[i] = admin.rename(people[i], f"CN=st-r{next(names)}")
        elif kind == "move-out" and people:
            i = rng.randrange(len(people))
            moved_out.append(admin.rename(people[i], people[i].split(",", 1)[0], outside))
            del people[i]
        elif kind == "move-in" and moved_out:
            dn = moved_out.pop()
            people.append(admin.rename(dn, dn.split(",", 1)[0], admin.people))
        elif kind == "delete" and len(people) > 2:
            admin.delete(people.pop(rng.randrange(len(people))))
        elif kind == "member+" and people and teams:
            with contextlib.suppress(ldap3.core.exceptions.LDAPEntryAlreadyExistsResult):
                admin.add_members(rng.choice(teams), rng.choice(people))
        elif kind == "member-" and teams:
            team = rng.choice(teams)
            admin.conn.search(team, "(objectClass=*)", ldap3.BASE, attributes=["member"])
            held = admin.conn.response[0]["attributes"].get("member") or []
            if held:
                admin.remove_members(team, rng.choice(held))
        elif kind == "nest" and len(teams) >= 2:
            a, b = rng.sample(teams, 2)
            with contextlib.suppress(ldap3.core.exceptions.LDAPEntryAlreadyExistsResult):
                admin.add_members(a, b)
        elif kind == "new":
            people.append(admin.user())
        elif kind == "new-group":
            teams.append(admin.group(*rng.sample(people, min(2, len(people)))))
        elif kind == "group-" and len(teams) > 2:
            admin.delete(teams.pop(rng.randrange(len(teams))))

    for _ in range(15):
        for _ in range(rng.choice([1, 2, 4])):
            edit()
        batch = stream.changes(pos, 3.0)
        pos = batch.position
        users.update(batch.users)
        groups.update(batch.groups)
        for uid in batch.removed_users:
            users.pop(uid, None)
        for gid in batch.removed_groups:
            groups.pop(gid, None)
    full = fetch(stream_settings())
    assert {k: u for k, u in users.items() if u != full.users.get(k)} == {}
    assert users.keys() == full.users.keys()
    assert {k: g for k, g in groups.items() if g != full.groups.get(k)} == {}
    assert groups.keys() == full.groups.keys()


def test_member_moved_back_into_scope_rejoins_its_groups(stream: Any, admin: Admin) -> None:
    """A member moved out of the base leaves its group; moved back, it is a member again
    (AD kept the link all along; the group itself did not change)."""
    roamer, stay = admin.user(), admin.user()
    team = admin.group(roamer, stay)
    ids = {dn: admin.guid(dn) for dn in (roamer, stay, team)}
    pos = stream.stream_position()
    outside = admin.rename(roamer, roamer.split(",", 1)[0], f"CN=Users,{admin.ad.base_dn}")
    out = stream.changes(pos, 3.0)
    assert out.groups[ids[team]].member_ids == {ids[stay]}
    admin.rename(outside, outside.split(",", 1)[0], admin.people)
    back = stream.changes(out.position, 3.0)
    assert ids[roamer] in back.users
    assert back.groups[ids[team]].member_ids == {ids[roamer], ids[stay]}
