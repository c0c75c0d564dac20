"""The pipeline with fakes: plan, guard, apply, journal, no-change hash, saved plans, lock."""

import threading
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import pytest

from dirconnector import settings
from dirconnector.errors import LockHeld, ProfileFrozen, StalePlan
from dirconnector.model import Group, User
from dirconnector.state import StateStore
from dirconnector.sync import Runner
from dirconnector.testing import FakeConnector, FakeTarget

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "directory.json"


def profile(tmp_path: Path, **sync: object):
    """A profile of the file source to a SCIM URL (the tests hand in fakes for both)."""
    data = {"source": {"type": "file", "users": str(EXAMPLES)},
            "target": {"type": "scim", "url": "http://127.0.0.1:9", "token": "t0ken"},
            "sync": {"remove_missing": True, **sync}, "state": {"path": str(tmp_path / "s.db")}}
    return settings.load(data=data)


USERS = [User(f"e{i}", f"u{i}@x.com", display_name=f"U{i}") for i in range(40)]
GROUPS = [Group("g1", "Staff", frozenset(f"e{i}" for i in range(10)))]


@pytest.fixture
def store(tmp_path):
    s = StateStore(tmp_path / "state.db")
    yield s
    s.close()


def make(tmp_path, store, users=USERS, groups=GROUPS, target=None, **sync):
    conn = FakeConnector(users=users, groups=groups)
    tgt = target or FakeTarget()
    return Runner(profile(tmp_path, **sync), store, connector=conn, target=tgt), conn, tgt


def test_first_sync_creates_everything_and_journals_it(tmp_path, store):
    """A sync applies every change and journals each outcome."""
    runner, _, target = make(tmp_path, store)
    result = runner.run("sync")
    assert result.status == "ok" and result.exit_code == 0
    assert len(target.state.users) == 40
    journal = store.journal(result.run_id)
    assert len(journal) == len(result.plan.changes) and {j["status"] for j in journal} == {"ok"}
    assert len(store.managed("default")) == 41  # 40 users + 1 group


def test_unchanged_directory_skips_server_and_writes(tmp_path, store):
    """The second sync of an unchanged directory reads nothing from the server."""
    runner, _, target = make(tmp_path, store)
    runner.run("sync")
    applied = len(target.applied)
    result = runner.run("sync")
    assert result.status == "unchanged" and len(target.applied) == applied


def test_full_sync_rereads_server_and_repairs_drift(tmp_path, store):
    """--full ignores the hash: a user revoked by hand on the server is restored."""
    runner, _, target = make(tmp_path, store)
    runner.run("sync")
    ref = next(iter(target.state.users))
    target.state = replace(target.state, users={**target.state.users,
                                                ref: replace(target.state.users[ref], active=False)})
    assert runner.run("sync").status == "unchanged"
    result = runner.run("sync", full=True)
    assert [c.kind for c in result.plan.changes] == ["restore_user"]


def test_guard_refusal_changes_nothing_and_is_recorded(tmp_path, store):
    """Removing 30 of 40 users is refused; the server is untouched; history says refused."""
    runner, conn, target = make(tmp_path, store)
    runner.run("sync")
    conn.users = USERS[:10]
    before = target.state
    result = runner.run("sync")
    assert result.status == "refused" and result.exit_code == 3
    assert target.state is before
    assert store.runs("default", 1)[0].status == "refused"
    forced = runner.run("sync", force=True)
    assert forced.status == "ok"
    assert sum(1 for u in target.state.users.values() if not u.active) == 30


def test_failed_change_is_journalled_and_run_is_partial(tmp_path, store):
    """One failing change: the others apply, the run exits 1, the next run retries it."""
    bad = "u3@x.com"
    target = FakeTarget(fail=lambda c: "HTTP 500" if getattr(getattr(c, "user", None),
                                                             "email", "") == bad else None)
    runner, _, _ = make(tmp_path, store, target=target)
    result = runner.run("sync")
    assert result.status == "partial" and result.exit_code == 1
    failed = [j for j in store.journal(result.run_id) if j["status"] == "failed"]
    assert [(j["subject"], j["error"]) for j in failed] == [
        (bad, "HTTP 500"), ("Staff", "unknown user or group")]
    target.fail = None
    again = runner.run("sync")
    assert [c.kind for c in again.plan.changes] == ["create_user", "add_members"]


def test_saved_plan_applies_only_against_the_same_server_state(tmp_path, store):
    """A saved plan applies later; once the server changed, it is refused as stale."""
    runner, _, target = make(tmp_path, store)
    planned = runner.run("plan")
    result = runner.apply_saved(planned.plan)
    assert result.status == "ok" and len(target.state.users) == 40
    with pytest.raises(StalePlan):
        runner.apply_saved(planned.plan)


def test_second_run_of_same_profile_is_refused_while_locked(tmp_path, store):
    """While one run holds the lock, another process's run is refused with LockHeld."""
    other = StateStore(store.path)
    with store.lock("default"):
        runner, _, _ = make(tmp_path, other)
        with pytest.raises(LockHeld, match="already running"):
            runner.run("sync")
    other.close()


