"""Records, normalisation, skips and flattening."""

from dataclasses import replace

import pytest

from dirconnector.model import Group, Snapshot, User, flatten, normalize_email


def g(gid: str, members: set[str] = frozenset(), subs: set[str] = frozenset()) -> Group:
    return Group(gid, gid.upper(), frozenset(members), frozenset(subs))


def test_emails_are_lowercased_and_trimmed():
    """Snapshot.build lower-cases and trims every email."""
    snap = Snapshot.build([User("1", "  Ada@Example.COM ")])
    assert snap.users["1"].email == "ada@example.com"
    assert normalize_email(" X@Y.Z ") == "x@y.z"


def test_users_without_email_are_skipped_with_reason():
    """A user with no email is not synced and the skip says why."""
    snap = Snapshot.build([User("1", ""), User("2", "b@x.com")])
    assert set(snap.users) == {"2"}
    assert [(s.reason, s.external_id) for s in snap.skipped] == [("no email", "1")]


def test_invalid_email_is_skipped():
    """An address without a domain is skipped as invalid."""
    snap = Snapshot.build([User("1", "not-an-address")])
    assert not snap.users and snap.skipped[0].reason == "invalid email"


def test_two_active_users_with_one_email_are_both_skipped():
    """Active duplicates are never synced: choosing one silently swaps accounts."""
    snap = Snapshot.build([User("1", "a@x.com"), User("2", "A@x.com"), User("3", "c@x.com")])
    assert set(snap.users) == {"3"}
    assert sorted(s.external_id for s in snap.skipped if s.reason == "duplicate email") == ["1", "2"]
    assert snap.skipped_ids == {"1", "2"}


def test_inactive_duplicate_yields_to_the_active_user():
    """An old disabled account with the same email does not block the active one."""
    snap = Snapshot.build([User("old", "a@x.com", active=False), User("new", "a@x.com")])
    assert set(snap.users) == {"new"}
    assert snap.skipped[0].external_id == "old"


def test_digest_is_stable_and_sensitive():
    """The digest ignores order and changes when any field changes."""
    a = Snapshot.build([User("1", "a@x.com"), User("2", "b@x.com")], [g("g", {"1"})])
    b = Snapshot.build([User("2", "b@x.com"), User("1", "a@x.com")], [g("g", {"1"})])
    c = Snapshot.build([User("1", "a@x.com", display_name="A"), User("2", "b@x.com")],
                       [g("g", {"1"})])
    assert a.digest() == b.digest() != c.digest()


def _server(users: list[User], groups: list[Group]) -> Snapshot:
    """A target-style snapshot: keyed by ref, in whatever order the server listed them."""
    return Snapshot({u.key: u for u in users}, {x.key: x for x in groups})


BASE_USERS = [User(f"e{i}", f"u{i}@x.com", f"u{i}", f"User {i}", f"Given{i}", f"Family{i}",
                   i % 3 != 0, f"r{i}") for i in range(6)]
BASE_GROUPS = [Group("g1", "One", frozenset({"r0", "r1"}), frozenset({"g2"}), "s1"),
               Group("g2", "Two", frozenset({"r2"}), frozenset(), "s2"),
               Group("g3", "Three", frozenset(), frozenset({"g1", "g2"}), "s3")]


def test_digest_does_not_depend_on_record_or_member_order():
    """Records listed in another order, and sets built in another order, hash the same."""
    base = _server(BASE_USERS, BASE_GROUPS).digest()
    shuffled_groups = [Group(x.external_id, x.name, frozenset(sorted(x.member_ids, reverse=True)),
                             frozenset(sorted(x.subgroup_ids, reverse=True)), x.ref)
                       for x in reversed(BASE_GROUPS)]
    assert _server(BASE_USERS[::-1], shuffled_groups).digest() == base
    assert _server(BASE_USERS[3:] + BASE_USERS[:3], BASE_GROUPS).digest() == base


@pytest.mark.parametrize("field", ["external_id", "email", "user_name", "display_name",
                                   "given_name", "family_name", "active", "ref"])
def test_digest_changes_with_every_user_field(field):
    """Changing any one field of one user changes the digest."""
    users = list(BASE_USERS)
    old = users[4]
    new_value = (not old.active) if field == "active" else getattr(old, field) + "x"
    users[4] = replace(old, **{field: new_value})
    assert _server(users, BASE_GROUPS).digest() != _server(BASE_USERS, BASE_GROUPS).digest()


