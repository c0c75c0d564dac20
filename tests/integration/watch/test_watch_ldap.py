"""Each kind of directory change reaches scim2-server through watch (slapd syncrepl)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from dirconnector.connectors.ldap.connector import LdapConnector
from dirconnector.incremental import combine
from tests.integration.feedwatch import until
from tests.integration.ldap.conftest import ldapmodify
from tests.integration.scim.conftest import ScimServer

from .conftest import Running, ldapdata, make_profile

pytestmark = pytest.mark.integration


def scim_users(scim: ScimServer) -> dict[str, dict[str, Any]]:
    """The server's users by userName."""
    body = scim.get("/Users", count=1000)
    return {str(r["userName"]).lower(): r for r in body.get("Resources", [])}  # type: ignore[union-attr]


def scim_groups(scim: ScimServer) -> dict[str, dict[str, Any]]:
    body = scim.get("/Groups", count=1000)
    return {str(r["displayName"]): r for r in body.get("Resources", [])}  # type: ignore[union-attr]


@pytest.fixture
def watching(
    tmp_path: Path, slapd_rw: dict[str, str], scim_server: ScimServer
) -> Iterator[Running]:
    profile = make_profile(tmp_path, slapd_rw, scim_server)
    with Running(profile) as run:
        until(lambda: run.watcher.full_syncs >= 1 and bool(run.watcher.position), 20)
        yield run
    assert run.error is None, run.error


def test_stream_mode_is_syncrepl(
    tmp_path: Path, slapd_rw: dict[str, str], scim_server: ScimServer
) -> None:
    """slapd with syncprov: the connector streams with RFC 4533."""
    profile = make_profile(tmp_path, slapd_rw, scim_server)
    connector = LdapConnector(profile.source)  # type: ignore[arg-type]
    assert connector.stream_mode().mode == "syncrepl"


def test_disabled_user_revoked_within_two_seconds(
    watching: Running, slapd_rw: dict[str, str], scim_server: ScimServer
) -> None:
    """A user locked with ldapmodify is inactive on the server within 2 s."""
    email = ldapdata.email(10)
    assert scim_users(scim_server)[email]["active"] is True
    ldapmodify(
        slapd_rw,
        f"dn: {ldapdata.user_dn(10)}\nchangetype: modify\n"
        f"add: pwdAccountLockedTime\npwdAccountLockedTime: {ldapdata.LOCKED}\n",
    )
    took = until(lambda: scim_users(scim_server)[email]["active"] is False, 2.0)
    assert took < 2.0


def test_each_change_kind_arrives(
    watching: Running, slapd_rw: dict[str, str], scim_server: ScimServer
) -> None:
    """Create, email change, rename/move, group add/remove, nested move and delete arrive."""
    people = ldapdata.PEOPLE
    ldapmodify(
        slapd_rw,
        f"dn: uid=newbie,{people}\nchangetype: add\nobjectClass: inetOrgPerson\n"
        f"uid: newbie\ncn: New Bie\nsn: Bie\nmail: newbie@example.com\n",
    )
    until(lambda: "newbie@example.com" in scim_users(scim_server), 5)
    # email change
    old = ldapdata.email(11)
    ldapmodify(
        slapd_rw,
        f"dn: {ldapdata.user_dn(11)}\nchangetype: modify\nreplace: mail\n"
        f"mail: changed11@example.com\n",
    )
    until(
        lambda: (
            "changed11@example.com" in scim_users(scim_server)
            and old not in scim_users(scim_server)
        ),
        5,
    )
    # group add
    dept = ldapdata.dept(0)
    ldapmodify(
        slapd_rw,
        f"dn: {ldapdata.group_dn(dept)}\nchangetype: modify\nadd: member\n"
        f"member: uid=newbie,{people}\n",
    )
    newbie = scim_users(scim_server)["newbie@example.com"]["id"]

    def members(name: str) -> set[str]:
        return {m["value"] for m in scim_groups(scim_server)[name].get("members") or []}

    until(lambda: newbie in members(dept), 5)
    # group remove
    ldapmodify(
        slapd_rw,
        f"dn: {ldapdata.group_dn(dept)}\nchangetype: modify\ndelete: member\n"
        f"member: uid=newbie,{people}\n",
    )
    until(lambda: newbie not in members(dept), 5)
    # nested: level4 (inside level3 < level2 < level1) gains newbie; level1 holds them too
    ldapmodify(
        slapd_rw,
        f"dn: {ldapdata.group_dn('level4')}\nchangetype: modify\nadd: member\n"
        f"member: uid=newbie,{people}\n",
    )
    until(lambda: newbie in members("level1") and newbie in members("level4"), 5)
    # rename (modrdn): entryUUID stays, so the account stays the same
    ldapmodify(
        slapd_rw,
        f"dn: uid=newbie,{people}\nchangetype: modrdn\nnewrdn: uid=newbie2\ndeleteoldrdn: 0\n",
    )
    time.sleep(1.5)
    assert scim_users(scim_server)["newbie@example.com"]["id"] == newbie
    # delete: revoked (remove_missing)
    ldapmodify(
        slapd_rw,
        f"dn: uid=newbie,{people}\nchangetype: delete\n".replace("uid=newbie,", "uid=newbie2,"),
    )
    until(lambda: scim_users(scim_server)["newbie@example.com"]["active"] is False, 5)


