"""The watch engine with fakes: merge, the windowed guard, gaps, and a randomized run."""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from dirconnector import settings
from dirconnector.connectors import Changes, HasChangeStream, StreamGap, StreamMode
from dirconnector.diff import USER_FIELDS
from dirconnector.incremental import combine, merge
from dirconnector.mapping import ENTERPRISE
from dirconnector.model import Group, Snapshot, User
from dirconnector.state import open_store
from dirconnector.sync import Runner
from dirconnector.targets import ReadsSome
from dirconnector.testing import FakeConnector, FakeTarget
from dirconnector.watch import Watcher

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "directory.json"


class StreamingFake(FakeConnector):
    """A FakeConnector whose edits are also a change stream (position: edits seen)."""

    def __init__(self, **kw: Any) -> None:
        super().__init__(**kw)
        self.log: list[Changes] = []
        self.gap = False

    def stream_mode(self) -> StreamMode:
        return StreamMode("fake")

    def stream_position(self) -> str:
        return str(len(self.log))

    def changes(self, position: str, wait: float) -> Changes:
        if self.gap:
            self.gap = False
            raise StreamGap("cookie unknown")
        out = Changes(position)
        for c in self.log[int(position) :]:
            out = combine(out, c)
        return dataclasses.replace(out, position=str(len(self.log)))

    def close(self) -> None:
        return None

    def edit(
        self,
        users: Sequence[User] = (),
        removed: Sequence[str] = (),
        groups: Sequence[Group] = (),
        removed_groups: Sequence[str] = (),
    ) -> None:
        by_id = {u.external_id: u for u in self.users}
        for u in users:
            by_id[u.external_id] = u
        for r in removed:
            by_id.pop(r, None)
        self.users = list(by_id.values())
        gs = {g.external_id: g for g in self.groups}
        gs.update({g.external_id: g for g in groups})
        for r in removed_groups:
            gs.pop(r, None)
        self.groups = list(gs.values())
        self.log.append(
            Changes(
                str(len(self.log) + 1),
                {u.external_id: u for u in users},
                {g.external_id: g for g in groups},
                frozenset(removed),
                frozenset(removed_groups),
            )
        )


class ReadingFake(FakeTarget):
    """A FakeTarget that can also read some records (ReadsSome)."""

    def __init__(self, **kw: Any) -> None:
        super().__init__(**kw)
        self.reads = 0

    def read_users(self, external_ids: Sequence[str], emails: Sequence[str] = ()) -> list[User]:
        self.reads += 1
        ids, mails = set(external_ids), set(emails)
        return [u for u in self.state.users.values() if u.external_id in ids or u.email in mails]

    def read_groups(self, external_ids: Sequence[str], names: Sequence[str] = ()) -> list[Group]:
        ids, ns = set(external_ids), set(names)
        return [g for g in self.state.groups.values() if g.external_id in ids or g.name in ns]


def profile(tmp_path: Path, **sync: object) -> settings.Profile:
    data = {
        "source": {"type": "file", "users": str(EXAMPLES)},
        "target": {"type": "scim", "url": "http://127.0.0.1:9", "token": "t0ken"},
        "sync": {"remove_missing": True, "batch_window": 0, **sync},
        "state": {"path": str(tmp_path / "s.db")},
    }
    return settings.load(data=data)


USERS = [User(f"e{i}", f"u{i}@x.com", display_name=f"U{i}") for i in range(40)]
GROUPS = [
    Group("g1", "Staff", frozenset(f"e{i}" for i in range(10)), frozenset({"g2"})),
    Group("g2", "Team", frozenset(f"e{i}" for i in range(10, 15))),
]


def watcher(
    tmp_path: Path,
    target: FakeTarget | None = None,
    clock: list[float] | None = None,
    **sync: object,
) -> tuple[Watcher, StreamingFake, FakeTarget]:
    conn = StreamingFake(users=USERS, groups=GROUPS)
    tgt = target if target is not None else ReadingFake()
    prof = profile(tmp_path, **sync)
    store = open_store(prof.settings.state)
    now = clock if clock is not None else [1000.0]
    w = Watcher(
        prof, store, runner=Runner(prof, store, connector=conn, target=tgt), clock=lambda: now[0]
    )
    w.full_sync()
    return w, conn, tgt


