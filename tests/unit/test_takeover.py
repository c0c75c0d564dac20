"""Takeover from bwdc: accounts recognised by bwdc's key are relinked, others left alone."""

from __future__ import annotations

import dataclasses
import json

from hypothesis import given, settings
from hypothesis import strategies as st

from dirconnector.connectors.ldap.syntax import normalize_dn
from dirconnector.diff import Policy, diff
from dirconnector.guard import Limits, guard
from dirconnector.model import AMBIGUOUS, Group, PreviousKeys, Snapshot, User
from dirconnector.plan import (
    CreateUser,
    LinkGroup,
    Plan,
    RelinkGroup,
    RelinkUser,
    RevokeUser,
    UpdateUser,
)
from dirconnector.report import describe
from dirconnector.takeover import summary
from dirconnector.testing import apply_to_snapshot

PEOPLE = "ou=People,dc=example,dc=org"


def dn(name: str) -> str:
    return f"uid={name},{PEOPLE}"


def directory(users: list[User], groups: list[Group] = (), *,  # type: ignore[assignment]
              keys: dict[str, str] | None = None, group_keys: dict[str, str] | None = None,
              ) -> Snapshot:
    """A source snapshot whose entries bwdc keyed on ``keys`` (DN -> external id)."""
    snap = Snapshot.build(users, groups)
    user_keys = keys if keys is not None else {dn(u.external_id): u.external_id for u in users}
    return dataclasses.replace(snap, previous_keys=PreviousKeys(
        "bwdc", "the entry DN", user_keys, group_keys or {}, normalize_dn))


def server(*accounts: tuple[str, str, str], groups: list[Group] = ()  # type: ignore[assignment]
           ) -> Snapshot:
    """Accounts (ref, external id, email) as the Bitwarden target reads them."""
    return Snapshot({ref: User(ext, email, ref=ref) for ref, ext, email in accounts},
                    {g.ref: g for g in groups})


def test_member_keyed_on_its_dn_is_relinked() -> None:
    """A member carrying a directory entry's DN gets a RelinkUser, and nothing else."""
    plan = diff(directory([User("uuid-a", "a@x.org")]), server(("r1", dn("uuid-a"), "a@x.org")))
    assert plan.changes == (RelinkUser("r1", User("uuid-a", "a@x.org"), dn("uuid-a")),)
    assert describe(plan.changes[0]) == f'relink a@x.org: "{dn("uuid-a")}" → uuid-a'
    assert plan.takeover is not None and plan.takeover.unmatched == ()


def test_other_spellings_of_the_dn_match() -> None:
    """Case, spaces after commas, and escaped characters do not change the key."""
    users = [User("uuid-a", "a@x.org"), User("uuid-b", "b@x.org")]
    keys = {dn("uuid-a"): "uuid-a", f"cn=Smith\\2C John,{PEOPLE}": "uuid-b"}
    current = server(("r1", "UID=uuid-a, OU=people, DC=Example,DC=org", "a@x.org"),
                     ("r2", f"cn=Smith\\, John,{PEOPLE}", "b@x.org"))
    plan = diff(directory(users, keys=keys), current)
    assert sorted((c.ref, c.kind) for c in plan.changes) == [("r1", "relink_user"),
                                                             ("r2", "relink_user")]


def test_key_comes_before_email() -> None:
    """A person whose email changed since bwdc's last sync is recognised by the key: relinked
    and updated, never created again nor linked to another account holding the new email."""
    want = directory([User("uuid-a", "new@x.org")])
    plan = diff(want, server(("r1", dn("uuid-a"), "old@x.org")))
    assert [(c.kind, c.ref) for c in plan.changes] == [("relink_user", "r1"),
                                                        ("update_user", "r1")]
    assert isinstance(plan.changes[1], UpdateUser) and plan.changes[1].before == ("old@x.org",)
    taken = diff(want, server(("r1", dn("uuid-a"), "old@x.org"), ("r2", "", "new@x.org")))
    assert [(c.kind, c.ref) for c in taken.changes] == [("relink_user", "r1")]


def test_two_members_with_one_key_are_left_alone() -> None:
    """Two members carrying keys of one entry: neither is relinked, both are listed, and
    the entry is not created over the email one of them holds."""
    current = server(("r1", dn("uuid-a"), "a@x.org"),
                     ("r2", dn("uuid-a").upper(), "other@x.org"))
    plan = diff(directory([User("uuid-a", "a@x.org")]), current,
                Policy(remove_missing=True, manage="external_id"))
    assert not any(isinstance(c, RelinkUser | CreateUser) for c in plan.changes)
    assert plan.takeover is not None
    assert sorted(u.ref for u in plan.takeover.unmatched) == ["r1", "r2"]
    assert all("2 accounts carry keys of one directory entry" in u.reason
               for u in plan.takeover.unmatched)


def test_unmatched_key_with_a_directory_email_is_untouched() -> None:
    """A member whose key matches nobody keeps everything, even with remove_missing: it is
    neither linked by email nor revoked nor removed from its groups, and the directory
    user with its email is not created."""
    grp = Group("cn=staff", "Staff", frozenset({"r1"}), ref="g1")
    current = server(("r1", dn("renamed"), "a@x.org"), groups=[grp])
    want = directory([User("uuid-a", "a@x.org")], [Group("g-staff", "Staff")],
                     group_keys={"cn=staff": "g-staff"})
    plan = diff(want, current, Policy(remove_missing=True, manage="external_id"))
    assert [c.kind for c in plan.changes] == ["relink_group"]
    assert plan.takeover is not None
    [left] = plan.takeover.unmatched
    assert left.ref == "r1" and "neither linked nor created" in left.reason


