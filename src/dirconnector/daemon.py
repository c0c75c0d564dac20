"""The daemon: one process, several profiles, each on its own schedule.

One configuration file per profile (``--config`` repeated). apscheduler 3 runs one
job per profile with ``max_instances=1`` and ``coalesce=True``; the state store's
lock also keeps a second daemon or a manual ``sync`` of the same profile out.

A failing run is recorded and retried at a later tick, waiting longer after each
consecutive failure (interval * 2^n, at most an hour). A guard refusal is not a
failure to retry past: every tick plans again and is refused again until an
operator acts. SIGTERM/SIGINT stop scheduling, let the change in flight finish,
record the run as interrupted, and exit 0 within ``stop_timeout``. SIGHUP reloads
every file; a file that no longer validates keeps its old configuration.

Replicas. With ``--profiles DIR`` (every ``*.toml`` in it, re-read on SIGHUP: new files
start, removed ones stop) and a shared store (PostgreSQL), the daemon can run N times on
as many hosts. Every replica schedules every profile on ticks aligned to the epoch, each
at an offset of its own (a hash of replica and profile, within a fifth of the interval,
at most 5 s): the first replica to fire takes the profile's lock and claims the tick (the
number of the interval since the epoch) in the store; the others find the lock taken or
the tick claimed and skip quietly. Clocks need only roughly agree (NTP): each replica
labels its own fires. So each
profile runs once per tick, on the replica with the smallest offset for it, which
spreads the profiles evenly without a coordinator; when that replica dies its session
(and lock) dies with it and the next offset's replica runs the profile at the next
tick. The failure back-off is kept in the store, so it holds across replicas.
"""

from __future__ import annotations

import hashlib
import logging
import os
import random
import signal
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import logs
from . import settings as settings_mod
from .connectors import StreamMode
from .errors import ConfigError, DirconnectorError, LockHeld, RunInterrupted, TickTaken
from .health import HealthServer, Metrics
from .notify import Outcome, build, events_for, outcome_class
from .notify_send import Notifier
from .settings import Profile
from .state import SharesProfiles, StateStore, open_store
from .state.records import Holder, default_replica
from .sync import Runner, RunResult
from .watch import Observer

if TYPE_CHECKING:
    from .plan import Plan

log = logging.getLogger(__name__)

MIN_INTERVAL = 60.0
MAX_BACKOFF = 3600.0
HEARTBEAT = 5.0
"""Seconds between a replica's heartbeats (and refreshes of who holds what)."""
MAX_OFFSET = 5.0
"""A replica's offset into each tick is below a fifth of the interval and this."""


def parse_duration(text: str, field_name: str) -> float:
    """Seconds in "90s", "15m", "1h30m", "2d"; a ConfigError naming the field otherwise."""
    try:
        return settings_mod.parse_duration(text).total_seconds()
    except ValueError as exc:
        raise ConfigError(f"{field_name}: {exc}") from exc


@dataclass
class Job:
    """One profile as the daemon tracks it."""

    path: Path
    profile: Profile
    failures: int = 0
    not_before: float = 0.0
    last: dict[str, Any] = field(default_factory=dict)
    next_run: float | None = None
    outcome: Outcome | None = None
    """The last run's outcome that means something (ok, failed, refused): notifications."""
    refused_plan: Plan | None = None
    """The plan the last run refused, for the status page's report of that run."""
    refused_run: str = ""
    watch_stop: threading.Event | None = None
    """Watch mode: set to stop this profile's watcher (reload, removal, shutdown)."""
    watch_thread: threading.Thread | None = None

    @property
    def name(self) -> str:
        return self.profile.name


class _WatchObserver(Observer):
    """Tells the daemon's metrics and status what a watcher does."""

    def __init__(self, daemon: Daemon, job: Job) -> None:
        self.daemon, self.job = daemon, job

    def mode(self, profile: str, mode: StreamMode) -> None:
        self.daemon.metrics.stream_mode.labels(profile, mode.mode).set(1)

    def lag(self, profile: str, seconds: float) -> None:
        self.daemon.metrics.change_lag.labels(profile).observe(seconds)

    def repair(self, profile: str, what: str) -> None:
        self.daemon.metrics.repairs.labels(profile).inc()

    def batch(self, profile: str, result: RunResult) -> None:
        self.daemon.metrics.observe(profile, result.status, sum(result.timings.values()),
                                    result)
        self.job.last = {"status": result.status, "at": time.time(),
                         "error": "; ".join(result.refused) or result.error,
                         "run_id": result.run_id}


