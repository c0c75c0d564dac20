"""PostgresStore: the state of many profiles, shared by several hosts (psycopg 3).

The same data as SQLite, in the same shape (JSON as text), plus what daemon replicas
coordinate through: ``holders`` (who took each profile's lock, and the last schedule tick
run) and ``replicas`` (heartbeats). Schema and connection settings: pg_schema.py.

Locks. A profile's lock is a session advisory lock (``pg_try_advisory_lock``) taken on a
connection of its own: the server frees it when that session ends, whatever kills the
holder. Every write of the locked run goes through that same session, so no write can
land once the lock is gone, and each journal group's commit proves the session alive
before the run goes on: a run whose session died (PostgreSQL restarted, the session
killed) stops within one group, 0.2 s of changes. A silent session (the network cut) is
caught by the heartbeat: every ``lock_lease / 6`` each locked session is pinged, and one
not heard from for half the lease is lost; the runner is told at once (``on_lost``) and
starts no further change. The server, asked per session through TCP keepalives, drops a
silent session (and frees its lock for another replica) only after about the whole
lease, so the cut replica has stopped writing before another can take the profile.

Journal groups work as in SQLite (state/__init__), one group per session: the rows of a
locked run are committed on its lock session, in one transaction with their managed-set
updates.
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import json
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import psycopg

from ..errors import LockHeld, LockLost, StateError
from ..outcome import Outcome
from ..plan import Kept, plain, subject
from ..state_space import ConnectorState
from . import records
from .pg_schema import connect, describe, newer, schema_version, version
from .records import (
    ENCODE,
    GOOD_KEYS,
    GoodRun,
    Holder,
    ManagedOp,
    Marker,
    Replica,
    RunRow,
    default_replica,
    good_run_of,
    good_run_values,
    managed_updates,
    marker_value,
)

if TYPE_CHECKING:
    from ..settings import StateSettings

log = logging.getLogger(__name__)

IDLE_SESSIONS = 16
"""Connections kept open for the next lock (the rest are closed when released)."""


def lock_key(profile: str) -> int:
    """The profile's advisory lock key: 64 bits of a hash of its name."""
    return int.from_bytes(hashlib.sha256(b"dirconnector:" + profile.encode()).digest()[:8],
                          "big", signed=True)


def _key_parts(key: int) -> tuple[int, int]:
    """How pg_locks shows a bigint advisory key: (classid, objid), high and low halves."""
    return (key >> 32) & 0xFFFFFFFF, key & 0xFFFFFFFF


@dataclass(eq=False)
class _Session:
    """One connection: the general one, or one holding a profile's lock."""

    conn: psycopg.Connection[Any]
    mutex: threading.Lock = field(default_factory=threading.Lock)
    profile: str | None = None
    """The profile whose lock this session holds."""
    key: int = 0
    lost: bool = False
    on_lost: Callable[[], None] | None = None
    group: list[tuple[Any, ...]] = field(default_factory=list)
    """Journal rows not yet written (state/__init__: groups)."""
    group_managed: list[ManagedOp] = field(default_factory=list)
    group_since: float = 0.0
    confirmed: float = 0.0
    """When (monotonic) a round trip on this session last succeeded."""
    pinging: bool = False


_JOURNAL_ROW = "INSERT INTO journal VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s)"
_MANAGED = {"add": "INSERT INTO managed VALUES (%s,%s,%s,%s,%s) ON CONFLICT (profile, kind, "
                   "ref) DO UPDATE SET external_id=EXCLUDED.external_id, since=EXCLUDED.since",
            "del": "DELETE FROM managed WHERE profile=%s AND kind=%s AND ref=%s"}
_SET_META = ("INSERT INTO meta VALUES (%s,%s,%s) ON CONFLICT (profile, key) "
             "DO UPDATE SET value=EXCLUDED.value")
_SET_CSTATE = ("INSERT INTO connector_state VALUES (%s,%s,%s) ON CONFLICT (profile, key) "
               "DO UPDATE SET value=EXCLUDED.value")


