"""guard(): the safety limits, one behaviour per test."""

from dirconnector.guard import Limits, guard
from dirconnector.model import User
from dirconnector.plan import CreateUser, Plan, RevokeUser


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
    assert guard(plan(1, 100, source_users=80), previous_source_users=100)
    assert guard(plan(1, 100, source_users=95), previous_source_users=100) == []


def test_limits_are_configurable():
    """Raised limits let a large, intended clean-up through."""
    assert guard(plan(50, 100), Limits(max_revocations=60, max_revocation_ratio=0.6)) == []
