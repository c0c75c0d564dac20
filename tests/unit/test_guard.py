"""guard(): the safety limits, one behaviour per test."""

from dataclasses import replace

from dirconnector.guard import LastRead, Limits, guard
from dirconnector.model import Skipped, User
from dirconnector.plan import (
    CreateUser,
    DeleteGroup,
    MemberRef,
    Plan,
    RemoveMembers,
    RevokeUser,
)


def plan(revokes: int, managed: int, source_users: int = 100, complete: bool = True) -> Plan:
    changes = tuple(RevokeUser(f"r{i}", f"e{i}", f"u{i}@x.com", "missing") for i in range(revokes))
    changes += (CreateUser(User("n", "n@x.com")),)
    return Plan(changes, "t", "s", managed_active=managed, source_users=source_users,
                source_complete=complete)


def test_plan_without_removals_always_passes():
    """Creates alone are never refused, even after an empty or incomplete read."""
    assert guard(plan(0, 1000, source_users=0, complete=False)) == []


def test_within_both_limits_passes():
    """5 of 100 managed accounts is under 25 and under 10%."""
    assert guard(plan(5, 100)) == []


def test_over_max_revocations_is_refused():
    """26 revocations exceed max_revocations = 25 even in a large organisation."""
    reasons = guard(plan(26, 10_000))
    assert len(reasons) == 1 and "max_revocations = 25" in reasons[0]


def test_over_ratio_is_refused():
    """11 of 100 is over 10%."""
    reasons = guard(plan(11, 100))
    assert len(reasons) == 1 and "max_revocation_ratio" in reasons[0] and "11%" in reasons[0]


def test_empty_read_refuses_any_revocation():
    """A directory that returned nobody may not revoke anyone."""
    reasons = guard(plan(1, 100, source_users=0), Limits(max_revocations=1000,
                                                          max_revocation_ratio=1.0))
    assert any("returned no users" in r for r in reasons)


def test_incomplete_read_refuses_any_revocation():
    """A read that did not see everything may not revoke anyone."""
    reasons = guard(plan(1, 100, complete=False))
    assert reasons == ["the plan would revoke or delete 1 account(s) after an incomplete read "
                       "of the directory"]


def test_source_shrinking_below_min_ratio_is_refused():
    """A read with 80 users after a good read of 100 is refused at min_source_ratio 0.9."""
    assert guard(plan(1, 100, source_users=80), last=100)
    assert guard(plan(1, 100, source_users=95), last=100) == []


def test_limits_are_configurable():
    """Raised limits let a large, intended clean-up through."""
    assert guard(plan(50, 100), Limits(max_revocations=60, max_revocation_ratio=0.6)) == []


def removing(memberships: int, managed_memberships: int, groups: int = 1) -> Plan:
    """A plan that takes ``memberships`` away, spread over ``groups`` groups."""
    changes = tuple(
        RemoveMembers(f"s{g}", f"g{g}", f"G{g}", tuple(
            MemberRef(f"e{i}", f"r{i}", f"u{i}@x.com")
            for i in range(g, memberships, groups)))
        for g in range(groups))
    return Plan(changes, "t", "s", managed_active=1000, source_users=1000,
                managed_memberships=managed_memberships)


def test_membership_removals_within_limits_pass():
    """50 of 1,000 memberships is under 100 and under 10%."""
    assert guard(removing(50, 1000, groups=5)) == []


def test_membership_removals_over_count_are_refused_with_count_and_share():
    """101 removals of 10,000 exceed max_membership_removals; the message gives both figures."""
    (reason,) = guard(removing(101, 10_000, groups=3))
    assert "remove 101 group membership(s), 1% of the 10,000 memberships" in reason
    assert "max_membership_removals = 100" in reason and "ratio" not in reason


def test_membership_removals_over_share_are_refused():
    """20 of 100 memberships is over 10% although under 100."""
    (reason,) = guard(removing(20, 100))
    assert "20%" in reason and "max_membership_removal_ratio = 10%" in reason