@pytest.mark.parametrize("field", ["external_id", "name", "ref"])
def test_digest_changes_with_every_group_field(field):
    """Changing a group's id, name or ref changes the digest."""
    groups = list(BASE_GROUPS)
    groups[1] = replace(groups[1], **{field: getattr(groups[1], field) + "x"})
    assert _server(BASE_USERS, groups).digest() != _server(BASE_USERS, BASE_GROUPS).digest()


def test_digest_changes_with_membership_and_nesting():
    """Adding, removing or moving a member, or changing a nesting, changes the digest."""
    base = _server(BASE_USERS, BASE_GROUPS).digest()
    one, two, three = BASE_GROUPS

    def with_(*groups: Group) -> str:
        return _server(BASE_USERS, list(groups)).digest()

    added = replace(two, member_ids=two.member_ids | {"r5"})
    removed = replace(one, member_ids=frozenset({"r0"}))
    moved_from = replace(one, member_ids=frozenset({"r0"}))
    moved_to = replace(two, member_ids=frozenset({"r1", "r2"}))
    unnested = replace(three, subgroup_ids=frozenset({"g1"}))
    renested = replace(one, subgroup_ids=frozenset({"g3"}))
    members_as_subgroups = replace(two, member_ids=frozenset(), subgroup_ids=frozenset({"r2"}))
    digests = {base, with_(one, added, three), with_(removed, two, three),
               with_(moved_from, moved_to, three), with_(one, two, unnested),
               with_(renested, two, three), with_(one, members_as_subgroups, three)}
    assert len(digests) == 7


def test_digest_tells_where_a_value_sits():
    """The same values in other records or other fields are another snapshot."""
    a, b = BASE_USERS[1], BASE_USERS[2]
    swapped = [*BASE_USERS[:1], replace(a, display_name=b.display_name),
               replace(b, display_name=a.display_name), *BASE_USERS[3:]]
    shifted = [*BASE_USERS[:1], replace(a, given_name=a.family_name, family_name=a.given_name),
               *BASE_USERS[2:]]
    digests = {_server(users, BASE_GROUPS).digest() for users in (BASE_USERS, swapped, shifted)}
    assert len(digests) == 3
    assert _server([], []).digest() != _server(BASE_USERS[:1], []).digest()


def test_flatten_nesting_diamond_cycle_and_dangling():
    """Transitive members through nesting, a diamond, a cycle, and an unknown subgroup."""
    groups = {x.external_id: x for x in [
        g("top", {"u0"}, {"left", "right", "ghost"}),
        g("left", {"u1"}, {"bottom"}),
        g("right", {"u2"}, {"bottom"}),
        g("bottom", {"u3"}),
        g("c1", {"a"}, {"c2"}),
        g("c2", {"b"}, {"c3"}),
        g("c3", {"c"}, {"c1"}),
        g("outer", set(), {"c2"}),
    ]}
    flat = flatten(groups)
    assert flat["top"] == {"u0", "u1", "u2", "u3"}
    assert flat["left"] == {"u1", "u3"}
    assert flat["bottom"] == {"u3"}
    assert flat["c1"] == flat["c2"] == flat["c3"] == {"a", "b", "c"}
    assert flat["outer"] == {"a", "b", "c"}


def test_flatten_self_loop_and_deep_chain():
    """A group containing itself, and a 5,000-deep chain, flatten without recursion errors."""
    groups = {"s": g("s", {"x"}, {"s"})}
    chain = {f"g{i}": g(f"g{i}", {f"u{i}"}, {f"g{i + 1}"} if i < 4999 else set())
             for i in range(5000)}
    assert flatten(groups)["s"] == {"x"}
    flat = flatten(chain)
    assert len(flat["g0"]) == 5000 and flat["g4999"] == {"u4999"}


def test_flatten_with_direct_members_given():
    """Given direct members (diff's translated keys) replace the groups' own member_ids."""
    groups = {x.external_id: x for x in [g("top", {"u0"}, {"sub"}), g("sub", {"u1"})]}
    flat = flatten(groups, {"top": frozenset({"r0"}), "sub": frozenset({"r1"})})
    assert flat == {"top": {"r0", "r1"}, "sub": {"r1"}}