def test_fakes_claim_the_capabilities() -> None:
    """The test doubles are what the engine asks for."""
    assert isinstance(StreamingFake(), HasChangeStream) and isinstance(ReadingFake(), ReadsSome)


def test_merge_gives_what_a_full_read_gives() -> None:
    """A changed, a removed, a new and a no-longer-usable user merge like a new read."""
    before = Snapshot.build(USERS, GROUPS)
    ch = Changes(
        "1",
        {"e1": User("e1", "NEW1@X.com"), "n": User("n", "n@x.com"), "e2": User("e2", "")},
        {},
        frozenset({"e3"}),
    )
    users = [u for u in USERS if u.external_id not in ("e1", "e2", "e3")]
    expected = Snapshot.build(
        [*users, User("e1", "NEW1@X.com"), User("n", "n@x.com"), User("e2", "")], GROUPS
    )
    got = merge(before, ch)
    assert got.users == expected.users and got.digest() == expected.digest()
    assert {s.external_id for s in got.skipped} == {"e2"}


def test_merge_skips_both_holders_of_a_duplicate_email() -> None:
    """A change that takes another active user's address skips both, as a full read does."""
    got = merge(Snapshot.build(USERS), Changes("1", {"e1": User("e1", "u2@x.com")}))
    assert "e1" not in got.users and "e2" not in got.users
    assert {s.reason for s in got.skipped} == {"duplicate email"}


def test_one_change_reads_only_what_it_touches(tmp_path: Path) -> None:
    """A disabled user is revoked; only that user's record is planned."""
    w, conn, tgt = watcher(tmp_path)
    conn.edit([dataclasses.replace(USERS[20], active=False)])
    result = w.step()
    assert result is not None and result.status == "ok"
    assert [c.kind for c in result.plan.changes] == ["revoke_user"]  # type: ignore[union-attr]
    assert not next(u for u in tgt.state.users.values() if u.external_id == "e20").active


def test_nested_move_reaches_every_enclosing_group(tmp_path: Path) -> None:
    """A user added to a nested group becomes a member of its parent too."""
    w, conn, tgt = watcher(tmp_path)
    conn.edit(groups=[dataclasses.replace(GROUPS[1], member_ids=GROUPS[1].member_ids | {"e30"})])
    w.step()
    ref = next(u.ref for u in tgt.state.users.values() if u.external_id == "e30")
    staff = next(g for g in tgt.state.groups.values() if g.external_id == "g1")
    assert ref in staff.member_ids


def test_windowed_guard_stops_a_slow_mass_delete(tmp_path: Path) -> None:
    """One delete per batch, each under the limit, is refused once the window's total is
    over max_revocations; after the window, deletes go through again."""
    clock = [1000.0]
    w, conn, tgt = watcher(
        tmp_path, clock=clock, max_revocations=3, max_revocation_ratio=1.0, guard_window="1h"
    )
    statuses = []
    for i in range(5):
        clock[0] += 60
        conn.edit(removed=[f"e{30 + i}"])
        r = w.step()
        assert r is not None
        statuses.append(r.status)
    assert statuses == ["ok", "ok", "ok", "refused", "refused"]
    assert sum(not u.active for u in tgt.state.users.values()) == 3
    clock[0] += 3600
    conn.edit(removed=["e36"])
    r = w.step()
    assert r is not None and r.status == "ok"


