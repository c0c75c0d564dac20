"""Test helpers that are part of the public API: fakes and the contract suites.

``FakeConnector(users=..., groups=...)`` and ``FakeTarget()`` stand in for real
systems in unit tests and for plugin authors. ``check_connector`` and
``check_target`` are the contract every connector and target must pass; each
built-in plugin's tests call them against a real server or an emulator.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import replace
from datetime import timedelta
from typing import Any, ClassVar

from pydantic import BaseModel

from .checks import CheckReport
from .connectors import HasChangeMarker, ReadsPreviousKeys
from .diff import USER_FIELDS, Policy, diff
from .model import Group, Snapshot, User, flatten, normalize_email, value_of
from .outcome import Outcome
from .plan import (
    AddMembers,
    Change,
    CreateGroup,
    CreateUser,
    DeleteGroup,
    DeleteUser,
    LinkGroup,
    LinkUser,
    Plan,
    RelinkGroup,
    RelinkUser,
    RemoveMembers,
    RenameGroup,
    RestoreUser,
    RevokeUser,
    UpdateUser,
)
from .settings import PluginSettings
from .state_space import ConnectorState
from .targets import HasLimitations, StoresUserFields, Target, WritesExternalId


class FakeSettings(PluginSettings):
    type: str = "fake"


class FakeConnector:
    """A connector that returns the users and groups it was given."""

    settings_model: ClassVar[type[BaseModel]] = FakeSettings

    def __init__(self, settings: Any = None, *, users: Iterable[User] = (),
                 groups: Iterable[Group] = (), complete: bool = True) -> None:
        self.users = list(users)
        self.groups = list(groups)
        self.complete = complete
        self.fetches = 0
        self.attributes: frozenset[str] = frozenset()
        """What ``read_attributes`` asked for (``ReadsAttributes``); the users given carry
        their source attributes already, and only these are handed on."""

    def read_attributes(self, names: frozenset[str]) -> None:
        self.attributes = frozenset(names)

    def check(self) -> CheckReport:
        report = CheckReport()
        report.add("fake directory", True, f"{len(self.users)} users")
        report.counts.update(users=len(self.users), groups=len(self.groups))
        return report

    def fetch(self, state: ConnectorState) -> Snapshot:
        self.fetches += 1
        users = self.users
        if any(u.attributes for u in users):
            users = [replace(u, attributes=tuple(p for p in u.attributes
                                                 if p[0] in self.attributes)) for u in users]
        return Snapshot.build(users, self.groups, complete=self.complete)


class FakeTarget:
    """An in-memory server with SCIM semantics; ``fail`` makes chosen changes fail;
    ``cannot`` names changes this server cannot make at all (``HasLimitations``)."""

    settings_model: ClassVar[type[BaseModel]] = FakeSettings

    def __init__(self, settings: Any = None, *, users: Iterable[User] = (),
                 groups: Iterable[Group] = (),
                 fail: Callable[[Change], str | None] | None = None,
                 cannot: Callable[[Change], str | None] | None = None,
                 fields: tuple[str, ...] = USER_FIELDS) -> None:
        self.state = Snapshot({u.key: u for u in users}, {g.key: g for g in groups})
        self.fields = fields
        self.fail = fail
        self.cannot = cannot
        self.applied: list[Change] = []
        self._ids = itertools.count(1)

    @property
    def user_fields(self) -> tuple[str, ...]:
        """What ``fields`` named: add "attributes" to hold mapped attributes."""
        return self.fields

    def limitations(self, plan: Plan) -> list[tuple[Change, str]]:
        if self.cannot is None:
            return []
        return [(c, why) for c in plan.changes if (why := self.cannot(c))]

    def check(self) -> CheckReport:
        report = CheckReport()
        report.add("fake server", True)
        return report

    def snapshot(self) -> Snapshot:
        return self.state

    def describe(self, plan: Plan) -> tuple[str, ...]:
        return ()

    def apply(self, plan: Plan, record: Callable[[Outcome], None],
              stop: threading.Event | None = None) -> None:
        for batch in plan.by_phase():
            for change in batch:
                if stop is not None and stop.is_set():
                    return               # start nothing new
                reason = self.fail(change) if self.fail else None
                if reason:
                    record(Outcome(change, "failed", reason))
                    continue
                try:
                    self.state, ref = apply_change(self.state, change,
                                                   lambda: f"r{next(self._ids)}")
                except (KeyError, StopIteration):
                    record(Outcome(change, "failed", "unknown user or group"))
                    continue
                self.applied.append(change)
                record(Outcome(change, "ok", ref=ref))


def apply_to_snapshot(plan: Plan, current: Snapshot) -> Snapshot:
    """What a faithful server holds after applying every change of ``plan``."""
    counter = itertools.count(1)
    state = current
    for batch in plan.by_phase():
        for change in batch:
            state, _ = apply_change(state, change, lambda: f"new{next(counter)}")
    return state


def apply_change(state: Snapshot, change: Change,
                 new_id: Callable[[], str]) -> tuple[Snapshot, str]:
    """One change applied to an in-memory server snapshot; returns the touched ref."""
    users = dict(state.users)
    groups = dict(state.groups)
    ref = ""
    if isinstance(change, CreateUser):
        ref = new_id()
        users[ref] = replace(change.user, ref=ref)
    elif isinstance(change, LinkUser | RelinkUser):
        ref = change.ref
        users[ref] = replace(users[ref], external_id=change.user.external_id)
    elif isinstance(change, UpdateUser):
        ref = change.ref
        held = users[ref]
        plain_fields = {f: getattr(change.user, f) for f in change.fields
                        if f in User.__dataclass_fields__}
        attrs = dict(held.attributes)
        for f in change.fields:
            if f not in plain_fields:
                attrs[f] = value_of(change.user, f)
        users[ref] = replace(held, **plain_fields, attributes=tuple(
            sorted((k, v) for k, v in attrs.items() if v)))
    elif isinstance(change, RestoreUser):
        ref = change.ref
        users[ref] = replace(users[ref], active=True)
    elif isinstance(change, RevokeUser):
        ref = change.ref
        users[ref] = replace(users[ref], active=False)
    elif isinstance(change, DeleteUser):
        ref = change.ref
        users.pop(ref, None)
        groups = {k: replace(g, member_ids=g.member_ids - {ref}) for k, g in groups.items()}
    elif isinstance(change, CreateGroup):
        ref = new_id()
        groups[ref] = Group(change.external_id, change.name, ref=ref)
    elif isinstance(change, LinkGroup | RelinkGroup):
        ref = change.ref
        groups[ref] = replace(groups[ref], external_id=change.external_id)
    elif isinstance(change, RenameGroup):
        ref = change.ref
        groups[ref] = replace(groups[ref], name=change.name)
    elif isinstance(change, AddMembers | RemoveMembers):
        ref = change.group_ref or _group_ref(groups, change.group_external_id)
        refs = {m.ref or _user_ref(users, m.external_id) for m in change.members}
        g = groups[ref]
        members = g.member_ids | refs if isinstance(change, AddMembers) else g.member_ids - refs
        groups[ref] = replace(g, member_ids=frozenset(members))
    elif isinstance(change, DeleteGroup):
        ref = change.ref
        groups.pop(ref, None)
    return Snapshot(users, groups), ref


def _group_ref(groups: Mapping[str, Group], external_id: str) -> str:
    return next(k for k, g in groups.items() if g.external_id == external_id)


def _user_ref(users: Mapping[str, User], external_id: str) -> str:
    return next(k for k, u in users.items() if u.external_id == external_id)


# ---------------------------------------------------------------- contract suites


def check_connector(connector: Any, state: ConnectorState | None = None) -> Snapshot:
    """The contract every connector passes; returns the snapshot for further checks.

    - ``check()`` returns a CheckReport that says the source is reachable;
    - ``fetch()`` returns a complete Snapshot keyed by external id, emails normalised,
      at least one user, group keys equal to their external ids;
    - a second fetch with the state the first one left returns the same digest
      (incremental reads must still return the complete state).
    """
    report = connector.check()
    assert isinstance(report, CheckReport), "check() must return a CheckReport"
    assert report.ok, f"check() found problems: {report.items}"
    state = state if state is not None else ConnectorState()
    first: Snapshot = connector.fetch(state)
    assert isinstance(first, Snapshot), "fetch() must return a Snapshot"
    assert first.complete, "a successful fetch must be complete"
    assert first.users, "the test directory must hold users"
    for key, user in first.users.items():
        assert key == user.external_id and user.external_id, f"user key {key!r} != external id"
        assert user.email == normalize_email(user.email), f"email not normalised: {user.email!r}"
        assert not user.ref, "a source never fills ref"
    for key, group in first.groups.items():
        assert key == group.external_id and group.name, f"group {key!r} lacks id or name"
    flatten(first.groups)
    state.commit()
    second = connector.fetch(state)
    assert second.digest() == first.digest(), "a second fetch must return the same state"
    if isinstance(connector, HasChangeMarker):
        check_change_marker(connector)
    if isinstance(connector, ReadsPreviousKeys):
        check_previous_keys(connector, first)
    return first


def check_change_marker(connector: HasChangeMarker) -> None:
    """The HasChangeMarker capability: a non-negative ``full_read_interval``, and a marker
    that stays the same while nothing is written (a text, or None when the server has
    none). That it moves with every write is each connector's own integration test."""
    interval = connector.full_read_interval
    assert isinstance(interval, timedelta) and interval >= timedelta(0), \
        "full_read_interval must be a timedelta >= 0"
    first, second = connector.change_marker(), connector.change_marker()
    assert first is None or isinstance(first, str), "change_marker() returns str or None"
    assert first == second, "the change marker moved although nothing was written"


