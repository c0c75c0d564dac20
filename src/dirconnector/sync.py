"""The runner: read the directory, read the server, plan, guard, apply, record.

Every command is a subset of this pipeline. ``mode="plan"`` stops after the plan;
``mode="sync"`` goes on to apply it; ``apply_saved`` applies a plan file after
checking the server still holds what the plan was computed against.
"""

from __future__ import annotations

import contextlib
import dataclasses
import gc
import hashlib
import json
import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, Literal

from . import logs, registry, rekey
from .apply import ApplyReport
from .bwdc import keys as bwdc_keys
from .connectors import Connector, HasChangeMarker, ReadsAttributes, ReadsPreviousKeys
from .diff import USER_FIELDS, Policy, diff
from .errors import (
    ConfigError,
    DirconnectorError,
    LockLost,
    ProfileFrozen,
    RunInterrupted,
    SafetyLimit,
    SourceError,
    StalePlan,
    StateError,
    TickTaken,
)
from .guard import DATA_PROBLEMS, LastRead, Limits, guard
from .mapping import GroupMapping, UserMapping, parse_group_mapping, parse_user_mapping
from .model import PreviousKeys, Snapshot
from .outcome import Outcome
from .plan import AddMembers, Change, CreateUser, Kept, LinkUser, Plan, sort_changes, subject
from .settings import MappedTargetSettings, Profile
from .state import GoodRun, Marker, SharesProfiles, StateStore
from .targets import HasLimitations, StoresUserFields, Target

log = logging.getLogger(__name__)

Mode = Literal["plan", "sync"]
Status = Literal["ok", "no-changes", "planned", "refused", "partial", "failed", "unchanged"]


@dataclass
class RunResult:
    """What one run found and did."""

    run_id: str
    profile: str
    status: Status
    plan: Plan | None = None
    report: ApplyReport | None = None
    refused: list[str] = field(default_factory=list)
    desired: Snapshot | None = None
    timings: dict[str, float] = field(default_factory=dict)
    error: str = ""

    @property
    def exit_code(self) -> int:
        return {"refused": 3, "partial": 1, "failed": 1}.get(self.status, 0)

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        if self.desired is not None:
            out.update(source_users=len(self.desired.users), source_groups=len(self.desired.groups),
                       skipped=len(self.desired.skipped))
        if self.plan is not None:
            out.update({f"plan.{k}": v for k, v in self.plan.counts().items()})
            if self.plan.kept:
                out["kept"] = len(self.plan.kept)
        if self.report is not None:
            out.update(self.report.counts())
        if self.desired is not None:  # why entries were skipped (the run report says it)
            out.update(Counter(f"skipped.{s.reason}" for s in self.desired.skipped))
        return out


def policy_of(profile: Profile) -> Policy:
    s = profile.settings.sync
    return Policy(remove_disabled=s.remove_disabled, remove_missing=s.remove_missing,
                  deprovision=s.deprovision, manage=s.manage, sync_groups=s.sync_groups,
                  delete_missing_groups=s.delete_missing_groups)


def limits_of(profile: Profile) -> Limits:
    s = profile.settings.sync
    return Limits(s.max_revocations, s.max_revocation_ratio, s.min_source_ratio,
                  s.max_membership_removals, s.max_membership_removal_ratio)


def mappings_of(profile: Profile) -> tuple[UserMapping, GroupMapping]:
    """The profile's ``[target.mapping]`` and ``[target.group_mapping]`` (validated at load)."""
    target = profile.target
    if not isinstance(target, MappedTargetSettings):
        return UserMapping(), GroupMapping()
    return parse_user_mapping(target.mapping), parse_group_mapping(target.group_mapping)


def build_connector(profile: Profile) -> Connector:
    """The profile's connector, told the attributes ``[target.mapping]`` reads (so that its
    ``check`` verifies them too)."""
    cls = registry.find(registry.CONNECTORS, profile.source.type).load()
    connector: Connector = cls(profile.source)
    mapping, _ = mappings_of(profile)
    if mapping and isinstance(connector, ReadsAttributes):
        connector.read_attributes(mapping.source_attributes)
    return connector


def build_target(profile: Profile) -> Target:
    cls = registry.find(registry.TARGETS, profile.target.type).load()
    target: Target = cls(profile.target)
    return target


Applied = Callable[[int, int], None]
"""Told after each change's outcome: how many are done, of how many (a progress bar)."""