def test_a_reconcile_does_not_let_refused_deletes_through(tmp_path: Path) -> None:
    """Batches refused by the windowed guard are planned again by the next full
    reconcile; within the window that full plan is refused too (the window counts every
    removal the watcher made, full runs included), and it goes through after it."""
    clock = [1000.0]
    w, conn, tgt = watcher(
        tmp_path,
        clock=clock,
        max_revocations=3,
        max_revocation_ratio=1.0,
        min_source_ratio=0,
        guard_window="1h",
    )
    for i in range(5):
        clock[0] += 60
        conn.edit(removed=[f"e{30 + i}"])
        w.step()
    assert sum(not u.active for u in tgt.state.users.values()) == 3
    clock[0] += 60
    full = w.full_sync()
    assert full.status == "refused"
    assert any("guard_window" in r for r in full.refused), full.refused
    assert sum(not u.active for u in tgt.state.users.values()) == 3
    clock[0] += 3600
    assert w.full_sync().status == "ok"
    assert sum(not u.active for u in tgt.state.users.values()) == 5


def test_a_restarted_watcher_keeps_the_window(tmp_path: Path) -> None:
    """The removals of the last guard_window are kept in the state store: a watcher that
    restarts (a crash loop, a redeploy) does not start counting from zero."""
    clock = [1000.0]
    w, conn, tgt = watcher(
        tmp_path, clock=clock, max_revocations=3, max_revocation_ratio=1.0, guard_window="1h"
    )
    for i in range(3):
        clock[0] += 60
        conn.edit(removed=[f"e{30 + i}"])
        assert w.step() is not None
    again = Watcher(
        w.profile,
        w.store,
        runner=Runner(w.profile, w.store, connector=conn, target=tgt),
        clock=lambda: clock[0],
    )
    assert again.window.totals(clock[0]) == (3, 0)
    again.full_sync()
    clock[0] += 60
    conn.edit(removed=["e33"])
    r = again.step()
    assert r is not None and r.status == "refused"
    assert sum(not u.active for u in tgt.state.users.values()) == 3
    # The saved events age out like the live ones.
    later = Watcher(
        w.profile,
        w.store,
        runner=Runner(w.profile, w.store, connector=conn, target=tgt),
        clock=lambda: clock[0] + 3600,
    )
    assert later.window.totals(clock[0] + 3600) == (0, 0)


def test_a_gap_reads_in_full(tmp_path: Path) -> None:
    """A stream that cannot resume (StreamGap) makes the engine read in full again."""
    w, conn, _ = watcher(tmp_path)
    conn.gap = True
    with pytest.raises(StreamGap):
        w.step()
    before = conn.fetches
    w.full_sync()
    assert conn.fetches == before + 1 and w.full_syncs == 2


@pytest.mark.parametrize("seed", [7, 13])
def test_incremental_state_equals_a_full_read_after_random_edits(tmp_path: Path, seed: int) -> None:
    """N random directory edits through watch, then a full plan is empty and the
    incremental snapshot equals a full read (no repairs)."""
    for target in (ReadingFake(), FakeTarget()):
        rnd = random.Random(seed)
        w, conn, tgt = watcher(
            tmp_path / type(target).__name__,
            target=target,
            max_revocations=1000,
            max_revocation_ratio=1.0,
            max_membership_removals=1000,
            max_membership_removal_ratio=1.0,
        )
        n = 100
        for step in range(120):
            users = {u.external_id: u for u in conn.users}
            groups = {g.external_id: g for g in conn.groups}
            kind = rnd.choice(
                [
                    "create",
                    "disable",
                    "enable",
                    "email",
                    "delete",
                    "join",
                    "leave",
                    "nest",
                    "unnest",
                    "newgroup",
                    "share",
                    "share",
                ]
            )
            uid = rnd.choice(sorted(users))
            gid = rnd.choice(sorted(groups))
            if kind == "create":
                n += 1
                conn.edit([User(f"e{n}", f"u{n}@x.com", display_name=f"U{n}")])
            elif kind in ("disable", "enable"):
                conn.edit([dataclasses.replace(users[uid], active=kind == "enable")])
            elif kind == "email":
                conn.edit([dataclasses.replace(users[uid], email=f"m{step}@x.com")])
            elif kind == "share":  # another entry's address: duplicates come and go
                other = users[rnd.choice(sorted(users))]
                conn.edit([dataclasses.replace(users[uid], email=other.email.upper())])
            elif kind == "delete":
                conn.edit(removed=[uid])
            elif kind in ("join", "leave"):
                g = groups[gid]
                m = g.member_ids | {uid} if kind == "join" else g.member_ids - {uid}
                conn.edit(groups=[dataclasses.replace(g, member_ids=m)])
            elif kind in ("nest", "unnest"):
                g, other = groups[gid], rnd.choice(sorted(groups))
                subs = g.subgroup_ids | {other} if kind == "nest" else g.subgroup_ids - {other}
                conn.edit(groups=[dataclasses.replace(g, subgroup_ids=frozenset(subs) - {gid})])
            else:
                conn.edit(groups=[Group(f"g{step}", f"G{step}", frozenset({uid}))])
            if rnd.random() < 0.6:
                r = w.step()
                assert r is None or r.status in ("ok", "no-changes"), r and r.refused
        w.step()
        full = conn.fetch(w.store.connector_state(w.name))
        assert w.desired is not None and w.desired.users == full.users
        assert w.desired.groups == full.groups
        assert skips(w.desired) == skips(full), [
            (s, s.external_id in full.users, s.external_id in w.desired.users)
            for s in w.desired.skipped
            if (s.external_id, s.reason) not in skips(full)
        ]
        assert any(s.reason == "duplicate email" for s in full.skipped)
        plan = w.runner.make_plan(full, tgt.snapshot())
        assert plan.empty, [c.kind for c in plan.changes]


