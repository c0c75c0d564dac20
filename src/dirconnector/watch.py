"""Watch mode: carry each directory change to the server within seconds.

The loop, for one profile:

1. take the stream's position, then run a full sync (the normal runner); keep the
   directory's snapshot and a fresh read of the server in memory;
2. ask the stream for changes since the position; gather more for ``batch_window``;
3. merge the batch into the directory snapshot, read only the touched records from the
   server (``ReadsSome``; else the whole server), diff the cut (``incremental.py``),
   guard it against the limits *over the last ``guard_window``*, apply it, journal it;
4. save the position (connector state) only once the batch is applied.

A ``StreamGap`` (an unknown cookie: a directory restored from backup) and every
``full_reconcile`` run a full sync again, comparing the incremental snapshot with the
full read and logging each difference as a repair (they are bugs). Source and server
errors are retried with exponential back-off; the position is only saved after apply,
so nothing is lost.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from . import logs
from .connectors import Changes, HasChangeStream, StreamGap, StreamMode
from .errors import ConfigError, DirconnectorError, SafetyLimit
from .guard import Limits
from .incremental import ServerView, affected, combine, cut_desired, merge, with_reports
from .model import Snapshot
from .plan import (
    AddMembers,
    DeleteUser,
    Plan,
    RemoveMembers,
    RevokeUser,
    is_removal,
    memberships_removed,
)
from .settings import Profile, parse_duration
from .state import SharesProfiles, StateStore
from .state.records import managed_updates
from .state_space import ConnectorState
from .sync import Runner, RunResult, limits_of, refusal
from .targets import ReadsSome

log = logging.getLogger(__name__)

POSITION = "stream_position"
"""Connector-state key of the position the server holds everything up to."""
LAST_LAG = "stream_lag"
"""Connector-state key: the lag of the last batch applied (seconds), for ``status``."""
WINDOW = "guard_window_events"
"""Profile meta key: the removals applied within the last ``guard_window`` (time,
accounts, memberships), so that a restarted watcher keeps counting them."""
POLL = 1.0
"""Longest single wait on the stream, so a signal is seen within it."""
BACKOFF_MAX = 60.0
QUIET = 0.1
"""Seconds without a new change that end a batch before its batch_window is over."""


@dataclass
class Window:
    """Removals applied within the last ``seconds`` (the windowed guard)."""

    seconds: float
    events: deque[tuple[float, int, int]] = dataclasses.field(default_factory=deque)

    def totals(self, now: float) -> tuple[int, int]:
        while self.events and self.events[0][0] < now - self.seconds:
            self.events.popleft()
        return sum(e[1] for e in self.events), sum(e[2] for e in self.events)

    def add(self, now: float, accounts: int, memberships: int) -> bool:
        """Count a batch's removals; True when there was something to count."""
        if accounts or memberships:
            self.events.append((now, accounts, memberships))
            return True
        return False

    def dump(self) -> list[list[float]]:
        return [[t, a, m] for t, a, m in self.events]

    def load(self, rows: Any, now: float) -> None:
        """Events saved by an earlier process (a restart must not reset the window);
        rows that are not three numbers are ignored."""
        for row in rows if isinstance(rows, list) else ():
            if (
                isinstance(row, list)
                and len(row) == 3
                and all(isinstance(x, int | float) for x in row)
            ):
                self.events.append((float(row[0]), int(row[1]), int(row[2])))
        self.events = deque(sorted(self.events))
        self.totals(now)


