"""PostgresStore against a real PostgreSQL: schema versions, connection settings, locks that
die with their session, fencing, and tick claims."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from dirconnector import settings as settings_mod
from dirconnector.cli import main
from dirconnector.errors import LockHeld, LockLost, StateError
from dirconnector.model import User
from dirconnector.outcome import Outcome
from dirconnector.plan import CreateUser
from dirconnector.settings import StateSettings
from dirconnector.state import open_store, pg_schema, postgres
from dirconnector.sync import Runner
from dirconnector.testing import FakeConnector, FakeTarget

pytestmark = pytest.mark.integration
EXAMPLES = Path(__file__).resolve().parents[3] / "examples" / "directory.json"


def settings(postgres_cluster, db: str, **over) -> StateSettings:
    return StateSettings.model_validate(postgres_cluster.state(db, **over))


@pytest.fixture
def pg(postgres):
    return postgres


def _outcome(i: int) -> Outcome:
    return Outcome(CreateUser(User(f"u{i}", f"u{i}@example.com")), "ok", "", f"ref{i}")


def _kill(pg, db: str, replica: str) -> None:
    """End the sessions that hold advisory locks for ``replica`` (as a crash or a cut would)."""
    with pg.connect(db) as conn:
        conn.execute("SELECT pg_terminate_backend(pid) FROM holders WHERE replica=%s",
                     (replica,))


def test_migrate_creates_the_schema_once_and_is_idempotent(pg, tmp_path):
    """`state migrate` on an empty database creates version 1; again, it changes nothing."""
    db = pg.new_database(migrated=False)
    config = tmp_path / "c.toml"
    config.write_text(f'''
[source]
type = "file"
users = "{EXAMPLES}"
[target]
type = "scim"
url = "http://127.0.0.1:9"
token = "t0ken-not-secret"
[state]
url = "{pg.url(db)}"
password_file = "{pg.env['PG_PASSWORD_FILE']}"
''')
    from click.testing import CliRunner

    first = CliRunner().invoke(main, ["--config", str(config), "state", "migrate"])
    assert first.exit_code == 0, first.output
    assert "schema version 0 -> 1" in first.output and "PostgreSQL dirconnector@" in first.output
    again = CliRunner().invoke(main, ["--config", str(config), "state", "migrate"])
    assert again.exit_code == 0 and "already up to date" in again.output
    with pg.connect(db) as conn:
        assert conn.execute("SELECT version FROM schema_version").fetchall() == [(1,)]


def test_a_database_without_the_schema_is_refused_with_the_command_to_run(pg):
    db = pg.new_database(migrated=False)
    with pytest.raises(StateError) as exc:
        open_store(settings(pg, db))
    assert "schema version 0" in str(exc.value) and "state migrate" in exc.value.hint


def test_a_newer_schema_is_refused_by_the_store_and_by_migrate(pg):
    """A database a newer dirconnector migrated is neither used nor 'migrated' back."""
    db = pg.new_database()
    with pg.connect(db) as conn:
        conn.execute("INSERT INTO schema_version VALUES (99, 0)")
    for attempt in (lambda: open_store(settings(pg, db)),
                    lambda: pg_schema.migrate(settings(pg, db))):
        with pytest.raises(StateError, match="schema version 99, newer than this dirconnector "
                                             "knows"):
            attempt()


def test_migrate_applies_only_the_steps_after_the_current_version(pg, monkeypatch):
    db = pg.new_database()
    monkeypatch.setattr(pg_schema, "MIGRATIONS", (*pg_schema.MIGRATIONS,
                                                 (2, "CREATE TABLE extra (x integer)")))
    with pytest.raises(StateError, match="needs 2"):
        open_store(settings(pg, db))
    assert pg_schema.migrate(settings(pg, db)) == (1, 2)
    assert pg_schema.migrate(settings(pg, db)) == (2, 2)
    open_store(settings(pg, db)).close()


def test_password_from_the_environment_and_a_wrong_one_is_not_echoed(pg, monkeypatch):
    db = pg.new_database()
    monkeypatch.setenv("PGPW_TEST", pg.password)
    store = open_store(StateSettings.model_validate({"url": pg.url(db),
                                                     "password_env": "PGPW_TEST"}))
    store.close()
    wrong = "not-the-password-1234"
    with pytest.raises(StateError) as exc:
        open_store(StateSettings.model_validate({"url": pg.url(db), "password": wrong}))
    assert "password authentication failed" in str(exc.value) and wrong not in str(exc.value)


def test_sslmode_is_honoured(pg):
    """verify-full with the cluster's CA connects over TLS; without the CA it is refused."""
    db = pg.new_database()
    store = open_store(settings(pg, db, sslmode="verify-full", ssl_ca_file=pg.env["PG_CA_FILE"]))
    with store._on(None) as conn:  # type: ignore[attr-defined]
        assert conn.execute("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()"
                            ).fetchone() == (True,)
    store.close()
    plain = open_store(settings(pg, db, sslmode="disable"))
    with plain._on(None) as conn:  # type: ignore[attr-defined]
        assert conn.execute("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()"
                            ).fetchone() == (False,)
    plain.close()
    with pytest.raises(StateError, match=r"certificate|root"):
        open_store(settings(pg, db, sslmode="verify-full",
                            ssl_ca_file=str(Path(pg.env["PG_RUN_DIR"]) / "server.pem")))