def test_emptying_every_group_is_refused_although_no_account_is_revoked():
    """27,573 memberships removed, 0 accounts: refused by both membership limits."""
    (reason,) = guard(removing(27_573, 27_573, groups=500))
    assert "27,573 group membership(s), 100%" in reason
    assert "max_membership_removals = 100 and max_membership_removal_ratio = 10%" in reason


def test_group_deletion_counts_its_members():
    """Deleting a group of 150 members removes 150 memberships."""
    p = Plan((DeleteGroup("s1", "g1", "Sales", 150),), "t", "s", managed_active=10,
             source_users=10, managed_memberships=1000)
    assert p.removals() == (0, 150)
    assert any("max_membership_removals" in r for r in guard(p))


def test_membership_limits_are_configurable():
    """Raised membership limits let an intended reorganisation through."""
    assert guard(removing(500, 1000), Limits(max_membership_removals=500,
                                             max_membership_removal_ratio=0.5)) == []


def unhealthy(usable: int, no_email: int, *, changes: tuple = ()) -> Plan:
    skipped = tuple(Skipped("user", f"uid=u{i}", "no email", "no mail value", f"e{i}")
                    for i in range(no_email))
    return Plan(changes, "t", "s", skipped=skipped, managed_active=usable + no_email,
                source_users=usable)


def test_emails_turning_unreadable_is_an_unhealthy_read_named_by_its_cause():
    """1 usable user after a good read of 10,000, 9,999 without email: refused, cause named."""
    (reason,) = guard(unhealthy(1, 9_999), last=LastRead(10_000, 0))
    assert reason.startswith("unhealthy directory read: 9,999 of 10,000 users read have no "
                             "email: is the email attribute readable by the sync account")
    assert "the last good run had 10,000 usable users, this read 1" in reason


def test_unhealthy_read_is_refused_even_when_the_plan_removes_nothing():
    """An empty plan from a collapsed read is refused all the same: the read is broken."""
    assert guard(unhealthy(1, 9_999), last=10_000)


def test_vanished_entries_are_named_as_such():
    """5,000 users after 10,000, none skipped: the refusal says entries vanished."""
    (reason,) = guard(unhealthy(5_000, 0), last=LastRead(10_000, 0))
    assert "entries vanished" in reason and "no email" not in reason


def test_already_unusable_entries_do_not_count_as_a_new_cause():
    """Entries that had no email at the last good run are not the cause of a new drop."""
    (reason,) = guard(unhealthy(5_000, 3_000), last=LastRead(10_000, 3_000))
    assert "entries vanished" in reason


def test_without_history_a_read_mostly_unusable_is_unhealthy():
    """No last good run: 990 of 1,000 users without email is refused; 3 of 10 is not."""
    (reason,) = guard(unhealthy(10, 990))
    assert "990 of 1,000 users read have no email" in reason
    assert guard(unhealthy(7, 3)) == []


def test_healthy_read_with_a_few_new_skips_passes():
    """A read at 95% of the last good one, with a few new skips, is not refused."""
    p = replace(unhealthy(9_500, 20), changes=(CreateUser(User("n", "n@x.com")),))
    assert guard(p, last=LastRead(10_000, 0)) == []


def test_a_small_drop_in_a_small_directory_is_not_unhealthy():
    """8 -> 7 usable users is 12% but one person: not refused (that entry is kept as is)."""
    assert guard(unhealthy(7, 1), last=LastRead(8, 0)) == []
    assert guard(unhealthy(7, 11), last=LastRead(18, 0))


def test_a_small_drop_with_removals_is_still_refused():
    """20 -> 17 users with revocations planned: below min_source_ratio, refused."""
    revoking = plan(3, 20, source_users=17)
    assert any("min_source_ratio" in r for r in guard(revoking, Limits(max_revocations=100,
                                                                          max_revocation_ratio=1.0),
                                                       last=20))