def window_reasons(
    plan: Plan,
    limits: Limits,
    window: Window,
    now: float,
    managed_active: int,
    managed_memberships: int,
    seconds: float,
) -> list[str]:
    """Reasons to refuse a batch: its removals plus those applied within the window go
    over a limit (ratios against the last full plan's managed counts)."""
    accounts, memberships = plan.removals()
    if not accounts and not memberships:
        return []
    done_a, done_m = window.totals(now)
    acc, mem = accounts + done_a, memberships + done_m
    span = f"within guard_window = {seconds:g} s"
    reasons = []
    if accounts and acc > limits.max_revocations:
        reasons.append(
            f"this batch would bring the accounts revoked or deleted {span} to "
            f"{acc:,}, more than max_revocations = {limits.max_revocations}"
        )
    if accounts and managed_active and acc / managed_active > limits.max_revocation_ratio:
        reasons.append(
            f"this batch would bring the accounts revoked or deleted {span} to "
            f"{acc / managed_active:.0%} of the {managed_active:,} managed active "
            f"accounts, more than max_revocation_ratio = "
            f"{limits.max_revocation_ratio:.0%}"
        )
    if memberships and mem > limits.max_membership_removals:
        reasons.append(
            f"this batch would bring the group memberships removed {span} to "
            f"{mem:,}, more than max_membership_removals = "
            f"{limits.max_membership_removals}"
        )
    if (
        memberships
        and managed_memberships
        and mem / managed_memberships > limits.max_membership_removal_ratio
    ):
        reasons.append(
            f"this batch would bring the group memberships removed {span} to "
            f"{mem / managed_memberships:.0%} of {managed_memberships:,}, more "
            f"than max_membership_removal_ratio = "
            f"{limits.max_membership_removal_ratio:.0%}"
        )
    return reasons


class Observer:
    """What the engine tells the outside (metrics, tests); every method may be a no-op."""

    def mode(self, profile: str, mode: StreamMode) -> None: ...

    def lag(self, profile: str, seconds: float) -> None: ...

    def repair(self, profile: str, what: str) -> None: ...

    def batch(self, profile: str, result: RunResult) -> None: ...


