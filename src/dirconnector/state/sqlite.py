"""SqliteStore: runs, the per-change journal, managed ids, connector state, the lock.

SQLite in WAL mode (stdlib ``sqlite3``). Journal rows are written in groups, one
transaction each: a group is written when it holds 1,000 rows, when a row arrives
0.2 s or more after the group's first one, and before anything else touches the
database (the end of the run included). A transaction per row cost 0.19 ms of wall
time (1.9 s for 10k changes). A process killed half-way loses the open group at
most: the journal may then miss changes the server holds, which the next run's read
of the server repairs, but it never holds a row that did not happen.

The per-profile lock is an ``flock`` on a file beside the database: the kernel
releases it when the process dies, so a crash never leaves a stale lock.
"""

from __future__ import annotations

import contextlib
import fcntl
import itertools
import json
import os
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from ..errors import LockHeld, StateError
from ..outcome import Outcome
from ..plan import Kept, plain, subject
from ..state_space import ConnectorState
from . import records
from .records import (
    ENCODE,
    GOOD_KEYS,
    GoodRun,
    Marker,
    RunRow,
    good_run_of,
    good_run_values,
    managed_updates,
    marker_value,
    safe_name,
)

SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    id TEXT PRIMARY KEY, profile TEXT NOT NULL, command TEXT NOT NULL,
    started REAL NOT NULL, finished REAL, status TEXT NOT NULL,
    counts TEXT NOT NULL DEFAULT '{}', error TEXT NOT NULL DEFAULT '', pid INTEGER
);
CREATE INDEX IF NOT EXISTS runs_profile ON runs(profile, started);
CREATE TABLE IF NOT EXISTS journal (
    run_id TEXT NOT NULL, seq INTEGER NOT NULL, at REAL NOT NULL, kind TEXT NOT NULL,
    subject TEXT NOT NULL, ref TEXT NOT NULL, status TEXT NOT NULL, error TEXT NOT NULL,
    change TEXT NOT NULL, PRIMARY KEY (run_id, seq)
);
CREATE TABLE IF NOT EXISTS managed (
    profile TEXT NOT NULL, kind TEXT NOT NULL, ref TEXT NOT NULL, external_id TEXT NOT NULL,
    since REAL NOT NULL, PRIMARY KEY (profile, kind, ref)
);
CREATE TABLE IF NOT EXISTS connector_state (
    profile TEXT NOT NULL, key TEXT NOT NULL, value TEXT NOT NULL, PRIMARY KEY (profile, key)
);
CREATE TABLE IF NOT EXISTS meta (
    profile TEXT NOT NULL, key TEXT NOT NULL, value TEXT NOT NULL, PRIMARY KEY (profile, key)
);
"""


class SqliteStore:
    """One SQLite database; safe to share between threads of one process."""

    shared = False
    """Local to one host: several daemon replicas need PostgreSQL."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None,
                                       timeout=30)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.executescript(SCHEMA)
        except (OSError, sqlite3.Error) as exc:
            raise StateError(f"state.path: cannot open {self.path}: {exc}") from exc
        self._mutex = threading.Lock()
        self._seq: dict[str, int] = {}
        self._group: list[tuple[Any, ...]] = []
        """Journal rows of the group not yet written (module docstring)."""
        self._group_managed: list[tuple[str, tuple[Any, ...]]] = []
        """The group's managed-set statements, in the order they must run."""
        self._group_since = 0.0

    def describe(self) -> str:
        return f"SQLite {self.path}"

    def close(self) -> None:
        self.flush()
        self._db.close()

    def flush(self) -> None:
        """Write and commit the open group of journal rows now."""
        with self._mutex:
            self._commit_group()

    def _commit_group(self) -> None:
        """One transaction; runs of one statement go through ``executemany``, in order."""
        if not self._group:
            return
        rows, managed = self._group, self._group_managed
        self._group, self._group_managed = [], []
        db = self._db
        db.execute("BEGIN")
        try:
            db.executemany(_JOURNAL_ROW, rows)
            for op, params in itertools.groupby(managed, key=lambda item: item[0]):
                db.executemany(_MANAGED[op], [p for _, p in params])
            db.execute("COMMIT")
        except BaseException as exc:
            db.execute("ROLLBACK")
            if isinstance(exc, sqlite3.Error):
                raise StateError(f"state.path: cannot write the journal to {self.path}: "
                                 f"{exc}") from exc
            raise

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        """The mutex, with the open group committed first (other writes are autocommit)."""
        with self._mutex:
            self._commit_group()
            yield

    # ------------------------------------------------------------------ lock
    @contextlib.contextmanager
    def lock(self, profile: str, timeout: float = 0.0,
             on_lost: Callable[[], None] | None = None) -> Iterator[None]:
        """Hold the profile's lock for the block; LockHeld if another process has it.

        An ``flock`` is never lost while its holder lives, so ``on_lost`` is never called.
        """
        lock_path = self.path.with_name(f"{self.path.name}.{safe_name(profile)}.lock")
        fh = lock_path.open("a+")
        deadline = time.monotonic() + timeout
        try:
            while True:
                try:
                    fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() >= deadline:
                        fh.seek(0)
                        holder = fh.read().strip() or "another process"
                        raise LockHeld(
                            f"profile {profile!r} is already running ({holder})",
                            hint="wait for it to finish, or set [state] lock_timeout") from None
                    time.sleep(0.2)
            fh.seek(0)
            fh.truncate()
            fh.write(f"pid {os.getpid()} since {time.strftime('%Y-%m-%d %H:%M:%S')}")
            fh.flush()
            self._close_orphans(profile)
            yield
        finally:
            with contextlib.suppress(OSError):
                fcntl.flock(fh, fcntl.LOCK_UN)
            fh.close()

    def _close_orphans(self, profile: str) -> None:
        """Runs left 'running' by a process that died are marked interrupted."""
        with self._locked():
            self._db.execute("UPDATE runs SET status='interrupted', finished=? "
                             "WHERE profile=? AND status='running'", (time.time(), profile))

    # ------------------------------------------------------------------ runs
    def start_run(self, profile: str, command: str) -> str:
        with self._locked():
            while True:
                # Profiles sharing this file can start runs in the same second: an id
                # whose 24-bit suffix is taken is drawn again (as in PostgresStore).
                run_id = time.strftime("%Y%m%dT%H%M%S") + "-" + uuid.uuid4().hex[:6]
                cur = self._db.execute(
                    "INSERT OR IGNORE INTO runs(id, profile, command, started, status, pid) "
                    "VALUES (?,?,?,?,?,?)",
                    (run_id, profile, command, time.time(), "running", os.getpid()))
                if cur.rowcount:
                    break
        self._seq[run_id] = 0
        return run_id

    def finish_run(self, run_id: str, status: str, counts: dict[str, int] | None = None,
                   error: str = "") -> None:
        with self._locked():
            self._db.execute("UPDATE runs SET finished=?, status=?, counts=?, error=? WHERE id=?",
                             (time.time(), status, json.dumps(counts or {}), error, run_id))

    def runs(self, profile: str | None = None, limit: int = 20) -> list[RunRow]:
        sql = "SELECT id, profile, command, started, finished, status, counts, error FROM runs"
        args: tuple[Any, ...] = ()
        if profile:
            sql += " WHERE profile=?"
            args = (profile,)
        sql += " ORDER BY started DESC LIMIT ?"
        with self._locked():
            rows = self._db.execute(sql, (*args, limit)).fetchall()
        return [RunRow(r[0], r[1], r[2], r[3], r[4], r[5], json.loads(r[6]), r[7]) for r in rows]

    def journal(self, run_id: str) -> list[dict[str, Any]]:
        with self._locked():
            rows = self._db.execute(
                "SELECT seq, at, kind, subject, ref, status, error FROM journal "
                "WHERE run_id=? ORDER BY seq", (run_id,)).fetchall()
        keys = ("seq", "at", "kind", "subject", "ref", "status", "error")
        return [dict(zip(keys, r, strict=True)) for r in rows]

    def run(self, run_id: str) -> RunRow | None:
        """One run by its id (a report's header), or None."""
        with self._locked():
            r = self._db.execute("SELECT id, profile, command, started, finished, status, counts, "
                                 "error FROM runs WHERE id=?", (run_id,)).fetchone()
        return None if r is None else RunRow(r[0], r[1], r[2], r[3], r[4], r[5],
                                             json.loads(r[6]), r[7])

    def journal_entries(self, run_id: str) -> Iterator[dict[str, Any]]:
        """The journal of a run with each change as recorded (a report's per-attribute
        before and after): seq, at, kind, subject, ref, status, error, change (a dict)."""
        with self._locked():
            rows = self._db.execute(
                "SELECT seq, at, kind, subject, ref, status, error, change FROM journal "
                "WHERE run_id=? ORDER BY seq", (run_id,)).fetchall()
        keys = ("seq", "at", "kind", "subject", "ref", "status", "error")
        for r in rows:
            entry = dict(zip(keys, r[:7], strict=True))
            entry["change"] = json.loads(r[7])
            yield entry

    # ------------------------------------------------------------------ journal
    def record(self, run_id: str, profile: str, outcome: Outcome) -> None:
        """Journal one outcome and keep the managed set in step (module docstring: groups).

        The row and its managed-set update are written in the same transaction.
        """
        change = outcome.change
        payload = ENCODE({"kind": change.kind, **plain(change)})
        with self._mutex:
            self._seq[run_id] = seq = self._seq.get(run_id, 0) + 1
            if not self._group:
                self._group_since = time.monotonic()
            self._group.append((run_id, seq, time.time(), change.kind, subject(change),
                                outcome.ref, outcome.status, outcome.error, payload))
            if outcome.status == "ok":
                self._group_managed.extend(managed_updates(profile, outcome))
            if (len(self._group) >= records.GROUP_ROWS
                    or time.monotonic() - self._group_since >= records.GROUP_SECONDS):
                self._commit_group()

    def record_kept(self, run_id: str, kept: Iterable[Kept]) -> None:
        """Journal the people a run left as they are (kind and status "kept"): not changes,
        but ``history --run`` must say why each one was not changed."""
        with self._mutex:
            seq = self._seq.get(run_id, 0)
            for k in kept:
                seq += 1
                self._group.append((run_id, seq, time.time(), "kept", k.email, k.ref, "kept",
                                    f"{k.reason} ({k.detail})" if k.detail else k.reason,
                                    ENCODE({"kind": "kept", **plain(k)})))
            self._seq[run_id] = seq
            self._commit_group()

    def managed(self, profile: str) -> frozenset[str]:
        """Server ids of accounts and groups this tool created or linked."""
        with self._locked():
            rows = self._db.execute("SELECT ref FROM managed WHERE profile=?", (profile,))
            return frozenset(r[0] for r in rows)

    def add_managed(self, profile: str, kind: str, ref: str, external_id: str) -> None:
        with self._locked():
            self._db.execute("INSERT OR REPLACE INTO managed VALUES (?,?,?,?,?)",
                             (profile, kind, ref, external_id, time.time()))

    # ------------------------------------------------------------------ what the runner keeps
    def good_run(self, profile: str) -> GoodRun:
        """The last good run's digest, counts and marker, in one read (empty if none)."""
        with self._locked():
            rows = dict(self._db.execute(
                f"SELECT key, value FROM meta WHERE profile=? AND key IN "
                f"({','.join('?' * len(GOOD_KEYS))})", (profile, *GOOD_KEYS)).fetchall())
        return good_run_of({k: json.loads(v) for k, v in rows.items()})

    def save_good_run(self, profile: str, run: GoodRun) -> None:
        """Remember a good run, all of it in one transaction."""
        self._set_many(profile, good_run_values(run))

    def keep_marker(self, profile: str, marker: Marker | None) -> None:
        """Set (or, with None, forget) the change marker alone: it is cleared before every
        apply, so an interrupted or partial run reads everything next time."""
        self._set_many(profile, {"source_marker": marker_value(marker)})

    def frozen(self, profile: str) -> dict[str, Any] | None:
        """When and how the profile was handed to the IdP's SCIM (``migrate apply``)."""
        value = self.get_meta(profile, "frozen")
        return value if isinstance(value, dict) and value else None

    def freeze(self, profile: str, how: dict[str, Any] | None) -> None:
        """Mark the profile handed to the IdP (``how``: idp, at, map), or, with None, undo it:
        a frozen profile refuses sync, so the connector never fights the IdP."""
        self.set_meta(profile, "frozen", how or None)

    def _set_many(self, profile: str, values: dict[str, Any]) -> None:
        with self._locked():
            self._db.execute("BEGIN")
            try:
                for key, value in values.items():
                    if value is None:
                        self._db.execute("DELETE FROM meta WHERE profile=? AND key=?",
                                         (profile, key))
                    else:
                        self._db.execute("INSERT OR REPLACE INTO meta VALUES (?,?,?)",
                                         (profile, key, json.dumps(value)))
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise

    # ------------------------------------------------------------------ meta & connector state
    def get_meta(self, profile: str, key: str, default: Any = None) -> Any:
        with self._locked():
            row = self._db.execute("SELECT value FROM meta WHERE profile=? AND key=?",
                                   (profile, key)).fetchone()
        return json.loads(row[0]) if row else default

    def set_meta(self, profile: str, key: str, value: Any) -> None:
        with self._locked():
            if value is None:
                self._db.execute("DELETE FROM meta WHERE profile=? AND key=?", (profile, key))
            else:
                self._db.execute("INSERT OR REPLACE INTO meta VALUES (?,?,?)",
                                 (profile, key, json.dumps(value)))

    def connector_state(self, profile: str, force_full: bool = False) -> ConnectorState:
        with self._locked():
            rows = self._db.execute("SELECT key, value FROM connector_state WHERE profile=?",
                                    (profile,)).fetchall()
        values = {k: json.loads(v) for k, v in rows}

        def save(staged: dict[str, Any]) -> None:
            with self._locked():
                self._db.execute("BEGIN")
                for k, v in staged.items():
                    if v is None:
                        self._db.execute("DELETE FROM connector_state WHERE profile=? AND key=?",
                                         (profile, k))
                    else:
                        self._db.execute("INSERT OR REPLACE INTO connector_state VALUES (?,?,?)",
                                         (profile, k, json.dumps(v)))
                self._db.execute("COMMIT")

        return ConnectorState(values, force_full=force_full, on_commit=save)

    def clear_cache(self, profile: str) -> None:
        """Forget connector caches and the no-change hash (bwdc's clear-cache)."""
        with self._locked():
            self._db.execute("DELETE FROM connector_state WHERE profile=?", (profile,))
            self._db.execute("DELETE FROM meta WHERE profile=? AND key='applied_source_digest'",
                             (profile,))


_JOURNAL_ROW = "INSERT INTO journal VALUES (?,?,?,?,?,?,?,?,?)"
_MANAGED = {"add": "INSERT OR REPLACE INTO managed VALUES (?,?,?,?,?)",
            "del": "DELETE FROM managed WHERE profile=? AND kind=? AND ref=?"}
