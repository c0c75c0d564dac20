"""rekey: server groups found by the key an earlier group mapping (or none) gave them."""

from __future__ import annotations

from dirconnector.mapping import GroupMapping, parse_group_mapping
from dirconnector.model import Group, Snapshot
from dirconnector.plan import RelinkGroup
from dirconnector.rekey import previous_keys, relink

SOURCE = Snapshot.build([], [Group("g1", "Staff"), Group("g2", "Sales")])
NOW = parse_group_mapping({"displayName": "app-{name}", "externalId": "app-{id}"})
BEFORE = parse_group_mapping({"externalId": "dir-{id}"})


def desired() -> Snapshot:
    return NOW.apply(SOURCE)


def server(*groups: Group) -> Snapshot:
    return Snapshot({}, {g.key: g for g in groups})


def test_previous_keys_are_the_ids_and_the_earlier_mappings_keys():
    """Each new key maps to the directory id and the last mapping's key, in that order."""
    assert previous_keys(SOURCE, NOW, [GroupMapping(), BEFORE]) == {
        "app-g1": ("g1", "dir-g1"), "app-g2": ("g2", "dir-g2")}
    # No mapping now: the keys are the ids, and only the earlier mapping's key differs.
    assert previous_keys(SOURCE, GroupMapping(), [GroupMapping(), BEFORE]) == {
        "g1": ("dir-g1",), "g2": ("dir-g2",)}


def test_a_group_under_an_old_key_is_relinked_and_compared_under_the_new_one():
    """The server's dir-g1 becomes app-g1 in place: a RelinkGroup, and the diff sees it
    under the new key (so only a rename follows)."""
    current = server(Group("dir-g1", "Staff", ref="s1"), Group("g2", "Sales", ref="s2"))
    links, seen = relink(desired(), current, previous_keys(SOURCE, NOW, [GroupMapping(), BEFORE]))
    assert links == [RelinkGroup("s1", "app-g1", "app-Staff", "dir-g1"),
                     RelinkGroup("s2", "app-g2", "app-Sales", "g2")]
    assert {g.ref: g.external_id for g in seen.groups.values()} == {"s1": "app-g1",
                                                                     "s2": "app-g2"}
    assert {g.ref: g.name for g in seen.groups.values()} == {"s1": "Staff", "s2": "Sales"}


def test_nothing_is_relinked_when_the_find_is_not_certain():
    """The new key already held, two server groups with old keys of one group, and an old
    key that is a directory group's key now: all left to the diff."""
    previous = previous_keys(SOURCE, NOW, [GroupMapping(), BEFORE])
    held = server(Group("app-g1", "app-Staff", ref="s0"), Group("dir-g1", "Staff", ref="s1"))
    assert relink(desired(), held, previous) == ([], held)
    twice = server(Group("g1", "Staff", ref="s1"), Group("dir-g1", "Staff", ref="s2"))
    assert relink(desired(), twice, previous) == ([], twice)
    clash = {"app-g1": ("app-g2",)}          # app-g2 is a directory group's key now
    current = server(Group("app-g2", "Sales", ref="s1"))
    assert relink(desired(), current, clash) == ([], current)


def test_one_server_group_claimed_by_two_directory_groups_is_left_alone():
    """Two directory groups whose old keys name one server group: neither takes it."""
    current = server(Group("old", "Staff", ref="s1"))
    assert relink(desired(), current, {"app-g1": ("old",), "app-g2": ("old",)}) == ([], current)