class Watcher:
    """Follows one profile's change stream until ``stop`` is set."""

    def __init__(
        self,
        profile: Profile,
        store: StateStore,
        *,
        runner: Runner | None = None,
        stop: threading.Event | None = None,
        observer: Observer | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if isinstance(store, SharesProfiles):
            raise ConfigError(
                "schedule.mode: watch needs the profile's state in one process; "
                "with the PostgreSQL state store and several replicas use "
                'mode = "interval"'
            )
        self.profile = profile
        self.store = store
        self.clock = clock
        self.stop = stop or threading.Event()
        self.runner = runner or Runner(profile, store, stop=self.stop)
        if self.runner.group_mapping.external_id is not None:
            raise ConfigError(
                "target.group_mapping.externalId: watch cannot re-key groups batch by "
                'batch; use mode = "interval" with this mapping'
            )
        self.connector = self.runner.connector
        self.target = self.runner.target
        self.observer = observer or Observer()
        s = profile.settings
        self.batch_window = s.sync.batch_window.total_seconds()
        self.reconcile_every = parse_duration(s.schedule.full_reconcile).total_seconds()
        self.marker_every = (
            parse_duration(s.schedule.interval).total_seconds() if s.schedule.interval else 60.0
        )
        """Marker mode (no stream): seconds between syncs."""
        self.limits = limits_of(profile)
        self.window = Window(s.sync.guard_window.total_seconds())
        self.window.load(store.get_meta(self.name, WINDOW), self.clock())
        # Full syncs (the first one, reconciles, marker ticks) count against the same
        # window as batches: a refused batch planned again by a reconcile is still refused.
        self.runner.extra_guard = self._window_reasons
        self.desired: Snapshot | None = None
        self.current: ServerView | None = None
        self.emails: dict[str, str] = {}
        """The directory snapshot's users by address (merge keeps it up to date)."""
        self.managed: set[str] = set()
        """The store's managed set, kept in step with each batch's outcomes."""
        self.position = ""
        self.managed_active = 0
        self.managed_memberships = 0
        self.last_full = 0.0
        self.batches = 0
        """Batches applied (tests and the benchmark read it)."""
        self.full_syncs = 0
        self._state: ConnectorState | None = None
        """The store's connector state, for saving the position (watch owns the profile)."""

    @property
    def name(self) -> str:
        return self.profile.name

    def stream_mode(self) -> StreamMode:
        c = self.connector
        if not isinstance(c, HasChangeStream):
            return StreamMode(
                "marker", f"the {self.profile.source.type} connector has no change stream"
            )
        return c.stream_mode()

    # ------------------------------------------------------------ the loop

    def run(self) -> None:
        """Full sync, then stream, until ``stop`` is set. Raises only for errors no retry
        can mend (configuration, a frozen profile)."""
        mode = self.stream_mode()
        self.observer.mode(self.name, mode)
        log.info(
            "watch %s: stream mode %s%s",
            self.name,
            mode.mode,
            f" ({mode.reason})" if mode.reason else "",
        )
        backoff = 1.0
        need_full = True
        try:
            while not self.stop.is_set():
                try:
                    if mode.mode == "marker":
                        self._marker_tick()
                    elif need_full or self.clock() - self.last_full >= self.reconcile_every:
                        self.full_sync()
                        need_full = False
                    else:
                        self.step()
                    backoff = 1.0
                except StreamGap as exc:
                    log.warning("watch %s: %s; reading in full", self.name, exc)
                    need_full = True
                except (ConfigError, SafetyLimit):
                    raise
                except DirconnectorError as exc:
                    log.warning("watch %s: %s; retrying in %.0f s", self.name, exc, backoff)
                    self._close_stream()
                    self.stop.wait(backoff)
                    backoff = min(backoff * 2, BACKOFF_MAX)
                    if self.desired is None:
                        need_full = True
        finally:
            self._close_stream()

    def _marker_tick(self) -> None:
        """No stream: a sync every ``marker_every`` seconds; the runner's change marker
        makes it cheap when nothing moved (and a source without a marker reads in full, so
        the pause is a minute unless [schedule] interval says otherwise)."""
        full = self.clock() - self.last_full >= self.reconcile_every
        result = self.runner.run("sync", full=full, command="watch")
        self._count_removals(result, self.clock())
        if full:
            self.last_full = self.clock()
        self.observer.batch(self.name, result)
        if result.status == "refused":
            log.error("watch %s: %s", self.name, refusal(result))
        self.stop.wait(self.marker_every)

    def _close_stream(self) -> None:
        if isinstance(self.connector, HasChangeStream):
            try:
                self.connector.close()
            except DirconnectorError as exc:
                log.debug("closing the stream: %s", exc)

    def full_sync(self) -> RunResult:
        """A full run, the position taken before its read; compares the incremental
        state with the full read (a reconcile) and logs every difference as a repair."""
        assert isinstance(self.connector, HasChangeStream)
        position = self.connector.stream_position()
        result = self.runner.run("sync", full=True, command="watch-full")
        self._count_removals(result, self.clock())
        self.full_syncs += 1
        self.observer.batch(self.name, result)
        if result.status == "refused":
            log.error("watch %s: the full sync was %s", self.name, refusal(result))
        # The directory as the connector gave it (batches are merged into it unmapped).
        source = self.runner.last_source if result.desired is not None else None
        if self.desired is not None and source is not None:
            for what in _differences(self.desired, source):
                log.warning("watch %s: incremental repair: %s", self.name, what)
                self.observer.repair(self.name, what)
        self.desired = source
        self.emails = (
            {u.email: uid for uid, u in source.users.items()} if source is not None else {}
        )
        self.current = ServerView(self.target.snapshot())
        self.managed = set(self.store.managed(self.name))
        if result.plan is not None:
            self.managed_active = result.plan.managed_active
            self.managed_memberships = result.plan.managed_memberships
        self._save_position(position, None)
        self.last_full = self.clock()
        return result

    def step(self) -> RunResult | None:
        """One batch: wait for changes, gather more for ``batch_window``, apply them."""
        assert isinstance(self.connector, HasChangeStream)
        asked = self.position
        changes = self.connector.changes(asked, POLL)
        if changes.empty:
            if changes.position != asked:
                self._save_position(changes.position, None)
            return None
        started = self.clock()
        # Gather while changes keep coming (a burst), for at most batch_window; a quiet
        # moment ends the batch early, so a lone change does not wait the whole window.
        deadline = time.monotonic() + self.batch_window
        while not self.stop.is_set() and (left := deadline - time.monotonic()) > 0:
            more = self.connector.changes(changes.position, min(left, QUIET))
            changes = combine(changes, more)
            if more.empty:
                break
        return self.apply_batch(changes, started)

    def apply_batch(self, changes: Changes, seen: float | None = None) -> RunResult:
        assert self.desired is not None and self.current is not None
        seen = seen if seen is not None else self.clock()
        before = self.desired
        settled: set[str] = set()
        desired = merge(before, changes, self.emails, settled)
        hit = affected(before, desired, changes, settled | self._waiting(changes))
        if self.runner.mapping.has_manager:
            hit = with_reports(hit, before, desired, changes)
        target = self.target
        current = self.current
        if isinstance(target, ReadsSome):
            current.refresh(
                target.read_users(sorted(hit.users), self._new_addresses(desired, hit.users)),
                target.read_groups(sorted(hit.groups), self._new_names(desired, hit.groups)),
                hit.users,
                hit.groups,
            )
        else:
            current = self.current = ServerView(target.snapshot())
        cur_cut = current.cut(desired, hit)
        want_cut = self._mapped(cut_desired(desired, cur_cut, hit), desired)
        plan = self.runner.make_plan(want_cut, cur_cut, frozenset(self.managed))
        result = self._run_batch(plan, want_cut)
        self.desired = desired
        if result.report is not None:
            for outcome in result.report.outcomes:
                for op, row in managed_updates(self.name, outcome):
                    (self.managed.add if op == "add" else self.managed.discard)(str(row[2]))
        if result.status in ("ok", "no-changes", "partial") and plan.changes:
            if isinstance(target, ReadsSome):
                # Read back what the plan changed (new accounts get their server ids).
                users, groups = _changed_ids(plan)
                current.refresh(
                    target.read_users(sorted(users)),
                    target.read_groups(sorted(groups)),
                    users,
                    groups,
                )
            else:
                self.current = ServerView(target.snapshot())
        if result.status in ("ok", "no-changes", "refused"):
            # A refused batch is not retried by the stream: the snapshot holds it, and the
            # next full reconcile plans it again under the ordinary guard.
            first = min(changes.seen_at.values(), default=seen)
            lag = max(0.0, self.clock() - min(first, seen))
            self.observer.lag(self.name, lag)
            self._save_position(changes.position, lag)
        self.batches += 1
        self.observer.batch(self.name, result)
        return result

    def _mapped(self, cut: Snapshot, desired: Snapshot) -> Snapshot:
        """The cut with ``[target.mapping]`` and ``[target.group_mapping]`` applied, as a
        full read's would be (a manager is checked against every user, not the cut)."""
        mapping, groups = self.runner.mapping, self.runner.group_mapping
        if mapping:
            users = {k: mapping.map_user(u, desired.users) for k, u in cut.users.items()}
            cut = dataclasses.replace(cut, users=users)
        return groups.apply(cut) if groups else cut

    def _waiting(self, changes: Changes) -> set[str]:
        """Unchanged users who want an address that an account of a changed user holds on
        the server: the batch may free it (an email change, a delete), and a full plan
        would then give it to them, so they are in the batch too."""
        assert self.current is not None
        held = {
            a.email.lower()
            for uid in (*changes.users, *changes.removed_users)
            for a in self.current.accounts(uid)
        }
        out = {self.emails[e] for e in held if e in self.emails}
        return out - set(changes.users) - set(changes.removed_users)

    def _new_addresses(self, desired: Snapshot, users: frozenset[str]) -> list[str]:
        """Addresses to look accounts up by: those of touched users whose account (by
        external id) is unknown or holds another address (a link, a taken address)."""
        assert self.current is not None
        out = []
        for uid in users:
            want = desired.users.get(uid)
            if want is not None and want.email not in {a.email for a in self.current.accounts(uid)}:
                out.append(want.email)
        return sorted(out)

    def _new_names(self, desired: Snapshot, groups: frozenset[str]) -> list[str]:
        """Names to look groups up by: touched groups the server holds under no id."""
        assert self.current is not None
        known = {g.external_id for g in self.current.groups.values() if g.external_id in groups}
        return sorted(
            desired.groups[g].name for g in groups if g in desired.groups and g not in known
        )

    def _window_reasons(self, plan: Plan) -> list[str]:
        """The windowed guard for a full run's plan (Runner.extra_guard)."""
        return window_reasons(
            plan,
            self.limits,
            self.window,
            self.clock(),
            plan.managed_active,
            plan.managed_memberships,
            self.window.seconds,
        )

    def _count_removals(self, result: RunResult, now: float) -> None:
        """Add what a run removed to the window, and save the window."""
        report = result.report
        done = [o.change for o in report.outcomes if o.status == "ok"] if report else []
        if self.window.add(now, sum(map(is_removal, done)), sum(map(memberships_removed, done))):
            self.store.set_meta(self.name, WINDOW, self.window.dump())

    def _run_batch(self, plan: Plan, desired: Snapshot) -> RunResult:
        """Guard (windowed), apply and journal one incremental plan as a run."""
        runner, store = self.runner, self.store
        with store.lock(self.name, self.profile.settings.state.lock_timeout):
            run_id = store.start_run(self.name, "watch")
            token = logs.run_id_var.set(run_id)
            try:
                result = RunResult(run_id, self.name, "planned", plan=plan, desired=desired)
                now = self.clock()
                reasons = window_reasons(
                    plan,
                    self.limits,
                    self.window,
                    now,
                    self.managed_active,
                    self.managed_memberships,
                    self.window.seconds,
                )
                if reasons:
                    result.refused = reasons
                    result.status = "refused"
                    log.error("watch %s: batch %s", self.name, refusal(result))
                else:
                    runner._apply(plan, run_id, result)
                    self._count_removals(result, now)
            except BaseException as exc:
                runner._finish_failed(run_id, "failed", repr(exc)[:500])
                raise
            finally:
                logs.run_id_var.reset(token)
            store.finish_run(
                run_id, result.status, result.counts(), "; ".join(result.refused) or result.error
            )
        return result

    def _save_position(self, position: str, lag: float | None) -> None:
        self.position = position
        if self._state is None:
            # Loaded once: the connector's state can be large (Entra keeps its cached
            # tenant there, 20 MB of JSON at 100k users), and only these keys are written.
            self._state = self.store.connector_state(self.name)
        state = self._state
        state.set(POSITION, position)
        if lag is not None:
            state.set(LAST_LAG, round(lag, 3))
        state.commit()


def _changed_ids(plan: Plan) -> tuple[set[str], set[str]]:
    """External ids of the users and groups a plan changes."""
    users: set[str] = set()
    groups: set[str] = set()
    for c in plan.changes:
        user = getattr(c, "user", None)
        if user is not None:
            users.add(user.external_id)
        elif isinstance(c, AddMembers | RemoveMembers):
            groups.add(c.group_external_id)
            users.update(m.external_id for m in c.members)
        elif isinstance(c, RevokeUser | DeleteUser):
            users.add(c.external_id)
        else:
            groups.add(str(getattr(c, "external_id", "")))
    users.discard("")
    groups.discard("")
    return users, groups


def _differences(incremental: Snapshot, full: Snapshot) -> list[str]:
    """What the incremental snapshot got wrong, as a full read tells (each is a bug)."""
    out: list[str] = []
    for uid in sorted(set(incremental.users) | set(full.users)):
        a, b = incremental.users.get(uid), full.users.get(uid)
        if a != b:
            what = "missing" if a is None else "extra" if b is None else "stale"
            out.append(f"user {uid}: {what}")
    for gid in sorted(set(incremental.groups) | set(full.groups)):
        a_g, b_g = incremental.groups.get(gid), full.groups.get(gid)
        if a_g != b_g:
            out.append(
                f"group {gid}: {'missing' if a_g is None else 'extra' if b_g is None else 'stale'}"
            )
    return out
