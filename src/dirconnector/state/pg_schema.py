"""PostgreSQL: connection settings, the schema and its migrations (``state migrate``).

The schema is versioned in ``schema_version``; only ``migrate`` changes it (idempotent, one
transaction, serialised by an advisory lock). A store refuses a database whose schema is
older or newer than the one it knows, so two versions never write one database.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

import psycopg
from psycopg import conninfo as pg_conninfo

from ..errors import StateError

if TYPE_CHECKING:
    from ..settings import StateSettings

log = logging.getLogger(__name__)

SCHEMA_V1 = """
CREATE TABLE runs (
    id text PRIMARY KEY, profile text NOT NULL, command text NOT NULL,
    started double precision NOT NULL, finished double precision, status text NOT NULL,
    counts text NOT NULL DEFAULT '{}', error text NOT NULL DEFAULT '', pid integer,
    replica text NOT NULL DEFAULT '', tick text NOT NULL DEFAULT ''
);
CREATE INDEX runs_profile ON runs(profile, started);
CREATE TABLE journal (
    run_id text NOT NULL, seq integer NOT NULL, at double precision NOT NULL,
    kind text NOT NULL, subject text NOT NULL, ref text NOT NULL, status text NOT NULL,
    error text NOT NULL, change text NOT NULL, PRIMARY KEY (run_id, seq)
);
CREATE TABLE managed (
    profile text NOT NULL, kind text NOT NULL, ref text NOT NULL, external_id text NOT NULL,
    since double precision NOT NULL, PRIMARY KEY (profile, kind, ref)
);
CREATE TABLE connector_state (
    profile text NOT NULL, key text NOT NULL, value text NOT NULL, PRIMARY KEY (profile, key)
);
CREATE TABLE meta (
    profile text NOT NULL, key text NOT NULL, value text NOT NULL, PRIMARY KEY (profile, key)
);
CREATE TABLE holders (
    profile text PRIMARY KEY, replica text NOT NULL, pid integer NOT NULL,
    lock_hi bigint NOT NULL, lock_lo bigint NOT NULL, since double precision NOT NULL,
    tick text NOT NULL DEFAULT ''
);
CREATE TABLE replicas (
    id text PRIMARY KEY, host text NOT NULL, pid integer NOT NULL,
    started double precision NOT NULL, seen double precision NOT NULL,
    running text NOT NULL DEFAULT '[]'
);
"""

MIGRATIONS: tuple[tuple[int, str], ...] = ((1, SCHEMA_V1),)
"""(version, SQL) in order; a new version appends a step and never edits an old one."""
MIGRATE_LOCK = 0x6469_7263_6F6E_0001
"""The advisory lock that serialises migrations ("dircon" + 1)."""


def schema_version() -> int:
    return MIGRATIONS[-1][0]


def connect_args(settings: StateSettings) -> dict[str, Any]:
    """psycopg.connect keyword arguments for ``[state]`` (secrets included: never log)."""
    assert settings.url is not None
    lease = settings.lock_lease.total_seconds()
    kw: dict[str, Any] = {
        "conninfo": settings.url.get_secret_value(), "autocommit": True,
        "connect_timeout": max(1, round(settings.connect_timeout)),
        "application_name": "dirconnector",
        # Client side: data unacknowledged for a third of the lease closes the
        # connection, so a ping or write on a cut network fails in bounded time.
        "keepalives": 1, "keepalives_idle": max(1, int(lease / 6)),
        "keepalives_interval": 1, "keepalives_count": 3,
        "tcp_user_timeout": int(lease / 3 * 1000),
        # Server side (per session): a silent client is dropped, and its advisory
        # locks freed, after about the whole lease (2/3 idle + 5 probes of 1/15).
        "options": f"-c tcp_keepalives_idle={max(1, int(lease * 2 / 3))} "
                   f"-c tcp_keepalives_interval={max(1, int(lease / 15))} "
                   f"-c tcp_keepalives_count=5",
    }
    if settings.password is not None:
        kw["password"] = settings.password.get_secret_value()
    if settings.sslmode is not None:
        kw["sslmode"] = settings.sslmode
    if settings.ssl_ca_file is not None:
        kw["sslrootcert"] = str(settings.ssl_ca_file)
    return kw


def describe(settings: StateSettings) -> str:
    """``PostgreSQL user@host:port/dbname``, without the password."""
    assert settings.url is not None
    try:
        parts = pg_conninfo.conninfo_to_dict(settings.url.get_secret_value())
    except psycopg.Error:
        return "PostgreSQL (unparsable url)"
    user = f"{parts['user']}@" if parts.get("user") else ""
    return (f"PostgreSQL {user}{parts.get('host', 'localhost')}:{parts.get('port', 5432)}/"
            f"{parts.get('dbname', '')}")


def connect(settings: StateSettings) -> psycopg.Connection[Any]:
    try:
        return psycopg.connect(**connect_args(settings))
    except psycopg.Error as exc:
        raise StateError(f"state.url: cannot connect to {describe(settings)}: "
                         f"{str(exc).strip()}",
                         hint="is PostgreSQL up and reachable? check [state] url, password "
                              "and sslmode") from exc


def version(conn: psycopg.Connection[Any]) -> int:
    row = conn.execute("SELECT to_regclass('schema_version') IS NOT NULL").fetchone()
    if not row or not row[0]:
        return 0
    got = conn.execute("SELECT max(version) FROM schema_version").fetchone()
    return int(got[0]) if got and got[0] is not None else 0


def newer(found: int, where: str) -> StateError:
    return StateError(f"state: {where} has schema version {found}, newer than this "
                      f"dirconnector knows ({schema_version()}); refusing to use it",
                      hint="a newer dirconnector migrated it: run that version here too")


def migrate(settings: StateSettings) -> tuple[int, int]:
    """Bring the database's schema to this version: (version before, version after)."""
    where = describe(settings)
    conn = connect(settings)
    try:
        with conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATE_LOCK,))
            before = version(conn)
            if before > schema_version():
                raise newer(before, where)
            if before == 0:
                conn.execute("CREATE TABLE schema_version (version integer NOT NULL, "
                             "at double precision NOT NULL)")
            for step, sql in MIGRATIONS:
                if step > before:
                    conn.execute(sql)
                    conn.execute("INSERT INTO schema_version VALUES (%s, %s)",
                                 (step, time.time()))
                    log.info("state: %s migrated to schema version %d", where, step)
        return before, schema_version()
    except psycopg.Error as exc:
        raise StateError(f"state: cannot migrate {where}: {str(exc).strip()}") from exc
    finally:
        conn.close()
