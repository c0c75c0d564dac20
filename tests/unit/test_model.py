"""Records, normalisation, skips and flattening."""

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
