"""The reliability rig: a profile on disk, a target server behind the fault proxy, checks.

Three targets, each reached through ``tests.integration.scim.proxy.FaultProxy``:

- ``scim``: the scim target against scim2-server (PyPI), a fresh tenant per rig;
- ``bw-scim``: the scim target (flavor bitwarden) against the Bitwarden-compatible server;
- ``bitwarden``: the bitwarden target (Public API) against the same server.

A rig runs ``dirconnector`` with click's CliRunner (in process) or as a subprocess,
keeps every output, config, plan and state file under one artifacts folder (the
suite-wide leak check greps it when the session ends), and reads the server
*directly* (not through the proxy, not through the target) to judge what really
happened.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import traceback
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests
from click.testing import CliRunner

from dirconnector import cli
from dirconnector.model import Group, flatten
from tests.emulators.bitwarden.org import CONFIRMED, REVOKED
from tests.emulators.bitwarden.server import BitwardenServer
from tests.integration.scim.conftest import TOKEN as SCIM_TOKEN
from tests.integration.scim.conftest import ScimServer, start_server
from tests.integration.scim.proxy import FaultProxy

TARGETS = ("scim", "bw-scim", "bitwarden")
BW_CLIENT_SECRET = "bw-client-secret-R3l1ab1l1ty-0b5e"
BW_SCIM_KEY = "bw-scim-key-R3l1ab1l1ty-77c2"
KNOWN_SECRETS = (SCIM_TOKEN, BW_CLIENT_SECRET, BW_SCIM_KEY)
"""Every secret value the reliability runs use; none may appear in any artifact."""
EXE = str(Path(sys.executable).with_name("dirconnector"))
OUTSIDER = "outsider@example.org"
"""An account on the server that the directory does not hold: nobody may revoke it."""


# ---------------------------------------------------------------------- the directory

@dataclass
class Directory:
    """A JSON directory for the file connector, editable between runs."""

    users: list[dict[str, Any]]
    groups: list[dict[str, Any]]

    def dump(self) -> str:
        return json.dumps({"users": self.users, "groups": self.groups}, ensure_ascii=False)

    def user(self, uid: str) -> dict[str, Any]:
        return next(u for u in self.users if u["id"] == uid)

    def group(self, gid: str) -> dict[str, Any]:
        return next(g for g in self.groups if g["id"] == gid)

    def expected_members(self) -> dict[str, frozenset[str]]:
        """Flattened membership by group external id (users that exist on the server)."""
        groups = {g["id"]: Group(g["id"], g["name"], frozenset(g["members"]),
                                 frozenset(g.get("groups", []))) for g in self.groups}
        return flatten(groups)


def user_row(i: int, **kw: Any) -> dict[str, Any]:
    return {"id": f"u{i:03d}", "user_name": f"user{i:03d}", "email": f"user{i:03d}@example.org",
            "given_name": "User", "family_name": f"N{i:03d}", "display_name": f"User {i:03d}",
            "active": True, **kw}


def first_directory(n: int = 24) -> Directory:
    """D0: ``n`` people in three leaf groups and one parent group."""
    users = [user_row(i) for i in range(n)]
    third = n // 3
    ids = [u["id"] for u in users]
    groups = [
        {"id": "g-a", "name": "Alpha", "members": ids[:third], "groups": []},
        {"id": "g-b", "name": "Beta", "members": ids[third:2 * third], "groups": []},
        {"id": "g-c", "name": "Gamma", "members": ids[2 * third:], "groups": []},
        {"id": "g-all", "name": "Everyone", "members": [], "groups": ["g-a", "g-b"]},
    ]
    return Directory(users, groups)


def second_directory(d0: Directory, *, renames: bool, removals: bool) -> Directory:
    """D1: six hires, two leavers (revokes), renames, a new group, membership moves."""
    d1 = Directory(json.loads(json.dumps(d0.users)), json.loads(json.dumps(d0.groups)))
    n = len(d1.users)
    hires = [user_row(i) for i in range(n, n + 6)]
    d1.users += hires
    d1.user("u001")["active"] = False
    d1.user("u009")["active"] = False
    if renames:
        d1.user("u002")["display_name"] = "Ådå Lövelace"
        d1.user("u003")["display_name"] = "Grace B. Hopper"
    d1.group("g-a")["members"] += [hires[0]["id"], hires[1]["id"]]
    d1.group("g-c")["members"] += [h["id"] for h in hires[2:]]
    d1.group("g-b")["members"].append("u017")
    if removals:
        d1.group("g-a")["members"].remove("u004")
    d1.groups.append({"id": "g-d", "name": "Delta", "members": [hires[0]["id"], "u005"],
                      "groups": []})
    return d1


# ---------------------------------------------------------------------- what the server holds

@dataclass(frozen=True)
class Account:
    ref: str
    external_id: str
    email: str
    active: bool
    name: str


@dataclass(frozen=True)
class GroupView:
    ref: str
    external_id: str
    name: str
    members: frozenset[str]
    """External ids of the direct user members."""


@dataclass(frozen=True)
class ServerView:
    users: tuple[Account, ...]
    groups: tuple[GroupView, ...]

    def user(self, external_id: str) -> Account | None:
        found = [u for u in self.users if u.external_id == external_id]
        return found[0] if found else None

    def group(self, external_id: str) -> GroupView | None:
        found = [g for g in self.groups if g.external_id == external_id]
        return found[0] if found else None


def view_scim(server: ScimServer) -> ServerView:
    users = []
    for r in server.all("Users"):
        emails = r.get("emails") or []
        email = str(emails[0].get("value")) if emails else str(r.get("userName"))
        users.append(Account(str(r["id"]), str(r.get("externalId") or ""), email.lower(),
                             bool(r.get("active", True)), str(r.get("displayName") or "")))
    by_ref = {u.ref: u.external_id for u in users}
    groups = [GroupView(str(r["id"]), str(r.get("externalId") or ""), str(r["displayName"]),
                        frozenset(by_ref.get(str(m["value"]), "?" + str(m["value"]))
                                  for m in r.get("members") or []))
              for r in server.all("Groups")]
    return ServerView(tuple(users), tuple(groups))


def view_bitwarden(server: BitwardenServer) -> ServerView:
    org = server.org
    with org.lock:
        users = tuple(Account(m.id, m.external_id or "", m.email.lower(), m.status != REVOKED,
                              m.name or "") for m in org.members.values())
        by_id = {m.id: m.external_id or "?" + m.id for m in org.members.values()}
        groups = tuple(GroupView(g.id, g.external_id or "", g.name,
                                 frozenset(by_id.get(i, "?" + i) for i in g.member_ids))
                       for g in org.groups.values())
    return ServerView(users, groups)


# ---------------------------------------------------------------------- a CLI run

@dataclass
class Run:
    args: tuple[str, ...]
    exit_code: int
    output: str
    crash: str = ""
    """A traceback when the command raised something other than SystemExit (a bug)."""


@dataclass
class Rig:
    """One profile: directory file, config, state, and one server behind a proxy."""

    kind: str
    root: Path
    proxy: FaultProxy
    scim: ScimServer | None = None
    bw: BitwardenServer | None = None
    runs: list[Run] = field(default_factory=list)
    sync_options: dict[str, Any] = field(default_factory=dict)
    extra_env: dict[str, str] = field(default_factory=dict)
    target_extra: str = ""
    """More TOML lines for [target] (``bulk = "off"``)."""

    @property
    def config(self) -> Path:
        return self.root / "dirconnector.toml"

    @property
    def state(self) -> Path:
        return self.root / "state.db"

    @property
    def directory_file(self) -> Path:
        return self.root / "directory.json"

    def env(self) -> dict[str, str]:
        return {"REL_SCIM_TOKEN": SCIM_TOKEN if self.kind == "scim" else BW_SCIM_KEY,
                "REL_BW_SECRET": BW_CLIENT_SECRET, **self.extra_env}

    def target_toml(self) -> str:
        if self.kind == "scim":
            assert self.scim is not None
            return (f'type = "scim"\nurl = "{self.proxy.url}{self.scim.path}"\n'
                    f'token_env = "REL_SCIM_TOKEN"\nconcurrency = 1\ntimeout = 1.0\n')
        assert self.bw is not None
        if self.kind == "bw-scim":
            # Group members come from the Public API (Bitwarden's SCIM never returns them).
            return (f'type = "scim"\nurl = "{self.proxy.url}/v2/{self.bw.org_id}"\n'
                    f'token_env = "REL_SCIM_TOKEN"\nconcurrency = 1\ntimeout = 1.0\n'
                    f'public_api = {{ server_url = "{self.proxy.url}", '
                    f'client_id = "{self.bw.client_id}", client_secret_env = "REL_BW_SECRET", '
                    f'timeout = 1.0 }}\n')
        return (f'type = "bitwarden"\nserver_url = "{self.proxy.url}"\n'
                f'client_id = "{self.bw.client_id}"\nclient_secret_env = "REL_BW_SECRET"\n'
                f'concurrency = 1\ntimeout = 1.0\n')

    def write(self, directory: Directory | None, source_extra: str = "",
              source: str | None = None, **sync: Any) -> None:
        """Write the directory file and the config; ``source`` replaces the file source's
        [source] body (another connector)."""
        if directory is not None:
            self.directory_file.write_text(directory.dump(), encoding="utf-8")
        self.sync_options.update(sync)
        lines = "\n".join(f"{k} = {json.dumps(v)}" for k, v in self.sync_options.items())
        if source is None:
            source = f'type = "file"\nusers = "{self.directory_file}"\n'
        self.config.write_text(
            f'profile = "rel"\n[source]\n{source}{source_extra}\n[target]\n{self.target_toml()}{self.target_extra}\n[sync]\n{lines}\n'
            f'[state]\npath = "{self.state}"\n', encoding="utf-8")
        self.config.chmod(0o600)

    def cli(self, *args: str, config: Path | None = None) -> Run:
        """``dirconnector --config FILE ARGS`` in process; output kept for the leak check.

        ``config``: another file (one holding inline secrets lives outside the artifacts)."""
        argv = ("-vv", "--config", str(config or self.config), *args)
        result = CliRunner().invoke(cli.main, list(argv), env=self.env(),
                                    catch_exceptions=True)
        crash = ""
        if result.exception is not None and not isinstance(result.exception, SystemExit):
            crash = "".join(traceback.format_exception(result.exception))
        run = Run(tuple(args), result.exit_code, result.output, crash)
        self.keep(run)
        return run

    def subprocess(self, *args: str) -> subprocess.Popen[str]:
        """``dirconnector`` as a child process (for kill -9), output to files under root."""
        n = len(self.runs)
        out = (self.root / f"proc-{n}.out").open("w")
        return subprocess.Popen([EXE, "-vv", "--config", str(self.config), *args],
                                env={**os.environ, **self.env()}, stdout=out,
                                stderr=subprocess.STDOUT, text=True)

    def keep(self, run: Run) -> None:
        self.runs.append(run)
        n = len(self.runs)
        (self.root / f"run-{n:02d}.out").write_text(
            f"$ dirconnector {' '.join(run.args)}\nexit {run.exit_code}\n{run.output}\n"
            f"{run.crash}", encoding="utf-8")

    # ------------------------------------------------------------------ reads

    def view(self) -> ServerView:
        if self.scim is not None:
            return view_scim(self.scim)
        assert self.bw is not None
        return view_bitwarden(self.bw)

    def last_run_id(self) -> str:
        with sqlite3.connect(self.state) as db:
            row = db.execute("SELECT id FROM runs ORDER BY started DESC LIMIT 1").fetchone()
        return str(row[0])

    def run_rows(self) -> list[tuple[str, str, str]]:
        with sqlite3.connect(self.state) as db:
            return [(str(a), str(b), str(c)) for a, b, c in db.execute(
                "SELECT id, status, error FROM runs ORDER BY started")]

    def journal(self, run_id: str) -> list[dict[str, Any]]:
        """The journal rows of a run, with the change payload (StateStore.journal + change)."""
        with sqlite3.connect(self.state) as db:
            rows = db.execute("SELECT kind, status, ref, error, change FROM journal "
                              "WHERE run_id=? ORDER BY seq", (run_id,)).fetchall()
        return [{"kind": k, "status": s, "ref": r, "error": e, "change": json.loads(c)}
                for k, s, r, e, c in rows]

    def seed_outsider(self) -> None:
        """An account the tool never made; it must stay active whatever happens."""
        if self.scim is not None:
            requests.post(f"{self.scim.url}/Users", timeout=10,
                          headers={"Authorization": f"Bearer {SCIM_TOKEN}"},
                          json={"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
                                "userName": OUTSIDER, "externalId": "outsider",
                                "emails": [{"value": OUTSIDER, "primary": True}],
                                "active": True}).raise_for_status()
        else:
            assert self.bw is not None
            self.bw.add_member(OUTSIDER, external_id="outsider", status=CONFIRMED)


def new_scim_tenant(process: ScimServer) -> ScimServer:
    return ScimServer(process.port, process.process, f"r{uuid.uuid4().hex[:12]}")


def new_bitwarden() -> BitwardenServer:
    server = BitwardenServer()
    server.client_secret = BW_CLIENT_SECRET
    server.scim_key = BW_SCIM_KEY
    server.start()
    server.add_owner("owner@example.org")
    return server


def make_rig(kind: str, root: Path, scim_process: ScimServer | None) -> Rig:
    root.mkdir(parents=True, exist_ok=True)
    if kind == "scim":
        assert scim_process is not None
        tenant = new_scim_tenant(scim_process)
        proxy = FaultProxy(tenant.port).start()
        return Rig(kind, root, proxy, scim=tenant)
    bw = new_bitwarden()
    proxy = FaultProxy(int(bw.url.rsplit(":", 1)[1])).start()
    return Rig(kind, root, proxy, bw=bw)


def close_rig(rig: Rig) -> None:
    rig.proxy.stop()
    if rig.bw is not None:
        rig.bw.stop()


def start_scim_process() -> ScimServer:
    return start_server("--dynamic-tenants")


# ---------------------------------------------------------------------- judging a server

@dataclass
class Verdict:
    """Differences between the server and the directory, within the managed scope."""

    lost: list[str] = field(default_factory=list)
    wrong: list[str] = field(default_factory=list)
    duplicated: list[str] = field(default_factory=list)

    @property
    def clean(self) -> bool:
        return not (self.lost or self.wrong or self.duplicated)


def judge(view: ServerView, d: Directory, *, names: bool, removals: bool) -> Verdict:
    """Does the server hold the directory? Lost: a change not there; wrong: something else."""
    v = Verdict()
    by_ext = Counter(u.external_id for u in view.users if u.external_id)
    by_email = Counter(u.email for u in view.users)
    v.duplicated += [f"user externalId {e} x{n}" for e, n in by_ext.items() if n > 1]
    v.duplicated += [f"user email {e} x{n}" for e, n in by_email.items() if n > 1]
    gx = Counter(g.external_id for g in view.groups if g.external_id)
    v.duplicated += [f"group externalId {e} x{n}" for e, n in gx.items() if n > 1]
    gn = Counter(g.name.casefold() for g in view.groups)
    v.duplicated += [f"group name {e} x{n}" for e, n in gn.items() if n > 1]
    for u in d.users:
        acct = view.user(u["id"])
        if acct is None:
            v.lost.append(f"user {u['id']} missing")
            continue
        if acct.email != u["email"]:
            v.wrong.append(f"user {u['id']} email {acct.email}")
        if acct.active and not u["active"]:
            v.lost.append(f"user {u['id']} not revoked")
        if not acct.active and u["active"]:
            v.wrong.append(f"user {u['id']} revoked (extra revocation)")
        if names and acct.name != u["display_name"]:
            v.lost.append(f"user {u['id']} name {acct.name!r} != {u['display_name']!r}")
    known = {u["id"] for u in d.users}
    for acct in view.users:
        if acct.external_id not in known and not acct.active:
            v.wrong.append(f"account {acct.email} outside the directory revoked")
    expected = d.expected_members()
    for g in d.groups:
        grp = view.group(g["id"])
        if grp is None:
            v.lost.append(f"group {g['id']} missing")
            continue
        if grp.name != g["name"]:
            v.lost.append(f"group {g['id']} name {grp.name!r}")
        want = expected[g["id"]]
        v.lost += [f"group {g['id']} lacks {m}" for m in sorted(want - grp.members)]
        if removals:
            v.wrong += [f"group {g['id']} has extra {m}" for m in sorted(grp.members - want)]
    return v


def journal_mismatches(before: ServerView, after: ServerView,
                       rows: list[dict[str, Any]], *, killed: bool = False) -> list[str]:
    """Where the journal of one run disagrees with what the server shows it did.

    ``killed``: the process died mid-run, so a change in flight may have landed without
    its row; only rows claiming what did not happen count then.
    """
    out: list[str] = []
    ok = [r for r in rows if r["status"] == "ok"]

    def ext_of(r: dict[str, Any]) -> str:
        c = r["change"]
        if "user" in c:
            return str(c["user"]["external_id"])
        return str(c.get("external_id") or c.get("group_external_id") or "")

    created = {ext_of(r) for r in ok if r["kind"] in ("create_user", "link_user")}
    made = {u.external_id for u in after.users if u.external_id
            and before.user(u.external_id) is None}
    if not killed:
        out += [f"server created user {e}, journal has no ok create"
                for e in sorted(made - created)]
    out += [f"journal says user {e} created, server lacks it" for e in sorted(
        created - {u.external_id for u in after.users})]
    revoked_rows = {ext_of(r) for r in ok if r["kind"] == "revoke_user"}
    was_active = {u.external_id for u in before.users if u.active}
    revoked = {u.external_id for u in after.users if not u.active} & was_active
    if not killed:
        out += [f"server revoked {e}, journal has no ok revoke"
                for e in sorted(revoked - revoked_rows)]
    still = {u.external_id for u in after.users if u.active}
    out += [f"journal says {e} revoked, server has it active" for e in sorted(
        revoked_rows & still)]
    gcreated = {ext_of(r) for r in ok if r["kind"] in ("create_group", "link_group")}
    gmade = {g.external_id for g in after.groups if g.external_id
             and before.group(g.external_id) is None}
    if not killed:
        out += [f"server created group {e}, journal has no ok create"
                for e in sorted(gmade - gcreated)]
    out += [f"journal says group {e} created, server lacks it" for e in sorted(
        gcreated - {g.external_id for g in after.groups})]
    for r in ok:
        if r["kind"] not in ("add_members", "remove_members"):
            continue
        grp = after.group(r["change"]["group_external_id"])
        members = {m["external_id"] for m in r["change"]["members"]}
        if grp is None:
            out.append(f"journal changed members of missing group {r['change']['group_name']}")
        elif r["kind"] == "add_members" and members - grp.members:
            out.append(f"journal added {sorted(members - grp.members)} to "
                       f"{r['change']['group_name']}, server lacks them")
        elif r["kind"] == "remove_members" and members & grp.members:
            out.append(f"journal removed {sorted(members & grp.members)} from "
                       f"{r['change']['group_name']}, server still has them")
    return out


# ---------------------------------------------------------------------- the pipeline in process

def runner(rig: Rig, connector: Any) -> Any:
    """sync.Runner for the rig's profile with ``connector`` in place of the file source."""
    from unittest import mock

    from dirconnector import settings
    from dirconnector.state import SqliteStore
    from dirconnector.sync import Runner

    with mock.patch.dict(os.environ, rig.env()):
        profile = settings.load(rig.config)
    return Runner(profile, SqliteStore(rig.state), connector=connector)


NO_LIMITS = {"remove_missing": True, "max_revocations": 100_000, "max_revocation_ratio": 1.0,
             "min_source_ratio": 0.0}
"""[sync] with every limit off but the complete-read gate: a partial read that slipped
through would revoke the missing people, so a test that sees no revocation proves the
connector raised (or said incomplete)."""