def test_frozen_profile_refuses_to_sync(tmp_path, store):
    """A profile handed over by migrate refuses sync with a hint on how to undo."""
    store.set_meta("default", "frozen", {"at": "2026-11-28"})
    runner, _, _ = make(tmp_path, store)
    with pytest.raises(ProfileFrozen) as exc:
        runner.run("sync")
    assert "migrate rollback" in exc.value.hint


def test_empty_read_never_revokes(tmp_path, store):
    """A directory that suddenly returns nobody revokes nobody, even with generous limits."""
    runner, conn, target = make(tmp_path, store, max_revocations=1000, max_revocation_ratio=1.0,
                                min_source_ratio=0.0)
    runner.run("sync")
    conn.users = []
    result = runner.run("sync")
    assert result.status == "refused" and any("no users at all" in r for r in result.refused)
    assert all(u.active for u in target.state.users.values())


def test_records_from_many_threads_are_all_journalled(tmp_path, store):
    """Concurrent outcome records lose nothing."""
    from dirconnector.outcome import Outcome
    from dirconnector.plan import CreateUser

    run = store.start_run("p", "sync")
    threads = [threading.Thread(target=lambda i=i: [store.record(run, "p", Outcome(
        CreateUser(User(f"x{i}-{j}", "a@x.com")), "ok", ref=f"r{i}-{j}")) for j in range(50)])
        for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(store.journal(run)) == 400 and len(store.managed("p")) == 400


class MarkedConnector(FakeConnector):
    """A fake directory with a change marker, like OpenLDAP's contextCSN (HasChangeMarker)."""

    def __init__(self, **kw):
        super().__init__(users=USERS, groups=GROUPS, **kw)
        self.marker: str | None = "csn-1"
        self.marker_reads = 0
        self.full_read_interval = timedelta(hours=1)

    def change_marker(self):
        self.marker_reads += 1
        return self.marker


def marked(tmp_path, store, target=None, **sync):
    conn = MarkedConnector()
    tgt = target or FakeTarget()
    return Runner(profile(tmp_path, **sync), store, connector=conn, target=tgt), conn, tgt


def test_unchanged_marker_skips_the_directory_read(tmp_path, store):
    """Same marker as before the last good read: nothing is read, from either side."""
    runner, conn, target = marked(tmp_path, store)
    assert runner.run("sync").status == "ok" and conn.fetches == 1
    applied = len(target.applied)
    result = runner.run("sync")
    assert result.status == "unchanged" and conn.fetches == 1 and result.desired is None
    assert "source_read" not in result.timings and len(target.applied) == applied


def test_new_marker_reads_and_applies(tmp_path, store):
    runner, conn, _ = marked(tmp_path, store)
    runner.run("sync")
    conn.marker = "csn-2"
    conn.users = [*USERS, User("e99", "new@x.com")]
    result = runner.run("sync")
    assert conn.fetches == 2 and [c.kind for c in result.plan.changes] == ["create_user"]
    assert runner.run("sync").status == "unchanged" and conn.fetches == 2


def test_marker_is_not_trusted_past_full_read_interval(tmp_path, store):
    runner, conn, _ = marked(tmp_path, store)
    runner.run("sync")
    saved = store.get_meta("default", "source_marker")
    store.set_meta("default", "source_marker", {**saved, "read_at": saved["read_at"] - 3601})
    assert runner.run("sync").status == "unchanged" and conn.fetches == 2  # read, same digest
    assert runner.run("sync").status == "unchanged" and conn.fetches == 2  # trusted again


def test_no_full_read_interval_never_asks_for_a_marker(tmp_path, store):
    runner, conn, _ = marked(tmp_path, store)
    conn.full_read_interval = timedelta(0)
    runner.run("sync")
    runner.run("sync")
    assert conn.marker_reads == 0 and conn.fetches == 2


def test_no_marker_after_a_partial_run(tmp_path, store):
    """A run that left changes undone keeps reading until one succeeds."""
    target = FakeTarget(fail=lambda c: "boom" if c.kind == "create_group" else None)
    runner, conn, _ = marked(tmp_path, store, target=target)
    assert runner.run("sync").status == "partial"
    runner.run("sync")
    assert conn.fetches == 2


def test_changed_setting_is_acted_on_although_the_directory_is_unchanged(tmp_path, store):
    """The no-change hash and the marker carry the configuration: a new policy plans."""
    conn = FakeConnector(users=USERS, groups=GROUPS)
    target = FakeTarget()
    users_only = Runner(profile(tmp_path, sync_groups=False), store, connector=conn,
                        target=target)
    users_only.run("sync")
    assert users_only.run("sync").status == "unchanged"
    with_groups = Runner(profile(tmp_path), store, connector=conn, target=target)
    result = with_groups.run("sync")
    assert sorted(c.kind for c in result.plan.changes) == ["add_members", "create_group"]


def email_changes_impossible(change):
    """Like Bitwarden: a member's email cannot be changed by the connector."""
    return "email change not possible (members own their email)" \
        if change.kind == "update_user" and "email" in change.fields else None


def test_change_the_target_cannot_make_is_a_note_not_a_failure(tmp_path, store):
    """An impossible email change: run ok (exit 0), the person kept with the reason, journalled."""
    target = FakeTarget(cannot=email_changes_impossible)
    runner, conn, _ = make(tmp_path, store, target=target)
    runner.run("sync")
    conn.users = [replace(USERS[0], email="renamed@x.com"), *USERS[1:]]
    result = runner.run("sync")
    assert result.status == "no-changes" and result.exit_code == 0 and result.plan.empty
    (kept,) = result.plan.kept
    assert (kept.email, kept.external_id, kept.reason) == (
        "renamed@x.com", "e0", "email change not possible (members own their email)")
    rows = store.journal(result.run_id)
    assert [(r["kind"], r["status"], r["subject"]) for r in rows] == [
        ("kept", "kept", "renamed@x.com")]
    assert store.runs("default", 1)[0].counts["kept"] == 1


def test_impossible_change_is_not_planned_again_and_the_shortcut_holds(tmp_path, store):
    """After the note, an unchanged directory is 'unchanged' again: no full plan every run."""
    runner, conn, target = make(tmp_path, store, target=FakeTarget(cannot=email_changes_impossible))
    runner.run("sync")
    conn.users = [replace(USERS[0], email="renamed@x.com"), *USERS[1:]]
    runner.run("sync")
    applied = len(target.applied)
    assert runner.run("sync").status == "unchanged" and len(target.applied) == applied


def test_partial_run_counts_what_failed_and_what_was_not_sent(tmp_path, store):
    """The error counts failures and unsent changes apart (never '0 of 1 did not apply')."""
    from dirconnector.outcome import Outcome

    class Skipping(FakeTarget):
        def apply(self, plan, record, stop=None):
            changes = list(plan.changes)
            record(Outcome(changes[0], "skipped", "not sent"))
            record(Outcome(changes[1], "failed", "HTTP 500"))
            for c in changes[2:]:
                record(Outcome(c, "ok", ref="x"))

    runner, _, _ = make(tmp_path, store, target=Skipping())
    result = runner.run("sync")
    assert result.status == "partial" and result.exit_code == 1
    assert result.error == f"1 of {len(result.plan.changes)} change(s) failed; 1 were not sent"


def test_emails_turning_unreadable_refuse_the_run_and_change_nothing(tmp_path, store):
    """Every email unreadable: refused (exit 3) naming the cause; no one loses a group."""
    runner, conn, target = make(tmp_path, store)
    runner.run("sync")
    before = target.state
    conn.users = [replace(u, email="") for u in USERS]
    result = runner.run("sync")
    assert result.status == "refused" and result.exit_code == 3
    assert any("40 of 40 users read have no email" in r for r in result.refused)
    assert target.state is before
    forced = runner.run("sync", force=True)
    assert forced.status == "no-changes" and len(forced.plan.kept) == 40
    assert target.state == before


def test_emptied_groups_are_refused_then_forced_exactly(tmp_path, store):
    """A directory emptying a 30-member group is refused; --force removes exactly those."""
    big = [Group("g1", "Staff", frozenset(f"e{i}" for i in range(30)))]
    runner, conn, target = make(tmp_path, store, groups=big)
    runner.run("sync")
    conn.groups = [Group("g1", "Staff", frozenset())]
    result = runner.run("sync")
    assert result.status == "refused"
    assert any("remove 30 group membership(s), 100% of the 30" in r for r in result.refused)
    assert all(g.member_ids for g in target.state.groups.values())
    forced = runner.run("sync", force=True)
    assert [(c.kind, len(c.members)) for c in forced.plan.changes] == [("remove_members", 30)]
    assert all(not g.member_ids for g in target.state.groups.values())


def test_stop_ends_the_run_after_the_change_in_flight(tmp_path, store):
    """stop set at the 5th outcome: RunInterrupted, exactly 5 journalled, the rerun converges."""
    from dirconnector.errors import RunInterrupted

    stop = threading.Event()
    seen: list[tuple[int, int]] = []

    def applied(done: int, total: int) -> None:
        seen.append((done, total))
        if done == 5:
            stop.set()

    target = FakeTarget()
    runner = Runner(profile(tmp_path), store, connector=FakeConnector(users=USERS, groups=GROUPS),
                    target=target, applied=applied, stop=stop)
    with pytest.raises(RunInterrupted, match="after 5 of 42"):
        runner.run("sync")
    assert seen == [(n, 42) for n in range(1, 6)]
    run = store.runs("default", 1)[0]
    assert run.status == "interrupted" and len(store.journal(run.id)) == 5
    assert len(target.applied) == 5
    runner.stop = threading.Event()
    assert runner.run("sync").status == "ok"
    assert runner.run("sync", full=True).plan.empty
