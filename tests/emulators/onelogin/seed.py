"""Seed data and helpers the OneLogin integration tests share (imported by their conftest)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from dirconnector.connectors.onelogin.connector import OneLoginConnector
from dirconnector.diff import Policy, diff
from dirconnector.http import RetryPolicy
from dirconnector.outcome import Outcome
from dirconnector.plan import Plan
from dirconnector.state_space import ConnectorState
from dirconnector.testing import FakeTarget, managed_refs

from .state import Account

CLIENT_ID = "8b1c0e6f2f9a4d7c"
CLIENT_SECRET = "s3cr3t-0f-the-api-credential"
# Fast but real backoff: 4 tries, tiny waits (production uses RetryPolicy()).
FAST_RETRY = RetryPolicy(attempts=4, base_delay=0.01, max_delay=0.05, max_total_wait=5.0)


@dataclass
class Seed:
    """Ids of the seeded account, by name, so tests can change the right things."""

    users: dict[str, int] = field(default_factory=dict)
    roles: dict[str, int] = field(default_factory=dict)
    groups: dict[str, int] = field(default_factory=dict)


def seed(account: Account) -> Seed:
    """45 users over three roles and four groups; a few odd statuses and emails."""
    ids = Seed()
    account.add_client(CLIENT_ID, CLIENT_SECRET)
    for name in ("employees", "contractors", "managers", "admins"):
        ids.groups[name] = account.add_group(name)
    for n in range(40):
        group = "employees" if n < 25 else "contractors" if n < 35 else "managers"
        ids.users[f"u{n:02d}"] = account.add_user(
            f"User{n:02d}@Example.com", username=f"user{n:02d}", firstname=f"First{n:02d}",
            lastname="Person", group_id=ids.groups[group])
    ids.users["suspended"] = account.add_user("suspended@example.com", status=2,
                                              username="susp", group_id=ids.groups["employees"])
    ids.users["locked"] = account.add_user("locked@example.com", status=3, username="lock")
    ids.users["pwexpired"] = account.add_user("pwexpired@example.com", status=4, username="pwx")
    ids.users["unactivated"] = account.add_user("new@example.com", status=0, username="new")
    ids.users["noemail"] = account.add_user(None, username="jdoe", firstname="Jane",
                                            lastname="Doe")
    ids.roles["Engineering"] = account.add_role(
        "Engineering", [ids.users[f"u{n:02d}"] for n in range(0, 22)] + [ids.users["locked"]])
    ids.roles["Sales"] = account.add_role(
        "Sales", [ids.users[f"u{n:02d}"] for n in range(22, 34)] + [ids.users["suspended"]])
    ids.roles["Admins"] = account.add_role(
        "Admins", [ids.users["u00"], ids.users["u01"], ids.users["pwexpired"]])
    ids.roles["Empty"] = account.add_role("Empty")
    return ids


ConnectorFactory = Callable[..., OneLoginConnector]


SYNC_POLICY = Policy(remove_missing=True)


def sync(connector: OneLoginConnector, target: FakeTarget, policy: Policy = SYNC_POLICY) -> Plan:
    """One run of the pure pipeline: fetch, diff against the target, apply; returns the plan."""
    snap = connector.fetch(ConnectorState())
    plan = diff(snap, target.snapshot(), policy, managed_refs(target))
    outcomes: list[Outcome] = []
    target.apply(plan, outcomes.append)
    assert all(o.status == "ok" for o in outcomes), outcomes
    return plan