class Runner:
    """Runs one profile's pipeline against a state store: read, plan, guard, apply, record."""

    def __init__(self, profile: Profile, store: StateStore, *,
                 connector: Connector | None = None, target: Target | None = None,
                 progress: Callable[[str], None] | None = None,
                 applied: Applied | None = None, stop: threading.Event | None = None) -> None:
        self.profile = profile
        self.store = store
        self.stop = stop or threading.Event()
        """Set from another thread (SIGTERM) to end the run after the changes in flight."""
        self.connector = connector if connector is not None else build_connector(profile)
        self.target = target if target is not None else build_target(profile)
        self.takeover_from = profile.settings.sync.takeover_from
        if self.takeover_from != "none" and isinstance(self.connector, ReadsPreviousKeys):
            self.connector.read_previous_keys(self.takeover_from)
        self.mapping, self.group_mapping = mappings_of(profile)
        self.group_keys_before: dict[str, tuple[str, ...]] = {}
        """Each mapped group key's keys under earlier group mappings (rekey.py), from the
        last read."""
        self._group_mapping_before: dict[str, Any] | None = None
        """The ``[target.group_mapping]`` of the last good run (GoodRun.group_mapping)."""
        if self.mapping:
            if not isinstance(self.connector, ReadsAttributes):
                raise ConfigError(f"target.mapping: the {profile.source.type} source cannot read "
                                  "extra attributes")
            self.connector.read_attributes(self.mapping.source_attributes)
        self.extra_guard: Callable[[Plan], list[str]] | None = None
        """More reasons to refuse a plan, beside the guard's (watch: the windowed guard)."""
        self.last_source: Snapshot | None = None
        """The last directory read as the connector returned it, before the mappings
        (watch merges change batches into it)."""
        self.progress = progress or (lambda _msg: None)
        self.applied = applied or (lambda _done, _total: None)
        self._lost = threading.Event()
        """Set by the store when the profile's lock is lost mid-run (its session died)."""

    @property
    def name(self) -> str:
        return self.profile.name

    def _frozen_check(self) -> None:
        frozen = self.store.frozen(self.name)
        if frozen:
            raise ProfileFrozen(
                f"profile {self.name!r} was handed to the identity provider's SCIM on "
                f"{frozen.get('at', '?')} (dirconnector migrate apply); syncing it now would "
                f"fight the IdP",
                hint="dirconnector migrate rollback --map FILE undoes the hand-off")

    def run(self, mode: Mode = "sync", *, force: bool = False, full: bool = False,
            command: str | None = None, tick: str | None = None) -> RunResult:
        """One pass of the pipeline, holding the profile's lock.

        ``tick`` (daemon replicas on a shared store): the scheduled run this is; run only
        if no replica has claimed it yet, else raise TickTaken.
        """
        self._frozen_check()
        self._lost.clear()
        with self.store.lock(self.name, self.profile.settings.state.lock_timeout,
                             on_lost=self._lost.set):
            if tick is not None and isinstance(self.store, SharesProfiles) and \
                    not self.store.claim_tick(self.name, tick):
                raise TickTaken(f"profile {self.name!r} already ran in this tick")
            run_id = self.store.start_run(self.name, command or mode)
            token = logs.run_id_var.set(run_id)
            try:
                result = self._run(run_id, mode, force, full)
            except RunInterrupted as exc:
                self._finish_failed(run_id, "interrupted", str(exc))
                raise
            except DirconnectorError as exc:
                self._finish_failed(run_id, "failed", str(exc))
                raise
            except BaseException as exc:
                self._finish_failed(run_id, "interrupted" if isinstance(
                    exc, KeyboardInterrupt | SystemExit) else "failed", repr(exc)[:500])
                raise
            finally:
                logs.run_id_var.reset(token)
            self.store.finish_run(run_id, result.status, result.counts(),
                                  "; ".join(result.refused) or result.error)
            return result

    def _finish_failed(self, run_id: str, status: str, error: str) -> None:
        """Record a run's failure if the store still can: a store that failed (the cause,
        often) must not hide the first error; the next lock marks the run interrupted."""
        try:
            self.store.finish_run(run_id, status, error=error)
        except StateError as exc:
            log.warning("could not record run %s as %s: %s", run_id, status, exc)

    def _run(self, run_id: str, mode: Mode, force: bool, full: bool) -> RunResult:
        timings: dict[str, float] = {}
        config = self._config_digest()
        good = self.store.good_run(self.name)
        self._group_mapping_before = good.group_mapping
        # 0. A directory that proves it was not written to is not read at all.
        marker = self._change_marker(config) if mode == "sync" and not full else None
        if marker is not None and self._trusted(good.marker, marker):
            log.info("the directory has not changed since the last good run (%s); "
                     "nothing to do, nothing read", marker.value)
            return RunResult(run_id, self.name, "unchanged", timings=timings)
        # 1. Read the directory; an unchanged one means no server read either.
        desired = self._read(full, timings)
        digest = f"{config}:{desired.digest()}"
        if mode == "sync" and not full and desired.complete and good.source_digest == digest:
            log.info("directory unchanged since the last good run; nothing to do")
            self.store.keep_marker(self.name, marker)
            return RunResult(run_id, self.name, "unchanged", desired=desired, timings=timings)
        # 2. Read the server and plan; 3. guard.
        plan = self.make_plan(desired, self._read_server(timings))
        result = RunResult(run_id, self.name, "planned", plan=plan, desired=desired,
                           timings=timings)
        reasons = self.check_plan(plan, good)
        if self.extra_guard is not None:
            reasons += self.extra_guard(plan)
        if mode == "plan":
            result.refused = reasons
            result.status = "planned" if plan.changes else "no-changes"
            return result
        if reasons and not force:
            result.refused = reasons
            result.status = "refused"
            return result
        # 4. Apply; 5. record a good run (the server now matches the directory).
        self.store.keep_marker(self.name, None)
        self._apply(plan, run_id, result)
        if result.status in ("ok", "no-changes"):
            self.store.save_good_run(self.name, GoodRun(
                digest, len(desired.users), _unusable(desired),
                marker if desired.complete else None, self._group_mapping_table()))
        return result

    def _read(self, full: bool, timings: dict[str, float]) -> Snapshot:
        self.progress("reading the directory")
        t0 = time.perf_counter()
        cstate = self.store.connector_state(self.name, force_full=full)
        desired: Snapshot = self.connector.fetch(cstate)
        timings["source_read"] = time.perf_counter() - t0
        cstate.commit()
        _warn_skipped(desired)
        self.last_source = desired
        desired = self.mapped(desired)
        if self.takeover_from != "none" and desired.previous_keys is None:
            # A connector that hands over no keys reads the ids bwdc stored (bwdc/keys.py).
            desired = dataclasses.replace(desired, previous_keys=PreviousKeys(
                self.takeover_from, bwdc_keys.rule(self.profile.source.type)))
        return desired

    def _read_server(self, timings: dict[str, float]) -> Snapshot:
        self.progress("reading the server")
        t0 = time.perf_counter()
        current = self.target.snapshot()
        timings["target_read"] = time.perf_counter() - t0
        return current

    # ------------------------------------------------------------ skipping unchanged reads

    def _config_digest(self) -> str:
        """Changes with any setting (secrets excepted): a new setting means a new plan.

        Part of the no-change hash, so that turning on ``remove_disabled`` (say) is
        acted on at the next run although the directory did not change.
        """
        settings = self.profile.redacted()
        for who_is_told in ("notify", "daemon"):  # they change no plan
            settings.pop(who_is_told, None)
        text = json.dumps(settings, sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def _change_marker(self, config: str) -> Marker | None:
        """The connector's change marker now (HasChangeMarker), or None."""
        connector = self.connector
        if not isinstance(connector, HasChangeMarker) or \
                connector.full_read_interval <= timedelta(0):
            return None
        try:
            value = connector.change_marker()
        except (DirconnectorError, ValueError, OSError) as exc:
            # Only a shortcut: the full read that follows reports any real problem.
            log.debug("no change marker (%s); reading the directory in full", exc)
            return None
        return Marker(str(value), config, time.time()) if value else None

    def _trusted(self, saved: Marker | None, now: Marker) -> bool:
        """The same marker and configuration as before the last good read, within the
        source's full_read_interval of that read."""
        if saved is None or (saved.value, saved.config) != (now.value, now.config):
            return False
        assert isinstance(self.connector, HasChangeMarker)
        age = now.read_at - saved.read_at
        return 0 <= age < self.connector.full_read_interval.total_seconds()

    # ------------------------------------------------------------ plan and guard

    def preview(self) -> tuple[Plan, list[str]]:
        """The plan a full run would make and the guard's reasons to refuse it, without
        recording a run or saving any connector state (``check``)."""
        self._group_mapping_before = self.store.good_run(self.name).group_mapping
        desired = self.mapped(self.connector.fetch(
            self.store.connector_state(self.name, force_full=True)))
        plan = self.make_plan(desired, self.target.snapshot())
        return plan, self.check_plan(plan)

    def mapped(self, desired: Snapshot) -> Snapshot:
        """A source read with ``[target.mapping]`` and ``[target.group_mapping]`` applied
        (unchanged, the same object, without them)."""
        self.group_keys_before = self._group_keys_before(desired)
        try:
            return self.group_mapping.apply(self.mapping.apply(desired))
        except ValueError as exc:
            raise SourceError(f"target.{exc}") from exc

    def _group_keys_before(self, source: Snapshot) -> dict[str, tuple[str, ...]]:
        """Where a group mapping keys groups now or did at the last good run: each group's
        keys under that earlier mapping and under none (rekey.py)."""
        saved = self._group_mapping_before
        if self.group_mapping.external_id is None and not (
                isinstance(saved, dict) and "externalId" in saved):
            return {}
        before = [GroupMapping()]
        if isinstance(saved, dict):
            # A table this version cannot read: the directory's own ids still help.
            with contextlib.suppress(ValueError):
                before.append(parse_group_mapping(saved))
        return rekey.previous_keys(source, self.group_mapping, before)

    def _group_mapping_table(self) -> dict[str, Any] | None:
        """The profile's ``[target.group_mapping]`` as configured, or None."""
        target = self.profile.target
        return dict(target.group_mapping) if isinstance(
            target, MappedTargetSettings) and target.group_mapping else None

    def make_plan(self, desired: Snapshot, current: Snapshot,
                  managed: frozenset[str] | None = None) -> Plan:
        """The plan from ``desired`` to ``current``; ``managed``: the store's managed set,
        when the caller keeps it (watch mode), else read from the store."""
        if not desired.complete:
            log.warning("the directory read was incomplete; removals will be refused")
        target = self.target
        fields = target.user_fields if isinstance(target, StoresUserFields) else USER_FIELDS
        if managed is None:
            managed = self.store.managed(self.name)
        policy = policy_of(self.profile)
        relinks, seen = rekey.relink(desired, current, self.group_keys_before) \
            if policy.sync_groups else ([], current)
        plan = diff(desired, seen, policy, managed, tuple(fields))
        if relinks:
            plan = dataclasses.replace(plan, changes=sort_changes([*relinks, *plan.changes]),
                                       computed_from=current)
        if isinstance(target, HasLimitations) and plan.changes:
            plan = without_impossible(plan, target.limitations(plan))
        notes = tuple(target.describe(plan)) if plan.changes else ()
        return dataclasses.replace(plan, notes=notes) if notes else plan

    def check_plan(self, plan: Plan, good: GoodRun | None = None) -> list[str]:
        """The guard's reasons to refuse ``plan``, against the last good run."""
        good = good if good is not None else self.store.good_run(self.name)
        last = None if good.users is None else LastRead(good.users, good.unusable)
        return guard(plan, limits_of(self.profile), last)

    # ------------------------------------------------------------ apply

    def _apply(self, plan: Plan, run_id: str, result: RunResult) -> None:
        report = ApplyReport()
        result.report = report
        if plan.kept:
            self.store.record_kept(run_id, plan.kept)
        if plan.empty:
            result.status = "no-changes"
            return
        total = len(plan.changes)
        # The target stops on ``halt``: set by a signal (self.stop, seen after each outcome
        # and before the first) or the moment the store loses the profile's lock.
        halt = threading.Event()
        lost = self._lost
        store_failed: list[DirconnectorError] = []

        def record(outcome: Outcome) -> None:
            report.add(outcome)
            if not store_failed:
                try:
                    self.store.record(run_id, self.name, outcome)
                except DirconnectorError as exc:   # the journal cannot be written: stop
                    store_failed.append(exc)
            self.applied(len(report.outcomes), total)
            if self.stop.is_set() or lost.is_set() or store_failed:
                halt.set()

        if self.stop.is_set() or lost.is_set():
            halt.set()
        self.progress(f"applying {total} change(s)")
        t0 = time.perf_counter()
        # The snapshots and the plan (millions of objects at 100k users, all acyclic and
        # alive until the run ends) move to the collector's permanent generation, so the
        # collections that the apply's own allocations trigger do not walk them again and
        # again (measured: a fifth of the apply time of a 10k-user sync to SCIM).
        gc.freeze()
        try:
            self.target.apply(plan, record, halt)
        finally:
            gc.unfreeze()
            result.timings["apply"] = time.perf_counter() - t0
        done = len(report.outcomes)
        if store_failed:
            raise store_failed[0]
        if lost.is_set():
            raise LockLost(f"run {run_id}: the profile's lock was lost after {done} of "
                           f"{total} change(s); it stopped writing",
                           hint="the next run converges once the state store is reachable")
        if self.stop.is_set() and done < total:
            raise RunInterrupted(f"run {run_id} stopped by a signal after {done} of {total} "
                                 f"change(s)")
        if report.ok and done == total:
            result.status = "ok"
            return
        result.status = "partial"
        failed = len(report.failed)
        unsent = done - failed - sum(1 for o in report.outcomes if o.status == "ok")
        parts = [f"{failed} of {total} change(s) failed"] if failed else []
        if unsent:
            parts.append(f"{unsent} were not sent")
        if done < total:
            parts.append(f"{total - done} got no outcome")
        result.error = "; ".join(parts) or "some changes did not apply"

    def apply_saved(self, plan: Plan, *, force: bool = False) -> RunResult:
        """Apply a plan file, only if the server still holds what it was computed from."""
        self._frozen_check()
        self._lost.clear()
        with self.store.lock(self.name, self.profile.settings.state.lock_timeout,
                             on_lost=self._lost.set):
            run_id = self.store.start_run(self.name, "apply")
            try:
                current = self.target.snapshot()
                if current.digest() != plan.target_digest:
                    raise StalePlan(
                        "the server has changed since this plan was made; applying it now "
                        "could undo those changes", hint="make a new plan with `dirconnector plan "
                        "--out FILE`")
                result = RunResult(run_id, self.name, "planned", plan=plan)
                reasons = self.check_plan(plan)
                if reasons and not force:
                    result.refused = reasons
                    result.status = "refused"
                else:
                    self._apply(plan, run_id, result)
            except BaseException as exc:
                self._finish_failed(run_id, "failed", str(exc))
                raise
            self.store.finish_run(run_id, result.status, result.counts(),
                                  "; ".join(result.refused) or result.error)
            return result


def without_impossible(plan: Plan, impossible: Sequence[tuple[Change, str]]) -> Plan:
    """``plan`` without the changes its target cannot make; their people in ``kept``."""
    if not impossible:
        return plan
    gone = {id(c) for c, _ in impossible}
    # People whose account this plan would have created or linked have none now: the
    # memberships planned for them go too (the server would not know them).
    homeless = {c.user.external_id for c, _ in impossible if isinstance(c, CreateUser | LinkUser)}
    changes: list[Change] = []
    for c in plan.changes:
        if id(c) in gone:
            continue
        if homeless and isinstance(c, AddMembers):
            members = tuple(m for m in c.members if m.external_id not in homeless)
            if not members:
                continue
            c = dataclasses.replace(c, members=members)
        changes.append(c)
    kept = [*plan.kept, *(_kept(c, why) for c, why in impossible)]
    return dataclasses.replace(plan, changes=tuple(changes),
                               kept=tuple(sorted(kept, key=lambda k: (k.email, k.external_id))))


def _kept(change: Change, why: str) -> Kept:
    user = getattr(change, "user", None)
    ref = str(getattr(change, "ref", "") or getattr(change, "group_ref", ""))
    ext = user.external_id if user is not None else str(getattr(change, "external_id", ""))
    return Kept(ref, ext, subject(change), why)


def _unusable(desired: Snapshot) -> int:
    return sum(1 for s in desired.skipped if s.kind == "user" and s.reason in DATA_PROBLEMS)


SKIPPED_SHOWN = 20
"""Skipped entries named one per log line; the rest are counted (all are in the JSON plan)."""


# DATA_PROBLEMS (guard.py): skip reasons an administrator must fix at the source. Skips
# the configuration asked for (filtered out, a status not synced, external members) are
# counted, not warned about, so a scheduled run stays quiet when nothing is wrong.


def _warn_skipped(desired: Snapshot) -> None:
    """Name the records skipped for bad data (duplicate or missing email...), so an
    administrator can fix them at the source; the report only counts them."""
    problems = [s for s in desired.skipped if s.reason in DATA_PROBLEMS]
    for s in problems[:SKIPPED_SHOWN]:
        log.warning("skipped %s %s: %s%s", s.kind, s.ref, s.reason,
                    f" ({s.detail})" if s.detail else "")
    if len(problems) > SKIPPED_SHOWN:
        log.warning("... and %d more skipped entries (all in `dirconnector plan --format json`)",
                    len(problems) - SKIPPED_SHOWN)


def refusal(result: RunResult) -> SafetyLimit:
    """The error a refused run raises, with what would have happened and how to override."""
    lines = "; ".join(result.refused)
    return SafetyLimit(
        f"refused by the safety guard: {lines}. Nothing was changed on the server",
        hint="review `dirconnector plan`; fix an unhealthy read at the source; if the plan "
             "is right, rerun with --force once, or raise the [sync] limit it names")