def check_previous_keys(connector: ReadsPreviousKeys, plain: Snapshot) -> None:
    """The ReadsPreviousKeys capability: after ``read_previous_keys("bwdc")`` a fetch returns
    the same users and groups, plus keys that each name one of its entries by external id
    (a user's, a skipped user's, or a group's)."""
    connector.read_previous_keys("bwdc")
    snap: Snapshot = connector.fetch(ConnectorState())  # type: ignore[attr-defined]
    assert snap.digest() == plain.digest(), "previous keys must not change what is read"
    keys = snap.previous_keys
    assert keys is not None and keys.tool == "bwdc", "fetch must fill Snapshot.previous_keys"
    known = set(snap.users) | snap.skipped_ids
    assert all(ext in known for ext in keys.users.values()), "a user key names no entry"
    assert all(ext in snap.groups for ext in keys.groups.values()), "a group key names none"
    for key, ext in list(keys.users.items())[:50]:
        assert keys.find("user", key) == ext, f"the key {key!r} does not find its entry"


def check_target(target: Any, users: list[User], groups: list[Group]) -> None:
    """The contract every target passes, starting from an empty server.

    An apply with ``stop`` already set changes nothing; one stopped at its first outcome
    returns with a true record. Then it creates ``users`` and ``groups`` (with
    members), converges, renames a group, revokes and restores a user, and checks that
    each step's next plan is empty. The capabilities a target claims are checked too:
    ``StoresUserFields`` names known fields; ``HasLimitations`` names changes of the plan;
    ``WritesExternalId`` sets, clears and restores ids (``check_writes_external_id``).
    """
    assert isinstance(target, Target), "a target implements the Target protocol"
    assert target.check().ok, "check() must pass on a reachable server"
    policy = Policy(remove_missing=True)
    fields = tuple(target.user_fields) if isinstance(target, StoresUserFields) else USER_FIELDS
    assert set(fields) <= {*USER_FIELDS, "attributes"}, \
        f"user_fields names unknown fields: {fields}"
    desired = Snapshot.build(users, groups)
    _check_stop(target, desired, policy, fields)

    def converge(desired: Snapshot) -> Snapshot:
        plan = diff(desired, target.snapshot(), policy, managed_refs(target), fields)
        if isinstance(target, HasLimitations):
            impossible = target.limitations(plan)
            assert all(any(c is p for p in plan.changes) for c, _ in impossible), \
                "limitations() must name changes of the plan it was given"
        outcomes: list[Outcome] = []
        target.apply(plan, outcomes.append)
        failed = [o for o in outcomes if o.status != "ok"]
        assert not failed, f"changes failed: {failed[:3]}"
        assert len(outcomes) == len(plan.changes), "every change must be recorded"
        after: Snapshot = target.snapshot()
        again = diff(desired, after, policy, managed_refs(target), fields)
        assert again.empty, f"not converged: {again.changes[:5]}"
        return after

    after = converge(desired)
    assert {u.external_id for u in after.users.values() if u.active} >= {
        u.external_id for u in users if u.active}
    g0 = groups[0]
    converge(Snapshot.build(users, [replace(g0, name=g0.name + " renamed"), *groups[1:]]))
    u0 = users[0]
    revoked = converge(Snapshot.build([replace(u0, active=False), *users[1:]], groups))
    assert not next(u for u in revoked.users.values() if u.external_id == u0.external_id).active
    restored = converge(desired)
    assert next(u for u in restored.users.values() if u.external_id == u0.external_id).active
    if isinstance(target, WritesExternalId):
        check_writes_external_id(target)


