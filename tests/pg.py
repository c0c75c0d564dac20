"""A throwaway PostgreSQL cluster for the session (scripts/servers/postgres), a fresh
migrated database per test, and what tests need to look inside it."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from dirconnector.settings import StateSettings
from dirconnector.state import StateStore, open_store

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "servers" / "postgres"
TEMPLATE = "dirconnector_template"


@dataclass
class PgCluster:
    """The running cluster's facts (scripts/servers/postgres env)."""

    env: dict[str, str]

    @property
    def port(self) -> int:
        return int(self.env["PG_PORT"])

    @property
    def password(self) -> str:
        return Path(self.env["PG_PASSWORD_FILE"]).read_text().strip()

    def url(self, dbname: str = "postgres", host: str = "127.0.0.1",
            port: int | None = None) -> str:
        return f"postgresql://{self.env['PG_USER']}@{host}:{port or self.port}/{dbname}"

    def state(self, dbname: str, **over: Any) -> dict[str, Any]:
        """A ``[state]`` table for ``dbname`` (password from its file, as operators do)."""
        return {"url": self.url(dbname), "password_file": self.env["PG_PASSWORD_FILE"],
                **over}

    def connect(self, dbname: str = "postgres") -> Any:
        import psycopg

        return psycopg.connect(self.url(dbname), password=self.password, autocommit=True)

    def new_database(self, migrated: bool = True) -> str:
        """A new, empty database (from a migrated template unless ``migrated`` is False)."""
        name = f"t_{uuid.uuid4().hex[:12]}"
        with self.connect() as conn:
            conn.execute(f"CREATE DATABASE {name}" + (f" TEMPLATE {TEMPLATE}" if migrated
                                                      else ""))
        return name

    def restart(self) -> None:
        subprocess.run([str(SCRIPT), "restart", "--run-dir", self.env["PG_RUN_DIR"]],
                       check=True, capture_output=True)


def start_cluster() -> Iterator[PgCluster]:
    """Start the cluster, make the migrated template, stop it all at the end; skips when
    Debian's postgresql is not installed (a failure under CI: conftest)."""
    if not list(Path("/usr/lib/postgresql").glob("*/bin/initdb")) and not os.environ.get(
            "PG_BIN"):
        pytest.skip("PostgreSQL is not installed (apt-get install postgresql)")
    base = Path(tempfile.mkdtemp(prefix="dirconnector-pg-"))
    base.chmod(0o755)  # the server runs as nobody (as root) and must reach its folder
    run = base / "pg"
    out = subprocess.run([str(SCRIPT), "start", "--run-dir", str(run)], capture_output=True,
                         text=True)
    if out.returncode:
        raise RuntimeError(f"scripts/servers/postgres start failed: {out.stderr[-2000:]}")
    env = {k: v.strip("'") for k, _, v in (line.removeprefix("export ").partition("=")
                                            for line in out.stdout.splitlines() if "=" in line)}
    cluster = PgCluster(env)
    from dirconnector import settings as settings_mod
    from dirconnector.state import migrate

    with cluster.connect() as conn:
        conn.execute(f"CREATE DATABASE {TEMPLATE}")
    migrate(settings_mod.StateSettings.model_validate(cluster.state(TEMPLATE)))
    try:
        yield cluster
    finally:
        from tests.conftest import stop_in_background

        stop_in_background([str(SCRIPT), "stop", "--run-dir", str(run)])


@dataclass
class State:
    """One state (a SQLite file, or a fresh PostgreSQL database) the test may open again."""

    kind: str
    settings: StateSettings
    cluster: Any = None
    dbname: str = ""
    opened: list[StateStore] = field(default_factory=list)

    def open(self) -> StateStore:
        """Another handle on the same state, as a second process would open it."""
        store = open_store(self.settings)
        self.opened.append(store)
        return store

    def rows(self, sql: str) -> list[tuple[object, ...]]:
        """What another process would see: a second connection of its own."""
        if self.kind == "sqlite":
            with sqlite3.connect(self.settings.path) as db:
                return db.execute(sql).fetchall()
        with self.cluster.connect(self.dbname) as conn:
            return [tuple(r) for r in conn.execute(sql).fetchall()]
