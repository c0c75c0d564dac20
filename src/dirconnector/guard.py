"""guard(plan, limits) -> the reasons to refuse it. Pure: values in, values out.

A plan is refused when it would take access away from more people than the
limits allow, or when the read it came from cannot be trusted with removals: an
incomplete read, an empty read while the server has managed accounts, or a read
much smaller than the last good one.
"""

from __future__ import annotations

from dataclasses import dataclass

from .plan import Plan, is_removal
from .takeover import guard_note


@dataclass(frozen=True, slots=True)
class Limits:
    """Safety limits, from ``[sync]``."""

    max_revocations: int = 25
    """Most accounts one run may revoke or delete."""
    max_revocation_ratio: float = 0.10
    """Largest share of the managed active accounts one run may revoke or delete."""
    min_source_ratio: float = 0.9
    """Smallest source read, as a share of the last good read, that may plan removals."""


def guard(plan: Plan, limits: Limits = Limits(), previous_source_users: int | None = None,
          ) -> list[str]:
    """Reasons to refuse ``plan``; empty when it may run."""
    removals = sum(1 for c in plan.changes if is_removal(c))
    if not removals:
        return []
    reasons = []
    what = f"the plan would revoke or delete {removals} account(s)"
    if not plan.source_complete:
        reasons.append(f"{what} after an incomplete read of the directory")
    if plan.source_users == 0 and plan.managed_active > 0:
        reasons.append(f"{what} because the directory returned no users at all, while the "
                       f"server has {plan.managed_active} managed active account(s)")
    floor = (previous_source_users or 0) * limits.min_source_ratio
    if previous_source_users and plan.source_users < floor:
        reasons.append(f"{what} after the directory returned {plan.source_users} users, fewer "
                       f"than {limits.min_source_ratio:.0%} of the {previous_source_users} of "
                       f"the last good run (min_source_ratio)")
    if removals > limits.max_revocations:
        reasons.append(f"{what}, more than max_revocations = {limits.max_revocations}")
    if plan.managed_active and removals / plan.managed_active > limits.max_revocation_ratio:
        reasons.append(f"{what}, {removals / plan.managed_active:.0%} of the "
                       f"{plan.managed_active} managed active accounts, more than "
                       f"max_revocation_ratio = {limits.max_revocation_ratio:.0%}")
    if reasons and (note := guard_note(plan)):
        reasons.append(note)             # a takeover's removals are another tool's leftovers
    return reasons