class PostgresStore:
    """A PostgreSQL database; safe to share between threads, processes and hosts."""

    shared = True

    def __init__(self, settings: StateSettings, *, replica: str | None = None) -> None:
        self.settings = settings
        self.replica = replica or default_replica()
        self._where = describe(settings)
        self._heartbeat = settings.lock_lease.total_seconds() / 6
        self._mutex = threading.Lock()
        """Guards the maps below (never held across a database call)."""
        self._general: _Session | None = None
        self._general_mutex = threading.Lock()
        self._held: dict[str, _Session] = {}
        self._idle: list[_Session] = []
        self._run_profile: dict[str, str] = {}
        self._seq: dict[str, int] = {}
        self._ticks: dict[str, str] = {}
        """The tick each profile's next run claimed (written on its run row)."""
        self._closing = threading.Event()
        self._pinger: threading.Thread | None = None
        self._started = time.time()
        with self._on(None) as conn:
            found = version(conn)
        if found > schema_version():
            raise newer(found, self._where)
        if found < schema_version():
            raise StateError(
                f"state: {self._where} has schema version {found}; this dirconnector needs "
                f"{schema_version()}", hint="run `dirconnector state migrate` (with the same "
                "[state] settings) once, before the daemons start")

    def describe(self) -> str:
        return self._where

    def close(self) -> None:
        self._closing.set()
        with contextlib.suppress(StateError):
            self.flush()
        with self._mutex:
            sessions = [*self._idle, *self._held.values()]
            if self._general is not None:
                sessions.append(self._general)
            self._idle, self._held, self._general = [], {}, None
        for s in sessions:
            s.conn.close()

    def flush(self) -> None:
        with self._mutex:
            sessions = [*self._held.values(), *([self._general] if self._general else [])]
        for s in sessions:
            with s.mutex:
                self._commit_group(s)

    # ------------------------------------------------------------------ sessions
    def _new_session(self) -> _Session:
        return _Session(connect(self.settings))

    def _session(self, profile: str | None) -> _Session:
        """The session that holds ``profile``'s lock, else the general one."""
        with self._mutex:
            held = self._held.get(profile) if profile is not None else None
            if held is not None:
                return held
        with self._general_mutex:
            s = self._general
            if s is None or s.conn.closed or s.conn.broken:
                if s is not None:
                    s.conn.close()
                s = self._general = self._new_session()
            return s

    @contextlib.contextmanager
    def _on(self, profile: str | None) -> Iterator[psycopg.Connection[Any]]:
        """The connection for ``profile``'s state, its open group committed first; database
        errors become StateError (LockLost when the locked session died)."""
        s = self._session(profile)
        with s.mutex:
            if s.lost:
                raise self._lost_error(s)
            self._commit_group(s)
            try:
                yield s.conn
            except psycopg.Error as exc:
                raise self._failure(s, exc, "") from exc
            s.confirmed = time.monotonic()

    def _failure(self, s: _Session, exc: psycopg.Error, doing: str) -> StateError:
        dead = s.conn.closed or s.conn.broken or isinstance(exc, psycopg.OperationalError)
        if s.profile is not None and dead:
            self._mark_lost(s)
            return self._lost_error(s)
        return StateError(f"state: {self._where}: {doing}{str(exc).strip()}")

    def _lost_error(self, s: _Session) -> LockLost:
        return LockLost(f"profile {s.profile!r}: the database session holding its lock is "
                        f"gone ({self._where}); this run stopped writing",
                        hint="the next tick runs the profile again once PostgreSQL is "
                             "reachable")

    def _mark_lost(self, s: _Session) -> None:
        if s.lost:
            return
        s.lost = True
        log.error("profile %s: lost the lock's database session; stopping its run", s.profile)
        if s.on_lost is not None:
            s.on_lost()
        # A write blocked on a silent connection fails now instead of at the TCP timeout.
        with contextlib.suppress(OSError, psycopg.Error):
            sock = socket.socket(fileno=os.dup(s.conn.fileno()))
            try:
                sock.shutdown(socket.SHUT_RDWR)
            finally:
                sock.close()

    def _commit_group(self, s: _Session) -> None:
        """One transaction on the session (its mutex held); executemany per statement run."""
        if not s.group:
            return
        rows, managed = s.group, s.group_managed
        s.group, s.group_managed = [], []
        try:
            with s.conn.transaction(), s.conn.cursor() as cur:
                cur.executemany(_JOURNAL_ROW, rows)
                for op, params in itertools.groupby(managed, key=lambda item: item[0]):
                    cur.executemany(_MANAGED[op], [p for _, p in params])
        except psycopg.Error as exc:
            raise self._failure(s, exc, "cannot write the journal: ") from exc
        s.confirmed = time.monotonic()

    # ------------------------------------------------------------------ lock
    @contextlib.contextmanager
    def lock(self, profile: str, timeout: float = 0.0,
             on_lost: Callable[[], None] | None = None) -> Iterator[None]:
        """Hold the profile's advisory lock on a session of its own (module docstring)."""
        key = lock_key(profile)
        s = self._checkout()
        deadline = time.monotonic() + timeout
        try:
            while True:
                row = s.conn.execute("SELECT pg_try_advisory_lock(%s)", (key,)).fetchone()
                if row and row[0]:
                    break
                if time.monotonic() >= deadline:
                    raise LockHeld(f"profile {profile!r} is already running "
                                   f"({self._holder_text(profile)})",
                                   hint="wait for it to finish, or set [state] lock_timeout")
                time.sleep(0.2)
            hi, lo = _key_parts(key)
            with s.conn.transaction():
                s.conn.execute(
                    "INSERT INTO holders(profile, replica, pid, lock_hi, lock_lo, since) "
                    "VALUES (%s,%s,pg_backend_pid(),%s,%s,%s) ON CONFLICT (profile) DO UPDATE "
                    "SET replica=EXCLUDED.replica, pid=EXCLUDED.pid, since=EXCLUDED.since",
                    (profile, self.replica, hi, lo, time.time()))
                # Runs left 'running' by a holder that died are marked interrupted.
                s.conn.execute("UPDATE runs SET status='interrupted', finished=%s "
                               "WHERE profile=%s AND status='running'", (time.time(), profile))
        except LockHeld:
            self._checkin(s)
            raise
        except psycopg.Error as exc:
            s.conn.close()
            raise StateError(f"state: {self._where}: cannot lock profile {profile!r}: "
                             f"{str(exc).strip()}") from exc
        except BaseException:
            s.conn.close()
            raise
        s.profile, s.key, s.on_lost, s.lost = profile, key, on_lost, False
        s.confirmed = time.monotonic()
        with self._mutex:
            self._held[profile] = s
        self._start_pinger()
        try:
            yield
        finally:
            self._release(s)

    def _release(self, s: _Session) -> None:
        with self._mutex:
            self._held.pop(str(s.profile), None)
        reusable = False
        if not s.lost:
            try:
                with s.mutex:
                    self._commit_group(s)
                    s.conn.execute("SELECT pg_advisory_unlock(%s)", (s.key,))
                reusable = True
            except (psycopg.Error, StateError) as exc:
                log.warning("profile %s: releasing the lock: %s (closing its session frees "
                            "it)", s.profile, exc)
        s.profile, s.on_lost, s.group, s.group_managed = None, None, [], []
        if reusable:
            self._checkin(s)
        else:
            s.conn.close()

    def _checkout(self) -> _Session:
        with self._mutex:
            while self._idle:
                s = self._idle.pop()
                if not (s.conn.closed or s.conn.broken):
                    return s
        return self._new_session()

    def _checkin(self, s: _Session) -> None:
        with self._mutex:
            if len(self._idle) < IDLE_SESSIONS and not self._closing.is_set():
                self._idle.append(s)
                return
        s.conn.close()

    def _holder_text(self, profile: str) -> str:
        with contextlib.suppress(StateError), self._on(None) as conn:
            row = conn.execute("SELECT replica, since FROM holders WHERE profile=%s",
                               (profile,)).fetchone()
            if row:
                return f"replica {row[0]} since {time.strftime('%H:%M:%S', time.localtime(row[1]))}"
        return "another replica"

    def _start_pinger(self) -> None:
        with self._mutex:
            if self._pinger is not None:
                return
            self._pinger = threading.Thread(target=self._ping_loop, name="state-fence",
                                            daemon=True)
        self._pinger.start()

    def _ping_loop(self) -> None:
        """Every lease/6, ping each locked session (in a thread of its own, so a silent
        connection blocks only that ping); a session not heard from for half the lease
        has lost its lock, as far as this run is concerned (module docstring)."""
        stale = self.settings.lock_lease.total_seconds() / 2
        while not self._closing.wait(self._heartbeat):
            with self._mutex:
                sessions = list(self._held.values())
            now = time.monotonic()
            for s in sessions:
                if s.lost:
                    continue
                if now - s.confirmed > stale:
                    self._mark_lost(s)
                elif not s.pinging:
                    s.pinging = True
                    threading.Thread(target=self._ping, args=(s,), name="state-ping",
                                     daemon=True).start()

    def _ping(self, s: _Session) -> None:
        try:
            if not s.mutex.acquire(blocking=False):
                return  # a write in progress proves (or disproves) it just as well
            try:
                if s.profile is not None and not s.lost:
                    s.conn.execute("SELECT 1")
                    s.confirmed = time.monotonic()
            except psycopg.Error:
                self._mark_lost(s)
            finally:
                s.mutex.release()
        finally:
            s.pinging = False

    # ------------------------------------------------------------------ runs
    def start_run(self, profile: str, command: str) -> str:
        with self._on(profile) as conn:
            tick = self._ticks.pop(profile, "")
            while True:
                # Every profile and replica share the table, and a tick starts hundreds of
                # runs in one second: now and then two draw the same 24-bit suffix. The
                # later one draws again instead of failing its run.
                run_id = time.strftime("%Y%m%dT%H%M%S") + "-" + uuid.uuid4().hex[:6]
                cur = conn.execute(
                    "INSERT INTO runs(id, profile, command, started, status, pid, replica, "
                    "tick) VALUES (%s,%s,%s,%s,%s,%s,%s,%s) ON CONFLICT (id) DO NOTHING",
                    (run_id, profile, command, time.time(), "running", os.getpid(),
                     self.replica, tick))
                if cur.rowcount:
                    break
        self._seq[run_id] = 0
        self._run_profile[run_id] = profile
        return run_id

    def finish_run(self, run_id: str, status: str, counts: dict[str, int] | None = None,
                   error: str = "") -> None:
        with self._on(self._run_profile.get(run_id)) as conn:
            conn.execute("UPDATE runs SET finished=%s, status=%s, counts=%s, error=%s "
                         "WHERE id=%s", (time.time(), status, json.dumps(counts or {}), error,
                                         run_id))
        self._run_profile.pop(run_id, None)

    def runs(self, profile: str | None = None, limit: int = 20) -> list[RunRow]:
        if profile is None:
            self.flush()
        sql = ("SELECT id, profile, command, started, finished, status, counts, error, replica "
               "FROM runs")
        args: tuple[Any, ...] = ()
        if profile:
            sql += " WHERE profile=%s"
            args = (profile,)
        sql += " ORDER BY started DESC LIMIT %s"
        with self._on(profile) as conn:
            rows = conn.execute(sql, (*args, limit)).fetchall()
        return [RunRow(r[0], r[1], r[2], r[3], r[4], r[5], json.loads(r[6]), r[7], r[8])
                for r in rows]

    def journal(self, run_id: str) -> list[dict[str, Any]]:
        self.flush()
        with self._on(self._run_profile.get(run_id)) as conn:
            rows = conn.execute(
                "SELECT seq, at, kind, subject, ref, status, error FROM journal "
                "WHERE run_id=%s ORDER BY seq", (run_id,)).fetchall()
        keys = ("seq", "at", "kind", "subject", "ref", "status", "error")
        return [dict(zip(keys, r, strict=True)) for r in rows]

    def run(self, run_id: str) -> RunRow | None:
        self.flush()
        with self._on(self._run_profile.get(run_id)) as conn:
            r = conn.execute("SELECT id, profile, command, started, finished, status, counts, "
                             "error, replica FROM runs WHERE id=%s", (run_id,)).fetchone()
        return None if r is None else RunRow(r[0], r[1], r[2], r[3], r[4], r[5],
                                             json.loads(r[6]), r[7], r[8])

    def journal_entries(self, run_id: str) -> Iterator[dict[str, Any]]:
        self.flush()
        with self._on(self._run_profile.get(run_id)) as conn:
            rows = conn.execute(
                "SELECT seq, at, kind, subject, ref, status, error, change FROM journal "
                "WHERE run_id=%s ORDER BY seq", (run_id,)).fetchall()
        keys = ("seq", "at", "kind", "subject", "ref", "status", "error")
        for r in rows:
            entry = dict(zip(keys, r[:7], strict=True))
            entry["change"] = json.loads(r[7])
            yield entry

    # ------------------------------------------------------------------ journal
    def record(self, run_id: str, profile: str, outcome: Outcome) -> None:
        change = outcome.change
        payload = ENCODE({"kind": change.kind, **plain(change)})
        s = self._session(profile)
        with s.mutex:
            if s.lost:
                raise self._lost_error(s)
            self._seq[run_id] = seq = self._seq.get(run_id, 0) + 1
            if not s.group:
                s.group_since = time.monotonic()
            s.group.append((run_id, seq, time.time(), change.kind, subject(change),
                            outcome.ref, outcome.status, outcome.error, payload))
            if outcome.status == "ok":
                s.group_managed.extend(managed_updates(profile, outcome))
            if (len(s.group) >= records.GROUP_ROWS
                    or time.monotonic() - s.group_since >= records.GROUP_SECONDS):
                self._commit_group(s)

    def record_kept(self, run_id: str, kept: Iterable[Kept]) -> None:
        s = self._session(self._run_profile.get(run_id))
        with s.mutex:
            if s.lost:
                raise self._lost_error(s)
            seq = self._seq.get(run_id, 0)
            for k in kept:
                seq += 1
                s.group.append((run_id, seq, time.time(), "kept", k.email, k.ref, "kept",
                                f"{k.reason} ({k.detail})" if k.detail else k.reason,
                                ENCODE({"kind": "kept", **plain(k)})))
            self._seq[run_id] = seq
            self._commit_group(s)

    def managed(self, profile: str) -> frozenset[str]:
        with self._on(profile) as conn:
            rows = conn.execute("SELECT ref FROM managed WHERE profile=%s", (profile,))
            return frozenset(r[0] for r in rows)

    def add_managed(self, profile: str, kind: str, ref: str, external_id: str) -> None:
        with self._on(profile) as conn:
            conn.execute(_MANAGED["add"], (profile, kind, ref, external_id, time.time()))

    # ------------------------------------------------------------------ what the runner keeps
    def good_run(self, profile: str) -> GoodRun:
        with self._on(profile) as conn:
            rows = conn.execute("SELECT key, value FROM meta WHERE profile=%s AND key = ANY(%s)",
                                (profile, list(GOOD_KEYS))).fetchall()
        return good_run_of({k: json.loads(v) for k, v in rows})

    def save_good_run(self, profile: str, run: GoodRun) -> None:
        self._set_many(profile, good_run_values(run))

    def keep_marker(self, profile: str, marker: Marker | None) -> None:
        self._set_many(profile, {"source_marker": marker_value(marker)})

    def frozen(self, profile: str) -> dict[str, Any] | None:
        value = self.get_meta(profile, "frozen")
        return value if isinstance(value, dict) and value else None

    def freeze(self, profile: str, how: dict[str, Any] | None) -> None:
        self.set_meta(profile, "frozen", how or None)

    def _set_many(self, profile: str, values: dict[str, Any]) -> None:
        with self._on(profile) as conn, conn.transaction():
            for key, value in values.items():
                if value is None:
                    conn.execute("DELETE FROM meta WHERE profile=%s AND key=%s", (profile, key))
                else:
                    conn.execute(_SET_META, (profile, key, json.dumps(value)))

    # ------------------------------------------------------------------ meta & connector state
    def get_meta(self, profile: str, key: str, default: Any = None) -> Any:
        with self._on(profile) as conn:
            row = conn.execute("SELECT value FROM meta WHERE profile=%s AND key=%s",
                               (profile, key)).fetchone()
        return json.loads(row[0]) if row else default

    def set_meta(self, profile: str, key: str, value: Any) -> None:
        self._set_many(profile, {key: value})

    def connector_state(self, profile: str, force_full: bool = False) -> ConnectorState:
        with self._on(profile) as conn:
            rows = conn.execute("SELECT key, value FROM connector_state WHERE profile=%s",
                                (profile,)).fetchall()
        values = {k: json.loads(v) for k, v in rows}

        def save(staged: dict[str, Any]) -> None:
            with self._on(profile) as conn, conn.transaction():
                for k, v in staged.items():
                    if v is None:
                        conn.execute("DELETE FROM connector_state WHERE profile=%s AND key=%s",
                                     (profile, k))
                    else:
                        conn.execute(_SET_CSTATE, (profile, k, json.dumps(v)))

        return ConnectorState(values, force_full=force_full, on_commit=save)

    def clear_cache(self, profile: str) -> None:
        with self._on(profile) as conn, conn.transaction():
            conn.execute("DELETE FROM connector_state WHERE profile=%s", (profile,))
            conn.execute("DELETE FROM meta WHERE profile=%s AND key='applied_source_digest'",
                         (profile,))

    # ------------------------------------------------------------------ replicas (SharesProfiles)
    def claim_tick(self, profile: str, tick: str) -> bool:
        """Ticks are ``number/period``: a claim must be later than the last one of the same
        period, so a fire that waited (for a worker, for the database) never runs a tick
        again after a later one ran."""
        number, _, period = tick.partition("/")
        with self._on(profile) as conn:
            row = conn.execute(
                "UPDATE holders SET tick = %s WHERE profile = %s AND (tick = '' OR "
                "split_part(tick, '/', 2) <> %s OR split_part(tick, '/', 1)::bigint < %s) "
                "RETURNING tick", (tick, profile, period, int(number))).fetchone()
        if row is None:
            return False
        self._ticks[profile] = tick
        return True

    def heartbeat(self, running: Iterable[str]) -> None:
        now = time.time()
        with self._on(None) as conn, conn.transaction():
            conn.execute(
                "INSERT INTO replicas VALUES (%s,%s,%s,%s,%s,%s) ON CONFLICT (id) DO UPDATE "
                "SET seen=EXCLUDED.seen, running=EXCLUDED.running",
                (self.replica, socket.gethostname(), os.getpid(), self._started, now,
                 json.dumps(sorted(running))))
            conn.execute("DELETE FROM replicas WHERE seen < %s", (now - 3600,))

    def replicas(self) -> list[Replica]:
        with self._on(None) as conn:
            rows = conn.execute("SELECT id, host, pid, started, seen, running FROM replicas "
                                "ORDER BY id").fetchall()
        return [Replica(r[0], r[1], r[2], r[3], r[4], tuple(json.loads(r[5]))) for r in rows]

    def holders(self) -> dict[str, Holder]:
        with self._on(None) as conn:
            rows = conn.execute(
                "SELECT h.profile, h.replica, h.since, h.tick, EXISTS (SELECT 1 FROM pg_locks l "
                "WHERE l.locktype='advisory' AND l.granted AND l.pid=h.pid AND l.objsubid=1 "
                "AND l.classid::bigint=h.lock_hi AND l.objid::bigint=h.lock_lo) FROM holders h"
            ).fetchall()
        return {r[0]: Holder(r[0], r[1], r[2], bool(r[4]), r[3]) for r in rows}