def skips(snap: Snapshot) -> set[tuple[str, str]]:
    return {(s.external_id, s.reason) for s in snap.skipped}


def test_a_duplicate_is_synced_when_its_rival_changes_address(tmp_path: Path) -> None:
    """Two active entries share an address: neither is synced. When one changes its
    address, both are synced in that batch, as a full read would give (before, the
    unchanged one waited for the next full reconcile)."""
    w, conn, tgt = watcher(tmp_path)
    a, b = USERS[20], USERS[21]
    conn.edit([dataclasses.replace(b, email=a.email)])
    w.step()
    assert w.desired is not None and "e20" not in w.desired.users
    assert {s.external_id for s in w.desired.skipped} >= {"e20", "e21"}
    conn.edit([dataclasses.replace(b, email="b.new@x.com")])
    r = w.step()
    assert r is not None and r.status == "ok"
    assert {"e20", "e21"} <= set(w.desired.users)
    assert not {s.external_id for s in w.desired.skipped} & {"e20", "e21"}
    emails = {u.external_id: u.email for u in tgt.state.users.values()}
    assert emails["e20"] == a.email and emails["e21"] == "b.new@x.com"


def test_merge_settles_an_address_among_all_who_carry_it() -> None:
    """An active holder and an inactive duplicate: when the holder goes, the duplicate
    holds the address (inactive), as in a full read; ``also`` names it."""
    a = User("a", "same@x.com")
    b = User("b", "same@x.com", active=False)
    before = Snapshot.build([a, b, User("c", "c@x.com")])
    assert set(before.users) == {"a", "c"} and skips(before) == {("b", "duplicate email")}
    also: set[str] = set()
    after = merge(before, Changes("1", removed_users=frozenset({"a"})), None, also)
    assert after.users == Snapshot.build([b, User("c", "c@x.com")]).users
    assert not after.skipped and also == {"b"}
    # A third entry takes the address from an unchanged holder: both active, neither kept.
    also = set()
    after = merge(before, Changes("2", {"c": User("c", "SAME@x.com")}), None, also)
    assert set(after.users) == set()
    assert skips(after) == {(x, "duplicate email") for x in "abc"} and also == {"a", "b"}


def test_a_source_without_stream_is_synced_in_marker_mode(tmp_path: Path) -> None:
    """No change stream: watch says "marker" and runs ordinary syncs until stopped."""
    import threading

    prof = profile(tmp_path)
    store = open_store(prof.settings.state)
    conn, tgt = FakeConnector(users=USERS, groups=GROUPS), FakeTarget()
    stop = threading.Event()
    w = Watcher(prof, store, runner=Runner(prof, store, connector=conn, target=tgt), stop=stop)
    assert w.stream_mode().mode == "marker"
    thread = threading.Thread(target=w.run)
    thread.start()
    for _ in range(200):
        if len(tgt.state.users) == len(USERS):
            break
        threading.Event().wait(0.02)
    stop.set()
    thread.join(5)
    assert not thread.is_alive() and len(tgt.state.users) == len(USERS)
    assert store.runs("default", 1)[0].command == "watch"