def test_watch_command_revokes_a_locked_user(
    tmp_path: Path, slapd_rw: dict[str, str], scim_server: ScimServer
) -> None:
    """`dirconnector watch`: a user locked with ldapmodify is revoked within 2 s; SIGTERM
    ends it with exit 0; `status` shows the stream position and lag."""
    import json
    import os
    import signal
    import subprocess
    import sys

    config = tmp_path / "dirconnector.toml"
    config.write_text(f"""
[source]
type = "ldap"
url = "{slapd_rw["SLAPD_URL"]}"
bind_dn = "{slapd_rw["SLAPD_ADMIN_DN"]}"
password_env = "W_LDAP_PW"
backend = "python-ldap"
disabled_filter = "(pwdAccountLockedTime=*)"
[target]
type = "scim"
url = "{scim_server.url}"
token_env = "W_SCIM_TOKEN"
[sync]
batch_window = "0.2s"
[state]
path = "{tmp_path / "state.db"}"
""")
    from tests.integration.scim.conftest import TOKEN

    env = {**os.environ, "W_LDAP_PW": slapd_rw["SLAPD_ADMIN_PASSWORD"], "W_SCIM_TOKEN": TOKEN}
    from pathlib import Path as _Path

    cli = [str(_Path(sys.executable).with_name("dirconnector")), "--config", str(config)]
    proc = subprocess.Popen([*cli, "watch"], env=env, stderr=subprocess.PIPE, text=True)
    try:
        email = ldapdata.email(20)
        until(lambda: scim_users(scim_server).get(email, {}).get("active") is True, 30)

        def positioned() -> bool:  # the full sync is over: it saved its position
            out = subprocess.run(
                [*cli, "status", "--format", "json"],
                env=env,
                capture_output=True,
                text=True,
                check=True,
            ).stdout
            return bool(json.loads(out)[0]["stream_position"])

        until(positioned, 30)
        ldapmodify(
            slapd_rw,
            f"dn: {ldapdata.user_dn(20)}\nchangetype: modify\n"
            f"add: pwdAccountLockedTime\npwdAccountLockedTime: "
            f"{ldapdata.LOCKED}\n",
        )
        try:
            until(lambda: scim_users(scim_server)[email]["active"] is False, 2.0)
        except AssertionError:
            proc.send_signal(signal.SIGTERM)
            raise AssertionError(proc.communicate(timeout=20)[1][-3000:]) from None
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, err[-2000:]
    status = subprocess.run(
        [*cli, "status", "--format", "json"], env=env, capture_output=True, text=True, check=True
    )
    row = json.loads(status.stdout)[0]
    assert str(row["stream_position"]).startswith("rid=") and row["stream_lag"] is not None
    check = subprocess.run([*cli, "check"], env=env, capture_output=True, text=True)
    assert "watch mode: follows changes by syncrepl" in check.stdout, check.stdout[-2000:]