def _check_stop(target: Target, desired: Snapshot, policy: Policy,
                fields: tuple[str, ...]) -> None:
    """``stop`` set before the apply: nothing happens. Set at the first outcome: the apply
    returns, having recorded each change at most once (what a target sends in one request,
    like Bitwarden's import, may all be recorded; the converge that follows proves the
    journal true)."""
    before = target.snapshot()
    plan = diff(desired, before, policy, managed_refs(target), fields)
    stop = threading.Event()
    stop.set()
    outcomes: list[Outcome] = []
    target.apply(plan, outcomes.append, stop)
    assert outcomes == [], "an apply with stop set must start nothing"
    assert target.snapshot().digest() == before.digest(), "a stopped apply changed the server"
    stop = threading.Event()

    def first_stops(outcome: Outcome) -> None:
        outcomes.append(outcome)
        stop.set()

    target.apply(plan, first_stops, stop)
    recorded = [id(o.change) for o in outcomes]
    assert recorded, "an apply must record its first outcome"
    assert len(set(recorded)) == len(recorded), "a change was recorded twice"
    assert set(recorded) <= {id(c) for c in plan.changes}, "an outcome of no planned change"


def managed_refs(target: Any) -> frozenset[str]:
    """In contract tests every account with an external id is ours."""
    snap = target.snapshot()
    return frozenset(u.key for u in snap.users.values() if u.external_id) | frozenset(
        g.key for g in snap.groups.values() if g.external_id)