def test_unmatched_key_of_someone_gone_follows_the_policy() -> None:
    """A member whose key and email match nobody is no longer in the directory: with
    remove_missing it is revoked (and listed), as bwdc's overwrite would have removed it."""
    current = server(("r1", dn("uuid-a"), "a@x.org"), ("r9", dn("gone"), "gone@x.org"))
    plan = diff(directory([User("uuid-a", "a@x.org")]), current,
                Policy(remove_missing=True, manage="external_id"))
    assert RevokeUser("r9", dn("gone"), "gone@x.org", "missing") in plan.changes
    assert plan.takeover is not None and [u.ref for u in plan.takeover.unmatched] == ["r9"]


def test_entry_that_already_has_an_account_is_not_relinked_twice() -> None:
    """A member carrying an entry's old key while another carries its id: listed, kept."""
    current = server(("r1", "uuid-a", "a@x.org"), ("r2", dn("uuid-a"), "a2@x.org"))
    plan = diff(directory([User("uuid-a", "a@x.org")]), current)
    assert not any(isinstance(c, RelinkUser) for c in plan.changes)
    assert plan.takeover is not None
    assert [u.ref for u in plan.takeover.unmatched] == ["r2"]
    assert "already carries the directory's id" in plan.takeover.unmatched[0].reason


def test_group_relinked_by_key_before_name() -> None:
    """A group carrying a directory group's DN is relinked; a group found only by name is
    still adopted (LinkGroup) and then not listed as left alone."""
    groups = [Group("g-1", "Engineering"), Group("g-2", "Sales")]
    current = server(groups=[Group("cn=eng,ou=groups", "Engineers", ref="s1"),
                             Group("cn=sales-old,ou=groups", "Sales", ref="s2")])
    plan = diff(directory([], groups, keys={}, group_keys={"CN=Eng,OU=Groups": "g-1"}), current)
    assert RelinkGroup("s1", "g-1", "Engineering", "cn=eng,ou=groups") in plan.changes
    assert any(isinstance(c, LinkGroup) and c.ref == "s2" for c in plan.changes)
    assert plan.takeover is not None and plan.takeover.unmatched == ()


def test_same_ids_as_bwdc_need_nothing() -> None:
    """Active Directory and the cloud directories: bwdc's key is the id, members are right."""
    want = dataclasses.replace(Snapshot.build([User("guid-a", "a@x.org")]),
                               previous_keys=PreviousKeys("bwdc", "objectGUID"))
    plan = diff(want, server(("r1", "guid-a", "a@x.org")))
    assert plan.empty and plan.takeover is not None and plan.takeover.right == 1
    assert summary(plan)[1].strip().startswith("1 member(s) already carry")


def test_ambiguous_canonical_key() -> None:
    """Two entries whose DNs differ only in case share one canonical key: ambiguous."""
    keys = PreviousKeys("bwdc", "DN", {"uid=A,o=x": "1", "uid=a,o=x": "2"}, {}, normalize_dn)
    assert keys.find("user", "uid=A,o=x") == "1"            # the exact spelling wins
    assert keys.find("user", "UID=a, o=x") == AMBIGUOUS
    assert keys.find("user", "not a dn") is None


def test_plan_file_keeps_relinks_and_the_report() -> None:
    """A saved plan round-trips its relinks and takeover report through JSON."""
    current = server(("r1", dn("uuid-a"), "a@x.org"), ("r9", dn("gone"), "gone@x.org"))
    plan = diff(directory([User("uuid-a", "a@x.org")]), current)
    again = Plan.from_json(json.loads(plan.dumps()))
    assert again.changes == plan.changes and again.takeover == plan.takeover


def test_guard_refusal_names_bwdc_leftovers() -> None:
    """A takeover plan revoking too many: the refusal explains they are bwdc's leftovers."""
    users = [User(f"u{i}", f"u{i}@x.org", active=i >= 30) for i in range(100)]
    current = server(*((f"r{i}", dn(f"u{i}"), f"u{i}@x.org") for i in range(100)))
    plan = diff(directory(users), current, Policy(remove_disabled=True))
    reasons = guard(plan, Limits())
    assert reasons and "first plan of a takeover from bwdc" in reasons[-1]
    assert "30 member(s) disabled in the directory but active on the server" in reasons[-1]


emails = st.sampled_from([f"p{i}@x.org" for i in range(12)])


@settings(max_examples=60, deadline=None)
@given(people=st.dictionaries(st.sampled_from([f"id{i}" for i in range(12)]), emails,
                              max_size=10),
       keyed=st.sets(st.integers(0, 11)), spelt=st.sets(st.integers(0, 11)))
def test_takeover_then_nothing_to_do(people: dict[str, str], keyed: set[int],
                                     spelt: set[int]) -> None:
    """For any directory and any mix of members keyed by bwdc (in any DN spelling) or by
    id, applying the plan leaves nothing to do but the accounts left alone."""
    seen: set[str] = set()
    users = []
    for uid, email in people.items():
        if email not in seen:
            seen.add(email)
            users.append(User(uid, email))
    accounts = []
    for n, u in enumerate(users):
        key = dn(u.external_id) if n in keyed else u.external_id
        if n in keyed and n in spelt:
            key = key.upper().replace(",", ", ")
        accounts.append((f"r{n}", key, u.email))
    want, current = directory(users), server(*accounts)
    plan = diff(want, current)
    after = apply_to_snapshot(plan, current)
    assert diff(want, after).empty
    assert plan.takeover is not None and plan.takeover.unmatched == ()