def test_windowed_guard_stops_a_slow_mass_delete(
    tmp_path: Path, slapd_rw: dict[str, str], scim_server: ScimServer
) -> None:
    """Users deleted one at a time with ldapmodify, each batch under the limits: once
    max_revocations within guard_window are revoked, the next deletes are refused and stay
    active on the server, and a restarted watcher's full sync refuses them too."""
    profile = make_profile(
        tmp_path,
        slapd_rw,
        scim_server,
        max_revocations=2,
        max_revocation_ratio=1.0,
        min_source_ratio=0,
        guard_window="1h",
    )
    numbers = [i for i in range(40, 70) if ldapdata.has_mail(i) and not ldapdata.is_disabled(i)]
    numbers = numbers[:4]
    victims = [ldapdata.email(i) for i in numbers]

    def refused(run: Running) -> list[str]:
        return [r.error for r in run.store.runs(profile.name, 50) if r.status == "refused"]

    with Running(profile) as run:
        until(lambda: run.watcher.full_syncs >= 1 and bool(run.watcher.position), 20)
        for n, i in enumerate(numbers):
            ldapmodify(slapd_rw, f"dn: {ldapdata.user_dn(i)}\nchangetype: delete\n")
            if n < 2:
                until(lambda n=n: scim_users(scim_server)[victims[n]]["active"] is False, 5)
            else:
                until(lambda n=n: len(refused(run)) >= n - 1, 5)
        assert run.error is None, run.error
        assert all("guard_window" in e for e in refused(run)), refused(run)
    users = scim_users(scim_server)
    assert [users[v]["active"] for v in victims] == [False, False, True, True]
    with Running(profile) as again:
        until(lambda: again.watcher.full_syncs >= 1, 20)
        last = again.store.runs(profile.name, 1)[0]
        assert last.command == "watch-full" and last.status == "refused", last
        assert "guard_window" in last.error
    users = scim_users(scim_server)
    assert [users[v]["active"] for v in victims] == [False, False, True, True]


def _rename_all(slapd: dict[str, str], numbers: range, label: str) -> None:
    ldapmodify(
        slapd,
        "".join(
            f"dn: {ldapdata.user_dn(i)}\nchangetype: modify\nreplace: "
            f"displayName\ndisplayName: {label} {i}\n\n"
            for i in numbers
        ),
    )


def test_stream_cut_mid_burst_resumes_from_its_cookie(
    tmp_path: Path, slapd_rw: dict[str, str], scim_server: ScimServer
) -> None:
    """A connection cut between two halves of a burst: reopened with the cookie, the
    stream delivers exactly the second half (nothing lost, nothing repeated)."""
    profile = make_profile(tmp_path, slapd_rw, scim_server)
    conn = LdapConnector(profile.source)  # type: ignore[arg-type]
    start = conn.stream_position()
    _rename_all(slapd_rw, range(30, 50), "First")
    mailed = [i for i in range(30, 70) if ldapdata.has_mail(i)]  # the others are skipped
    first = conn.changes(start, 2.0)
    while len(first.users) < sum(1 for i in mailed if i < 50):
        more = conn.changes(first.position, 2.0)
        assert not more.empty, f"only {len(first.users)} changes arrived"
        first = combine(first, more)
    conn.close()  # the cut
    _rename_all(slapd_rw, range(50, 70), "Second")
    second = conn.changes(first.position, 2.0)  # a new connection, the saved cookie
    names = sorted(u.display_name for u in second.users.values())
    assert names == sorted(f"Second {i}" for i in mailed if i >= 50)
    assert {u.display_name for u in first.users.values()} == {
        f"First {i}" for i in mailed if i < 50
    }
    conn.close()