MANAGED = {"title": "title", f"{ENTERPRISE}:manager": "manager"}


@pytest.mark.parametrize("seed", [3, 21])
def test_mapped_managers_through_watch_equal_a_full_read(tmp_path: Path, seed: int) -> None:
    """Random edits through watch with a manager mapping: managers set, cleared, pointed at
    oneself, at a disabled, deleted or unknown person; people disabled, enabled, deleted,
    created; titles changed. After every step the target holds what a full read maps (a
    full plan is empty): a mapping references a manager only while they are synced and
    active, so a report changes when their manager comes, goes or flips."""
    prof = settings.load(data={
        "source": {"type": "file", "users": str(EXAMPLES)},
        "target": {"type": "scim", "url": "http://127.0.0.1:9", "token": "t0ken",
                   "mapping": MANAGED},
        "sync": {"remove_missing": True, "batch_window": 0, "max_revocations": 1000,
                 "max_revocation_ratio": 1.0},
        "state": {"path": str(tmp_path / "s.db")},
    })
    people = [User(f"e{i}", f"u{i}@x.com", display_name=f"U{i}", attributes=tuple(sorted(
        [("title", f"T{i % 4}"), *([("manager", f"e{i // 4}")] if i else [])])))
        for i in range(24)]
    conn = StreamingFake(users=people, groups=[])
    conn.read_attributes(frozenset({"title", "manager"}))
    tgt = ReadingFake(fields=(*USER_FIELDS, "attributes"))
    store = open_store(prof.settings.state)
    w = Watcher(prof, store, runner=Runner(prof, store, connector=conn, target=tgt),
                clock=lambda: 1000.0)
    w.full_sync()
    rnd = random.Random(seed)
    n, flips, referenced = 100, 0, 0
    for step in range(150):
        users = {u.external_id: u for u in conn.users}
        uid = rnd.choice(sorted(users))
        u = users[uid]
        raw = dict(u.attributes)
        kind = rnd.choice(["boss", "boss", "unboss", "disable", "enable", "title", "delete",
                           "create"])
        if kind == "boss":
            raw["manager"] = rnd.choice([*sorted(users), uid, "e999", f"e{n}"])
            conn.edit([dataclasses.replace(u, attributes=tuple(sorted(raw.items())))])
        elif kind == "unboss":
            raw.pop("manager", None)
            conn.edit([dataclasses.replace(u, attributes=tuple(sorted(raw.items())))])
        elif kind in ("disable", "enable"):
            flips += u.active != (kind == "enable")
            conn.edit([dataclasses.replace(u, active=kind == "enable")])
        elif kind == "title":
            raw["title"] = f"T{step}"
            conn.edit([dataclasses.replace(u, attributes=tuple(sorted(raw.items())))])
        elif kind == "delete" and len(users) > 8:
            conn.edit(removed=[uid])
        else:
            n += 1
            conn.edit([User(f"e{n}", f"u{n}@x.com", display_name=f"U{n}", attributes=(
                ("manager", rnd.choice(sorted(users))), ("title", "New")))])
        r = w.step()
        assert r is None or r.status in ("ok", "no-changes"), r and r.refused
        full = w.runner.mapped(conn.fetch(w.store.connector_state(w.name)))
        plan = w.runner.make_plan(full, tgt.snapshot())
        assert plan.empty, (step, kind, uid, [(c.kind, getattr(c, "fields", ()))
                                              for c in plan.changes])
        referenced += sum(1 for x in tgt.snapshot().users.values()
                          if any(k == f"{ENTERPRISE}:manager" for k, _ in x.attributes))
    assert flips >= 10 and referenced > 0, (flips, referenced)