def check_writes_external_id(target: Any) -> None:
    """The WritesExternalId capability, on a server holding at least one account and group.

    For the first account and the first group (by ref): a new external id shows in the
    next snapshot and changes nothing else there; "" removes it; writing the original
    value back leaves the server as it was (same digest); an id the server does not hold
    raises TargetError rather than passing in silence.
    """
    import uuid

    from .errors import TargetError
    from .targets import WritesExternalId

    claims = isinstance(target, WritesExternalId)  # (not narrowed: snapshot() is used too)
    assert claims, ("the target must implement WritesExternalId (set_user_external_id and "
                    "set_group_external_id)")
    before: Snapshot = target.snapshot()
    assert before.users and before.groups, "the server must hold an account and a group"
    user_key, group_key = min(before.users), min(before.groups)
    user, group = before.users[user_key], before.groups[group_key]
    for value in ("contract-external-id", ""):
        target.set_user_external_id(user.ref, value)
        target.set_group_external_id(group.ref, value)
        now: Snapshot = target.snapshot()
        assert now.users.get(user_key) == replace(user, external_id=value), (
            f"the account must read back with externalId {value!r} and nothing else changed: "
            f"{now.users.get(user_key)}")
        assert now.groups.get(group_key) == replace(group, external_id=value), (
            f"the group must read back with externalId {value!r} and nothing else changed: "
            f"{now.groups.get(group_key)}")
        assert {k: u for k, u in now.users.items() if k != user_key} == {
            k: u for k, u in before.users.items() if k != user_key}, "other accounts changed"
        assert {k: g for k, g in now.groups.items() if k != group_key} == {
            k: g for k, g in before.groups.items() if k != group_key}, "other groups changed"
    target.set_user_external_id(user.ref, user.external_id)
    target.set_group_external_id(group.ref, group.external_id)
    assert target.snapshot().digest() == before.digest(), "restoring must restore the server"
    missing = str(uuid.uuid4())
    for write in (target.set_user_external_id, target.set_group_external_id):
        try:
            write(missing, "contract-external-id")
        except TargetError:
            continue
        raise AssertionError(f"{write.__name__} of an id the server does not hold must raise "
                             f"TargetError")
