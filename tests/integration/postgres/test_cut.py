"""Runs that lose PostgreSQL: a replica cut from it stops writing before another can take its
profile; a `dirconnector sync` during a PostgreSQL restart fails cleanly and the next
one converges."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from dirconnector.settings import StateSettings
from dirconnector.state import open_store
from tests.integration.scim.conftest import TOKEN, ScimServer

from .blackhole import Blackhole
from .test_replicas import DAEMON, users_on, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.slow]
USERS = 600


def slow_profile(tmp: Path, scim: ScimServer, interval: str = "6s") -> tuple[Path, str]:
    """600 users sent one request at a time: a run that lasts a few seconds."""
    import json

    tenant = f"t{uuid.uuid4().hex[:10]}"
    data = tmp / "big.json"
    data.write_text(json.dumps({"users": [
        {"id": f"big-u{j}", "email": f"u{j}@big.example.com"} for j in range(USERS)]}))
    path = tmp / "big.toml"
    path.write_text(f"""
profile = "big"
[source]
type = "file"
users = "{data}"
[target]
type = "scim"
url = "http://127.0.0.1:{scim.port}/{tenant}/v2"
token_env = "SCIM_TOKEN"
bulk = "off"
concurrency = 1
[schedule]
interval = "{interval}"
full_reconcile = "1h"
""")
    return path, tenant


def env_for(pg, db: str, port: int | None = None) -> dict[str, str]:
    return {**os.environ, "SCIM_TOKEN": TOKEN, "DIRCONNECTOR_MIN_INTERVAL_SECONDS": "1",
            "DIRCONNECTOR_STATE__URL": pg.url(db, port=port),
            "DIRCONNECTOR_STATE__PASSWORD_FILE": pg.env["PG_PASSWORD_FILE"],
            "DIRCONNECTOR_STATE__LOCK_LEASE": "6s"}


def test_a_replica_cut_from_postgres_stops_writing(tmp_path, scim, postgres):
    """Cut mid-run: its writes to the server stop within half the lease, while the server
    still holds its lock; once the server drops the session, a replica converges."""
    pg, db = postgres, postgres.new_database()
    config, tenant = slow_profile(tmp_path, scim)
    hole = Blackhole(pg.port)
    logs = [tmp_path / "cut.log", tmp_path / "other.log"]
    procs = []
    try:
        with logs[0].open("wb") as err:
            procs.append(subprocess.Popen(
                [*DAEMON, "--log-format", "json", "daemon", "--config", str(config),
                 "--replica-id", "cut"], env=env_for(pg, db, hole.port),
                stdout=subprocess.DEVNULL, stderr=err))
        wait_for(lambda: len(users_on(scim, tenant)) >= 20, 60, "the run is under way")
        with logs[1].open("wb") as err:
            procs.append(subprocess.Popen(
                [*DAEMON, "--log-format", "json", "daemon", "--config", str(config),
                 "--replica-id", "other"], env=env_for(pg, db),
                stdout=subprocess.DEVNULL, stderr=err))
        hole.cut()
        time.sleep(6 / 2 + 1.5)     # half the lease, and the heartbeat's second
        stopped_at = len(users_on(scim, tenant))
        time.sleep(3)
        assert len(users_on(scim, tenant)) == stopped_at < USERS, "no write after the cut"
        assert "lost the lock's database session" in logs[0].read_text()
        hole.release()              # the server notices: the lock is free again
        wait_for(lambda: len(users_on(scim, tenant)) == USERS, 90, "converged")
    finally:
        for p in procs:
            p.send_signal(signal.SIGTERM)
        codes = [p.wait(timeout=60) for p in procs]
        hole.close()
    assert codes == [0, 0], [log.read_text()[-2000:] for log in logs]
    assert sorted(u["externalId"] for u in users_on(scim, tenant)) == sorted(
        f"big-u{j}" for j in range(USERS))


def test_sync_during_a_postgres_restart_fails_cleanly_and_the_next_converges(
        tmp_path, scim, postgres):
    """Exit 1, a journal holding no change that did not happen; the next sync converges."""
    pg, db = postgres, postgres.new_database()
    config, tenant = slow_profile(tmp_path, scim)
    exe = [str(Path(sys.executable).with_name("dirconnector"))]
    sync = subprocess.Popen([*exe, "--config", str(config), "sync"], env=env_for(pg, db),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    watcher = pg.connect(db)

    def under_way() -> bool:
        # The journal is written in groups (GROUP_SECONDS): a restart before the first group
        # is committed leaves an empty journal, which is allowed (it holds no change that did
        # not happen) but proves nothing; so wait until a group holding ok rows is written.
        row = watcher.execute("SELECT count(*) FROM journal WHERE status = 'ok'").fetchone()
        return bool(row and row[0]) and len(users_on(scim, tenant)) >= 20

    wait_for(under_way, 60, "the sync is under way")
    watcher.close()
    pg.restart()
    _, err = sync.communicate(timeout=120)
    assert sync.returncode == 1, err[-2000:]
    assert "gone" in err or "terminating connection" in err, err[-2000:]
    on_server = {u["id"] for u in users_on(scim, tenant)}
    store = open_store(StateSettings.model_validate(pg.state(db)))
    (run,) = store.runs("big")
    applied = [j for j in store.journal(run.id) if j["status"] == "ok"]
    assert applied and {j["ref"] for j in applied} <= on_server
    store.close()
    again = subprocess.run([*exe, "--config", str(config), "sync"], env=env_for(pg, db),
                           capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr[-2000:]
    assert sorted(u["externalId"] for u in users_on(scim, tenant)) == sorted(
        f"big-u{j}" for j in range(USERS))
    store = open_store(StateSettings.model_validate(pg.state(db)))
    assert [r.status for r in store.runs("big")] == ["ok", "interrupted"]
    store.close()