class Daemon:
    """Schedules every profile and serves health and metrics."""

    def __init__(self, paths: list[Path], *, health_addr: str | None = None,
                 min_interval: float | None = None, stop_timeout: float = 30.0,
                 profiles_dir: Path | None = None, replica: str | None = None) -> None:
        self.profiles_dir = profiles_dir
        paths = [*paths, *profile_files(profiles_dir)]
        self.paths = paths
        self.replica = replica or default_replica()
        self._holders: dict[str, Holder] = {}
        """Who holds each shared profile, as of the last heartbeat."""
        self.min_interval = min_interval if min_interval is not None else float(
            os.environ.get("DIRCONNECTOR_MIN_INTERVAL_SECONDS", MIN_INTERVAL))
        self.stop_timeout = stop_timeout
        self.stop_event = threading.Event()
        self.reload_event = threading.Event()
        self.metrics = Metrics()
        self.jobs: dict[str, Job] = {}
        self._stores: dict[str, StateStore] = {}
        self._running: set[str] = set()
        self._lock = threading.Lock()
        self.health = HealthServer(health_addr, self) if health_addr else None
        for path in paths:
            job = Job(path, settings_mod.load(path))
            self._schedule_of(job.profile)
            if job.name in self.jobs:
                raise ConfigError(f"profile {job.name!r} is defined by both "
                                  f"{self.jobs[job.name].path} and {path}",
                                  hint="give each file its own top-level profile = \"...\"")
            self.jobs[job.name] = job
        from apscheduler.schedulers.background import BackgroundScheduler

        self.scheduler = BackgroundScheduler(timezone="UTC")
        self.status_token = status_token_of([j.profile for j in self.jobs.values()])
        """[daemon] status_token: what the status page asks for (None: open)."""
        self.status_warning = ""
        """Shown on the status page: set when it is bound beyond loopback without a token."""
        self.notifier = Notifier(self.metrics.notified)

    # ------------------------------------------------------------------ schedule
    def _schedule_of(self, profile: Profile) -> tuple[str, Any, float]:
        """(kind, trigger arg, jitter seconds); errors name the profile's [schedule] key."""
        s = profile.settings.schedule
        if s.mode == "watch":
            parse_duration(s.full_reconcile, "schedule.full_reconcile")
            if profile.settings.state.url is not None:
                raise ConfigError(f"{profile.path}: schedule.mode: \"watch\" keeps the "
                                  f"profile's state in one process; it cannot share the "
                                  f"PostgreSQL state store with replicas",
                                  hint="use mode = \"interval\" with PostgreSQL, or a SQLite "
                                       "[state] path for a watched profile")
            return "watch", None, 0.0
        if bool(s.interval) == bool(s.cron):
            raise ConfigError(f"{profile.path}: schedule: set exactly one of interval or cron")
        jitter = parse_duration(s.jitter, "schedule.jitter") if s.jitter.strip("0s ") else 0.0
        parse_duration(s.full_reconcile, "schedule.full_reconcile")
        if s.interval:
            seconds = parse_duration(s.interval, "schedule.interval")
            if seconds < self.min_interval:
                raise ConfigError(f"schedule.interval: {s.interval!r} is shorter than the "
                                  f"minimum of {self.min_interval:.0f}s")
            return "interval", seconds, jitter
        from apscheduler.triggers.cron import CronTrigger

        try:
            CronTrigger.from_crontab(str(s.cron), timezone="UTC")
        except ValueError as exc:
            raise ConfigError(f"schedule.cron: {s.cron!r} is not a 5-field cron line: "
                              f"{exc}") from exc
        return "cron", s.cron, jitter

    def _add_job(self, job: Job) -> None:
        import datetime as dt

        from apscheduler.triggers.cron import CronTrigger
        from apscheduler.triggers.interval import IntervalTrigger

        kind, arg, jitter = self._schedule_of(job.profile)
        if kind == "watch":
            self._start_watch(job)
            return
        trigger: Any
        first = _now_dt()
        if self.shared(job):
            # Epoch-aligned ticks, at this replica's offset into each (module docstring).
            period = float(arg) if kind == "interval" else 60.0
            offset = self._offset(job.name, period)
            first += dt.timedelta(seconds=offset)
            if kind == "interval":
                start = dt.datetime.fromtimestamp(offset, dt.UTC)
                trigger = IntervalTrigger(seconds=arg, start_date=start, timezone="UTC")
            else:
                trigger = CronTrigger.from_crontab(arg, timezone="UTC")
                trigger.jitter = offset or None  # cron: the offset as a jitter below 5 s
            # A fire queued behind others still claims the tick it starts in (the store's
            # clock decides), so it may start late: up to nearly the whole interval.
            grace = max(1, int(period * 0.9))
        elif kind == "interval":
            trigger = IntervalTrigger(seconds=arg, jitter=jitter or None, timezone="UTC")
            grace = max(1, int(arg / 2))
        else:
            trigger = CronTrigger.from_crontab(arg, timezone="UTC")
            trigger.jitter = jitter or None
            grace = 60
        self.scheduler.add_job(self.run_job, trigger, args=[job.name], id=job.name,
                               name=job.name, max_instances=1, coalesce=True,
                               misfire_grace_time=grace, replace_existing=True,
                               next_run_time=first)

    def _start_watch(self, job: Job) -> None:
        """Watch mode: the profile's watcher in a thread of its own (watch.py)."""
        self._stop_watch(job)
        stop = threading.Event()
        job.watch_stop = stop
        job.watch_thread = threading.Thread(target=self._watch, args=(job, stop),
                                            name=f"watch-{job.name}", daemon=True)
        job.watch_thread.start()

    def _stop_watch(self, job: Job, wait: float = 10.0) -> None:
        if job.watch_stop is not None:
            job.watch_stop.set()
        if job.watch_thread is not None:
            job.watch_thread.join(wait)
        job.watch_stop = job.watch_thread = None

    def _watch(self, job: Job, stop: threading.Event) -> None:
        from .watch import Watcher

        while not stop.is_set() and not self.stop_event.is_set():
            try:
                Watcher(job.profile, self.store_for(job.profile), stop=stop,
                        observer=_WatchObserver(self, job)).run()
            except DirconnectorError as exc:
                log.error("profile %s: watch stopped: %s; starting again in 60 s", job.name, exc)
                job.last = {"status": "failed", "at": time.time(), "error": str(exc)}
            except Exception:  # the daemon must outlive any one watcher
                log.exception("profile %s: watch failed; starting again in 60 s", job.name)
            stop.wait(60.0)

    def shared(self, job: Job) -> bool:
        """The profile's store is shared by replicas (PostgreSQL)."""
        return isinstance(self.store_for(job.profile), SharesProfiles)

    def _offset(self, name: str, period: float) -> float:
        """This replica's fixed offset into the profile's ticks (rendezvous by hash)."""
        digest = hashlib.sha256(f"{self.replica}\0{name}".encode()).digest()
        return int.from_bytes(digest[:4], "big") / 2**32 * min(period / 5, MAX_OFFSET)

    def store_for(self, profile: Profile) -> StateStore:
        state = profile.settings.state
        where = state.url.get_secret_value() if state.url is not None else str(state.path)
        with self._lock:
            if where not in self._stores:
                self._stores[where] = open_store(state, replica=self.replica)
            return self._stores[where]

    # ------------------------------------------------------------------ one run
    def run_job(self, name: str) -> None:
        job = self.jobs.get(name)
        if job is None or self.stop_event.is_set():
            return
        now = time.time()
        shared = self.shared(job)
        if shared:  # the back-off every replica honours
            saved = self.store_for(job.profile).get_meta(name, "daemon") or {}
            job.failures = int(saved.get("failures", 0))
            job.not_before = float(saved.get("not_before", 0.0))
        if now < job.not_before:
            log.info("profile %s: backing off after %d failure(s); next try after %s", name,
                     job.failures, time.strftime("%H:%M:%S", time.localtime(job.not_before)))
            return
        store = self.store_for(job.profile)
        sched = job.profile.settings.schedule
        full_every = parse_duration(sched.full_reconcile, "schedule.full_reconcile")
        last_full = store.get_meta(name, "last_full_at", 0.0)
        full = now - float(last_full) >= full_every
        with self._lock:
            self._running.add(name)
        started = time.monotonic()
        result: RunResult | None = None
        status = "failed"
        error = ""
        try:
            runner = Runner(job.profile, store, stop=self.stop_event)
            result = runner.run("sync", full=full, command="daemon",
                                tick=self._tick(job, now) if shared else None)
            status = result.status
            if full and status in ("ok", "no-changes"):
                store.set_meta(name, "last_full_at", now)
        except LockHeld as exc:
            with self._lock:
                self._running.discard(name)
            if shared:  # another replica runs it, or ran it this tick: nothing to say
                log.debug("profile %s: %s", name, exc)
                self._after_skip(job)
                return
            assert not isinstance(exc, TickTaken)
            status, error = "skipped", str(exc)
            log.warning("profile %s: %s; skipping this tick", name, exc)
        except RunInterrupted as exc:
            status, error = "interrupted", str(exc)
            log.warning("profile %s: %s", name, exc)
        except DirconnectorError as exc:
            error = str(exc)
            log.error("profile %s: run failed: %s", name, exc)
        except Exception as exc:  # the daemon must outlive any one run
            error = f"{type(exc).__name__}: {exc}"
            log.exception("profile %s: unexpected error", name)
        finally:
            with self._lock:
                self._running.discard(name)
        duration = time.monotonic() - started
        if result is not None and result.refused:
            log.error("profile %s: refused by the safety guard: %s", name,
                      "; ".join(result.refused))
            error = "; ".join(result.refused)
        elif result is not None and result.error:
            error = result.error
        self._after_run(job, status, error, duration, result)

    def _after_skip(self, job: Job) -> None:
        sj = self.scheduler.get_job(job.name)
        job.next_run = sj.next_run_time.timestamp() if sj and sj.next_run_time else None

    def _tick(self, job: Job, now: float) -> str:
        """The scheduled run a fire is, as every replica labels it: the number of the
        interval it was due in (``now`` less this replica's offset: a fire that waited for
        a free worker keeps its label), or the minute of a cron schedule."""
        s = job.profile.settings.schedule
        if not s.interval:
            return f"{int(now // 60)}/cron"
        period = parse_duration(s.interval, "schedule.interval")
        return f"{int((now - self._offset(job.name, period)) // period)}/{period:g}"

    def _after_run(self, job: Job, status: str, error: str, duration: float,
                   result: RunResult | None) -> None:
        previous = self._previous_outcome(job)
        interval = self._interval_hint(job)
        if status in ("failed", "partial"):
            job.failures += 1
            wait = min(MAX_BACKOFF, interval * (2 ** (job.failures - 1)))
            job.not_before = time.time() + wait * random.uniform(0.9, 1.0)
        elif status != "skipped":
            job.failures = 0
            job.not_before = 0.0
        job.last = {"status": status, "at": time.time(), "duration": round(duration, 3),
                    "error": error, "run_id": result.run_id if result else ""}
        self.metrics.observe(job.name, status, duration, result)
        sj = self.scheduler.get_job(job.name)
        job.next_run = sj.next_run_time.timestamp() if sj and sj.next_run_time else None
        try:
            self.store_for(job.profile).set_meta(job.name, "daemon", {
                **job.last, "next_run": job.next_run, "failures": job.failures,
                "not_before": job.not_before, "replica": self.replica})
        except DirconnectorError as exc:  # the store is down: the next tick says so again
            log.error("profile %s: cannot record the run's outcome: %s", job.name, exc)
        self._notify(job, previous, status, error, duration, result)

    # ------------------------------------------------------------------ notifications
    def _previous_outcome(self, job: Job) -> Outcome | None:
        """The profile's last meaningful outcome, kept across restarts in the state."""
        if job.outcome is None:
            try:
                saved = self.store_for(job.profile).get_meta(job.name, "notify") or {}
            except DirconnectorError as exc:  # the store is down: no transition to tell
                log.error("profile %s: cannot read the last outcome: %s", job.name, exc)
                return None
            job.outcome = outcome_class(str(saved.get("outcome", "")))
        return job.outcome

    def _notify(self, job: Job, previous: Outcome | None, status: str, error: str,
                duration: float, result: RunResult | None) -> None:
        """Queue the run's notifications (notify.events_for); never blocks, never raises."""
        store = self.store_for(job.profile)
        now = outcome_class(status)
        if now is not None and now != job.outcome:
            job.outcome = now
            try:
                store.set_meta(job.name, "notify", {"outcome": now, "at": time.time()})
            except DirconnectorError as exc:
                log.error("profile %s: cannot record the outcome: %s", job.name, exc)
        refused = result is not None and status == "refused"
        job.refused_plan = result.plan if refused and result is not None else None
        job.refused_run = result.run_id if refused and result is not None else ""
        settings = job.profile.settings.notify
        if not settings.any:
            return
        try:
            run_id, counts = job.last.get("run_id", ""), result.counts() if result else {}
            if result is None:  # the run raised: its row, if it got as far as starting one
                rows = store.runs(job.name, 1)
                if rows and rows[0].started >= time.time() - duration - 1:
                    run_id, counts = rows[0].id, rows[0].counts
            applied = sum(1 for o in result.report.outcomes if o.status == "ok") \
                if result is not None and result.report is not None else 0
            events = events_for(previous, status, job.failures, settings.failing_after, applied)
            report = None
            if result is not None and result.plan is not None:
                from .report_html import context_of
                from .report_runs import result_page

                profile, kept = job.profile, result

                def report() -> str:
                    return result_page(kept, context_of(profile))

            self.notifier.submit(build(job.profile, events, status=status, run_id=run_id,
                                       error=error, refused=result.refused if result else [],
                                       counts=counts, failures=job.failures, report=report),
                                 settings)
        except Exception:  # telling people must never stop the schedule
            log.exception("profile %s: could not queue notifications", job.name)

    def _interval_hint(self, job: Job) -> float:
        s = job.profile.settings.schedule
        return parse_duration(s.interval, "schedule.interval") if s.interval else 3600.0

    # ------------------------------------------------------------------ lifecycle
    def reload(self) -> None:
        """Re-read every file; keep the old settings of a file that no longer validates.
        With a profiles directory, its new files start and its removed files stop."""
        if self.profiles_dir is not None:
            self._rescan(self.profiles_dir)
        for job in list(self.jobs.values()):
            try:
                profile = settings_mod.load(job.path)
                self._schedule_of(profile)
                logs.add_secrets(settings_mod.secret_values(profile))  # rotated secrets too
            except DirconnectorError as exc:
                log.error("reload of %s failed, keeping the running configuration: %s",
                          job.path, exc)
                continue
            if profile.name != job.name:
                log.error("reload of %s: the profile name changed (%s -> %s); restart the "
                          "daemon to rename a profile", job.path, job.name, profile.name)
                continue
            job.profile = profile
            if self.scheduler.get_job(job.name):
                self.scheduler.remove_job(job.name)
            self._stop_watch(job)
            self._add_job(job)
            log.info("profile %s: configuration reloaded from %s", job.name, job.path)

    def _rescan(self, folder: Path) -> None:
        files = set(profile_files(folder))
        for job in [j for j in self.jobs.values() if j.path.parent == folder]:
            if job.path not in files:
                log.info("profile %s: %s was removed; no longer scheduled", job.name, job.path)
                if self.scheduler.get_job(job.name):
                    self.scheduler.remove_job(job.name)
                self._stop_watch(job)
                del self.jobs[job.name]
        known = {j.path for j in self.jobs.values()}
        for path in sorted(files - known):
            try:
                job = Job(path, settings_mod.load(path))
                self._schedule_of(job.profile)
                logs.add_secrets(settings_mod.secret_values(job.profile))
            except DirconnectorError as exc:
                log.error("new profile file %s not started: %s", path, exc)
                continue
            if job.name in self.jobs:
                log.error("new profile file %s not started: profile %r is already defined by "
                          "%s", path, job.name, self.jobs[job.name].path)
                continue
            self.jobs[job.name] = job
            self._add_job(job)
            log.info("profile %s: added from %s", job.name, path)
        self.paths = [j.path for j in self.jobs.values()]

    def status(self) -> dict[str, Any]:
        with self._lock:
            running = set(self._running)
            holders = dict(self._holders)
        out = {}
        for name, job in self.jobs.items():
            sj = self.scheduler.get_job(name)
            state = "running" if name in running else job.last.get("status", "pending")
            out[name] = {"state": state, "last": job.last, "failures": job.failures,
                         "next_run": sj.next_run_time.isoformat() if sj and sj.next_run_time
                         else None, "config": str(job.path)}
            holder = holders.get(name)
            if holder is not None:  # replicas: who runs it now, or ran it last
                out[name]["holder"] = {"replica": holder.replica, "held": holder.held,
                                       "since": holder.since}
        return out

    def replica_status(self) -> dict[str, Any]:
        """This replica's id and the profiles it holds now (/healthz)."""
        with self._lock:
            running = sorted(self._running)
        return {"replica": self.replica, "holding": running}

    def _beat(self) -> None:
        """Heartbeat to each shared store; refresh who holds what."""
        with self._lock:
            stores = list(self._stores.values())
            running = set(self._running)
        holders: dict[str, Holder] = {}
        for store in stores:
            if not isinstance(store, SharesProfiles):
                continue
            try:
                store.heartbeat(running)
                holders.update(store.holders())
            except DirconnectorError as exc:
                log.warning("heartbeat to %s failed: %s", store.describe(), exc)
        with self._lock:
            self._holders = holders

    def serve(self) -> int:
        """Run until SIGTERM/SIGINT; returns the process exit code."""
        signal.signal(signal.SIGTERM, self._on_stop)
        signal.signal(signal.SIGINT, self._on_stop)
        signal.signal(signal.SIGHUP, lambda *_: self.reload_event.set())
        for job in self.jobs.values():
            self._add_job(job)
        self.scheduler.start()
        if self.health is not None:
            self.health.start()
        log.info("daemon started: %s", ", ".join(
            f"{j.name} ({_schedule_text(j.profile)})" for j in self.jobs.values()))
        beat = 0.0
        while not self.stop_event.wait(0.5):
            if self.reload_event.is_set():
                self.reload_event.clear()
                self.reload()
            if time.monotonic() - beat >= HEARTBEAT:
                beat = time.monotonic()
                self._beat()
        log.info("stopping: no new runs; waiting up to %.0fs for the running one",
                 self.stop_timeout)
        self.scheduler.shutdown(wait=False)
        deadline = time.monotonic() + self.stop_timeout
        for job in self.jobs.values():
            if job.watch_stop is not None:
                job.watch_stop.set()
        for job in self.jobs.values():
            if job.watch_thread is not None:
                job.watch_thread.join(max(0.0, deadline - time.monotonic()))
        while time.monotonic() < deadline:
            with self._lock:
                if not self._running:
                    break
            time.sleep(0.1)
        with self._lock:
            left = set(self._running)
        for name in left:
            log.warning("profile %s: still running at shutdown; recorded as interrupted", name)
            store = self.store_for(self.jobs[name].profile)
            for row in store.runs(name, 1):
                if row.status == "running":
                    store.finish_run(row.id, "interrupted", error="daemon stopped")
        if self.notifier.pending:
            log.info("waiting up to 10s for %d notification(s)", self.notifier.pending)
            self.notifier.drain(10.0)
        if self.health is not None:
            self.health.stop()
        log.info("daemon stopped")
        return 0

    def _on_stop(self, signum: int, _frame: object) -> None:
        log.info("received %s", signal.Signals(signum).name)
        self.stop_event.set()


def _schedule_text(profile: Profile) -> str:
    s = profile.settings.schedule
    return "watch" if s.mode == "watch" else str(s.interval or s.cron)


def profile_files(folder: Path | None) -> list[Path]:
    """The profiles of a ``--profiles`` directory: its ``*.toml`` files, sorted."""
    if folder is None:
        return []
    if not folder.is_dir():
        raise ConfigError(f"--profiles {folder}: not a directory")
    return sorted(p for p in folder.glob("*.toml") if p.is_file())


def status_token_of(profiles: list[Profile]) -> str | None:
    """The one [daemon] status_token the profile files give (they must agree), or None."""
    tokens = {p.settings.daemon.status_token.get_secret_value() for p in profiles
              if p.settings.daemon.status_token is not None}
    if len(tokens) > 1:
        raise ConfigError("[daemon] status_token differs between the profile files; the "
                          "daemon serves one status page",
                          hint="set the same status_token_env in each file, or in one only")
    return next(iter(tokens), None)


def _now_dt() -> Any:
    import datetime as dt

    return dt.datetime.now(dt.UTC)