def test_restored_directory_cookie_means_a_full_read(watching: Running) -> None:
    """A cookie from the future (a directory restored from an older backup) is refused by
    the server; the watcher reads in full and streams again."""
    future = "rid=000,csn=20991231000000.000000Z#000000#000#000000"
    w = watching.watcher
    until(lambda: setattr(w, "position", future) is None and w.full_syncs >= 2, 15)
    until(lambda: bool(w.position) and w.position != future, 15)


def test_random_edits_through_watch_leave_nothing_for_a_full_plan(
    watching: Running, slapd_rw: dict[str, str]
) -> None:
    """Random ldapmodify edits (every kind) through watch: afterwards the incremental
    snapshot equals a full read and a full plan against the server is empty."""
    import random

    rnd = random.Random(20)
    people, w = ldapdata.PEOPLE, watching.watcher
    live = [ldapdata.user_dn(i) for i in range(30, 90)]
    groups = [ldapdata.group_dn(ldapdata.dept(k)) for k in range(4)] + [
        ldapdata.group_dn(n) for n in ldapdata.NESTED
    ]
    done = 0
    for step in range(50):
        kind = rnd.choice(
            [
                "create",
                "lock",
                "unlock",
                "mail",
                "share",
                "delete",
                "join",
                "leave",
                "rename",
                "nest",
            ]
        )
        dn, gdn = rnd.choice(live), rnd.choice(groups)
        if kind == "create":
            dn = f"uid=r{step},{people}"
            ldif = (
                f"dn: {dn}\nchangetype: add\nobjectClass: inetOrgPerson\nuid: r{step}\n"
                f"cn: R {step}\nsn: R\nmail: r{step}@example.com\n"
            )
            live.append(dn)
        elif kind in ("lock", "unlock"):
            op = "add" if kind == "lock" else "delete"
            ldif = f"dn: {dn}\nchangetype: modify\n{op}: pwdAccountLockedTime\n" + (
                f"pwdAccountLockedTime: {ldapdata.LOCKED}\n" if op == "add" else ""
            )
        elif kind == "mail":
            ldif = f"dn: {dn}\nchangetype: modify\nreplace: mail\nmail: m{step}@example.com\n"
        elif kind == "share":  # another entry's address: duplicates come and go
            other = int(rnd.choice(range(30, 90)))
            ldif = (
                f"dn: {dn}\nchangetype: modify\nreplace: mail\n"
                f"mail: {ldapdata.email(other).upper()}\n"
            )
        elif kind == "delete":
            ldif = f"dn: {dn}\nchangetype: delete\n"
            live.remove(dn)
        elif kind in ("join", "leave"):
            op = "add" if kind == "join" else "delete"
            ldif = f"dn: {gdn}\nchangetype: modify\n{op}: member\nmember: {dn}\n"
        elif kind == "rename":
            rdn = f"uid=moved{step}"
            ldif = f"dn: {dn}\nchangetype: modrdn\nnewrdn: {rdn}\ndeleteoldrdn: 0\n"
            live[live.index(dn)] = f"{rdn},{people}"
        else:
            ldif = f"dn: {gdn}\nchangetype: modify\nadd: member\nmember: {rnd.choice(groups)}\n"
        try:
            ldapmodify(slapd_rw, ldif)
        except Exception:
            continue  # user, a member already there) is not an edit
        done += 1
        if rnd.random() < 0.3:
            time.sleep(0.3)
    assert done >= 30
    time.sleep(3)  # the last batch is applied
    assert w.batches >= 5
    connector = LdapConnector(w.profile.source)  # type: ignore[arg-type]
    from dirconnector.state_space import ConnectorState

    full = connector.fetch(ConnectorState())
    assert w.desired is not None
    assert w.desired.users == full.users
    assert w.desired.groups == full.groups
    plan = w.runner.make_plan(full, w.target.snapshot())
    assert plan.empty, [c.kind for c in plan.changes]
