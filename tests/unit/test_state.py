"""StateStore (SQLite and PostgreSQL): journal rows are written in groups, and never lost
by a clean end."""

from __future__ import annotations

import pytest

from dirconnector.errors import StateError
from dirconnector.model import User
from dirconnector.outcome import Outcome
from dirconnector.plan import CreateUser, DeleteUser
from dirconnector.state import records
from tests.pg import State


def _outcome(i: int, status: str = "ok") -> Outcome:
    return Outcome(CreateUser(User(f"u{i}", f"u{i}@example.com")), status, "", f"ref{i}")


def test_group_is_written_at_its_size_bound_and_the_rest_at_run_end(state: State,
                                                                     monkeypatch) -> None:
    monkeypatch.setattr(records, "GROUP_SECONDS", 3600.0)
    store = state.open()
    run = store.start_run("p", "sync")
    for i in range(records.GROUP_ROWS + 5):
        store.record(run, "p", _outcome(i, "ok" if i % 2 else "failed"))
    seen = state.rows("SELECT seq FROM journal ORDER BY seq")
    assert [s for (s,) in seen] == list(range(1, records.GROUP_ROWS + 1))
    store.finish_run(run, "ok")
    assert len(state.rows("SELECT seq FROM journal")) == records.GROUP_ROWS + 5
    # Only applied creates enter the managed set, with the ref the server gave.
    managed = {r for (r,) in state.rows("SELECT ref FROM managed WHERE profile='p'")}
    assert managed == {f"ref{i}" for i in range(1, records.GROUP_ROWS + 5, 2)}


def test_old_group_is_written_by_the_next_row(state: State, monkeypatch) -> None:
    monkeypatch.setattr(records, "GROUP_SECONDS", 0.0)
    store = state.open()
    run = store.start_run("p", "sync")
    store.record(run, "p", _outcome(1))
    assert len(state.rows("SELECT seq FROM journal")) == 1


def test_managed_updates_keep_their_order_within_a_group(state: State) -> None:
    """A create then a delete of the same account in one group leaves it unmanaged."""
    store = state.open()
    run = store.start_run("p", "sync")
    store.record(run, "p", _outcome(1))
    store.record(run, "p", Outcome(DeleteUser("ref1", "u1", "u1@example.com", "missing"), "ok", "", "ref1"))
    store.record(run, "p", _outcome(2))
    assert store.managed("p") == frozenset({"ref2"})  # reads commit the group first
    store.close()
    assert state.rows("SELECT ref FROM managed") == [("ref2",)]


def test_failed_write_raises_and_keeps_nothing_half_written(state: State) -> None:
    store = state.open()
    run = store.start_run("p", "sync")
    store.record(run, "p", _outcome(1))
    store._seq[run] = 0                  # type: ignore[attr-defined]  # the next row repeats seq 1: a primary-key clash
    store.record(run, "p", _outcome(2))
    with pytest.raises(StateError, match="cannot write the journal"):
        store.flush()
    assert state.rows("SELECT count(*) FROM journal") == [(0,)]
    assert state.rows("SELECT count(*) FROM managed") == [(0,)]



def test_one_run_and_its_journal_with_the_changes_as_recorded(state: State) -> None:
    """What a run's report reads (history --run, the status page): the run's row and each
    journal entry with its change, in order, from either store."""
    store = state.open()
    run = store.start_run("p", "sync")
    store.record(run, "p", _outcome(1))
    store.record(run, "p", _outcome(2, "failed"))
    store.finish_run(run, "partial", {"create": 2})
    row = store.run(run)
    assert row is not None and (row.id, row.profile, row.status, row.counts) == \
        (run, "p", "partial", {"create": 2})
    entries = list(store.journal_entries(run))
    assert [(e["seq"], e["status"], e["change"]["kind"]) for e in entries] == \
        [(1, "ok", "create_user"), (2, "failed", "create_user")]
    assert entries[1]["change"]["user"]["email"] == "u2@example.com"
    assert store.run("no-such-run") is None and list(store.journal_entries("no-such-run")) == []


def test_a_good_run_keeps_its_group_mapping_and_forgets_it_when_cleared(state: State) -> None:
    """GoodRun.group_mapping round-trips through the store; a run without one removes it."""
    from dirconnector.state import GoodRun

    store = state.open()
    mapping = {"displayName": "dir-{name}", "externalId": "ad-{id}"}
    store.save_good_run("p", GoodRun("c:d", 3, 0, None, mapping))
    assert store.good_run("p") == GoodRun("c:d", 3, 0, None, mapping)
    store.save_good_run("p", GoodRun("c:e", 3, 0))
    assert store.good_run("p").group_mapping is None
    assert state.rows("SELECT key FROM meta WHERE key='group_mapping'") == []


def test_a_run_id_drawn_twice_in_one_second_is_drawn_again(state: State, monkeypatch) -> None:
    """A tick starts hundreds of runs in one second and the ids' random part is 24 bits: a
    daemon replica once failed a run on "duplicate key ... runs_pkey". A taken id is drawn
    again, and both runs start."""
    import time
    import uuid

    store = state.open()
    real = uuid.uuid4
    draws = [uuid.UUID(int=7 << 104), uuid.UUID(int=7 << 104), uuid.UUID(int=9 << 104)]
    monkeypatch.setattr(uuid, "uuid4", lambda: draws.pop(0) if draws else real())
    monkeypatch.setattr(time, "strftime", lambda fmt, *a: "20261206T004513")
    first, second = store.start_run("p", "sync"), store.start_run("q", "sync")
    assert (first, second) == ("20261206T004513-000007", "20261206T004513-000009")
    assert not draws
    assert sorted(r[0] for r in state.rows("SELECT id FROM runs")) == [first, second]
