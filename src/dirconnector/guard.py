"""guard(plan, limits, last) -> the reasons to refuse it. Pure: values in, values out.

Access is more than accounts: in Bitwarden, group membership grants the shared
collections, so emptying the groups takes the vault away while every account stays
active. A plan is refused when

- it takes access away from more people than the limits allow: accounts revoked or
  deleted (``max_revocations``, ``max_revocation_ratio``) or group memberships removed
  (``max_membership_removals``, ``max_membership_removal_ratio``);
- it takes any access away after a read that cannot be trusted with removals: an
  incomplete read, or an empty one while the server has managed accounts;
- the read itself is unhealthy, whatever the plan: far fewer usable users than the
  last good run read (``min_source_ratio``), because entries vanished or because they
  turned unusable (no email, an invalid or duplicate one), or, without a last good run
  to compare with, more unusable users than usable ones. The refusal names the
  dominant cause ("9,999 of 10,000 users read have no email: ..."). Unless the plan
  takes access away, a drop of fewer than MIN_SIGN users is not called unhealthy (one
  leaver in a directory of nine); the entries it skipped are kept as is all the same.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from .plan import Plan
from .takeover import guard_note

DATA_PROBLEMS = ("no email", "invalid email", "duplicate email")
"""Skip reasons that make a user unusable through a fault in the data (or in reading it)."""

HINTS = {
    "no email": "is the email attribute readable by the sync account (an ACL or permission "
                "change?) and spelled right in the configuration?",
    "invalid email": "does the email attribute now hold something other than addresses?",
    "duplicate email": "did many entries start sharing addresses (a copy, a bad import)?",
}
MIN_SIGN = 10
"""Fewest users whose loss makes a read unhealthy: in a small directory one leaver is more
than 10%. Fewer lost entries are still kept as is (diff), just not refused for."""


@dataclass(frozen=True, slots=True)
class Limits:
    """Safety limits, from ``[sync]``."""

    max_revocations: int = 25
    """Most accounts one run may revoke or delete."""
    max_revocation_ratio: float = 0.10
    """Largest share of the managed active accounts one run may revoke or delete."""
    min_source_ratio: float = 0.9
    """Fewest usable users a read may hold, as a share of the last good read's."""
    max_membership_removals: int = 100
    """Most group memberships one run may remove (group deletions count their members)."""
    max_membership_removal_ratio: float = 0.10
    """Largest share of the memberships of the managed groups one run may remove."""


@dataclass(frozen=True, slots=True)
class LastRead:
    """What the last good run read, to compare a new read with."""

    users: int
    """Usable users (synced)."""
    unusable: int | None = None
    """Users skipped for a data problem (DATA_PROBLEMS); None when not recorded."""


def guard(plan: Plan, limits: Limits = Limits(), last: LastRead | int | None = None,
          ) -> list[str]:
    """Reasons to refuse ``plan``; empty when it may run."""
    if isinstance(last, int):
        last = LastRead(last)
    accounts, memberships = plan.removals()
    reasons = read_health(plan, limits, last, taking=bool(accounts or memberships))
    if not accounts and not memberships:
        return reasons
    what = _taking(accounts, memberships)
    if not plan.source_complete:
        reasons.append(f"{what} after an incomplete read of the directory")
    if plan.source_users == 0 and plan.managed_active > 0:
        reasons.append(f"{what} because the directory returned no users at all, while the "
                       f"server has {plan.managed_active:,} managed active account(s)")
    if accounts > limits.max_revocations:
        reasons.append(f"the plan would revoke or delete {accounts:,} account(s), more than "
                       f"max_revocations = {limits.max_revocations}")
    if plan.managed_active and accounts / plan.managed_active > limits.max_revocation_ratio:
        reasons.append(f"the plan would revoke or delete {accounts:,} account(s), "
                       f"{accounts / plan.managed_active:.0%} of the {plan.managed_active:,} "
                       f"managed active accounts, more than max_revocation_ratio = "
                       f"{limits.max_revocation_ratio:.0%}")
    if memberships:
        share = memberships / plan.managed_memberships if plan.managed_memberships else 1.0
        over_count = memberships > limits.max_membership_removals
        over_share = share > limits.max_membership_removal_ratio
        if over_count or over_share:
            limit = " and ".join(
                [f"max_membership_removals = {limits.max_membership_removals}"] * over_count
                + [f"max_membership_removal_ratio = {limits.max_membership_removal_ratio:.0%}"]
                * over_share)
            reasons.append(f"the plan would remove {memberships:,} group membership(s), "
                           f"{share:.0%} of the {plan.managed_memberships:,} memberships of "
                           f"the groups it manages, more than {limit} (group membership "
                           f"grants access: in Bitwarden, the shared collections)")
    if reasons and (note := guard_note(plan)):
        reasons.append(note)             # a takeover's removals are another tool's leftovers
    return reasons


def read_health(plan: Plan, limits: Limits, last: LastRead | None, *, taking: bool = True,
                ) -> list[str]:
    """Why the directory read cannot be trusted (module docstring), or nothing. ``taking``:
    the plan takes access away, so even a drop smaller than MIN_SIGN counts."""
    problems: Counter[str] = Counter(s.reason for s in plan.skipped
                                     if s.kind == "user" and s.reason in DATA_PROBLEMS)
    unusable = sum(problems.values())
    usable = plan.source_users
    read = usable + unusable
    if last is not None and last.users:
        floor = last.users * limits.min_source_ratio
        lost = last.users - usable
        if usable >= floor or (lost < MIN_SIGN and not taking):
            return []
        newly = unusable - (last.unusable or 0) if last.unusable is not None else unusable
        compared = (f"the last good run had {last.users:,} usable users, this read "
                    f"{usable:,}, fewer than min_source_ratio = {limits.min_source_ratio:.0%}")
        if problems and newly * 2 >= lost:
            return [f"unhealthy directory read: {_dominant(problems, read)}; {compared}"]
        return [f"unhealthy directory read: {compared} (entries vanished: a narrowed filter "
                f"or search base, a moved OU, a partial outage?)"]
    if unusable > usable and unusable >= MIN_SIGN:
        return [f"unhealthy directory read: {_dominant(problems, read)}; only {usable:,} "
                f"of {read:,} users read are usable"]
    return []


def _dominant(problems: Counter[str], read: int) -> str:
    reason, count = problems.most_common(1)[0]
    return f"{count:,} of {read:,} users read have {_phrase(reason)}: {HINTS[reason]}"


def _phrase(reason: str) -> str:
    return {"no email": "no email", "invalid email": "an invalid email",
            "duplicate email": "a duplicate email"}[reason]


def _taking(accounts: int, memberships: int) -> str:
    parts = ([f"revoke or delete {accounts:,} account(s)"] * bool(accounts)
             + [f"remove {memberships:,} group membership(s)"] * bool(memberships))
    return "the plan would " + " and ".join(parts)