def test_the_lock_is_held_across_stores_and_names_its_holder(pg):
    db = pg.new_database()
    one = postgres.PostgresStore(settings(pg, db), replica="replica-one")
    two = postgres.PostgresStore(settings(pg, db), replica="replica-two")
    with one.lock("p"):
        with pytest.raises(LockHeld, match="replica replica-one since"), two.lock("p"):
            pass
        assert two.holders()["p"].held and two.holders()["p"].replica == "replica-one"
    assert not two.holders()["p"].held
    with two.lock("p"):
        pass
    one.close()
    two.close()


def test_a_lock_dies_with_its_session_and_the_run_is_fenced(pg):
    """The holder's session ends: another store takes the lock at once; the old holder is
    told (on_lost) and writes nothing more."""
    db = pg.new_database()
    one = postgres.PostgresStore(settings(pg, db, lock_lease="3s"), replica="one")
    two = postgres.PostgresStore(settings(pg, db), replica="two")
    lost = threading.Event()
    with one.lock("p", on_lost=lost.set):
        run = one.start_run("p", "sync")
        one.record(run, "p", _outcome(1))
        one.flush()
        _kill(pg, db, "one")
        with two.lock("p"):
            pass  # the server freed the lock with the session
        assert lost.wait(5), "the heartbeat noticed the dead session"
        with pytest.raises(LockLost, match="stopped writing"):
            one.record(run, "p", _outcome(2))
    rows = two.journal(run)
    assert [r["seq"] for r in rows] == [1]
    assert two.runs("p")[0].status == "interrupted"  # marked by the next holder
    one.close()
    two.close()


def test_a_run_that_loses_its_lock_stops_applying_and_fails(pg, tmp_path):
    """The lock's session dies after 5 changes (20 ms each, like a SCIM server): the next
    journal group's write fails, so the target stops within that group (0.2 s of changes);
    the run fails; the journal holds no change that did not happen; the next run converges."""
    db = pg.new_database()
    state = settings(pg, db)
    profile = settings_mod.load(data={
        "source": {"type": "file", "users": str(EXAMPLES)},
        "target": {"type": "scim", "url": "http://127.0.0.1:9", "token": "t0ken"},
        "state": pg.state(db)})
    store = postgres.PostgresStore(state, replica="victim")
    users = [User(f"e{i}", f"u{i}@x.com") for i in range(40)]
    target = FakeTarget(fail=lambda _change: time.sleep(0.02))  # None: every change applies

    def applied(done: int, total: int) -> None:
        if done == 5:
            _kill(pg, db, "victim")

    runner = Runner(profile, store, connector=FakeConnector(users=users), target=target,
                    applied=applied)
    with pytest.raises((LockLost, StateError)):
        runner.run("sync")
    assert len(target.applied) <= 5 + 12  # one journal group of 0.2 s later, at most
    other = open_store(state)
    (run,) = other.runs("default")
    journal = other.journal(run.id)
    assert len(journal) <= len(target.applied)
    target.fail = None
    runner2 = Runner(profile, other, connector=FakeConnector(users=users), target=target)
    assert runner2.run("sync").status in ("ok", "no-changes")
    assert len(target.state.users) == 40
    assert other.runs("default")[1].status == "interrupted"
    store.close()
    other.close()


def test_a_tick_is_claimed_once(pg):
    db = pg.new_database()
    one = postgres.PostgresStore(settings(pg, db), replica="one")
    two = postgres.PostgresStore(settings(pg, db), replica="two")
    with one.lock("p"):
        assert one.claim_tick("p", "7/3600")
    with two.lock("p"):
        assert not two.claim_tick("p", "7/3600")
        assert not two.claim_tick("p", "6/3600")  # a late fire of an earlier tick
        assert two.claim_tick("p", "8/3600")  # the next one
    one.close()
    two.close()
